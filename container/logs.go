package container

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sync"
	"time"
)

// logEntry is one line of a container log, in Docker's json-file format.
type logEntry struct {
	Log    string    `json:"log"`
	Stream string    `json:"stream"`
	Time   time.Time `json:"time"`
}

// logFile writes a container's output to a file, one JSON line per line
// of output, from both streams.
type logFile struct {
	mu sync.Mutex
	f  *os.File
	w  *bufio.Writer
}

func openLog(path string) (*logFile, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return &logFile{f: f, w: bufio.NewWriter(f)}, nil
}

func (l *logFile) write(stream string, line []byte) {
	b, _ := json.Marshal(logEntry{Log: string(line), Stream: stream, Time: time.Now().UTC()})
	l.mu.Lock()
	l.w.Write(b)
	l.w.WriteByte('\n')
	l.mu.Unlock()
}

// Close flushes and closes the file.
func (l *logFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err := l.w.Flush(); err != nil {
		l.f.Close()
		return err
	}
	return l.f.Close()
}

func (l *logFile) flush() {
	l.mu.Lock()
	l.w.Flush()
	l.mu.Unlock()
}

// streamWriter splits a stream into lines for the log and passes
// everything on to next (which may be nil).
type streamWriter struct {
	log    *logFile
	stream string
	next   io.Writer
	buf    []byte
}

// Write logs complete lines and passes p on.
func (w *streamWriter) Write(p []byte) (int, error) {
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.log.write(w.stream, w.buf[:i+1])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 16<<10 { // a long line without newline: write it in parts
		w.log.write(w.stream, w.buf)
		w.buf = w.buf[:0]
	}
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
		w.log.write(w.stream, w.buf)
		w.buf = nil
	}
	w.log.flush()
	return nil
}

// ReadLogs copies the output recorded in a container's log file
// (Spec.LogPath) to stdout and stderr, by stream, like `docker logs`.
// Either writer may be nil to skip that stream.
func ReadLogs(path string, stdout, stderr io.Writer) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read logs: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; sc.Scan(); n++ {
		var e logEntry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("read logs: %s line %d: %w", path, n, err)
		}
		w := stdout
		if e.Stream == "stderr" {
			w = stderr
		}
		if w != nil {
			if _, err := io.WriteString(w, e.Log); err != nil {
				return err
			}
		}
	}
	return sc.Err()
}
