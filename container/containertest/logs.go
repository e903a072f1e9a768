package containertest

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"sync"
	"testing"
)

// maxLogBytes bounds what a sandbox keeps of its output.
const maxLogBytes = 64 << 20

// logBuffer keeps a sandbox's output as lines, for Logs, the log wait
// strategy and the lines a failing test shows, and streams them to t.Log
// with go test -v.
type logBuffer struct {
	name string
	t    testing.TB

	mu      sync.Mutex
	changed chan struct{} // closed and replaced when a line comes
	lines   []string      // each with its newline, unless the last one is cut
	first   int           // the number of the first line kept
	size    int
	stream  bool
	shown   bool // the last lines are in an error the test reports
}

func newLogBuffer(name string, t testing.TB) *logBuffer {
	return &logBuffer{name: name, t: t, changed: make(chan struct{}), stream: t != nil && testing.Testing() && testing.Verbose()}
}

// writer returns a writer for one of the process's streams.
func (b *logBuffer) writer() io.Writer { return &lineWriter{b: b} }

func (b *logBuffer) add(line string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.lines = append(b.lines, line)
	b.size += len(line)
	for b.size > maxLogBytes && len(b.lines) > 1 {
		b.size -= len(b.lines[0])
		b.lines[0] = ""
		b.lines = b.lines[1:]
		b.first++
	}
	close(b.changed)
	b.changed = make(chan struct{})
	if b.stream {
		// Under mu, so that stopStreaming waits for this to be done:
		// t.Log after the test's end panics.
		b.t.Logf("%s: %s", b.name, strings.TrimSuffix(line, "\n"))
	}
}

// stopStreaming ends the -v stream; the test is about to end.
func (b *logBuffer) stopStreaming() {
	b.mu.Lock()
	b.stream = false
	b.mu.Unlock()
}

// since returns the lines from number n on, the number after them, and a
// channel closed when more come.
func (b *logBuffer) since(n int) ([]string, int, <-chan struct{}) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n = max(n, b.first)
	i := n - b.first
	return append([]string(nil), b.lines[i:]...), b.first + len(b.lines), b.changed
}

func (b *logBuffer) text() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return strings.Join(b.lines, "")
}

func (b *logBuffer) tail(n int) []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.lines[max(0, len(b.lines)-n):]...)
}

// tailText is the last n lines for an error message.
func (b *logBuffer) tailText(n int) string {
	lines := b.tail(n)
	b.mu.Lock()
	b.shown = true
	b.mu.Unlock()
	if n == 0 {
		return ""
	}
	if len(lines) == 0 {
		return "\n(the sandbox wrote no output)"
	}
	var s strings.Builder
	fmt.Fprintf(&s, "\nlast %d lines of the sandbox's output:", len(lines))
	for _, l := range lines {
		s.WriteString("\n  ")
		s.WriteString(strings.TrimSuffix(l, "\n"))
	}
	return s.String()
}

// logTail shows the last n lines in the test's log.
func (b *logBuffer) logTail(n int) {
	if n == 0 || b.t == nil {
		return
	}
	b.mu.Lock()
	skip := b.stream || b.shown
	b.mu.Unlock()
	if !skip { // with -v they are in the log already
		b.t.Logf("sandbox %s:%s", b.name, b.tailText(n))
	}
}

// lineWriter cuts one stream into lines.
type lineWriter struct {
	b   *logBuffer
	buf []byte
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.b.add(string(w.buf[:i+1]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // a long line without newline: in parts
		w.b.add(string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(p), nil
}
