package container

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/sys/unix"
)

// logEntry is one line of a container log, in Docker's json-file format.
type logEntry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// maxLogLine is the longest piece of a line without newline that goes
// into one log entry; a longer line is split, as Docker does at 16 KiB.
const maxLogLine = 16 << 10

// logFile writes a container's output to a file, one JSON line per line
// of output, from both streams. Each Write of a stream (one read of its
// pipe) becomes one write(2) of whole JSON lines, so that readers see
// output as soon as the container prints it. While the file is open, the
// writer holds an exclusive flock(2) on it: a follower in any process
// tells by it that the container still runs.
type logFile struct {
	mu sync.Mutex
	f  *os.File
}

func openLog(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	// A follower's probe holds a shared lock for a moment: try again
	// briefly. Without the lock the log works; followers only end early.
	for i := 0; i < 100; i++ {
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != unix.EWOULDBLOCK && err != unix.EINTR {
			break
		}
		time.Sleep(time.Millisecond)
	}
	return &logFile{f: f}, nil
}

// appendEntry appends the JSON line for one line of output to b.
func appendEntry(b []byte, stream string, line []byte, now time.Time) []byte {
	e, _ := json.Marshal(logEntry{Log: string(line), Stream: stream, Time: now})
	b = append(b, e...)
	return append(b, '\n')
}

// write writes b, whole JSON lines, at the end of the file.
func (l *logFile) write(b []byte) {
	if len(b) == 0 {
		return
	}
	l.mu.Lock()
	l.f.Write(b)
	l.mu.Unlock()
}

// Close closes the file, which drops the writer's lock.
func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// streamWriter splits a stream into lines for the log and passes
// everything on to next (which may be nil).
type streamWriter struct {
	log    *logFile
	stream string
	next   io.Writer
	buf    []byte // the start of a line whose newline has not come
	out    []byte // JSON lines of one Write
}

// Write logs the complete lines of p (and pieces of a long line) in one
// write to the file and passes p on.
func (w *streamWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	now := time.Now().UTC()
	out := w.out[:0]
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		out = appendEntry(out, w.stream, w.buf[:i+1], now)
		w.buf = w.buf[i+1:]
	}
	for len(w.buf) >= maxLogLine { // a long line without newline: log it in parts
		out = appendEntry(out, w.stream, w.buf[:maxLogLine], now)
		w.buf = w.buf[maxLogLine:]
	}
	w.buf = append(w.buf[:0:0], w.buf...) // do not keep the consumed start alive
	w.log.write(out)
	w.out = out
	if w.next != nil {
		if _, err := w.next.Write(p); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Close writes out an unfinished last line.
func (w *streamWriter) Close() error {
	if len(w.buf) > 0 {
		w.log.write(appendEntry(nil, w.stream, w.buf, time.Now().UTC()))
		w.buf = nil
	}
	return nil
}

// LogOptions select what Logs and Container.Logs copy, like the flags of
// `docker logs`. The zero value copies everything recorded so far.
type LogOptions struct {
	// Follow keeps copying output as the container writes it (-f), until
	// the container has stopped and everything it wrote is copied, or
	// the context ends.
	Follow bool
	// Since, when not zero, skips lines written before it (--since).
	Since time.Time
	// Until, when not zero, stops at the first line written after it
	// (--until); with Follow, copying also ends once Until has passed.
	Until time.Time
	// Tail, when positive, starts with the last Tail lines of the log
	// (--tail N), counted over both streams before Since applies. Zero
	// means all lines (as without --tail); TailNone (any negative value)
	// means none of the lines already written (--tail 0), for following
	// only new output.
	Tail int
	// Timestamps prefixes each line with the time it was written, in
	// RFC 3339 with nanoseconds and a space (-t).
	Timestamps bool
}

// TailNone as LogOptions.Tail skips every line already in the log.
const TailNone = -1

// logTimeFormat is Docker's fixed-width RFC 3339 time of `docker logs -t`.
const logTimeFormat = "2006-01-02T15:04:05.000000000Z07:00"

// ReadLogs copies the output recorded in a container's log file
// (Spec.LogPath) to stdout and stderr, by stream, like `docker logs`.
// Either writer may be nil to skip that stream. It is Logs with the zero
// LogOptions.
func ReadLogs(path string, stdout, stderr io.Writer) error {
	return Logs(context.Background(), path, LogOptions{}, stdout, stderr)
}

// Logs copies the output recorded in the log file at path (a
// container's Spec.LogPath, written by this process or another) to
// stdout and stderr, by stream, as opts selects, like `docker logs`.
// Either writer may be nil to skip that stream. A line is written to its
// writer in one Write.
//
// With opts.Follow, Logs waits for more output while the log's writer
// (the container) holds the file open, and returns once it has closed
// it (the container stopped, or its process died) and everything
// written is copied, or with ctx's error when ctx ends first. A log
// that no container writes ends at once.
func Logs(ctx context.Context, path string, opts LogOptions, stdout, stderr io.Writer) error {
	return readLogs(ctx, path, opts, stdout, stderr, nil)
}

// Logs copies the container's log (Spec.LogPath) to stdout and stderr as
// opts selects; see the package-level Logs. With opts.Follow it returns
// once the container has stopped and all its output is copied; on a
// container that was never started it returns what the log holds. It
// fails for a container without a LogPath.
func (c *Container) Logs(ctx context.Context, opts LogOptions, stdout, stderr io.Writer) error {
	if c.spec.LogPath == "" {
		return fmt.Errorf("logs of %s: the container has no log (Spec.LogPath)", c.id)
	}
	live := func() bool {
		st := c.State()
		return st == Running || st == Paused
	}
	return readLogs(ctx, c.spec.LogPath, opts, stdout, stderr, live)
}

// readLogs is Logs; live, when set, tells whether more output may come
// (else the writer's lock on the file does).
func readLogs(ctx context.Context, path string, opts LogOptions, stdout, stderr io.Writer, live func() bool) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read logs: %w", err)
	}
	defer f.Close()
	if live == nil {
		live = func() bool { return writerHolds(f) }
	}
	var w *logWaiter
	if opts.Follow {
		w = newLogWaiter(ctx, path)
		defer w.close()
	}
	switch {
	case opts.Tail > 0:
		off, err := tailOffset(f, opts.Tail)
		if err != nil {
			return fmt.Errorf("read logs: %s: %w", path, err)
		}
		if _, err := f.Seek(off, io.SeekStart); err != nil {
			return fmt.Errorf("read logs: %w", err)
		}
	case opts.Tail < 0:
		if _, err := f.Seek(0, io.SeekEnd); err != nil {
			return fmt.Errorf("read logs: %w", err)
		}
	}
	r := bufio.NewReaderSize(f, 64<<10)
	var line []byte // a line read in parts, its newline still to come
	var ts []byte
	for {
		more := opts.Follow && live() && (opts.Until.IsZero() || time.Now().Before(opts.Until))
		// Everything written before the check above is read now.
		for {
			part, err := r.ReadSlice('\n')
			line = append(line, part...)
			if err == bufio.ErrBufferFull {
				if len(line) > 1<<20 {
					return fmt.Errorf("read logs: %s: a line longer than 1 MiB", path)
				}
				continue
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				return fmt.Errorf("read logs: %w", err)
			}
			var e logEntry
			if err := json.Unmarshal(line, &e); err != nil {
				return fmt.Errorf("read logs: %s: %w", path, err)
			}
			line = line[:0]
			if !opts.Since.IsZero() && e.Time.Before(opts.Since) {
				continue
			}
			if !opts.Until.IsZero() && e.Time.After(opts.Until) {
				return nil
			}
			out := stdout
			if e.Stream == "stderr" {
				out = stderr
			}
			if out == nil {
				continue
			}
			b := append(ts[:0], e.Log...)
			if opts.Timestamps {
				b = append(e.Time.AppendFormat(ts[:0], logTimeFormat), ' ')
				b = append(b, e.Log...)
			}
			ts = b
			if _, err := out.Write(b); err != nil {
				return err
			}
		}
		if !more {
			return nil
		}
		if err := w.wait(); err != nil {
			return err
		}
	}
}

// writerHolds reports whether a writer holds its lock on the log open at
// f: the container writing it still runs.
func writerHolds(f *os.File) bool {
	err := unix.Flock(int(f.Fd()), unix.LOCK_SH|unix.LOCK_NB)
	if err == nil {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		return false
	}
	return errors.Is(err, unix.EWOULDBLOCK)
}

// tailOffset returns where the last n lines of f begin, reading
// backwards from its end.
func tailOffset(f *os.File, n int) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, err
	}
	end := fi.Size()
	buf := make([]byte, 64<<10)
	pos, found := end, 0
	for pos > 0 {
		size := min(int64(len(buf)), pos)
		pos -= size
		if _, err := f.ReadAt(buf[:size], pos); err != nil && err != io.EOF {
			return 0, err
		}
		for i := size - 1; i >= 0; i-- {
			if buf[i] != '\n' || pos+i == end-1 {
				continue // the last line's own newline
			}
			if found++; found == n {
				return pos + i + 1, nil
			}
		}
	}
	return 0, nil
}

// logWaiter waits for a log file to grow: inotify, woken at least every
// 100 ms (for the writer's end and Until), or polling where inotify is
// not available.
type logWaiter struct {
	ctx  context.Context
	f    *os.File // the inotify descriptor, or nil
	stop func() bool
	buf  []byte
}

func newLogWaiter(ctx context.Context, path string) *logWaiter {
	w := &logWaiter{ctx: ctx}
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		return w
	}
	if _, err := unix.InotifyAddWatch(fd, path, unix.IN_MODIFY|unix.IN_CLOSE_WRITE); err != nil {
		unix.Close(fd)
		return w
	}
	w.f = os.NewFile(uintptr(fd), "inotify")
	w.buf = make([]byte, 4096)
	w.stop = context.AfterFunc(ctx, func() { w.f.SetReadDeadline(time.Unix(1, 0)) })
	return w
}

// wait returns after the file changed or a while passed, or with ctx's
// error.
func (w *logWaiter) wait() error {
	if err := w.ctx.Err(); err != nil {
		return err
	}
	if w.f == nil {
		t := time.NewTimer(20 * time.Millisecond)
		defer t.Stop()
		select {
		case <-t.C:
			return nil
		case <-w.ctx.Done():
			return w.ctx.Err()
		}
	}
	w.f.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
	w.f.Read(w.buf)
	return w.ctx.Err()
}

func (w *logWaiter) close() {
	if w.f != nil {
		w.stop()
		w.f.Close()
	}
}
