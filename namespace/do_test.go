package namespace

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

// everyThreadIn fails t unless goroutines spread over the Go scheduler's
// threads all find themselves in namespace want.
func everyThreadIn(t *testing.T, want *Namespace) {
	t.Helper()
	var wg sync.WaitGroup
	errs := make(chan string, 64)
	for range 4 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			for range 20 {
				cur, err := Current(want.Kind())
				if err != nil {
					errs <- err.Error()
					return
				}
				if !cur.Equal(want) {
					errs <- "a goroutine saw " + cur.String() + ", not " + want.String()
				}
				cur.Close()
				runtime.Gosched()
			}
		})
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
		return
	}
}

func hostname(t *testing.T) string {
	t.Helper()
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	return unix.ByteSliceToString(u.Nodename[:])
}

// TestDo enters a child's network and UTS namespaces, changes the
// hostname there, and checks that no other goroutine, before, during or
// after, ever runs in them.
func TestDo(t *testing.T) {
	requireRoot(t)
	child := startSleeper(t, Net, UTS)
	childNet, err := OpenPID(child.Process.Pid, Net)
	if err != nil {
		t.Fatal(err)
	}
	defer childNet.Close()
	childUTS, err := OpenPID(child.Process.Pid, UTS)
	if err != nil {
		t.Fatal(err)
	}
	defer childUTS.Close()
	hostNet, err := Current(Net)
	if err != nil {
		t.Fatal(err)
	}
	defer hostNet.Close()
	hostName := hostname(t)

	err = Do(func() error {
		for _, want := range []*Namespace{childNet, childUTS} {
			cur, err := Current(want.Kind())
			if err != nil {
				return err
			}
			defer cur.Close()
			if !cur.Equal(want) {
				t.Errorf("inside Do: thread in %v, want %v", cur, want)
			}
		}
		everyThreadIn(t, hostNet) // fn's thread is locked: nobody else runs on it
		return unix.Sethostname([]byte("berth-do-test"))
	}, childNet, childUTS)
	if err != nil {
		t.Fatal(err)
	}
	everyThreadIn(t, hostNet)
	if got := hostname(t); got != hostName {
		t.Errorf("host hostname changed to %q", got)
	}
	var inside string
	if err := Do(func() error { inside = hostname(t); return nil }, childUTS); err != nil {
		t.Fatal(err)
	}
	if inside != "berth-do-test" {
		t.Errorf("hostname in the child's UTS namespace = %q", inside)
	}

	errFn := errors.New("fn failed")
	if err := Do(func() error { return errFn }, childNet); err != errFn {
		t.Errorf("Do returned %v, want fn's error itself", err)
	}
	if err := Do(func() error { return nil }); err != nil {
		t.Errorf("Do with no namespaces: %v", err)
	}
	if err := Do(func() error { return nil }, nil); err == nil {
		t.Error("Do with a nil namespace succeeded")
	}
}

// TestDoLockedRestores runs doLocked, the heart of Do, on the test's own
// locked thread and compares the thread's namespaces before and after,
// also when entering fails half-way and when fn panics.
func TestDoLockedRestores(t *testing.T) {
	requireRoot(t)
	child := startSleeper(t, Net, IPC)
	childNet, err := OpenPID(child.Process.Pid, Net)
	if err != nil {
		t.Fatal(err)
	}
	defer childNet.Close()
	childIPC, err := OpenPID(child.Process.Pid, IPC)
	if err != nil {
		t.Fatal(err)
	}
	defer childIPC.Close()
	closed, err := OpenPID(child.Process.Pid, UTS)
	if err != nil {
		t.Fatal(err)
	}
	closed.Close() // entering it fails with EBADF

	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	before := map[Kind]*Namespace{}
	for _, k := range []Kind{Net, IPC, UTS} {
		if before[k], err = Current(k); err != nil {
			t.Fatal(err)
		}
		defer before[k].Close()
	}
	check := func(what string, o *outcome) {
		t.Helper()
		if !o.restored {
			t.Errorf("%s: thread not restored: %v", what, o.err)
		}
		for k, want := range before {
			cur, err := Current(k)
			if err != nil {
				t.Fatal(err)
			}
			if !cur.Equal(want) {
				t.Fatalf("%s: thread left in %v, was in %v", what, cur, want)
			}
			cur.Close()
		}
	}

	var o outcome
	var inNet, inIPC bool
	doLocked(func() error {
		n, _ := Current(Net)
		i, _ := Current(IPC)
		inNet, inIPC = n.Equal(childNet), i.Equal(childIPC)
		n.Close()
		i.Close()
		return nil
	}, []*Namespace{childNet, childIPC, childNet}, &o)
	if !inNet || !inIPC || o.err != nil {
		t.Errorf("fn ran in child's net: %v, ipc: %v; err %v", inNet, inIPC, o.err)
	}
	check("normal", &o)

	o = outcome{}
	ran := false
	doLocked(func() error { ran = true; return nil }, []*Namespace{childNet, childIPC, closed}, &o)
	if ran || o.err == nil || !errors.Is(o.err, unix.EBADF) || !strings.Contains(o.err.Error(), "enter uts:[") {
		t.Errorf("entering a closed handle: ran %v, err %v", ran, o.err)
	}
	check("enter failed", &o)

	o = outcome{}
	doLocked(func() error { panic("boom") }, []*Namespace{childNet}, &o)
	if !o.panicked || o.panicVal != "boom" {
		t.Errorf("panic not caught: %+v", o)
	}
	check("panic", &o)
}

// TestDoPanicAndGoexit checks that a panic in fn reaches Do's caller and
// runtime.Goexit in fn ends the caller's goroutine, both after the thread
// is restored.
func TestDoPanicAndGoexit(t *testing.T) {
	requireRoot(t)
	ns, err := NewNet("")
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	func() {
		defer func() {
			if v := recover(); v != "boom" {
				t.Errorf("recovered %v, want boom", v)
			}
		}()
		Do(func() error { panic("boom") }, ns)
		t.Error("Do returned after a panic")
	}()

	done := make(chan bool)
	go func() {
		reached := false
		defer func() { done <- reached }()
		Do(func() error { runtime.Goexit(); return nil }, ns)
		reached = true
	}()
	if <-done {
		t.Error("Do returned after runtime.Goexit in fn")
	}
	host, err := Current(Net)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	everyThreadIn(t, host)
}
