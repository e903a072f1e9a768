package container

import (
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"syscall"

	"github.com/berthlabs/berth/internal/initproc"
	"golang.org/x/sys/unix"
)

// Terminals (Process.TTY), like `docker run -it` and `docker exec -it`.
//
// The container's init opens a new pseudo-terminal pair in the
// container's own devpts instance (its /dev/pts), makes the slave the
// process's stdin, stdout, stderr and controlling terminal, and passes
// the master to this process over its control socket. Here the master
// is relayed: Process.Stdin is copied to it (what a user types), and
// what the process writes comes out of it to Process.Stdout (and the
// log). The terminal's line discipline does the rest as it would for a
// login: echo, line editing, ^C to SIGINT for the foreground process
// group, SIGWINCH on a resize. berth never touches the caller's own
// terminal: putting it in raw mode, so that keys pass through unedited,
// is the caller's job (see the examples).

// ErrNoTTY is returned by Container.Resize and ExecProcess.Resize for a
// process that has no terminal (Process.TTY not set).
var ErrNoTTY = errors.New("process has no TTY")

// WindowSize is a terminal's size in character cells, as stty(1) and
// TIOCSWINSZ set it.
type WindowSize struct {
	Rows, Cols uint16
}

// String returns the size as COLSxROWS, like "80x24".
func (w WindowSize) String() string { return fmt.Sprintf("%dx%d", w.Cols, w.Rows) }

func (w WindowSize) check() error {
	if w.Rows == 0 || w.Cols == 0 {
		return fmt.Errorf("%w: window size %s: rows and columns must both be positive", ErrInvalidSpec, w)
	}
	return nil
}

// validateTTY checks the terminal fields of a Process.
func (p *Process) validateTTY() error {
	if !p.TTY {
		if p.ConsoleSize != (WindowSize{}) {
			return fmt.Errorf("%w: ConsoleSize %s without TTY", ErrInvalidSpec, p.ConsoleSize)
		}
		return nil
	}
	if p.ConsoleSize != (WindowSize{}) {
		if err := p.ConsoleSize.check(); err != nil {
			return fmt.Errorf("%w: ConsoleSize %s: rows and columns must both be positive (or both zero)", ErrInvalidSpec, p.ConsoleSize)
		}
	}
	if p.Stderr != nil && p.Stderr != p.Stdout {
		return fmt.Errorf("%w: with TTY, stdout and stderr are one stream (the terminal): leave Stderr nil or set it to Stdout", ErrInvalidSpec)
	}
	return nil
}

// initTTY sets the terminal fields of init's process from p.
func (p *Process) initTTY(pc *initproc.Proc) {
	pc.TTY = p.TTY
	if p.TTY && p.ConsoleSize != (WindowSize{}) {
		pc.Winsize = &initproc.Winsize{Rows: p.ConsoleSize.Rows, Cols: p.ConsoleSize.Cols}
	}
}

// processStdio returns the stdio of p, with out for its stdout (the
// main process's may go through the log) and errw for its stderr. With a
// TTY, out receives the terminal's output and errw is not used; the
// child ends are the null device (fds 4 to 6 of a main process) or, for
// an exec, none.
func processStdio(p *Process, out, errw io.Writer, main bool) (*stdio, error) {
	if !p.TTY {
		return newStdio(p.Stdin, out, errw)
	}
	s := &stdio{tty: &ttyRelay{in: p.Stdin, out: out}}
	if main {
		for i := range s.child {
			f, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
			if err != nil {
				initproc.CloseFiles(s.closeUp)
				return nil, err
			}
			s.child[i] = f
			s.closeUp = append(s.closeUp, f)
		}
	}
	return s, nil
}

// execFiles are the files an Exec request passes to init.
func (s *stdio) execFiles() []*os.File {
	if s.tty != nil {
		return nil
	}
	return s.child[:]
}

// attachTTY takes the files init sent with a process's MsgStarted: the
// master of its terminal, which it starts relaying, or nothing.
func (s *stdio) attachTTY(files []*os.File) error {
	if s.tty == nil {
		initproc.CloseFiles(files)
		return nil
	}
	if len(files) != 1 {
		initproc.CloseFiles(files)
		return fmt.Errorf("container init sent %d files for a terminal, want its master", len(files))
	}
	return s.tty.attach(s, files[0])
}

// execStarted handles init's answer to an Exec request, before the
// request's caller sees it: the terminal of a TTY exec is attached here,
// on the monitor's goroutine, so that it is relayed before the exit that
// follows can be handled.
func (c *Container) execStarted(m *initproc.Message, p *ExecProcess, files []*os.File) {
	if m.Type != initproc.MsgStarted || p == nil {
		initproc.CloseFiles(files)
		return
	}
	if err := p.stdio.attachTTY(files); err != nil {
		c.rt.logger().Warn("exec terminal", "container", c.id, "err", err)
	}
}

// ttyRelay copies between a process's terminal master and the caller's
// streams.
type ttyRelay struct {
	in  io.Reader
	out io.Writer

	mu     sync.Mutex
	master *os.File // nil until attached, and again once closed
}

// attach starts relaying the master f. The output goroutine is one of
// s's copiers (stdio.wait waits for it): it reads until every holder of
// the slave has closed it (EIO), then stops the input and closes the
// master.
func (r *ttyRelay) attach(s *stdio, f *os.File) error {
	// A non-blocking copy is served by the netpoller, so that Close
	// interrupts a pending read or write.
	fd, err := unix.FcntlInt(f.Fd(), unix.F_DUPFD_CLOEXEC, 0)
	f.Close()
	if err != nil {
		return fmt.Errorf("terminal master: %w", err)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return fmt.Errorf("terminal master: %w", err)
	}
	master := os.NewFile(uintptr(fd), "pty-master")
	r.mu.Lock()
	r.master = master
	r.mu.Unlock()
	stopIn, inDone := r.startInput(master)
	s.goCopy(func() error {
		var werr error
		buf := make([]byte, 32<<10)
		for {
			n, err := master.Read(buf)
			if n > 0 && r.out != nil && werr == nil {
				// A writer that fails stops getting output; the terminal
				// is still drained, so that the process never blocks.
				_, werr = r.out.Write(buf[:n])
			}
			if err != nil {
				break
			}
		}
		r.mu.Lock()
		r.master = nil
		master.Close()
		r.mu.Unlock()
		stopIn()
		<-inDone
		return werr
	})
	return nil
}

// startInput starts copying r.in to the master. It returns a function
// that stops the copy and a channel closed once it has stopped. An
// *os.File is polled together with an eventfd, so that the copy ends
// with the process without reading more of the caller's input. Any
// other reader is copied until it returns an error or EOF, or, once the
// master is closed, at its next Read; that goroutine is not waited for
// (as os/exec's WaitDelay would not wait for it).
func (r *ttyRelay) startInput(master *os.File) (stop func(), done <-chan struct{}) {
	ch := make(chan struct{})
	switch in := r.in.(type) {
	case nil:
		close(ch)
		return func() {}, ch
	case *os.File:
		rc, err := in.SyscallConn()
		efd, err2 := unix.Eventfd(0, unix.EFD_CLOEXEC|unix.EFD_NONBLOCK)
		if err == nil && err2 == nil {
			go func() {
				defer close(ch)
				pollCopy(master, rc, efd)
			}()
			var once sync.Once
			return func() {
				once.Do(func() {
					unix.Write(efd, []byte{1, 0, 0, 0, 0, 0, 0, 0})
					<-ch
					unix.Close(efd)
				})
			}, ch
		}
		if err2 == nil {
			unix.Close(efd)
		}
	}
	go io.Copy(master, r.in)
	close(ch)
	return func() {}, ch
}

// pollCopy copies from the file behind rc to master until the file ends
// or fails, the master fails, or efd becomes readable. It polls in
// short rounds, so that a caller closing its file is never held up for
// long by the reference Control keeps.
func pollCopy(master *os.File, rc syscall.RawConn, efd int) {
	buf := make([]byte, 32<<10)
	for {
		var n int
		var rerr error
		stop := false
		cerr := rc.Control(func(fd uintptr) {
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}, {Fd: int32(efd), Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, 200); err != nil {
				if err != unix.EINTR {
					rerr = err
				}
				return
			}
			if fds[1].Revents != 0 {
				stop = true
				return
			}
			if fds[0].Revents&unix.POLLNVAL != 0 {
				rerr = unix.EBADF
				return
			}
			if fds[0].Revents&(unix.POLLIN|unix.POLLHUP|unix.POLLERR) == 0 {
				return
			}
			n, rerr = unix.Read(int(fd), buf)
			if rerr == unix.EAGAIN || rerr == unix.EINTR {
				n, rerr = 0, nil
			} else if rerr == nil && n == 0 {
				rerr = io.EOF
			}
		})
		if cerr != nil || stop || rerr != nil {
			return
		}
		if n > 0 {
			if _, err := master.Write(buf[:n]); err != nil {
				return
			}
		}
	}
}

// resize sets the terminal's window size: the kernel then sends
// SIGWINCH to the terminal's foreground process group.
func (r *ttyRelay) resize(size WindowSize) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.master == nil {
		return os.ErrProcessDone
	}
	rc, err := r.master.SyscallConn()
	if err != nil {
		return err
	}
	var ierr error
	if err := rc.Control(func(fd uintptr) {
		ierr = unix.IoctlSetWinsize(int(fd), unix.TIOCSWINSZ, &unix.Winsize{Row: size.Rows, Col: size.Cols})
	}); err != nil {
		return err
	}
	return ierr
}

// Resize sets the window size of the main process's terminal (see
// Process.TTY), as a terminal emulator does when its window changes:
// the kernel sends SIGWINCH to the terminal's foreground process group.
// It returns an error matching ErrNoTTY for a main process without a
// TTY, ErrNotRunning for a container that is not running, and
// ErrInvalidSpec for a size with zero rows or columns.
func (c *Container) Resize(size WindowSize) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := c.checkUsable(); err != nil {
		return err
	}
	if !c.spec.Process.TTY {
		return fmt.Errorf("resize %s: %w", c.id, ErrNoTTY)
	}
	if err := size.check(); err != nil {
		return fmt.Errorf("resize %s: %w", c.id, err)
	}
	if (c.state != Running && c.state != Paused) || c.stdio == nil {
		return fmt.Errorf("resize %s: %w", c.id, ErrNotRunning)
	}
	if err := c.stdio.tty.resize(size); err != nil {
		if errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("resize %s: %w", c.id, ErrNotRunning)
		}
		return fmt.Errorf("resize %s: %w", c.id, err)
	}
	return nil
}

// Resize sets the window size of the process's terminal (see
// Process.TTY) and so sends SIGWINCH to its foreground process group. It
// returns an error matching ErrNoTTY for a process without a TTY,
// os.ErrProcessDone once the process and every holder of its terminal
// have ended, and ErrInvalidSpec for a size with zero rows or columns.
func (p *ExecProcess) Resize(size WindowSize) error {
	if p.stdio.tty == nil {
		return fmt.Errorf("resize exec process %d in %s: %w", p.pid, p.c.id, ErrNoTTY)
	}
	if err := size.check(); err != nil {
		return fmt.Errorf("resize exec process %d in %s: %w", p.pid, p.c.id, err)
	}
	if err := p.stdio.tty.resize(size); err != nil {
		return fmt.Errorf("resize exec process %d in %s: %w", p.pid, p.c.id, err)
	}
	return nil
}
