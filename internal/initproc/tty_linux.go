package initproc

import (
	"errors"
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// A process with Proc.TTY gets a new pseudo-terminal of the container's
// own devpts instance (its /dev/pts, mounted with newinstance by
// setupDev): init opens the pair, the slave becomes the process's stdin,
// stdout, stderr and controlling terminal (it is made a session leader
// and TIOCSCTTY is done on fd 0 in the child), and the master goes to
// the host with MsgStarted. init keeps neither end.

// openDevpts opens the container's /dev/pts once the root filesystem is
// built, before anything of the container runs: terminals are allocated
// through this descriptor, so that nothing the workload later does to
// its /dev (it may replace /dev/ptmx, say) changes where they come from.
// It returns -1 when there is none; a TTY then fails with an error.
func openDevpts() int {
	fd, err := unix.Open("/dev/pts", unix.O_PATH|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return -1
	}
	return fd
}

// newTTY allocates a terminal pair in the container's devpts and sets
// its window size.
func (s *initState) newTTY(ws *Winsize) (master, slave *os.File, err error) {
	if s.pts < 0 {
		return nil, nil, errors.New("allocate a terminal: the container has no /dev/pts")
	}
	var st unix.Statfs_t
	if err := unix.Fstatfs(s.pts, &st); err != nil {
		return nil, nil, fmt.Errorf("allocate a terminal: /dev/pts: %w", err)
	}
	if st.Type != unix.DEVPTS_SUPER_MAGIC {
		return nil, nil, errors.New("allocate a terminal: the container's /dev/pts is not a devpts file system")
	}
	mfd, err := unix.Openat(s.pts, "ptmx", unix.O_RDWR|unix.O_NOCTTY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("allocate a terminal: open /dev/pts/ptmx: %w", err)
	}
	master = os.NewFile(uintptr(mfd), "pty-master")
	defer func() {
		if err != nil {
			master.Close()
		}
	}()
	if err := unix.IoctlSetPointerInt(mfd, unix.TIOCSPTLCK, 0); err != nil {
		return nil, nil, fmt.Errorf("allocate a terminal: unlock: %w", err)
	}
	if ws != nil {
		if err := unix.IoctlSetWinsize(mfd, unix.TIOCSWINSZ, &unix.Winsize{Row: ws.Rows, Col: ws.Cols}); err != nil {
			return nil, nil, fmt.Errorf("allocate a terminal: set window size: %w", err)
		}
	}
	// TIOCGPTPEER opens the slave from the master without a path lookup
	// (Linux 4.13); before it, the slave is opened by its number.
	sfd, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(mfd), unix.TIOCGPTPEER, uintptr(unix.O_RDWR|unix.O_NOCTTY|unix.O_CLOEXEC))
	if errno != 0 {
		n, err := unix.IoctlGetUint32(mfd, unix.TIOCGPTN)
		if err != nil {
			return nil, nil, fmt.Errorf("allocate a terminal: get its number: %w", err)
		}
		fd, err := unix.Openat(s.pts, strconv.FormatUint(uint64(n), 10), unix.O_RDWR|unix.O_NOCTTY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, nil, fmt.Errorf("allocate a terminal: open /dev/pts/%d: %w", n, err)
		}
		sfd = uintptr(fd)
	}
	return master, os.NewFile(sfd, "pty-slave"), nil
}

// start starts p: with stdio as they are, or, for a TTY, on a new
// terminal whose master it returns.
func (s *initState) start(p *Proc, stdio []*os.File) (pid int, master *os.File, err error) {
	if !p.TTY {
		pid, err := s.spawn(p, stdio)
		return pid, nil, err
	}
	master, slave, err := s.newTTY(p.Winsize)
	if err != nil {
		return 0, nil, err
	}
	defer slave.Close()
	pid, err = s.spawn(p, []*os.File{slave, slave, slave})
	if err != nil {
		master.Close()
		return 0, nil, err
	}
	return pid, master, nil
}

// giveTTY makes the terminal the process's, as login programs do: it
// is created root's, and a process of another user could not reopen it
// (by its name, or through /dev/stdin).
func giveTTY(p *Proc, stdio []*os.File, uid uint32) error {
	if !p.TTY || uid == 0 {
		return nil
	}
	if err := unix.Fchown(int(stdio[0].Fd()), int(uid), -1); err != nil {
		return fmt.Errorf("give the terminal to uid %d: %w", uid, err)
	}
	return nil
}

// sendStarted reports that process id runs, passing its terminal's
// master (if any), which init then closes.
func (s *initState) sendStarted(id uint64, pid int, master *os.File) {
	if master == nil {
		Send(s.conn, &Message{Type: MsgStarted, ID: id, Pid: pid})
		return
	}
	Send(s.conn, &Message{Type: MsgStarted, ID: id, Pid: pid}, master)
	master.Close()
}
