package initproc

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"

	"github.com/berthlabs/berth/internal/rootless"
	"golang.org/x/sys/unix"
)

// EnvAwaitIDMaps, set to "1" in init's environment, makes init wait for
// MsgIDMapped before anything else and then execute itself again. The
// host sets it when an unprivileged user's container gets ID maps that
// only newuidmap and newgidmap can write: Go's os/exec writes the maps of
// a new user namespace itself, which an unprivileged parent may do only
// for its own IDs. init was executed before its maps existed, as an
// unmapped user, so execve gave it no capabilities in its namespace; run
// again once its UID maps to 0 there, it has all of them.
const EnvAwaitIDMaps = "_BERTH_INIT_AWAIT_IDMAPS"

// MsgIDMapped (host -> init, before MsgStart) says that the maps of
// init's user namespace are written (see EnvAwaitIDMaps).
const MsgIDMapped = "idmapped"

// awaitIDMaps waits on the control socket (fd 3) for MsgIDMapped and
// executes init again without EnvAwaitIDMaps; the descriptors it was
// given stay open across that. It returns at once when the variable is
// not set. Any failure ends init: the host then reports it.
func awaitIDMaps() {
	switch os.Getenv(EnvAwaitIDMaps) {
	case "1":
	case "2":
		// Executed again: gaining capabilities at execve cleared the
		// parent-death signal.
		unix.Prctl(unix.PR_SET_PDEATHSIG, uintptr(unix.SIGKILL), 0, 0, 0)
		os.Unsetenv(EnvAwaitIDMaps)
		return
	default:
		return
	}
	buf := make([]byte, 4096)
	var n int
	var err error
	for {
		n, err = unix.Read(3, buf)
		if err != unix.EINTR {
			break
		}
	}
	var m Message
	if err != nil || n == 0 || json.Unmarshal(buf[:n], &m) != nil || m.Type != MsgIDMapped {
		os.Exit(126)
	}
	env := os.Environ()
	for i, e := range env {
		if strings.HasPrefix(e, EnvAwaitIDMaps+"=") {
			env[i] = EnvAwaitIDMaps + "=2"
		}
	}
	unix.Exec("/proc/self/exe", os.Args, env)
	os.Exit(127)
}

// setgroupsDenied reports whether setgroups(2) is disabled in init's user
// namespace (/proc/self/setgroups says "deny"): a namespace whose GID map
// an unprivileged user wrote for its own group alone.
var setgroupsDenied = sync.OnceValue(func() bool {
	b, err := os.ReadFile("/proc/self/setgroups")
	return err == nil && strings.TrimSpace(string(b)) == "deny"
})

// socket makes the socket m asks for, in init's network namespace, and
// passes it to the host: for a host process that may not enter the
// namespace (one that an unprivileged user's user namespace owns).
func (s *initState) socket(m *Message) {
	if m.Socket == nil {
		Send(s.conn, &Message{Type: MsgError, ID: m.ID, Error: "malformed socket request"})
		return
	}
	k := m.Socket
	fd, err := unix.Socket(k.Domain, k.Type|unix.SOCK_CLOEXEC, k.Proto)
	if err != nil {
		Send(s.conn, &Message{Type: MsgError, ID: m.ID, Error: "socket: " + err.Error()})
		return
	}
	f := os.NewFile(uintptr(fd), "socket")
	Send(s.conn, &Message{Type: MsgSocketMade, ID: m.ID}, f)
	f.Close()
}

// checkMapped fails when the user's UID, GID or a supplementary group is
// not mapped in init's user namespace (setuid would fail with EINVAL):
// a Process.User that does not exist in a rootless container's
// namespace.
func checkMapped(u IDs) error {
	gids := []uint32{u.GID}
	if !setgroupsDenied() {
		// Denied, the supplementary groups are not set (see spawnOnThread).
		gids = append(gids, u.Groups...)
	}
	for _, c := range []struct {
		file, kind string
		ids        []uint32
	}{{"/proc/self/uid_map", "user", []uint32{u.UID}}, {"/proc/self/gid_map", "group", gids}} {
		b, err := os.ReadFile(c.file)
		if err != nil {
			return nil // no user namespaces: nothing to check
		}
		for _, id := range c.ids {
			if !inIDMap(string(b), id) {
				return fmt.Errorf("%w: %s ID %d is not mapped in the container's user namespace (its %s is %q)", ErrInvalid, c.kind, id, c.file, strings.Join(strings.Fields(string(b)), " "))
			}
		}
	}
	return nil
}

// inIDMap reports whether id is inside one of the ranges of a uid_map
// or gid_map file's text.
func inIDMap(m string, id uint32) bool {
	for _, l := range strings.Split(m, "\n") {
		f := strings.Fields(l)
		if len(f) != 3 {
			continue
		}
		first, err1 := strconv.ParseUint(f[0], 10, 32)
		n, err2 := strconv.ParseUint(f[2], 10, 32)
		if err1 == nil && err2 == nil && uint64(id) >= first && uint64(id) < first+n {
			return true
		}
	}
	return false
}

// helper serves the requests of an init started as a helper in a user
// namespace (no container), m the first: MsgRemoveAll removes m.Path
// with the capabilities init has there, over every file whose owner the
// namespace maps; MsgChown gives the files of the directory m.Path their
// Owners. Each is answered with MsgRemoved or MsgError; the helper exits
// when the host closes the socket.
func helper(conn *net.UnixConn, m *Message, buf, oob []byte) {
	for {
		var err error
		switch m.Type {
		case MsgRemoveAll:
			err = os.RemoveAll(m.Path)
		case MsgChown:
			err = chownAll(m.Path, m.Owners)
		default:
			err = fmt.Errorf("unexpected %q request to a helper", m.Type)
		}
		if err != nil {
			Send(conn, &Message{Type: MsgError, Error: err.Error()})
		} else {
			Send(conn, &Message{Type: MsgRemoved})
		}
		var files []*os.File
		m, files, err = Recv(conn, buf, oob)
		CloseFiles(files)
		if err != nil {
			os.Exit(0)
		}
	}
}

// chownAll gives each file of owners, resolved inside dir (never through
// a symlink out of it), its owner and then its mode again.
func chownAll(dir string, owners []rootless.Owner) error {
	root, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(root)
	for _, o := range owners {
		parent, base := path.Split(relPath(o.Path))
		if base == "" {
			parent, base = "", "."
		}
		pfd, err := openIn(root, "/"+parent, unix.O_PATH|unix.O_DIRECTORY)
		if err != nil {
			return err
		}
		err = unix.Fchownat(pfd, base, o.UID, o.GID, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && !o.Symlink {
			err = unix.Fchmodat(pfd, base, o.Mode, 0)
		}
		unix.Close(pfd)
		if errors.Is(err, unix.EINVAL) {
			return fmt.Errorf("%w: /%s is owned by %d:%d in the layer, which the user's subordinate IDs do not map", ErrInvalid, relPath(o.Path), o.UID, o.GID)
		}
		if err != nil {
			return fmt.Errorf("chown /%s to %d:%d: %w", relPath(o.Path), o.UID, o.GID, err)
		}
	}
	return nil
}
