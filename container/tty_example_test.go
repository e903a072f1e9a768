package container_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/containertest"
	"golang.org/x/sys/unix"
)

// Run a program on a terminal, like `docker run -it`: berth gives the
// process a terminal of the container's own and relays it to Stdin and
// Stdout; the caller puts its own terminal in raw mode (so that what the
// person types, ^C included, reaches the container unedited), restores it
// after, and passes its window's size changes on with Resize.
//
// A real program passes os.Stdin and os.Stdout. So that this example
// runs without a terminal, a pseudo-terminal made in-process stands in
// for them: screen is what the person's terminal emulator holds (it
// types into it and reads what is shown). Needs root and a static
// busybox.
func ExampleProcess_tty() {
	rootfs, err := containertest.TempBusyboxRootfs()
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(rootfs)
	screen, term, err := openTerminal(24, 80) // term: the program's os.Stdin and os.Stdout
	if err != nil {
		panic(err)
	}
	defer screen.Close()

	restore, err := makeRaw(term)
	if err != nil {
		panic(err)
	}
	size, err := unix.IoctlGetWinsize(int(term.Fd()), unix.TIOCGWINSZ)
	if err != nil {
		panic(err)
	}
	ctx := context.Background()
	c, err := container.Create(ctx, "example-tty", &container.Spec{
		Rootfs: rootfs,
		Process: container.Process{
			Args:        []string{"sh", "-c", `read -r line; echo "you typed: $line"; stty size; exit 3`},
			TTY:         true,
			ConsoleSize: container.WindowSize{Rows: size.Row, Cols: size.Col},
			Stdin:       term,
			Stdout:      term,
		},
	})
	if err != nil {
		panic(err)
	}
	defer c.Delete(ctx)
	if err := c.Start(ctx); err != nil {
		panic(err)
	}
	// When the caller's window changes, so does the container's terminal.
	winch := make(chan os.Signal, 1)
	signal.Notify(winch, syscall.SIGWINCH)
	defer signal.Stop(winch)
	go func() {
		for {
			select {
			case <-winch:
				if ws, err := unix.IoctlGetWinsize(int(term.Fd()), unix.TIOCGWINSZ); err == nil {
					c.Resize(container.WindowSize{Rows: ws.Row, Cols: ws.Col})
				}
			case <-c.Done():
				return
			}
		}
	}()

	screen.Write([]byte("hello\r")) // the person types a line and Enter
	st, err := c.Wait(ctx)
	if err != nil {
		panic(err)
	}
	restore()
	term.Close()
	shown, _ := io.ReadAll(screen) // ends with EIO once term is closed
	fmt.Print(strings.ReplaceAll(string(shown), "\r", ""))
	fmt.Println(st)
	// Output:
	// hello
	// you typed: hello
	// 24 80
	// exit status 3
}

// makeRaw puts the terminal f in raw mode, as cfmakeraw(3) describes it:
// no echo, no line editing, no signals from keys, no output processing.
// It returns a function that restores the terminal's previous mode.
func makeRaw(f *os.File) (restore func(), err error) {
	fd := int(f.Fd())
	old, err := unix.IoctlGetTermios(fd, unix.TCGETS)
	if err != nil {
		return nil, fmt.Errorf("not a terminal: %w", err)
	}
	raw := *old
	raw.Iflag &^= unix.IGNBRK | unix.BRKINT | unix.PARMRK | unix.ISTRIP | unix.INLCR | unix.IGNCR | unix.ICRNL | unix.IXON
	raw.Oflag &^= unix.OPOST
	raw.Lflag &^= unix.ECHO | unix.ECHONL | unix.ICANON | unix.ISIG | unix.IEXTEN
	raw.Cflag &^= unix.CSIZE | unix.PARENB
	raw.Cflag |= unix.CS8
	raw.Cc[unix.VMIN], raw.Cc[unix.VTIME] = 1, 0
	if err := unix.IoctlSetTermios(fd, unix.TCSETS, &raw); err != nil {
		return nil, err
	}
	return func() { unix.IoctlSetTermios(fd, unix.TCSETS, old) }, nil
}

// openTerminal makes a pseudo-terminal of rows x cols on the host: its
// master (what a terminal emulator holds) and its slave (what a program
// run in that emulator has as stdin and stdout).
func openTerminal(rows, cols uint16) (master, slave *os.File, err error) {
	mfd, err := unix.Open("/dev/ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, err
	}
	master = os.NewFile(uintptr(mfd), "ptmx")
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, err
	}
	if err := unix.IoctlSetWinsize(mfd, unix.TIOCSWINSZ, &unix.Winsize{Row: rows, Col: cols}); err != nil {
		master.Close()
		return nil, nil, err
	}
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		master.Close()
		return nil, nil, errno
	}
	return master, os.NewFile(sfd, "pts"), nil
}
