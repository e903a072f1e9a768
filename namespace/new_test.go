package namespace

import (
	"errors"
	"os"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestNew makes network, IPC and UTS namespaces with a hostname set in
// them and checks that the handles name new namespaces holding it while
// every thread of the process stays where it was.
func TestNew(t *testing.T) {
	requireRoot(t)
	kinds := []Kind{Net, IPC, UTS}
	var hosts []*Namespace
	for _, k := range kinds {
		h, err := Current(k)
		if err != nil {
			t.Fatal(err)
		}
		defer h.Close()
		hosts = append(hosts, h)
	}
	nss, err := New(func() error {
		if err := unix.Sethostname([]byte("newtest")); err != nil {
			return err
		}
		return LoopbackUp()
	}, kinds...)
	if err != nil {
		t.Fatal(err)
	}
	if len(nss) != len(kinds) {
		t.Fatalf("New returned %d handles, want %d", len(nss), len(kinds))
	}
	for i, ns := range nss {
		defer ns.Close()
		if ns.Kind() != kinds[i] || ns.Equal(hosts[i]) {
			t.Errorf("handle %d: %v, want a new %v namespace (host: %v)", i, ns, kinds[i], hosts[i])
		}
	}
	var name string
	if err := Do(func() error {
		var err error
		name, err = os.Hostname()
		return err
	}, nss[2]); err != nil {
		t.Fatal(err)
	}
	if name != "newtest" {
		t.Errorf("hostname in the new UTS namespace: %q, want newtest", name)
	}
	if ifs := interfaces(t, nss[0]); len(ifs) != 1 || !ifs["lo"] {
		t.Errorf("interfaces in the new network namespace: %v, want lo, up", ifs)
	}
	for _, h := range hosts {
		everyThreadIn(t, h)
	}
}

// TestNewFailures: a kind no thread can unshare is refused before
// anything is made, and a failing setup leaves nothing behind.
func TestNewFailures(t *testing.T) {
	if _, err := New(nil, Mount); err == nil || !strings.Contains(err.Error(), "mnt") {
		t.Errorf("New(Mount): %v, want a refusal naming the kind", err)
	}
	if _, err := New(nil); err == nil {
		t.Error("New with no kind succeeded")
	}
	requireRoot(t)
	host, err := Current(UTS)
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	boom := errors.New("boom")
	nss, err := New(func() error { return boom }, UTS)
	if !errors.Is(err, boom) || nss != nil {
		t.Errorf("New with a failing setup: %v, %v; want the setup's error and no handles", nss, err)
	}
	everyThreadIn(t, host)
}
