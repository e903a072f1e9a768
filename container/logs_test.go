package container

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// lineRecorder records the lines written to it with the container's
// state at the time each arrived.
type lineRecorder struct {
	mu     sync.Mutex
	c      *Container
	lines  []string
	states []State
}

func (r *lineRecorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, string(p))
	r.states = append(r.states, r.c.State())
	return len(p), nil
}

func TestLogsFollow(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	logPath := filepath.Join(t.TempDir(), "log.json")
	c, _ := startIn(t, Default, &Spec{
		LogPath: logPath,
		Process: Process{
			Args:   []string{"sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do echo line $i; sleep 0.05; done; sleep 0.1; echo bye >&2"},
			Stdout: io.Discard, Stderr: &syncBuffer{}, // apart
		},
	})
	// The container's own Logs and the path's (as another process would
	// follow it, by the writer's lock), side by side.
	byC := &lineRecorder{c: c}
	byPath := &lineRecorder{c: c}
	var errByC, errByPath error
	var errs bytes.Buffer
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		errByC = c.Logs(ctx, LogOptions{Follow: true}, byC, &errs)
	}()
	go func() {
		defer wg.Done()
		errByPath = Logs(ctx, logPath, LogOptions{Follow: true}, byPath, io.Discard)
	}()
	wg.Wait()
	if errByC != nil || errByPath != nil {
		t.Fatalf("Logs: %v, %v", errByC, errByPath)
	}
	if c.State() != Stopped {
		t.Errorf("Logs returned while the container is %s", c.State())
	}
	for name, r := range map[string]*lineRecorder{"Container.Logs": byC, "Logs": byPath} {
		if len(r.lines) != 10 || r.lines[0] != "line 1\n" || r.lines[9] != "line 10\n" {
			t.Errorf("%s: lines %q", name, r.lines)
			continue
		}
		// Lines arrive as they are printed, not at the end.
		if r.states[0] != Running || r.states[5] != Running {
			t.Errorf("%s: lines 1 and 6 arrived while the container was %s and %s", name, r.states[0], r.states[5])
		}
	}
	if errs.String() != "bye\n" {
		t.Errorf("stderr %q", errs.String())
	}
	// Following a log that no container writes any more ends at once.
	var o bytes.Buffer
	start := time.Now()
	if err := Logs(ctx, logPath, LogOptions{Follow: true, Tail: 1}, &o, nil); err != nil || o.String() != "" {
		t.Errorf("Logs of a finished log, tail 1 (stderr's line) = %q, %v", o.String(), err)
	}
	if err := c.Logs(ctx, LogOptions{Follow: true, Tail: 2}, &o, nil); err != nil || o.String() != "line 10\n" {
		t.Errorf("Container.Logs of a stopped container, tail 2 = %q, %v", o.String(), err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("following stopped logs took %v", d)
	}
}

func TestLogsFollowEndsWithContext(t *testing.T) {
	needRoot(t)
	logPath := filepath.Join(t.TempDir(), "log.json")
	c, _ := startIn(t, Default, &Spec{LogPath: logPath, Process: sh("echo up; exec sleep 60")})
	ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
	defer cancel()
	var o syncBuffer
	err := c.Logs(ctx, LogOptions{Follow: true}, &o, &o)
	if err != context.DeadlineExceeded || o.String() != "up\n" {
		t.Fatalf("Logs = %q, %v; want up and the context's error", o.String(), err)
	}
	// TailNone follows only what comes next: nothing here.
	ctx2, cancel2 := context.WithTimeout(testCtx(t), 200*time.Millisecond)
	defer cancel2()
	var o2 syncBuffer
	if err := Logs(ctx2, logPath, LogOptions{Follow: true, Tail: TailNone}, &o2, &o2); err != context.DeadlineExceeded || o2.String() != "" {
		t.Fatalf("Logs with TailNone = %q, %v", o2.String(), err)
	}
	c.Kill(testCtx(t))
}

func TestLogsOptions(t *testing.T) {
	needRoot(t)
	logPath := filepath.Join(t.TempDir(), "log.json")
	long := strings.Repeat("x", 40000)
	_, st := run(t, &Spec{
		LogPath: logPath,
		Process: Process{
			Args:   []string{"sh", "-c", "echo a; sleep 0.1; echo b >&2; sleep 0.1; echo c; sleep 0.1; printf " + long},
			Stdout: &syncBuffer{}, Stderr: &syncBuffer{}, // apart
		},
	})
	if !st.Success() {
		t.Fatal(st)
	}
	// The times of the entries, from the file.
	var times []time.Time
	f, _ := os.Open(logPath)
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		var e logEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatal(err)
		}
		times = append(times, e.Time)
	}
	f.Close()
	if len(times) != 6 { // a, b, c and the long line in three parts
		t.Fatalf("%d entries", len(times))
	}
	logs := func(opts LogOptions) (string, string) {
		t.Helper()
		var o, e bytes.Buffer
		if err := Logs(testCtx(t), logPath, opts, &o, &e); err != nil {
			t.Fatal(err)
		}
		return o.String(), e.String()
	}
	for _, tc := range []struct {
		name     string
		opts     LogOptions
		out, err string
	}{
		{"all", LogOptions{}, "a\nc\n" + long, "b\n"},
		{"tail none", LogOptions{Tail: TailNone}, "", ""},
		{"tail 1", LogOptions{Tail: 1}, long[32768:], ""},
		{"tail 4", LogOptions{Tail: 4}, "c\n" + long, ""},
		{"tail 5", LogOptions{Tail: 5}, "c\n" + long, "b\n"},
		{"tail more", LogOptions{Tail: 100}, "a\nc\n" + long, "b\n"},
		{"since", LogOptions{Since: times[1]}, "c\n" + long, "b\n"},
		{"until", LogOptions{Until: times[1]}, "a\n", "b\n"},
		{"since until", LogOptions{Since: times[1], Until: times[2]}, "c\n", "b\n"},
		{"tail then since", LogOptions{Tail: 5, Since: times[2]}, "c\n" + long, ""},
	} {
		if o, e := logs(tc.opts); o != tc.out || e != tc.err {
			t.Errorf("%s: stdout %.40q stderr %q, want %.40q %q", tc.name, o, e, tc.out, tc.err)
		}
	}
	o, e := logs(LogOptions{Timestamps: true, Tail: 5})
	wantErr := times[1].Format("2006-01-02T15:04:05.000000000Z") + " b\n"
	if e != wantErr || !strings.HasPrefix(o, times[2].Format("2006-01-02T15:04:05.000000000Z")+" c\n") {
		t.Errorf("timestamps: stdout %.80q stderr %q, want stderr %q", o, e, wantErr)
	}
	// One stream only.
	var only bytes.Buffer
	if err := Logs(testCtx(t), logPath, LogOptions{}, nil, &only); err != nil || only.String() != "b\n" {
		t.Errorf("stderr only: %q %v", only.String(), err)
	}
	if err := Logs(testCtx(t), filepath.Join(t.TempDir(), "none"), LogOptions{}, nil, nil); !os.IsNotExist(unwrapAll(err)) {
		t.Errorf("Logs of a missing file = %v", err)
	}
}

func unwrapAll(err error) error {
	for {
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return err
		}
		err = u.Unwrap()
	}
}

func TestTailOffset(t *testing.T) {
	p := filepath.Join(t.TempDir(), "f")
	var b strings.Builder
	for i := 0; i < 30000; i++ {
		fmt.Fprintf(&b, "%d\n", i)
	}
	os.WriteFile(p, []byte(b.String()), 0o644)
	f, _ := os.Open(p)
	defer f.Close()
	for _, n := range []int{1, 2, 29999, 30000, 40000} {
		off, err := tailOffset(f, n)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Count(b.String()[off:], "\n")
		if want := min(n, 30000); got != want {
			t.Errorf("tail %d: %d lines", n, got)
		}
	}
}
