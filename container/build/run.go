package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/namespace"
)

// tailWriter forwards a RUN's output and keeps its last lines.
type tailWriter struct {
	mu    sync.Mutex
	j     *job
	ev    Event
	lines []string
	cur   []byte
}

func (w *tailWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.j.out.Write(p)
	if w.j.o.Progress != nil {
		e := w.ev
		e.Kind, e.Output = StepOutput, p
		w.j.progress(e)
	}
	b := p
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		if i < 0 {
			w.cur = append(w.cur, b...)
			if len(w.cur) > 4096 {
				w.cur = w.cur[len(w.cur)-4096:]
			}
			break
		}
		w.cur = append(w.cur, b[:i]...)
		w.push(string(w.cur))
		w.cur = w.cur[:0]
		b = b[i+1:]
	}
	return len(p), nil
}

func (w *tailWriter) push(l string) {
	w.lines = append(w.lines, l)
	if len(w.lines) > OutputTailLines {
		w.lines = w.lines[len(w.lines)-OutputTailLines:]
	}
}

func (w *tailWriter) tail() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := append([]string(nil), w.lines...)
	if len(w.cur) > 0 {
		out = append(out, string(w.cur))
		if len(out) > OutputTailLines {
			out = out[len(out)-OutputTailLines:]
		}
	}
	return out
}

// runContainer runs argv in a container on a snapshot of the stage's
// state and commits what it changed as a layer. On failure the container
// and the snapshot are removed.
func (sr *stageRun) runContainer(ctx context.Context, step int, argv, env []string, ins string, line int) (_ layer.Layer, err error) {
	j := sr.j
	a, err := j.prepare(ctx, sr.state.chainID)
	if err != nil {
		return layer.Layer{}, err
	}
	failed := true
	defer func() {
		if failed {
			a.discard()
		}
	}()
	cfg := sr.state.img.Config
	w := &tailWriter{j: j, ev: Event{Step: step, Stage: sr.name, Instruction: ins, Line: line}}
	spec := &container.Spec{
		Rootfs: a.dir,
		Process: container.Process{
			Args:   argv,
			Env:    env,
			Dir:    cfg.WorkingDir,
			User:   cfg.User,
			Stdout: w,
			Stderr: w,
		},
		Resources: j.o.Resources,
		Networks:  j.o.Networks,
	}
	switch j.o.Network {
	case "", NetworkNone:
	case NetworkHost:
		spec.Namespaces = map[namespace.Kind]container.Namespace{namespace.Net: {Mode: container.NamespaceHost}}
	default:
		return layer.Layer{}, fmt.Errorf("%w: network %q", ErrUnsupported, j.o.Network)
	}
	c, err := j.b.rt.Create(ctx, a.key, spec)
	if err != nil {
		return layer.Layer{}, fmt.Errorf("create RUN container: %w", err)
	}
	st, err := func() (*container.ExitStatus, error) {
		defer c.Delete(context.Background())
		if err := c.Start(ctx); err != nil {
			return nil, fmt.Errorf("start RUN container: %w", err)
		}
		st, err := c.Wait(ctx)
		if err != nil {
			c.Kill(context.Background())
			return nil, err
		}
		return st, nil
	}()
	if err != nil {
		return layer.Layer{}, err
	}
	if !st.Success() {
		cause := fmt.Errorf("%w: the command %q returned %s", ErrRunFailed, argv, st)
		if st.OOMKilled {
			cause = fmt.Errorf("%w: the command %q was killed for memory (%s)", ErrRunFailed, argv, st)
		}
		return layer.Layer{}, &StepError{Step: step, Stage: sr.name, Instruction: ins, Line: line, ExitCode: st.Code, Output: w.tail(), Err: cause}
	}
	failed = false
	return j.commit(ctx, a)
}

var _ = errors.New
