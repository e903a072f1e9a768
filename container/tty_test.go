package container

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthlabs/berth/namespace"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// termOutput is what a terminal shows: the output of a process's TTY,
// read as a person reads a screen, waiting for text to appear.
type termOutput struct {
	mu   sync.Mutex
	cond *sync.Cond
	b    bytes.Buffer
	pos  int // what expect has consumed
}

func newTermOutput() *termOutput {
	o := &termOutput{}
	o.cond = sync.NewCond(&o.mu)
	return o
}

func (o *termOutput) Write(p []byte) (int, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.b.Write(p)
	o.cond.Broadcast()
	return len(p), nil
}

// expect waits until the output after what was consumed matches re and
// returns the match's groups, consuming up to its end.
func (o *termOutput) expect(t *testing.T, re string) []string {
	t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.Now().Add(15 * time.Second)
	timer := time.AfterFunc(15*time.Second, func() {
		o.mu.Lock()
		o.cond.Broadcast()
		o.mu.Unlock()
	})
	defer timer.Stop()
	o.mu.Lock()
	defer o.mu.Unlock()
	for {
		rest := o.b.Bytes()[o.pos:]
		if loc := rx.FindSubmatchIndex(rest); loc != nil {
			var groups []string
			for i := 0; i < len(loc); i += 2 {
				if loc[i] >= 0 {
					groups = append(groups, string(rest[loc[i]:loc[i+1]]))
				} else {
					groups = append(groups, "")
				}
			}
			o.pos += loc[1]
			return groups
		}
		if time.Now().After(deadline) {
			t.Fatalf("terminal output never matched %q; after what was consumed it shows:\n%q", re, rest)
		}
		o.cond.Wait()
	}
}

// driveShell plays a person at an interactive busybox sh on a terminal:
// type is what they type, resize what their terminal emulator does
// when its window changes, running whether a process of the container
// runs cmd. The shell was started on a 24x80 terminal. It returns the
// terminal's device name as tty(1) printed it.
func driveShell(t *testing.T, out *termOutput, typ func(string), resize func(WindowSize) error, running func(args ...string) bool) string {
	t.Helper()
	// Arithmetic in the commands keeps their echo from matching what
	// they print.
	typ("tty; echo T$((1+1))\r")
	dev := out.expect(t, `(/dev/pts/[0-9]+)\r\nT2\r\n`)[1]

	typ("[ -t 0 ] && [ -t 1 ] && [ -t 2 ] && echo I$((2+2))\r")
	out.expect(t, `\nI4\r\n`)
	// The terminal is the controlling one: /dev/tty opens.
	typ("echo x > /dev/tty && echo D$((3+0))\r")
	out.expect(t, `\nD3\r\n`)

	typ("stty size\r")
	out.expect(t, `\n24 80\r\n`)

	// The kernel sends SIGWINCH to the foreground process group on a
	// resize: here a child shell that traps it.
	typ(`sh -c 'trap "echo W\$((3+3)); exit 0" WINCH; echo R$((5+5)); while :; do sleep 1; done'` + "\r")
	out.expect(t, `\nR10\r\n`)
	if err := resize(WindowSize{Rows: 40, Cols: 100}); err != nil {
		t.Fatalf("Resize: %v", err)
	}
	out.expect(t, `W6\r\n`)
	typ("stty size\r")
	out.expect(t, `\n40 100\r\n`)

	// ^C interrupts the foreground job through the line discipline; the
	// shell survives and answers again.
	typ("sleep 100\r")
	waitFor(t, func() bool { return running("sleep", "100") }, "sleep 100 to run")
	typ("\x03")
	typ("echo rc$?\r")
	out.expect(t, `\nrc130\r\n`)
	if running("sleep", "100") {
		t.Error("sleep 100 still runs after ^C")
	}
	typ("echo C$((7+7))\r")
	out.expect(t, `\nC14\r\n`)

	typ("exit 3\r")
	return dev
}

// runningIn tells whether a process of c runs args.
func runningIn(t *testing.T, c *Container) func(args ...string) bool {
	return func(args ...string) bool {
		ps, err := c.Top()
		if err != nil {
			t.Fatalf("Top: %v", err)
		}
		for _, p := range ps {
			if sameArgs(p.Args, args) {
				return true
			}
		}
		return false
	}
}

func sameArgs(a, b []string) bool {
	return strings.Join(a, "\x00") == strings.Join(b, "\x00")
}

// relayGoroutines counts the goroutines of terminal relays.
func relayGoroutines() int {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("container.(*ttyRelay)")) || bytes.Contains(g, []byte("container.pollCopy")) {
			n++
		}
	}
	return n
}

func checkNoRelays(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for relayGoroutines() > 0 {
		if time.Now().After(deadline) {
			t.Errorf("%d terminal relay goroutines left", relayGoroutines())
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// An interactive shell as the main process, like `docker run -it
// busybox sh`; the typed input comes from an *os.File.
func TestTTYMainShell(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	before := takeSnapshot(t)
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	out := newTermOutput()
	spec := &Spec{Rootfs: testRootfs, Process: Process{
		Args: []string{"sh"}, TTY: true, ConsoleSize: WindowSize{Rows: 24, Cols: 80},
		Stdin: inR, Stdout: out,
	}}
	c, err := Create(ctx, testID(t), spec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Delete(context.Background()) })
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	typ := func(s string) {
		if _, err := inW.WriteString(s); err != nil {
			t.Fatalf("type %q: %v", s, err)
		}
	}
	dev := driveShell(t, out, typ, c.Resize, runningIn(t, c))
	if dev != "/dev/pts/0" {
		t.Errorf("tty printed %s, want /dev/pts/0 (the container's own devpts)", dev)
	}
	st, err := c.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Code != 3 {
		t.Errorf("exit 3 gave %v", st)
	}
	if err := c.Resize(WindowSize{Rows: 10, Cols: 10}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Resize after exit: %v, want ErrNotRunning", err)
	}
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	// The caller's input is not read once the process has ended, and
	// stays the caller's.
	typ("after\r")
	b := make([]byte, 16)
	if n, err := inR.Read(b); err != nil || string(b[:n]) != "after\r" {
		t.Errorf("the caller's stdin after exit: read %q, %v", b[:n], err)
	}
	inR.Close()
	inW.Close()
	checkNoRelays(t)
	checkNoLeaks(t, before)
}

// An interactive shell added to a running container, like `docker exec
// -it`; the typed input comes from an io.Reader that is not a file.
func TestTTYExecShell(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	before := takeSnapshot(t)
	c := startSleeper(t, &Spec{Rootfs: testRootfs})
	inR, inW := io.Pipe()
	out := newTermOutput()
	p, err := c.Exec(ctx, Process{
		Args: []string{"sh"}, TTY: true, ConsoleSize: WindowSize{Rows: 24, Cols: 80},
		Stdin: inR, Stdout: out, Stderr: out,
	})
	if err != nil {
		t.Fatal(err)
	}
	typ := func(s string) {
		if _, err := inW.Write([]byte(s)); err != nil {
			t.Fatalf("type %q: %v", s, err)
		}
	}
	dev := driveShell(t, out, typ, p.Resize, runningIn(t, c))
	if !strings.HasPrefix(dev, "/dev/pts/") {
		t.Errorf("tty printed %s", dev)
	}
	st, err := p.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Code != 3 {
		t.Errorf("exit 3 gave %v", st)
	}
	if err := p.Resize(WindowSize{Rows: 10, Cols: 10}); !errors.Is(err, os.ErrProcessDone) {
		t.Errorf("Resize after exit: %v, want os.ErrProcessDone", err)
	}
	// The main process has no terminal.
	if err := c.Resize(WindowSize{Rows: 10, Cols: 10}); !errors.Is(err, ErrNoTTY) {
		t.Errorf("Resize of a main process without TTY: %v, want ErrNoTTY", err)
	}
	// Exec without TTY: no resize, and the container is unharmed.
	q, err := c.Exec(ctx, Process{Args: []string{"true"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := q.Resize(WindowSize{Rows: 10, Cols: 10}); !errors.Is(err, ErrNoTTY) {
		t.Errorf("Resize of an exec without TTY: %v, want ErrNoTTY", err)
	}
	q.Wait(ctx)
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	inW.Close() // ends the copy of a reader that is not a file
	checkNoRelays(t)
	checkNoLeaks(t, before)
}

// `docker run -t` without -i, its output only in the log: one stream,
// exit code kept, nothing read from anywhere.
func TestTTYLogsWithoutStdin(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	before := takeSnapshot(t)
	logPath := filepath.Join(t.TempDir(), "log.json")
	c, err := Create(ctx, testID(t), &Spec{Rootfs: testRootfs, LogPath: logPath, Process: Process{
		Args: []string{"sh", "-c", "tty; echo out; echo err >&2; [ -t 0 ] && echo in-tty; exit 5"},
		TTY:  true,
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Delete(context.Background()) })
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	st, err := c.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if st.Code != 5 {
		t.Errorf("exit 5 gave %v", st)
	}
	var stdout, stderr bytes.Buffer
	if err := c.Logs(ctx, LogOptions{}, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	if want := "/dev/pts/0\r\nout\r\nerr\r\nin-tty\r\n"; stdout.String() != want || stderr.Len() != 0 {
		t.Errorf("logs: stdout %q, stderr %q; want stdout %q", stdout.String(), stderr.String(), want)
	}
	raw, err := os.ReadFile(logPath)
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range bytes.Split(bytes.TrimSpace(raw), []byte("\n")) {
		var e logEntry
		if err := json.Unmarshal(l, &e); err != nil || e.Stream != "stdout" {
			t.Errorf("log line %s: %v, stream %q", l, err, e.Stream)
		}
	}
	if err := c.Delete(ctx); err != nil {
		t.Fatal(err)
	}
	checkNoRelays(t)
	checkNoLeaks(t, before)
}

// A user other than root gets the terminal as its own, and output is
// complete when Wait returns even when much of it comes at the end.
func TestTTYUserAndOutput(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	out := &syncBuffer{}
	c, _ := startIn(t, Default, &Spec{Process: Process{
		Args: []string{"sh", "-c", `stat -c %u $(tty); seq 1 20000 | tail -n 1; exec 3<$(tty) && echo reopened`},
		User: "1000:1000", TTY: true, Stdout: out,
	}})
	st, err := c.Wait(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := "1000\r\n20000\r\nreopened\r\n"; out.String() != want || st.Code != 0 {
		t.Errorf("got %q, %v; want %q, exit 0", out.String(), st, want)
	}
	// In a user namespace too, as the namespace's user 1000.
	uns := &syncBuffer{}
	c3, _ := startIn(t, Default, &Spec{
		Namespaces:  map[namespace.Kind]Namespace{namespace.User: {Mode: NamespaceNew}},
		UIDMappings: []namespace.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		GIDMappings: []namespace.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}},
		Process: Process{
			Args: []string{"sh", "-c", `tty; stat -c %u $(tty); stty size`},
			User: "1000", TTY: true, ConsoleSize: WindowSize{Rows: 30, Cols: 90}, Stdout: uns,
		},
	})
	if st, err := c3.Wait(ctx); err != nil || st.Code != 0 || uns.String() != "/dev/pts/0\r\n1000\r\n30 90\r\n" {
		t.Errorf("TTY in a user namespace: %q, %v, %v", uns.String(), st, err)
	}
	big := &syncBuffer{}
	c2, _ := startIn(t, Default, &Spec{Process: Process{Args: []string{"seq", "1", "30000"}, TTY: true, Stdout: big}})
	if _, err := c2.Wait(ctx); err != nil {
		t.Fatal(err)
	}
	if s := big.String(); !strings.HasSuffix(s, "\r\n29999\r\n30000\r\n") || strings.Count(s, "\n") != 30000 {
		t.Errorf("output of seq 1 30000 on a TTY: %d lines, ends %q", strings.Count(s, "\n"), s[max(0, len(s)-40):])
	}
}

func TestTTYBadInput(t *testing.T) {
	needRoot(t)
	ctx := testCtx(t)
	before := takeSnapshot(t)
	for _, tc := range []struct {
		name string
		p    Process
		want string
	}{
		{"stderr apart", Process{Args: []string{"sh"}, TTY: true, Stdout: io.Discard, Stderr: os.Stderr}, "stdout and stderr are one stream"},
		{"size without TTY", Process{Args: []string{"sh"}, ConsoleSize: WindowSize{Rows: 24, Cols: 80}}, "ConsoleSize 80x24 without TTY"},
		{"half a size", Process{Args: []string{"sh"}, TTY: true, ConsoleSize: WindowSize{Cols: 80}}, "rows and columns must both be positive"},
	} {
		if _, err := Create(ctx, testID(t), &Spec{Rootfs: testRootfs, Process: tc.p}); !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Create, %s: %v, want ErrInvalidSpec mentioning %q", tc.name, err, tc.want)
		}
	}
	c, err := Create(ctx, testID(t), &Spec{Rootfs: testRootfs, Process: Process{Args: []string{"sleep", "60"}, TTY: true}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Delete(context.Background()) })
	if err := c.Resize(WindowSize{Rows: 24, Cols: 80}); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Resize before Start: %v, want ErrNotRunning", err)
	}
	if err := c.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.Resize(WindowSize{Rows: 0, Cols: 80}); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("Resize to 80x0: %v, want ErrInvalidSpec", err)
	}
	if _, err := c.Exec(ctx, Process{Args: []string{"sh"}, TTY: true, Stdout: io.Discard, Stderr: os.Stderr}); !errors.Is(err, ErrInvalidSpec) {
		t.Errorf("Exec with stderr apart from the terminal: %v, want ErrInvalidSpec", err)
	}
	// A TTY exec whose program is missing fails and leaves no terminal.
	if _, err := c.Exec(ctx, Process{Args: []string{"/nonexistent"}, TTY: true}); err == nil || !strings.Contains(err.Error(), "nonexistent") {
		t.Errorf("Exec of a missing program on a TTY: %v", err)
	}
	if err := c.Delete(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := c.Resize(WindowSize{Rows: 24, Cols: 80}); !errors.Is(err, ErrDeleted) {
		t.Errorf("Resize after Delete: %v, want ErrDeleted", err)
	}
	checkNoRelays(t)
	checkNoLeaks(t, before)
}

func TestFromOCITerminal(t *testing.T) {
	for _, tc := range []struct {
		terminal bool
		size     *specs.Box
		want     Process
		err      string
	}{
		{terminal: true, size: &specs.Box{Height: 40, Width: 120}, want: Process{TTY: true, ConsoleSize: WindowSize{Rows: 40, Cols: 120}}},
		{terminal: true, want: Process{TTY: true}},
		// The OCI spec: consoleSize is ignored without terminal.
		{size: &specs.Box{Height: 40, Width: 120}, want: Process{}},
		{terminal: true, size: &specs.Box{Height: 70000, Width: 80}, err: "more than 65535"},
	} {
		s := &specs.Spec{Root: &specs.Root{Path: "/"}, Process: &specs.Process{Args: []string{"sh"}, Terminal: tc.terminal, ConsoleSize: tc.size}}
		out, err := FromOCI(s, "")
		if tc.err != "" {
			if !errors.Is(err, ErrInvalidSpec) || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("terminal %v, size %v: %v, want ErrInvalidSpec mentioning %q", tc.terminal, tc.size, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("terminal %v, size %v: %v", tc.terminal, tc.size, err)
			continue
		}
		if out.Process.TTY != tc.want.TTY || out.Process.ConsoleSize != tc.want.ConsoleSize {
			t.Errorf("terminal %v, size %v: TTY %v, ConsoleSize %v; want %v, %v", tc.terminal, tc.size, out.Process.TTY, out.Process.ConsoleSize, tc.want.TTY, tc.want.ConsoleSize)
		}
	}
}

// BenchmarkRunTTY is BenchmarkRun's start-to-exit of /bin/true with and
// without a TTY, interleaved in one loop (each op runs one of each, in
// alternating order): what a terminal adds to a start (init opening
// the pair, the master passed over the control socket, the relay).
// It reports both medians and their ratio.
func BenchmarkRunTTY(b *testing.B) {
	needRoot(b)
	spec := func(tty bool) func() *Spec {
		return func() *Spec {
			return &Spec{Rootfs: testRootfs, Process: Process{Args: []string{"/bin/true"}, TTY: tty, Stdout: io.Discard}}
		}
	}
	m := benchInterleaved(b, benchVariant{"plain", Default, spec(false)}, benchVariant{"tty", Default, spec(true)})
	b.ReportMetric(m["tty"]/m["plain"], "tty/plain")
}
