package container

import (
	"errors"
	"github.com/berthlabs/berth/internal/initproc"
	"io"
	"os"
	"sync"
	"syscall"
)

// stdio connects a process's standard streams the way os/exec.Cmd does:
// nil is the null device, an *os.File is passed as it is, anything else
// is copied through a pipe by a goroutine.
type stdio struct {
	child   [3]*os.File // ends handed to the process
	closeUp []*os.File  // host copies of child ends, closed once handed over
	wg      sync.WaitGroup
	mu      sync.Mutex
	err     error
	tty     *ttyRelay // with Process.TTY: the terminal (see tty.go)
}

func newStdio(in io.Reader, out, errw io.Writer) (*stdio, error) {
	s := &stdio{}
	fail := func(err error) (*stdio, error) {
		initproc.CloseFiles(s.closeUp)
		return nil, err
	}
	devnull := func() (*os.File, error) {
		f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
		if err == nil {
			s.closeUp = append(s.closeUp, f)
		}
		return f, err
	}
	switch r := in.(type) {
	case nil:
		f, err := devnull()
		if err != nil {
			return fail(err)
		}
		s.child[0] = f
	case *os.File:
		s.child[0] = r
	default:
		pr, pw, err := os.Pipe()
		if err != nil {
			return fail(err)
		}
		s.child[0] = pr
		s.closeUp = append(s.closeUp, pr)
		s.goCopy(func() error {
			_, err := io.Copy(pw, r)
			if errors.Is(err, os.ErrClosed) || errors.Is(err, syscall.EPIPE) {
				err = nil
			}
			if cerr := pw.Close(); err == nil {
				err = cerr
			}
			return err
		})
	}
	for i, w := range []io.Writer{out, errw} {
		switch w := w.(type) {
		case nil:
			f, err := devnull()
			if err != nil {
				return fail(err)
			}
			s.child[i+1] = f
		case *os.File:
			s.child[i+1] = w
		default:
			if i == 1 && out == errw && s.child[1] != nil && out != nil {
				// The same writer for both streams: share one pipe, as
				// os/exec does, so that their order is kept.
				s.child[2] = s.child[1]
				continue
			}
			pr, pw, err := os.Pipe()
			if err != nil {
				return fail(err)
			}
			s.child[i+1] = pw
			s.closeUp = append(s.closeUp, pw)
			s.goCopy(func() error {
				_, err := io.Copy(w, pr)
				pr.Close()
				return err
			})
		}
	}
	return s, nil
}

func (s *stdio) goCopy(fn func() error) {
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		if err := fn(); err != nil {
			s.mu.Lock()
			if s.err == nil {
				s.err = err
			}
			s.mu.Unlock()
		}
	}()
}

// handedOver closes the host's copies of the child ends, once the
// process holds them.
func (s *stdio) handedOver() {
	initproc.CloseFiles(s.closeUp)
	s.closeUp = nil
}

// wait waits for the copying goroutines: they end when every process
// holding the child ends has exited.
func (s *stdio) wait() error {
	s.wg.Wait()
	return s.err
}
