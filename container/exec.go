package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/berthlabs/berth/internal/initproc"
)

// ExecProcess is a process started in a running container by Exec, like
// `docker exec`. It ends when it exits or when the container stops.
type ExecProcess struct {
	c      *Container
	id     uint64
	pid    int
	stdio  *stdio
	done   chan struct{}
	status *ExitStatus
}

// Exec starts another process in the running container: in its
// namespaces, cgroup and root filesystem, with the container's
// environment (p.Env added on top), working directory and user unless p
// sets them, and the container's capabilities. The container's init
// starts it from inside, so no namespace is joined from this process.
func (c *Container) Exec(ctx context.Context, p Process) (*ExecProcess, error) {
	if err := p.validate(); err != nil {
		return nil, fmt.Errorf("exec in %s: %w", c.id, err)
	}
	c.mu.Lock()
	if err := c.checkUsable(); err != nil {
		c.mu.Unlock()
		return nil, err
	}
	if c.state != Running {
		st := c.state
		c.mu.Unlock()
		return nil, fmt.Errorf("exec in %s (%s): %w", c.id, st, ErrNotRunning)
	}
	main := c.cfg.Main
	pc := &initproc.Proc{
		Args:   p.Args,
		Env:    mergeEnv(main.Env, p.Env),
		Dir:    p.Dir,
		User:   p.User,
		Groups: p.AdditionalGroups,
		Caps:   main.Caps,
		Inh:    main.Inh,
		Amb:    main.Amb,
		NNP:    main.NNP,
	}
	p.initTTY(pc)
	if pc.Dir == "" {
		pc.Dir = main.Dir
	}
	if pc.User == "" {
		pc.User, pc.Groups = main.User, append(append([]string(nil), main.Groups...), p.AdditionalGroups...)
	}
	sio, err := processStdio(&p, p.Stdout, p.Stderr, false)
	if err != nil {
		c.mu.Unlock()
		return nil, fmt.Errorf("exec in %s: stdio: %w", c.id, err)
	}
	id, reply := c.requestLocked()
	ep := &ExecProcess{c: c, id: id, stdio: sio, done: make(chan struct{})}
	if c.execs == nil {
		c.execs = map[uint64]*ExecProcess{}
	}
	c.execs[id] = ep
	err = initproc.Send(c.conn, &initproc.Message{Type: initproc.MsgExec, ID: id, Proc: pc}, sio.execFiles()...)
	sio.handedOver()
	if err != nil {
		delete(c.pending, id)
		delete(c.execs, id)
		c.mu.Unlock()
		sio.wait()
		return nil, fmt.Errorf("exec in %s: send request: %w", c.id, err)
	}
	c.mu.Unlock()

	var m *initproc.Message
	select {
	case m = <-reply:
	case <-ctx.Done():
		// The process may still start; kill it when it does.
		go func() {
			if m := <-reply; m.Type == initproc.MsgStarted {
				c.signalProc(id, syscall.SIGKILL)
			}
		}()
		return nil, ctx.Err()
	}
	if m.Type != initproc.MsgStarted {
		c.mu.Lock()
		delete(c.execs, id)
		c.mu.Unlock()
		sio.wait()
		if m.Error == ErrNotRunning.Error() {
			return nil, fmt.Errorf("exec in %s: %w", c.id, ErrNotRunning)
		}
		return nil, fmt.Errorf("exec in %s: %w", c.id, errors.New(m.Error))
	}
	ep.pid = m.Pid
	return ep, nil
}

// Pid returns the process's PID inside the container's PID namespace.
func (p *ExecProcess) Pid() int { return p.pid }

// Signal sends sig to the process. Once the process has ended, Signal
// returns an error matching os.ErrProcessDone, as os.Process.Signal does.
func (p *ExecProcess) Signal(sig syscall.Signal) error {
	select {
	case <-p.done:
		return fmt.Errorf("signal exec process %d in %s: %w", p.pid, p.c.id, os.ErrProcessDone)
	default:
	}
	return p.c.signalProc(p.id, sig)
}

// Wait waits for the process to exit and its output to be copied, and
// returns its status.
func (p *ExecProcess) Wait(ctx context.Context) (*ExitStatus, error) {
	select {
	case <-p.done:
		return p.status, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (p *ExecProcess) finish(st *ExitStatus) {
	go func() {
		p.stdio.wait()
		p.status = st
		close(p.done)
	}()
}

// requestLocked makes a request ID for a message to init and the channel
// its answer comes on (see monitor). c.mu is held.
func (c *Container) requestLocked() (uint64, chan *initproc.Message) {
	c.nextID++
	id := c.nextID
	reply := make(chan *initproc.Message, 1)
	if c.pending == nil {
		c.pending = map[uint64]chan *initproc.Message{}
	}
	c.pending[id] = reply
	return id, reply
}
