package build

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/berthlabs/berth/cgroup"
	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/internal/owner"
	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/layer/snapshot"
	"github.com/berthlabs/berth/registry"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/linter"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	dockerspec "github.com/moby/docker-image-spec/specs-go/v1"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Errors that callers can match with errors.Is.
var (
	// ErrDockerfile is a Dockerfile that does not parse or makes no sense:
	// a syntax error, an unknown instruction, a bad flag, a --from that
	// names no stage. The error is a *LineError when the line is known.
	ErrDockerfile = errors.New("invalid Dockerfile")
	// ErrImageNotFound is a FROM or COPY --from image that is neither in
	// the store nor (with Builder.Registry) in a registry.
	ErrImageNotFound = errors.New("image not found")
	// ErrSourceNotFound is a COPY or ADD source that matches nothing in
	// the context (or in the --from stage or image).
	ErrSourceNotFound = errors.New("source not found")
	// ErrOutsideContext is a COPY or ADD source outside the build
	// context: absolute, climbing out with "..", or resolving through a
	// symlink to a place outside.
	ErrOutsideContext = errors.New("source outside the build context")
	// ErrUnsupported is an instruction or flag berth does not build, such
	// as ADD of a URL or RUN --mount; it wraps errors.ErrUnsupported.
	ErrUnsupported = fmt.Errorf("not supported by berth's builder: %w", errors.ErrUnsupported)
	// ErrRunFailed is a RUN step whose command failed; the error is a
	// *StepError with its exit code and output.
	ErrRunFailed = errors.New("RUN failed")
)

// LineError is an error at a line of the Dockerfile.
type LineError struct {
	// Line is the 1-based line of the Dockerfile; 0 when unknown.
	Line int
	// Err is what was wrong.
	Err error
}

func (e *LineError) Error() string {
	if e.Line == 0 {
		return "Dockerfile: " + e.Err.Error()
	}
	return fmt.Sprintf("Dockerfile:%d: %v", e.Line, e.Err)
}

// Unwrap returns Err.
func (e *LineError) Unwrap() error { return e.Err }

// StepError is a step that failed.
type StepError struct {
	// Step is the step's number (1-based, as Progress counts them).
	Step int
	// Stage is the stage's name, or its index when it has none.
	Stage string
	// Instruction is the instruction as the Dockerfile spells it.
	Instruction string
	// Line is its 1-based line in the Dockerfile.
	Line int
	// ExitCode is the exit code of a RUN that failed, else -1.
	ExitCode int
	// Output holds the last lines of the RUN's output (at most
	// OutputTailLines).
	Output []string
	// Err is the cause.
	Err error
}

// OutputTailLines is how many lines of a failed RUN's output a StepError
// keeps.
const OutputTailLines = 20

func (e *StepError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "step %d (stage %s, Dockerfile:%d) %s: %v", e.Step, e.Stage, e.Line, e.Instruction, e.Err)
	if e.ExitCode >= 0 {
		fmt.Fprintf(&b, " (exit code %d)", e.ExitCode)
	}
	if len(e.Output) > 0 {
		b.WriteString("; last output:\n  ")
		b.WriteString(strings.Join(e.Output, "\n  "))
	}
	return b.String()
}

// Unwrap returns Err.
func (e *StepError) Unwrap() error { return e.Err }

// Builder builds images into a layer store. Its zero value is not usable:
// set Store. A Builder is safe for concurrent builds, which share its
// file-hash cache.
type Builder struct {
	// Store receives the images; base images are looked up in it.
	Store *layer.Store
	// Runtime runs RUN steps. Nil means a Runtime of the Builder's own
	// (with the default cgroup parent).
	Runtime *container.Runtime
	// Registry, when set, pulls base images (FROM, COPY --from) that are
	// not in Store. Nil means such an image is ErrImageNotFound.
	Registry *registry.Client
	// Logger receives debug records; nil discards them.
	Logger *slog.Logger

	once   sync.Once
	rt     *container.Runtime
	hashes *hashCache
}

// Network is the network of RUN steps.
type Network string

// The networks RUN steps can have.
const (
	// NetworkNone (or "") gives RUN steps only a loopback interface.
	NetworkNone Network = "none"
	// NetworkHost shares the host's network namespace, as `docker build
	// --network host` does.
	NetworkHost Network = "host"
)

// Options describe one build. The zero value of each optional field is
// what `docker build` does by default.
type Options struct {
	// ContextDir is the build context, a directory. Either it or Context
	// is set.
	ContextDir string
	// Context is the build context as a tar stream (plain or
	// compressed), as `docker build -` takes it. It is unpacked into a
	// temporary directory for the build.
	Context io.Reader
	// Dockerfile is the Dockerfile's path inside the context; "" means
	// "Dockerfile".
	Dockerfile string
	// DockerfileContent, when not nil, is the Dockerfile itself, and
	// Dockerfile only names it (for <Dockerfile>.dockerignore).
	DockerfileContent []byte
	// Tags name the image in the store (each as content.ParseReference
	// normalizes it). Without tags the image is not named, and the next
	// GC removes it: tag Result.Descriptor to keep it.
	Tags []string
	// Target is the stage to build; "" means the last one.
	Target string
	// BuildArgs set ARG values (`--build-arg NAME=value`).
	BuildArgs map[string]string
	// NoCache builds every step, and records nothing in the cache.
	NoCache bool
	// Network is the network of RUN steps; "" means NetworkNone.
	Network Network
	// Networks, when set, attach RUN steps to berth networks instead.
	Networks []container.NetworkAttachment
	// Resources limit each RUN step's container.
	Resources cgroup.Resources
	// Output receives the build's log: a line per step, and what RUN
	// steps write. Nil discards it.
	Output io.Writer
	// Progress, when set, is called for each event of the build, from
	// the goroutine running the stage (stages may run in parallel: it
	// must be safe for concurrent use).
	Progress func(Event)
}

// EventKind says what an Event reports.
type EventKind int

// The kinds of Event.
const (
	// StepStarted: a step begins.
	StepStarted EventKind = iota + 1
	// StepOutput: a RUN step wrote Output.
	StepOutput
	// StepDone: a step ended, Cached telling whether the cache had it,
	// Err whether it failed.
	StepDone
)

// Event is a progress report of a build.
type Event struct {
	// Kind is what happened.
	Kind EventKind
	// Step is the step's number, 1-based, of Steps in the build.
	Step, Steps int
	// Stage is the stage's name, or its index when it has none.
	Stage string
	// Instruction is the instruction, as in the Dockerfile.
	Instruction string
	// Line is the instruction's 1-based line in the Dockerfile.
	Line int
	// Cached is set on StepDone when the step came from the cache.
	Cached bool
	// Output is what a RUN step wrote (StepOutput); it is only valid
	// during the call.
	Output []byte
	// Err is set on a StepDone of a failed step.
	Err error
}

// Result is a finished build.
type Result struct {
	// Descriptor is the image manifest's descriptor in the store.
	Descriptor ocispec.Descriptor
	// Image is its configuration, as stored.
	Image dockerspec.DockerOCIImage
	// Steps and CachedSteps count the steps of the build and those that
	// came from the cache.
	Steps, CachedSteps int
	// Warnings are what Docker would warn about: unused build
	// arguments, lint findings of the parser.
	Warnings []string
}

func (b *Builder) init() {
	b.once.Do(func() {
		b.rt = b.Runtime
		if b.rt == nil {
			b.rt = &container.Runtime{Images: b.Store, Logger: b.Logger}
		}
		b.hashes = newHashCache()
	})
}

func (b *Builder) logger() *slog.Logger {
	if b.Logger != nil {
		return b.Logger
	}
	return slog.New(slog.DiscardHandler)
}

// Build builds the image that opts describe and stores it in b.Store,
// tagged opts.Tags. See the package documentation for what it does and
// the errors it returns.
func (b *Builder) Build(ctx context.Context, opts Options) (*Result, error) {
	if b.Store == nil {
		return nil, errors.New("build: Builder.Store is nil")
	}
	b.init()
	b.sweep(ctx)
	bc, err := openContext(ctx, opts)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	defer bc.close()
	if err := b.hashes.load(b.Store, bc.dir); err != nil {
		b.logger().Debug("build: file hash cache not loaded", "err", err)
	}
	defer func() {
		if err := b.hashes.save(b.Store, bc.dir); err != nil {
			b.logger().Debug("build: file hash cache not saved", "err", err)
		}
	}()

	release, err := b.Store.Hold(ctx)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	defer release()

	p, err := parseDockerfile(bc.dockerfile, opts)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	j := &job{b: b, o: &opts, bc: bc, p: p, out: &syncWriter{w: opts.Output}}
	res, err := j.run(ctx)
	if err != nil {
		return nil, fmt.Errorf("build: %w", err)
	}
	return res, nil
}

// syncWriter serialises writes of parallel stages to Output.
type syncWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (s *syncWriter) Write(p []byte) (int, error) {
	if s.w == nil {
		return len(p), nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// parsed is a parsed Dockerfile.
type parsed struct {
	stages   []instructions.Stage
	metaArgs []instructions.ArgCommand
	escape   rune
	warnings []string
	// global holds the values of the ARGs before the first FROM, with
	// the automatic platform ones.
	global map[string]string
	// used records the build args some ARG declared.
	usedMu sync.Mutex
	used   map[string]bool
}

// proxyArgs are predefined: usable without an ARG, and left out of the
// cache key and the history, as Docker does.
var proxyArgs = map[string]bool{
	"HTTP_PROXY": true, "http_proxy": true, "HTTPS_PROXY": true, "https_proxy": true,
	"FTP_PROXY": true, "ftp_proxy": true, "NO_PROXY": true, "no_proxy": true,
	"ALL_PROXY": true, "all_proxy": true,
}

// platformArgs are the automatic platform ARGs, for the host's platform.
func platformArgs() map[string]string {
	p := runtime.GOOS + "/" + runtime.GOARCH
	m := map[string]string{
		"TARGETPLATFORM": p, "TARGETOS": runtime.GOOS, "TARGETARCH": runtime.GOARCH, "TARGETVARIANT": "",
		"BUILDPLATFORM": p, "BUILDOS": runtime.GOOS, "BUILDARCH": runtime.GOARCH, "BUILDVARIANT": "",
	}
	return m
}

// lineOf returns the first line of a parser error's location.
func lineOf(err error) int {
	var le *parser.LocationError
	if errors.As(err, &le) && len(le.Locations) > 0 && len(le.Locations[0]) > 0 {
		return le.Locations[0][0].Start.Line
	}
	return 0
}

func dockerfileErr(line int, err error) error {
	if errors.Is(err, ErrUnsupported) || errors.Is(err, ErrDockerfile) {
		return &LineError{Line: line, Err: err}
	}
	return &LineError{Line: line, Err: fmt.Errorf("%w: %v", ErrDockerfile, err)}
}

func parseDockerfile(src []byte, opts Options) (*parsed, error) {
	p := &parsed{used: map[string]bool{}}
	res, err := parser.Parse(bytes.NewReader(src))
	if err != nil {
		return nil, dockerfileErr(lineOf(err), err)
	}
	for _, w := range res.Warnings {
		line := 0
		if w.Location != nil {
			line = w.Location.Start.Line
		}
		p.warnings = append(p.warnings, fmt.Sprintf("Dockerfile:%d: %s", line, w.Short))
	}
	lint := linter.New(&linter.Config{Warn: func(rule, desc, url, msg string, loc []parser.Range) {
		line := 0
		if len(loc) > 0 {
			line = loc[0].Start.Line
		}
		p.warnings = append(p.warnings, fmt.Sprintf("Dockerfile:%d: %s: %s", line, rule, msg))
	}})
	p.stages, p.metaArgs, err = instructions.Parse(res.AST, lint)
	if err != nil {
		return nil, dockerfileErr(lineOf(err), err)
	}
	if len(p.stages) == 0 {
		return nil, dockerfileErr(0, errors.New("no FROM instruction"))
	}
	p.escape = res.EscapeToken
	// The global ARGs, in order, each seeing the ones before it.
	p.global = platformArgs()
	lex := shell.NewLex(p.escape)
	for _, a := range p.metaArgs {
		for _, kv := range a.Args {
			v, set := "", false
			if kv.Value != nil {
				w, _, err := lex.ProcessWord(*kv.Value, envOf(p.global))
				if err != nil {
					return nil, dockerfileErr(a.Location()[0].Start.Line, err)
				}
				v, set = w, true
			}
			if bv, ok := opts.BuildArgs[kv.Key]; ok {
				v, set = bv, true
				p.used[kv.Key] = true
			}
			if set {
				p.global[kv.Key] = v
			} else if _, ok := p.global[kv.Key]; !ok {
				p.global[kv.Key] = ""
			}
		}
	}
	return p, nil
}

func (p *parsed) markUsed(name string) {
	p.usedMu.Lock()
	p.used[name] = true
	p.usedMu.Unlock()
}

// envOf turns a map into the lexer's environment.
func envOf(m map[string]string) shell.EnvGetter {
	env := make([]string, 0, len(m))
	for k, v := range m {
		env = append(env, k+"="+v)
	}
	return shell.EnvsFromSlice(env)
}

// job is one build.
type job struct {
	b   *Builder
	o   *Options
	bc  *buildContext
	p   *parsed
	out *syncWriter

	stages []*stageRun
	steps  int
}

// stageName is a stage's name, or its index.
func stageName(s *instructions.Stage, i int) string {
	if s.Name != "" {
		return s.Name
	}
	return strconv.Itoa(i)
}

// stageIndex finds the stage called name (a name, case-insensitive, or
// an index) among the first n stages.
func (j *job) stageIndex(name string, n int) (int, bool) {
	if i, err := strconv.Atoi(name); err == nil {
		return i, i >= 0 && i < n
	}
	for i := 0; i < n; i++ {
		if j.p.stages[i].Name != "" && strings.EqualFold(j.p.stages[i].Name, name) {
			return i, true
		}
	}
	return -1, false
}

func (j *job) run(ctx context.Context) (*Result, error) {
	p := j.p
	target := len(p.stages) - 1
	if j.o.Target != "" {
		i, ok := j.stageIndex(j.o.Target, len(p.stages))
		if !ok {
			return nil, fmt.Errorf("%w: target stage %q not found", ErrDockerfile, j.o.Target)
		}
		target = i
	}
	lex := shell.NewLex(p.escape)
	// Each stage's base (an earlier stage or an image) and the stages
	// its COPY --from name.
	j.stages = make([]*stageRun, len(p.stages))
	for i := range p.stages {
		st := &p.stages[i]
		line := st.Location[0].Start.Line
		base, _, err := lex.ProcessWord(st.BaseName, envOf(p.global))
		if err != nil {
			return nil, dockerfileErr(line, err)
		}
		if base == "" {
			return nil, dockerfileErr(line, fmt.Errorf("FROM %s: base name is empty", st.BaseName))
		}
		sr := &stageRun{j: j, idx: i, st: st, name: stageName(st, i), base: base, baseStage: -1, done: make(chan struct{})}
		if k, ok := j.stageIndex(base, i); ok && !isNumber(base) {
			sr.baseStage = k
			sr.deps = append(sr.deps, k)
		}
		if st.Platform != "" {
			plat, _, err := lex.ProcessWord(st.Platform, envOf(p.global))
			if err != nil {
				return nil, dockerfileErr(line, err)
			}
			if err := checkPlatform(plat); err != nil {
				return nil, dockerfileErr(line, err)
			}
		}
		for _, c := range st.Commands {
			cp, ok := c.(*instructions.CopyCommand)
			if !ok || cp.From == "" {
				continue
			}
			from, _, err := lex.ProcessWord(cp.From, envOf(p.global))
			if err != nil {
				return nil, dockerfileErr(c.Location()[0].Start.Line, err)
			}
			if k, ok := j.stageIndex(from, i); ok {
				sr.deps = append(sr.deps, k)
			} else if _, later := j.stageIndex(from, len(p.stages)); later || isNumber(from) {
				return nil, dockerfileErr(c.Location()[0].Start.Line, fmt.Errorf("COPY --from=%s: stage %s is not defined before this one", from, from))
			}
		}
		j.stages[i] = sr
	}
	// The stages the target needs, and their steps, numbered in file order.
	need := map[int]bool{}
	var mark func(int)
	mark = func(i int) {
		if need[i] {
			return
		}
		need[i] = true
		for _, d := range j.stages[i].deps {
			mark(d)
		}
	}
	mark(target)
	for i, sr := range j.stages {
		if !need[i] {
			continue
		}
		sr.firstStep = j.steps + 1
		j.steps += 1 + len(sr.st.Commands)
	}

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	for i, sr := range j.stages {
		if !need[i] {
			continue
		}
		wg.Go(func() {
			defer close(sr.done)
			for _, d := range sr.deps {
				select {
				case <-j.stages[d].done:
				case <-ctx.Done():
					sr.err = context.Cause(ctx)
					return
				}
				if j.stages[d].err != nil {
					sr.err = errDepFailed
					return
				}
			}
			sr.err = sr.build(ctx)
			if sr.err != nil {
				cancel(sr.err)
			}
		})
	}
	wg.Wait()
	// The first real error: a stage that failed by itself.
	var errs []error
	for i, sr := range j.stages {
		if need[i] && sr.err != nil && !errors.Is(sr.err, errDepFailed) && !errors.Is(sr.err, context.Canceled) {
			errs = append(errs, sr.err)
		}
	}
	if len(errs) == 0 {
		for i, sr := range j.stages {
			if need[i] && sr.err != nil {
				errs = append(errs, sr.err)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs[0]
	}

	final := j.stages[target]
	res := &Result{Steps: j.steps, Warnings: slices.Clone(p.warnings)}
	for i, sr := range j.stages {
		if need[i] {
			res.CachedSteps += sr.cachedSteps
		}
	}
	var unused []string
	for k := range j.o.BuildArgs {
		if !p.used[k] && !proxyArgs[k] {
			unused = append(unused, k)
		}
	}
	if len(unused) > 0 {
		slices.Sort(unused)
		w := fmt.Sprintf("one or more build args were not consumed: %v", unused)
		res.Warnings = append(res.Warnings, w)
		fmt.Fprintf(j.out, "[warning] %s\n", w)
	}
	desc, err := final.state.store(ctx, j.b.Store, j.o.Tags)
	if err != nil {
		return nil, err
	}
	res.Descriptor = desc
	res.Image = final.state.img
	fmt.Fprintf(j.out, "Successfully built %s\n", desc.Digest)
	for _, t := range j.o.Tags {
		fmt.Fprintf(j.out, "Successfully tagged %s\n", t)
	}
	return res, nil
}

var errDepFailed = errors.New("a stage it depends on failed")

func isNumber(s string) bool {
	_, err := strconv.Atoi(s)
	return err == nil
}

// checkPlatform accepts only the host's platform.
func checkPlatform(p string) error {
	parts := strings.Split(p, "/")
	if len(parts) < 2 || parts[0] != runtime.GOOS || parts[1] != runtime.GOARCH {
		return fmt.Errorf("%w: --platform=%s: only the host's platform %s/%s can be built", ErrUnsupported, p, runtime.GOOS, runtime.GOARCH)
	}
	return nil
}

// scopeEnv is the expansion environment of a stage: its ARGs, then its
// ENV, which wins.
func scopeEnv(args map[string]string, env []string) shell.EnvGetter {
	m := maps.Clone(args)
	for _, kv := range env {
		k, v, _ := strings.Cut(kv, "=")
		m[k] = v
	}
	return envOf(m)
}

// progress reports an event.
func (j *job) progress(e Event) {
	if j.o.Progress != nil {
		e.Steps = j.steps
		j.o.Progress(e)
	}
}

// sweep removes what a build process that was killed left behind, which
// the layer store's own sweep cannot: the host mounts of its steps'
// snapshots (the store removes the snapshots, not mounts on them), their
// mount points, and the (empty) cgroups of its RUN containers. A step is
// stale when its snapshot is gone or its owner has died (LabelOwner);
// steps of live builds, in this process or another, are left alone.
func (b *Builder) sweep(ctx context.Context) {
	dir := filepath.Join(b.Store.Root(), "mounts")
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	parent := b.rt.CgroupParent
	if parent == "" {
		parent = "/berth" // container.Runtime's default
	}
	for _, e := range ents {
		key := e.Name()
		if !strings.HasPrefix(key, "build-") {
			continue
		}
		info, err := b.Store.Snapshots.Stat(ctx, key)
		switch {
		case err == nil:
			if o, ok := info.Labels[layer.LabelOwner]; !ok || owner.Alive(o) {
				continue
			}
		case !errors.Is(err, snapshot.ErrNotFound):
			continue
		}
		p := filepath.Join(dir, key)
		if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
			b.logger().Debug("build: unmount a killed build's snapshot", "path", p, "err", err)
			continue
		}
		if !strings.HasPrefix(key, "build-view-") {
			if cg, err := cgroup.Load(parent + "/" + key); err == nil {
				cg.Delete(ctx)
			}
		}
		b.Store.Release(ctx, key)
	}
}
