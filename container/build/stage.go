package build

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/layer/archive"
	"github.com/berthlabs/berth/layer/content"
	"github.com/berthlabs/berth/layer/snapshot"
	"github.com/moby/buildkit/frontend/dockerfile/instructions"
	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// stageRun builds one stage.
type stageRun struct {
	j         *job
	idx       int
	st        *instructions.Stage
	name      string
	base      string // the expanded base name
	baseStage int    // the stage FROM names, or -1
	deps      []int
	firstStep int

	done chan struct{}
	err  error

	state       state
	args        map[string]string // ARGs in scope with a value
	cmdSet      bool
	miss        bool // a step missed the cache: the later ones rebuild
	cachedSteps int
	lex         *shell.Lex
}

// historyComment marks the history entries berth's builder writes.
const historyComment = "berth.build.v0"

func (sr *stageRun) lineOf(c instructions.Command) int {
	if loc := c.Location(); len(loc) > 0 {
		return loc[0].Start.Line
	}
	return 0
}

func (sr *stageRun) stepErr(step int, ins string, line int, err error) error {
	var se *StepError
	if errors.As(err, &se) {
		return err
	}
	// The step error names the line already.
	if le, ok := err.(*LineError); ok {
		err = le.Err
	}
	return &StepError{Step: step, Stage: sr.name, Instruction: ins, Line: line, ExitCode: -1, Err: err}
}

func (sr *stageRun) build(ctx context.Context) error {
	j := sr.j
	sr.lex = shell.NewLex(j.p.escape)
	sr.args = map[string]string{}
	step := sr.firstStep
	fromLine := sr.st.Location[0].Start.Line
	ins := sr.st.SourceCode
	fmt.Fprintf(j.out, "Step %d/%d : %s\n", step, j.steps, ins)
	j.progress(Event{Kind: StepStarted, Step: step, Stage: sr.name, Instruction: ins, Line: fromLine})
	triggers, err := sr.from(ctx)
	if err != nil {
		err = sr.stepErr(step, ins, fromLine, err)
		j.progress(Event{Kind: StepDone, Step: step, Stage: sr.name, Instruction: ins, Line: fromLine, Err: err})
		return err
	}
	j.progress(Event{Kind: StepDone, Step: step, Stage: sr.name, Instruction: ins, Line: fromLine, Cached: !j.o.NoCache})
	if !j.o.NoCache {
		sr.cachedSteps++
	}
	// ONBUILD triggers of the base image run first, as part of FROM.
	for _, t := range triggers {
		res, err := parser.Parse(strings.NewReader(t))
		if err == nil && len(res.AST.Children) != 1 {
			err = errors.New("not one instruction")
		}
		var c instructions.Command
		if err == nil {
			c, err = instructions.ParseCommand(res.AST.Children[0])
		}
		if err != nil {
			return sr.stepErr(step, ins, fromLine, fmt.Errorf("%w: ONBUILD trigger %q of %s: %v", ErrDockerfile, t, sr.base, err))
		}
		fmt.Fprintf(j.out, " ---> Running ONBUILD trigger: %s\n", t)
		if _, err := sr.exec(ctx, step, c, t, fromLine); err != nil {
			return sr.stepErr(step, "ONBUILD "+t, fromLine, err)
		}
	}
	for _, c := range sr.st.Commands {
		step++
		line := sr.lineOf(c)
		ins := sourceOf(c)
		fmt.Fprintf(j.out, "Step %d/%d : %s\n", step, j.steps, ins)
		j.progress(Event{Kind: StepStarted, Step: step, Stage: sr.name, Instruction: ins, Line: line})
		cached, err := sr.exec(ctx, step, c, ins, line)
		if err != nil {
			err = sr.stepErr(step, ins, line, err)
			j.progress(Event{Kind: StepDone, Step: step, Stage: sr.name, Instruction: ins, Line: line, Err: err})
			return err
		}
		if cached {
			sr.cachedSteps++
			fmt.Fprintf(j.out, " ---> Using cache\n")
		}
		j.progress(Event{Kind: StepDone, Step: step, Stage: sr.name, Instruction: ins, Line: line, Cached: cached})
	}
	return nil
}

// from sets the stage's initial state, and returns the base image's
// ONBUILD triggers.
func (sr *stageRun) from(ctx context.Context) ([]string, error) {
	j := sr.j
	switch {
	case sr.baseStage >= 0:
		// The base stage's ONBUILD triggers run here, as BuildKit runs
		// them, and do not carry over.
		sr.state = j.stages[sr.baseStage].state.clone()
		triggers := sr.state.img.Config.OnBuild
		sr.state.img.Config.OnBuild = nil
		return triggers, nil
	case sr.base == "scratch":
		now := time.Now().UTC()
		sr.state = state{id: "scratch"}
		sr.state.img.Created = &now
		sr.state.img.Platform = ocispec.Platform{OS: runtime.GOOS, Architecture: runtime.GOARCH}
		sr.state.img.RootFS.Type = "layers"
		return nil, nil
	}
	s, err := j.image(ctx, sr.base)
	if err != nil {
		return nil, err
	}
	sr.state = s
	triggers := s.img.Config.OnBuild
	sr.state.img.Config.OnBuild = nil
	return triggers, nil
}

// image loads an image from the store, pulling it when it is missing and
// the Builder has a registry.
func (j *job) image(ctx context.Context, name string) (state, error) {
	st := j.b.Store
	desc, err := st.Content.Resolve(ctx, name)
	if errors.Is(err, content.ErrNotFound) && j.b.Registry != nil {
		fmt.Fprintf(j.out, " ---> Pulling %s\n", name)
		if _, perr := j.b.Registry.Pull(ctx, name, st); perr != nil {
			return state{}, fmt.Errorf("%w: %s: %w", ErrImageNotFound, name, perr)
		}
		desc, err = st.Content.Resolve(ctx, name)
	}
	if errors.Is(err, content.ErrNotFound) {
		return state{}, fmt.Errorf("%w: %s is not in the layer store (set Builder.Registry to pull it)", ErrImageNotFound, name)
	}
	if err != nil {
		return state{}, fmt.Errorf("image %s: %w", name, err)
	}
	img, err := st.Unpack(ctx, name)
	if err != nil {
		return state{}, err
	}
	cfg, err := readConfig(ctx, st, img.Manifest.Config.Digest)
	if err != nil {
		return state{}, err
	}
	return state{img: cfg, layers: img.Manifest.Layers, chainID: img.ChainID, id: "image:" + desc.Digest.String()}, nil
}

// expander expands words with the stage's ARGs and ENV.
func (sr *stageRun) expander() instructions.SingleWordExpander {
	env := scopeEnv(sr.args, sr.state.img.Config.Env)
	return func(w string) (string, error) {
		r, _, err := sr.lex.ProcessWord(w, env)
		return r, err
	}
}

// configStep records a step that changes only the configuration.
// The change is made to sr.state already; a cache hit replaces it with
// the state recorded, so that a cached rebuild makes the same image.
func (sr *stageRun) configStep(ctx context.Context, createdBy string) (bool, error) {
	return sr.record(ctx, createdBy, true)
}

// record looks the step up in the cache (keyed on the state's id, which
// the change did not touch) or records it, with a history entry when
// history is set.
func (sr *stageRun) record(ctx context.Context, createdBy string, history bool) (bool, error) {
	key := ""
	if !sr.j.o.NoCache {
		key = cacheKey(sr.state.id, "CONFIG", createdBy)
		if !sr.miss {
			if s, ok := sr.j.cacheGet(ctx, key); ok {
				sr.state = s
				return true, nil
			}
		}
		sr.miss = true
	}
	if history {
		now := time.Now().UTC()
		sr.state.img.Created = &now
		sr.state.img.History = append(sr.state.img.History, ocispec.History{Created: &now, CreatedBy: createdBy, Comment: historyComment, EmptyLayer: true})
	}
	if key == "" {
		sr.state.id = ""
		return false, nil
	}
	return false, sr.j.cachePut(ctx, key, &sr.state)
}

// shellForm returns the command line of a shell-dependent instruction.
func (sr *stageRun) shellForm(c instructions.ShellDependantCmdLine) []string {
	if !c.PrependShell {
		return slices.Clone(c.CmdLine)
	}
	sh := sr.state.img.Config.Shell
	if len(sh) == 0 {
		sh = []string{"/bin/sh", "-c"}
	}
	return append(slices.Clone(sh), strings.Join(c.CmdLine, " "))
}

// exec runs one instruction and says whether the cache had it.
func (sr *stageRun) exec(ctx context.Context, step int, c instructions.Command, ins string, line int) (bool, error) {
	if e, ok := c.(instructions.SupportsSingleWordExpansion); ok {
		if err := e.Expand(sr.expander()); err != nil {
			return false, &LineError{Line: line, Err: fmt.Errorf("%w: %v", ErrDockerfile, err)}
		}
	}
	if e, ok := c.(instructions.SupportsSingleWordExpansionRaw); ok {
		if err := e.ExpandRaw(sr.expander()); err != nil {
			return false, &LineError{Line: line, Err: fmt.Errorf("%w: %v", ErrDockerfile, err)}
		}
	}
	cfg := &sr.state.img.Config
	switch c := c.(type) {
	case *instructions.ArgCommand:
		for _, kv := range c.Args {
			v, ok := "", false
			if kv.Value != nil {
				v, ok = *kv.Value, true
			}
			if bv, has := sr.j.o.BuildArgs[kv.Key]; has {
				v, ok = bv, true
				sr.j.p.markUsed(kv.Key)
			} else if !ok {
				v, ok = sr.j.p.global[kv.Key]
			}
			if ok {
				sr.args[kv.Key] = v
			} else {
				delete(sr.args, kv.Key)
			}
		}
		// A changed value misses where it is used, not here (Docker's
		// rule): the key is the instruction as written. No history
		// entry, as BuildKit writes none for ARG.
		return sr.record(ctx, sourceOf(c), false)
	case *instructions.EnvCommand:
		var parts []string
		for _, kv := range c.Env {
			cfg.Env = setEnv(cfg.Env, kv.Key, kv.Value)
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		return sr.configStep(ctx, "ENV "+strings.Join(parts, " "))
	case *instructions.LabelCommand:
		if cfg.Labels == nil {
			cfg.Labels = map[string]string{}
		}
		var parts []string
		for _, kv := range c.Labels {
			cfg.Labels[kv.Key] = kv.Value
			parts = append(parts, kv.Key+"="+kv.Value)
		}
		return sr.configStep(ctx, "LABEL "+strings.Join(parts, " "))
	case *instructions.MaintainerCommand:
		sr.state.img.Author = c.Maintainer
		return sr.configStep(ctx, "MAINTAINER "+c.Maintainer)
	case *instructions.WorkdirCommand:
		p := c.Path
		if !path.IsAbs(p) {
			p = path.Join("/", cfg.WorkingDir, p)
		}
		cfg.WorkingDir = path.Clean(p)
		return sr.workdir(ctx, "WORKDIR "+cfg.WorkingDir)
	case *instructions.UserCommand:
		cfg.User = c.User
		return sr.configStep(ctx, "USER "+c.User)
	case *instructions.CmdCommand:
		cfg.Cmd = sr.shellForm(c.ShellDependantCmdLine)
		sr.cmdSet = true
		return sr.configStep(ctx, "CMD "+jsonString(cfg.Cmd))
	case *instructions.EntrypointCommand:
		cfg.Entrypoint = sr.shellForm(c.ShellDependantCmdLine)
		if len(cfg.Entrypoint) == 0 {
			cfg.Entrypoint = nil
		}
		if !sr.cmdSet {
			cfg.Cmd = nil
		}
		return sr.configStep(ctx, "ENTRYPOINT "+jsonString(cfg.Entrypoint))
	case *instructions.ExposeCommand:
		if cfg.ExposedPorts == nil {
			cfg.ExposedPorts = map[string]struct{}{}
		}
		var ports []string
		for _, p := range c.Ports {
			// EXPOSE has no Expand of its own in the parser.
			p, err := sr.expander()(p)
			if err != nil {
				return false, &LineError{Line: line, Err: fmt.Errorf("%w: %v", ErrDockerfile, err)}
			}
			ps, err := expandPort(p)
			if err != nil {
				return false, &LineError{Line: line, Err: err}
			}
			for _, p := range ps {
				cfg.ExposedPorts[p] = struct{}{}
			}
			ports = append(ports, ps...)
		}
		return sr.configStep(ctx, "EXPOSE "+strings.Join(ports, " "))
	case *instructions.VolumeCommand:
		if cfg.Volumes == nil {
			cfg.Volumes = map[string]struct{}{}
		}
		for _, v := range c.Volumes {
			if v == "" {
				return false, &LineError{Line: line, Err: fmt.Errorf("%w: VOLUME with an empty path", ErrDockerfile)}
			}
			cfg.Volumes[v] = struct{}{}
		}
		return sr.configStep(ctx, "VOLUME "+jsonString(c.Volumes))
	case *instructions.StopSignalCommand:
		cfg.StopSignal = c.Signal
		return sr.configStep(ctx, "STOPSIGNAL "+c.Signal)
	case *instructions.HealthCheckCommand:
		h := *c.Health
		h.Test = slices.Clone(h.Test)
		cfg.Healthcheck = &h
		return sr.configStep(ctx, "HEALTHCHECK "+jsonString(h))
	case *instructions.ShellCommand:
		cfg.Shell = slices.Clone(c.Shell)
		return sr.configStep(ctx, "SHELL "+jsonString(c.Shell))
	case *instructions.OnbuildCommand:
		cfg.OnBuild = append(cfg.OnBuild, c.Expression)
		return sr.configStep(ctx, "ONBUILD "+c.Expression)
	case *instructions.RunCommand:
		return sr.run(ctx, step, c, ins, line)
	case *instructions.CopyCommand:
		if c.Link || c.Parents || len(c.ExcludePatterns) > 0 {
			return false, fmt.Errorf("%w: COPY --link, --parents and --exclude", ErrUnsupported)
		}
		return sr.copy(ctx, step, c.SourcesAndDest, c.From, c.Chown, c.Chmod, false, line)
	case *instructions.AddCommand:
		if c.Link || len(c.ExcludePatterns) > 0 || c.Checksum != "" || c.KeepGitDir != nil || c.Unpack != nil {
			return false, fmt.Errorf("%w: ADD --link, --exclude, --checksum, --keep-git-dir and --unpack", ErrUnsupported)
		}
		return sr.copy(ctx, step, c.SourcesAndDest, "", c.Chown, c.Chmod, true, line)
	default:
		return false, &LineError{Line: line, Err: fmt.Errorf("%w: instruction %s", ErrUnsupported, c.Name())}
	}
}

func jsonString(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func setEnv(env []string, k, v string) []string {
	for i, kv := range env {
		if name, _, _ := strings.Cut(kv, "="); name == k {
			env[i] = k + "=" + v
			return env
		}
	}
	return append(env, k+"="+v)
}

// expandPort turns an EXPOSE argument into "port/proto" entries, ranges
// expanded.
func expandPort(p string) ([]string, error) {
	port, proto, ok := strings.Cut(p, "/")
	if !ok {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	if proto != "tcp" && proto != "udp" && proto != "sctp" {
		return nil, fmt.Errorf("%w: EXPOSE %s: protocol %q", ErrDockerfile, p, proto)
	}
	lo, hi, isRange := strings.Cut(port, "-")
	a, err := strconv.ParseUint(lo, 10, 16)
	b := a
	if err == nil && isRange {
		b, err = strconv.ParseUint(hi, 10, 16)
	}
	if err != nil || b < a || a == 0 {
		return nil, fmt.Errorf("%w: EXPOSE %s: not a port or port range", ErrDockerfile, p)
	}
	var out []string
	for i := a; i <= b; i++ {
		out = append(out, fmt.Sprintf("%d/%s", i, proto))
	}
	return out, nil
}

// runEnv is the environment of a RUN: the image's, and the ARGs in scope
// that ENV does not set.
func (sr *stageRun) runEnv() (env []string, argPairs []string) {
	env = slices.Clone(sr.state.img.Config.Env)
	names := make([]string, 0, len(sr.args))
	for k := range sr.args {
		names = append(names, k)
	}
	slices.Sort(names)
	for _, k := range names {
		if slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, k+"=") }) {
			continue
		}
		env = append(env, k+"="+sr.args[k])
		if !proxyArgs[k] {
			argPairs = append(argPairs, k+"="+sr.args[k])
		}
	}
	// Proxy arguments apply without an ARG.
	for k, v := range sr.j.o.BuildArgs {
		if proxyArgs[k] && !slices.ContainsFunc(env, func(kv string) bool { return strings.HasPrefix(kv, k+"=") }) {
			env = append(env, k+"="+v)
		}
	}
	return env, argPairs
}

func (sr *stageRun) run(ctx context.Context, step int, c *instructions.RunCommand, ins string, line int) (bool, error) {
	for _, f := range c.FlagsUsed {
		return false, &LineError{Line: line, Err: fmt.Errorf("%w: RUN --%s", ErrUnsupported, f)}
	}
	argv := sr.shellForm(c.ShellDependantCmdLine)
	if len(c.Files) > 0 {
		if !c.PrependShell {
			return false, &LineError{Line: line, Err: fmt.Errorf("%w: a heredoc in an exec-form RUN", ErrUnsupported)}
		}
		// The shell reads the heredocs itself: hand it the whole text.
		script := strings.Join(c.CmdLine, " ")
		for _, f := range c.Files {
			if strings.TrimSpace(script) == "<<"+f.Name || strings.TrimSpace(script) == "<<-"+f.Name || strings.TrimSpace(script) == "<<\""+f.Name+"\"" || strings.TrimSpace(script) == "<<'"+f.Name+"'" {
				script = f.Data
				if f.Chomp {
					lines := strings.Split(script, "\n")
					for i, l := range lines {
						lines[i] = strings.TrimLeft(l, "\t")
					}
					script = strings.Join(lines, "\n")
				}
				continue
			}
			script += "\n" + f.Data + f.Name
		}
		argv[len(argv)-1] = script
	}
	env, argPairs := sr.runEnv()
	createdBy := "RUN " + strings.Join(argv, " ")
	if len(argPairs) > 0 {
		createdBy = fmt.Sprintf("RUN |%d %s %s", len(argPairs), strings.Join(argPairs, " "), strings.Join(argv, " "))
	}
	key := ""
	if !sr.j.o.NoCache {
		key = cacheKey(sr.state.id, "RUN", jsonString(argv), jsonString(argPairs), jsonString(sr.state.img.Config.Shell), string(sr.j.o.Network))
		if !sr.miss {
			if s, ok := sr.j.cacheGet(ctx, key); ok {
				sr.state = s
				return true, nil
			}
		}
		sr.miss = true
	}
	l, err := sr.runContainer(ctx, step, argv, env, ins, line)
	if err != nil {
		return false, err
	}
	return false, sr.addLayer(ctx, l, createdBy, key)
}

// commitLayer commits the snapshot a, written by a step, as a layer and
// adds it (see addLayer).
func (sr *stageRun) commitLayer(ctx context.Context, a *active, createdBy, key string) error {
	l, err := sr.j.commit(ctx, a)
	if err != nil {
		return err
	}
	return sr.addLayer(ctx, l, createdBy, key)
}

// addLayer appends a layer step's result to the state and caches it.
func (sr *stageRun) addLayer(ctx context.Context, l layer.Layer, createdBy, key string) error {
	now := time.Now().UTC()
	img := &sr.state.img
	img.Created = &now
	img.RootFS.Type = "layers"
	// Base layers without history entries get empty ones, so that the
	// new entry lines up with the new layer.
	n := 0
	for _, h := range img.History {
		if !h.EmptyLayer {
			n++
		}
	}
	for ; n < len(img.RootFS.DiffIDs); n++ {
		img.History = append(img.History, ocispec.History{})
	}
	img.RootFS.DiffIDs = append(img.RootFS.DiffIDs, l.DiffID)
	img.History = append(img.History, ocispec.History{Created: &now, CreatedBy: createdBy, Comment: historyComment})
	sr.state.layers = append(sr.state.layers, l.Descriptor)
	sr.state.chainID = l.ChainID
	if key == "" {
		sr.state.id = ""
		return nil
	}
	return sr.j.cachePut(ctx, key, &sr.state)
}

func randomID() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// active is a snapshot of a stage's state, prepared and mounted for a
// step to change.
type active struct {
	st      *layer.Store
	key     string
	dir     string
	mounted bool
}

// prepare makes and mounts a writable snapshot on parent.
func (j *job) prepare(ctx context.Context, parent string) (_ *active, err error) {
	st := j.b.Store
	a := &active{st: st, key: "build-" + randomID()}
	ms, err := st.Snapshots.Prepare(ctx, a.key, parent, layer.WithOwner(), snapshot.Ephemeral())
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			a.discard()
		}
	}()
	dir, err := st.MountPoint(a.key)
	if err != nil {
		return nil, err
	}
	if a.dir, err = filepath.EvalSymlinks(dir); err != nil {
		return nil, err
	}
	if err := snapshot.MountAll(ms, a.dir); err != nil {
		return nil, fmt.Errorf("mount snapshot: %w", err)
	}
	a.mounted = true
	return a, nil
}

func (a *active) unmount() error {
	if !a.mounted {
		return nil
	}
	if err := snapshot.Unmount(a.dir); err != nil {
		return fmt.Errorf("unmount snapshot: %w", err)
	}
	a.mounted = false
	return nil
}

// discard unmounts and removes the snapshot.
func (a *active) discard() {
	if a.unmount() != nil {
		return // still mounted: GC removes it once this process is gone
	}
	a.st.Release(context.Background(), a.key)
}

// commit unmounts the snapshot and commits it as a layer.
func (j *job) commit(ctx context.Context, a *active) (layer.Layer, error) {
	if err := a.unmount(); err != nil {
		a.discard()
		return layer.Layer{}, err
	}
	l, err := j.b.Store.CommitSnapshot(ctx, a.key)
	if err != nil {
		a.discard()
		return layer.Layer{}, err
	}
	// The key is gone: this removes its mount point.
	j.b.Store.Release(ctx, a.key)
	return l, nil
}

// view mounts a read-only view of the committed snapshot chainID ("" for
// an empty tree) and returns its directory.
func (j *job) view(ctx context.Context, chainID string) (dir string, release func(), err error) {
	if chainID == "" {
		d, err := os.MkdirTemp("", "berth-build-empty-")
		if err != nil {
			return "", nil, err
		}
		d, _ = filepath.EvalSymlinks(d)
		return d, func() { os.Remove(d) }, nil
	}
	st := j.b.Store
	key := "build-view-" + randomID()
	ms, err := st.Snapshots.View(ctx, key, chainID, layer.WithOwner(), snapshot.Ephemeral())
	if err != nil {
		return "", nil, err
	}
	mp, err := st.MountPoint(key)
	if err == nil {
		mp, err = filepath.EvalSymlinks(mp)
	}
	if err == nil {
		err = snapshot.MountAll(ms, mp)
	}
	if err != nil {
		st.Release(context.Background(), key)
		return "", nil, err
	}
	return mp, func() {
		if snapshot.Unmount(mp) == nil {
			st.Release(context.Background(), key)
		}
	}, nil
}

// copy runs a COPY or ADD.
func (sr *stageRun) copy(ctx context.Context, step int, sd instructions.SourcesAndDest, from, chown, chmod string, isAdd bool, line int) (bool, error) {
	j := sr.j
	name := "COPY"
	if isAdd {
		name = "ADD"
	}
	mode, err := parseChmod(chmod)
	if err != nil {
		return false, err
	}
	t := &tree{root: j.bc.dir, bc: j.bc, hashes: j.b.hashes}
	if j.bc.tmp {
		t.hashes = nil
	}
	fromID := "context"
	if from != "" {
		from, err = sr.expander()(from)
		if err != nil {
			return false, err
		}
		chain := ""
		if k, ok := j.stageIndex(from, sr.idx); ok {
			chain = j.stages[k].state.chainID
			fromID = "stage:" + chain
		} else {
			s, err := j.image(ctx, from)
			if err != nil {
				return false, fmt.Errorf("COPY --from=%s: no stage of that name, and %w", from, err)
			}
			chain = s.chainID
			fromID = s.id
		}
		dir, release, err := j.view(ctx, chain)
		if err != nil {
			return false, err
		}
		defer release()
		t = &tree{root: dir, inRoot: true, keepOwner: true}
	}
	var srcs []*source
	for _, src := range sd.SourcePaths {
		if isAdd && (strings.Contains(src, "://") || strings.HasPrefix(src, "git@")) {
			return false, fmt.Errorf("%w: ADD of a URL (%s): fetch it in a RUN step with a network", ErrUnsupported, src)
		}
		rels, err := t.match(src)
		if err != nil {
			return false, err
		}
		for _, rel := range rels {
			s, err := t.collect(ctx, src, rel, isAdd)
			if err != nil {
				return false, err
			}
			if from != "" {
				// Content-addressed already: the chain ID is in the key.
				for i := range s.entries {
					s.entries[i].sum = ""
				}
			}
			srcs = append(srcs, s)
		}
	}
	srcs = append(srcs, inline(sd.SourceContents)...)
	rawDest := sd.DestPath
	dest := rawDest
	if !path.IsAbs(dest) {
		dest = path.Join("/", sr.state.img.Config.WorkingDir, dest)
	}
	dest = path.Clean(dest)
	destIsDir := strings.HasSuffix(rawDest, "/") || rawDest == "." || strings.HasSuffix(rawDest, "/.")
	createdBy := fmt.Sprintf("%s %s in %s", name, checksum(srcs, t.keepOwner), dest)
	key := ""
	if !j.o.NoCache {
		key = cacheKey(sr.state.id, name, fromID, chown, chmod, jsonString(sd.SourcePaths), dest, strconv.FormatBool(destIsDir), checksum(srcs, t.keepOwner))
		if !sr.miss {
			if s, ok := j.cacheGet(ctx, key); ok {
				sr.state = s
				return true, nil
			}
		}
		sr.miss = true
	}
	a, err := j.prepare(ctx, sr.state.chainID)
	if err != nil {
		return false, err
	}
	plan := &copyPlan{srcs: srcs, dest: dest, destIsDir: destIsDir, keepOwner: t.keepOwner, chmod: mode}
	if chown != "" {
		plan.uid, plan.gid, err = resolveChown(a.dir, chown)
		if err != nil {
			a.discard()
			return false, err
		}
		plan.chown = true
	}
	if err := plan.write(ctx, a.dir); err != nil {
		a.discard()
		return false, err
	}
	return false, sr.commitLayer(ctx, a, createdBy, key)
}

// resolveChown resolves --chown's user[:group] against the root
// filesystem's /etc/passwd and /etc/group. A user without a group gets
// the same number as its GID, as Docker does.
func resolveChown(root, spec string) (int, int, error) {
	u, g, hasGroup := strings.Cut(spec, ":")
	uid, err := lookupID(root, "etc/passwd", u)
	if err != nil {
		return 0, 0, fmt.Errorf("--chown=%s: user %s: %w", spec, u, err)
	}
	gid := uid
	if hasGroup {
		if gid, err = lookupID(root, "etc/group", g); err != nil {
			return 0, 0, fmt.Errorf("--chown=%s: group %s: %w", spec, g, err)
		}
	}
	return uid, gid, nil
}

func lookupID(root, file, name string) (int, error) {
	if n, err := strconv.Atoi(name); err == nil && n >= 0 {
		return n, nil
	}
	p, err := resolveIn(root, file, true)
	if err != nil {
		return 0, fmt.Errorf("no /%s in the image", file)
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) >= 3 && f[0] == name {
			return strconv.Atoi(f[2])
		}
	}
	return 0, fmt.Errorf("not found in /%s", file)
}

// sourceOf is an instruction as the Dockerfile spells it.
func sourceOf(c instructions.Command) string {
	if s, ok := c.(fmt.Stringer); ok {
		return s.String()
	}
	return strings.ToUpper(c.Name())
}

// workdir makes the working directory when it is missing, as Docker
// does: a layer with the missing directories, 0755 and owned by the
// stage's user (as BuildKit makes them). When it exists the step changes
// only the configuration.
func (sr *stageRun) workdir(ctx context.Context, createdBy string) (bool, error) {
	j := sr.j
	cfg := &sr.state.img.Config
	key := ""
	if !j.o.NoCache {
		key = cacheKey(sr.state.id, "WORKDIR", createdBy, cfg.User)
		if !sr.miss {
			if s, ok := j.cacheGet(ctx, key); ok {
				sr.state = s
				return true, nil
			}
		}
		sr.miss = true
	}
	a, err := j.prepare(ctx, sr.state.chainID)
	if err != nil {
		return false, err
	}
	var missing []string
	p := ""
	for _, c := range strings.Split(strings.TrimPrefix(cfg.WorkingDir, "/"), "/") {
		if c == "" {
			continue
		}
		p = path.Join(p, c)
		if len(missing) == 0 {
			if _, err := resolveIn(a.dir, p, true); err == nil {
				continue
			}
		}
		missing = append(missing, p)
	}
	if len(missing) == 0 {
		a.discard()
		now := time.Now().UTC()
		sr.state.img.Created = &now
		sr.state.img.History = append(sr.state.img.History, ocispec.History{Created: &now, CreatedBy: createdBy, Comment: historyComment, EmptyLayer: true})
		if key == "" {
			sr.state.id = ""
			return false, nil
		}
		return false, j.cachePut(ctx, key, &sr.state)
	}
	uid, gid := 0, 0
	if cfg.User != "" {
		if uid, gid, err = resolveUser(a.dir, cfg.User); err != nil {
			a.discard()
			return false, fmt.Errorf("WORKDIR %s: USER %s: %w", cfg.WorkingDir, cfg.User, err)
		}
	}
	pr, pw := io.Pipe()
	go func() {
		tw := tar.NewWriter(pw)
		var err error
		for _, d := range missing {
			if err = tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d + "/", Mode: 0o755, Uid: uid, Gid: gid, ModTime: time.Now()}); err != nil {
				break
			}
		}
		if cerr := tw.Close(); err == nil {
			err = cerr
		}
		pw.CloseWithError(err)
	}()
	_, err = archive.Apply(ctx, a.dir, pr, archive.Options{})
	pr.CloseWithError(io.ErrClosedPipe)
	if err != nil {
		a.discard()
		return false, fmt.Errorf("WORKDIR %s: %w", cfg.WorkingDir, err)
	}
	return false, sr.commitLayer(ctx, a, createdBy, key)
}

// resolveUser resolves USER's user[:group] against the root filesystem: a
// user without a group gets its primary group from /etc/passwd.
func resolveUser(root, spec string) (int, int, error) {
	u, g, hasGroup := strings.Cut(spec, ":")
	uid, err := lookupID(root, "etc/passwd", u)
	if err != nil {
		return 0, 0, err
	}
	gid := 0
	if hasGroup {
		gid, err = lookupID(root, "etc/group", g)
	} else {
		gid, err = primaryGroup(root, u)
	}
	return uid, gid, err
}

// primaryGroup is the GID /etc/passwd gives user (a name or a UID); 0 when
// a numeric user is not listed.
func primaryGroup(root, user string) (int, error) {
	p, err := resolveIn(root, "etc/passwd", true)
	if err != nil {
		if _, nerr := strconv.Atoi(user); nerr == nil {
			return 0, nil
		}
		return 0, fmt.Errorf("no /etc/passwd in the image")
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) >= 4 && (f[0] == user || f[2] == user) {
			return strconv.Atoi(f[3])
		}
	}
	if _, err := strconv.Atoi(user); err == nil {
		return 0, nil
	}
	return 0, fmt.Errorf("user %s not found in /etc/passwd", user)
}
