// Package namespace works with Linux namespaces from Go: naming their
// kinds, mapping user and group IDs into user namespaces, opening handles
// on namespaces, running code inside them, and keeping them alive with
// bind mounts.
//
// # Threads
//
// A Go program is multi-threaded before main runs, and setns(2) and
// unshare(2) change only the calling OS thread. Everything here that
// changes a thread's namespaces does so on a thread locked with
// [runtime.LockOSThread] and puts the thread back before the Go scheduler
// may run anything else on it. [Do] is the safe way to run a function in
// another namespace; [Namespace.Enter] is the low-level step under it.
//
// The kernel refuses to let a multi-threaded process join a mount, user
// or time namespace ([ErrMultiThreaded]). New namespaces of every kind
// are still available to child processes through
// [syscall.SysProcAttr.Cloneflags] (see [CloneFlags] and [SysProcIDMaps]);
// work that must happen inside an existing mount or user namespace runs in
// a process that is already there, such as berth's container init.
//
// # Persistent namespaces
//
// A namespace lives while a process is in it, a file descriptor refers to
// it, or its /proc/PID/ns file is bind-mounted somewhere. [Persist] and
// [Release] manage such bind mounts the way `ip netns add` and
// `unshare --net=FILE` do, and [NewNet] creates a network namespace with
// its loopback interface up.
//
// Most functions need root (CAP_SYS_ADMIN), like the system calls they wrap.
package namespace
