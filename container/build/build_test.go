package build

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBuildBasic(t *testing.T) {
	e := newEnv(t)
	dir := e.dir(map[string]string{"hello.txt": "hello from the context\n", "sub/a": "a\n", "sub/b/c": "c\n"})
	df := `FROM BUSYBOX
ENV GREETING=hi WHO=world
WORKDIR /app
COPY hello.txt .
COPY sub /app/sub/
RUN echo "$GREETING $WHO" > /app/greeting && mkdir -p /data
USER app
CMD ["sh", "-c", "cat /app/greeting /app/hello.txt /app/sub/b/c; id -u; pwd"]
`
	res := e.mustBuild(dir, df, Options{Tags: []string{"example.com/basic:1"}})
	if res.Steps != 8 {
		t.Errorf("steps %d, want 8", res.Steps)
	}
	out, code := e.run("example.com/basic:1")
	want := "hi world\nhello from the context\nc\n1000\n/app\n"
	if code != 0 || out != want {
		t.Errorf("run: code %d output %q, want %q", code, out, want)
	}
	if n := len(res.Image.RootFS.DiffIDs); n != 5 {
		t.Errorf("%d layers, want 5 (busybox, WORKDIR, two COPY, RUN)", n)
	}
	empty := 0
	for _, h := range res.Image.History {
		if h.EmptyLayer {
			empty++
		}
	}
	if empty != 3 {
		t.Errorf("history %+v: %d empty layers, want 3", res.Image.History, empty)
	}
	// Cached rebuild.
	res2, out2, err := e.build(dir, df, Options{Tags: []string{"example.com/basic:1"}})
	if err != nil {
		t.Fatal(err)
	}
	if res2.CachedSteps != res2.Steps {
		t.Errorf("rebuild: %d of %d steps cached\n%s", res2.CachedSteps, res2.Steps, out2)
	}
	if !strings.Contains(out2, "Using cache") {
		t.Errorf("rebuild output: %s", out2)
	}
	e.checkClean()
}

// config builds df and returns the image config.
func TestEntrypointCmdTable(t *testing.T) {
	e := newEnv(t)
	dir := e.dir(nil)
	// The Dockerfile reference's table of ENTRYPOINT and CMD.
	cases := []struct {
		name, df   string
		entrypoint []string
		cmd        []string
		out        string
	}{
		{"cmd exec", `CMD ["echo", "c"]`, nil, []string{"echo", "c"}, "c\n"},
		{"cmd shell", `CMD echo c $HOME`, nil, []string{"/bin/sh", "-c", "echo c $HOME"}, "c /root\n"},
		{"entrypoint exec, cmd exec", "ENTRYPOINT [\"echo\", \"e\"]\nCMD [\"c\"]", []string{"echo", "e"}, []string{"c"}, "e c\n"},
		{"entrypoint exec, cmd shell", "ENTRYPOINT [\"echo\", \"e\"]\nCMD c", []string{"echo", "e"}, []string{"/bin/sh", "-c", "c"}, "e /bin/sh -c c\n"},
		{"entrypoint shell, cmd exec", "ENTRYPOINT echo e\nCMD [\"c\"]", []string{"/bin/sh", "-c", "echo e"}, []string{"c"}, "e\n"},
		// ENTRYPOINT drops the base image's CMD (busybox's /bin/sh).
		{"entrypoint only", `ENTRYPOINT ["echo", "e"]`, []string{"echo", "e"}, nil, "e\n"},
		// ... but not a CMD of the same stage set before it.
		{"cmd then entrypoint", "CMD [\"c\"]\nENTRYPOINT [\"echo\"]", []string{"echo"}, []string{"c"}, "c\n"},
		{"shell", "SHELL [\"/bin/sh\", \"-ec\"]\nCMD echo s", nil, []string{"/bin/sh", "-ec", "echo s"}, "s\n"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tag := fmt.Sprintf("example.com/ep:%d", i)
			res := e.mustBuild(dir, "FROM BUSYBOX\n"+c.df+"\n", Options{Tags: []string{tag}})
			cfg := res.Image.Config
			if !slices.Equal(cfg.Entrypoint, c.entrypoint) || !slices.Equal(cfg.Cmd, c.cmd) {
				t.Errorf("entrypoint %q cmd %q, want %q %q", cfg.Entrypoint, cfg.Cmd, c.entrypoint, c.cmd)
			}
			if out, code := e.run(tag); out != c.out || code != 0 {
				t.Errorf("run: %q (%d), want %q", out, code, c.out)
			}
		})
	}
}

func TestArgAndEnv(t *testing.T) {
	e := newEnv(t)
	dir := e.dir(nil)
	df := `ARG BASE=BUSYBOX
ARG GLOBAL=g-default
FROM ${BASE}
RUN echo "before=[$LATE]" > /before
ARG LATE=late-default
ARG GLOBAL
ARG SHADOW=from-arg
ENV SHADOW=from-env E2=${LATE}-env
RUN echo "late=$LATE global=$GLOBAL shadow=$SHADOW e2=$E2" > /args
LABEL version=${LATE}
WORKDIR rel
WORKDIR sub
RUN pwd > /wd
CMD ["sh", "-c", "cat /before /args /wd; echo late-in-image=[$LATE]"]
`
	res, out, err := e.build(dir, df, Options{Tags: []string{"example.com/args:1"}, BuildArgs: map[string]string{"LATE": "from-cli", "UNUSED": "x"}})
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	got, _ := e.run("example.com/args:1")
	want := "before=[]\nlate=from-cli global=g-default shadow=from-env e2=from-cli-env\n/rel/sub\nlate-in-image=[]\n"
	if got != want {
		t.Errorf("run: %q, want %q", got, want)
	}
	if res.Image.Config.Labels["version"] != "from-cli" || res.Image.Config.WorkingDir != "/rel/sub" {
		t.Errorf("config %+v", res.Image.Config)
	}
	if !slices.ContainsFunc(res.Warnings, func(w string) bool { return strings.Contains(w, "UNUSED") }) {
		t.Errorf("no warning about the unused build arg: %q", res.Warnings)
	}
	for _, kv := range res.Image.Config.Env {
		if strings.HasPrefix(kv, "LATE=") {
			t.Errorf("ARG kept in the image's env: %q", res.Image.Config.Env)
		}
	}
}

func TestUserWorkdirChownChmod(t *testing.T) {
	e := newEnv(t)
	dir := e.dir(map[string]string{"f": "f\n", "d/x": "x\n", "run.sh": "echo script\n"})
	os.Chmod(filepath.Join(dir, "run.sh"), 0o755)
	df := `FROM BUSYBOX
COPY --chown=app:app f /o/byname
COPY --chown=1234 f /o/byid
COPY --chown=1000:10 --chmod=0700 d /o/d/
COPY --chmod=640 f /o/mode
COPY run.sh f /o/many/
USER app
RUN id -u > /tmp/uid && id -g >> /tmp/uid
USER 65534:65534
RUN id -u > /tmp/uid2
USER root
CMD ["sh", "-c", "stat -c '%n %u:%g %a' /o/byname /o/byid /o/d /o/d/x /o/mode /o/many/run.sh /o/many/f; cat /tmp/uid /tmp/uid2"]
`
	e.mustBuild(dir, df, Options{Tags: []string{"example.com/own:1"}})
	got, _ := e.run("example.com/own:1")
	want := `/o/byname 1000:1000 644
/o/byid 1234:1234 644
/o/d 1000:10 700
/o/d/x 1000:10 700
/o/mode 0:0 640
/o/many/run.sh 0:0 755
/o/many/f 0:0 644
1000
1000
65534
`
	if got != want {
		t.Errorf("run:\n%s\nwant:\n%s", got, want)
	}
	e.checkClean()
}

func TestDockerignore(t *testing.T) {
	e := newEnv(t)
	dir := e.dir(map[string]string{
		".dockerignore": "**/*.log\n!keep.log\nsecret\nbuild/\n",
		"a.log":         "x", "keep.log": "k", "deep/er/b.log": "x", "deep/er/c.txt": "c",
		"secret": "s", "build/out": "o", "src/main.go": "m",
		"Dockerfile": "ignored by its own file", "Dockerfile.dockerignore": "",
	})
	// The context's .dockerignore.
	e.mustBuild(dir, "FROM BUSYBOX\nCOPY . /ctx/\nCMD [\"find\", \"/ctx\", \"-type\", \"f\"]\n", Options{Tags: []string{"example.com/ign:1"}, Dockerfile: "other.Dockerfile"})
	got, _ := e.run("example.com/ign:1")
	files := strings.Fields(got)
	slices.Sort(files)
	want := []string{"/ctx/.dockerignore", "/ctx/Dockerfile", "/ctx/Dockerfile.dockerignore", "/ctx/deep/er/c.txt", "/ctx/keep.log", "/ctx/src/main.go"}
	if !slices.Equal(files, want) {
		t.Errorf("copied %q, want %q", files, want)
	}
	// An ignored file named as a source is not there.
	_, out, err := e.build(dir, "FROM BUSYBOX\nCOPY secret /s\n", Options{Dockerfile: "other.Dockerfile"})
	if !errors.Is(err, ErrSourceNotFound) {
		t.Errorf("COPY of an ignored file: %v\n%s", err, out)
	}
	// Dockerfile.dockerignore wins over .dockerignore: it excludes nothing.
	e.mustBuild(dir, "FROM BUSYBOX\nCOPY secret /s\n", Options{Dockerfile: "Dockerfile"})
	e.checkClean()
}

func TestMultiStage(t *testing.T) {
	e := newEnv(t)
	dir := e.dir(map[string]string{"src.txt": "source\n"})
	df := `FROM BUSYBOX AS base
RUN echo base > /base

FROM base AS one
RUN sleep 1; echo one > /one

FROM BUSYBOX AS two
COPY src.txt /
RUN sleep 1; echo two > /two

FROM BUSYBOX AS unused
RUN exit 1

FROM scratch AS final
COPY --from=one /one /base /
COPY --from=2 /two /src.txt /
COPY --from=BUSYBOX /bin/busybox /bin/busybox
CMD ["/bin/busybox", "cat", "/one", "/base", "/two", "/src.txt"]
`
	var mu sync.Mutex
	var events []Event
	res := e.mustBuild(dir, df, Options{Tags: []string{"example.com/multi:1"}, Progress: func(ev Event) {
		mu.Lock()
		events = append(events, Event{Kind: ev.Kind, Step: ev.Step, Stage: ev.Stage, Instruction: ev.Instruction})
		mu.Unlock()
	}})
	got, code := e.run("example.com/multi:1")
	if got != "one\nbase\ntwo\nsource\n" || code != 0 {
		t.Errorf("run: %q %d", got, code)
	}
	if len(res.Image.RootFS.DiffIDs) != 3 {
		t.Errorf("final image has %d layers, want 3", len(res.Image.RootFS.DiffIDs))
	}
	// The unused stage did not run; the two sleeping RUNs overlapped.
	started := map[string]int{}
	for i, ev := range events {
		if ev.Stage == "unused" {
			t.Errorf("unused stage built: %+v", ev)
		}
		if ev.Kind == StepStarted && strings.Contains(ev.Instruction, "sleep 1") {
			started[ev.Stage] = i
		}
	}
	for i, ev := range events {
		if ev.Kind == StepDone && strings.Contains(ev.Instruction, "sleep 1") {
			if len(started) != 2 || started["one"] > i || started["two"] > i {
				t.Errorf("stages one and two did not run in parallel: %+v", events)
			}
			break
		}
	}
	// --target builds a stage and what it needs only.
	res, out, err := e.build(dir, df, Options{Target: "one", Tags: []string{"example.com/multi:one"}})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, "src.txt") || res.Steps != 4 {
		t.Errorf("target one: %d steps\n%s", res.Steps, out)
	}
	e.checkClean()
}

func TestOnbuildHealthcheckAndConfig(t *testing.T) {
	e := newEnv(t)
	dir := e.dir(map[string]string{"f": "f\n"})
	parent := `FROM BUSYBOX
ONBUILD COPY f /from-trigger
ONBUILD RUN echo triggered > /triggered
HEALTHCHECK --interval=5s --timeout=2s --retries=4 CMD wget -q -O- http://localhost/ || exit 1
ARG DNS=53
EXPOSE 80 ${DNS}/udp 8000-8001
VOLUME /data
VOLUME ["/logs"]
STOPSIGNAL SIGINT
LABEL a=b "c d"=e
MAINTAINER someone
RUN test ! -e /triggered
`
	res := e.mustBuild(dir, parent, Options{Tags: []string{"example.com/parent:1"}})
	cfg := res.Image.Config
	if len(cfg.OnBuild) != 2 || cfg.OnBuild[0] != "COPY f /from-trigger" {
		t.Errorf("OnBuild %q", cfg.OnBuild)
	}
	hc := cfg.Healthcheck
	if hc == nil || hc.Interval != 5*time.Second || hc.Timeout != 2*time.Second || hc.Retries != 4 || !slices.Equal(hc.Test, []string{"CMD-SHELL", "wget -q -O- http://localhost/ || exit 1"}) {
		t.Errorf("Healthcheck %+v", hc)
	}
	ports := slices.Sorted(maps.Keys(cfg.ExposedPorts))
	if !slices.Equal(ports, []string{"53/udp", "80/tcp", "8000/tcp", "8001/tcp"}) {
		t.Errorf("ports %q", ports)
	}
	if _, ok := cfg.Volumes["/logs"]; !ok || len(cfg.Volumes) != 2 || cfg.StopSignal != "SIGINT" || cfg.Labels["c d"] != "e" || res.Image.Author != "someone" {
		t.Errorf("config %+v", cfg)
	}
	// The stored config is Docker's: read it back raw.
	raw := rawConfig(t, e, "example.com/parent:1")
	for _, k := range []string{`"Healthcheck":{"Test":["CMD-SHELL"`, `"OnBuild":["COPY f /from-trigger"`, `"empty_layer":true`, `"StopSignal":"SIGINT"`} {
		if !strings.Contains(raw, k) {
			t.Errorf("config lacks %s: %s", k, raw)
		}
	}

	child := e.mustBuild(dir, "FROM example.com/parent:1\nRUN cat /triggered /from-trigger > /both\nCMD [\"cat\", \"/both\"]\n", Options{Tags: []string{"example.com/child:1"}})
	if got, _ := e.run("example.com/child:1"); got != "triggered\nf\n" {
		t.Errorf("child: %q", got)
	}
	if len(child.Image.Config.OnBuild) != 0 || child.Image.Config.Healthcheck == nil {
		t.Errorf("child config %+v", child.Image.Config)
	}
	// FROM a stage runs the stage's triggers too.
	stages := e.mustBuild(dir, "FROM BUSYBOX AS base\nONBUILD RUN echo from-stage > /t\nFROM base\nCMD [\"cat\", \"/t\"]\n", Options{Tags: []string{"example.com/child:2"}})
	if got, _ := e.run("example.com/child:2"); got != "from-stage\n" || len(stages.Image.Config.OnBuild) != 0 {
		t.Errorf("child of a stage: %q, OnBuild %q", got, stages.Image.Config.OnBuild)
	}
	e.checkClean()
}

func rawConfig(t *testing.T, e *env, name string) string {
	t.Helper()
	desc, err := e.store.Content.Resolve(e.ctx, name)
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := e.store.Content.Manifest(e.ctx, desc, nil)
	if err != nil {
		t.Fatal(err)
	}
	r, err := e.store.Content.Open(e.ctx, m.Config.Digest)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	b, _ := io.ReadAll(r)
	return string(b)
}

func TestHeredocAndAdd(t *testing.T) {
	e := newEnv(t)
	var tb bytes.Buffer
	zw := gzip.NewWriter(&tb)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "pkg/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "pkg/file", Typeflag: tar.TypeReg, Mode: 0o600, Size: 3, Uid: 7, Gid: 8})
	tw.Write([]byte("abc"))
	tw.Close()
	zw.Close()
	dir := e.dir(map[string]string{"a.tar.gz": tb.String(), "plain": "plain\n"})
	df := `FROM BUSYBOX
RUN <<EOF
echo one > /h1
echo two >> /h1
EOF
COPY <<EOT /h2
inline file
EOT
RUN <<-EOS
	echo tabbed > /h3
	EOS
RUN cat <<EOF >> /h3
from the shell
EOF
ADD a.tar.gz /x/
ADD plain /y/
CMD ["sh", "-c", "cat /h1 /h2 /x/pkg/file; echo; stat -c '%u:%g %a' /x/pkg/file; cat /y/plain /h3"]
`
	e.mustBuild(dir, df, Options{Tags: []string{"example.com/here:1"}})
	got, _ := e.run("example.com/here:1")
	if want := "one\ntwo\ninline file\nabc\n7:8 600\nplain\ntabbed\nfrom the shell\n"; got != want {
		t.Errorf("run %q, want %q", got, want)
	}
	_, _, err := e.build(dir, "FROM BUSYBOX\nADD http://127.0.0.1:1/x /x\n", Options{})
	if !errors.Is(err, ErrUnsupported) {
		t.Errorf("ADD of a URL: %v", err)
	}
	e.checkClean()
}

func TestTarContext(t *testing.T) {
	e := newEnv(t)
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	for name, c := range map[string]string{"Dockerfile": "FROM " + busyboxName + "\nCOPY msg /\nCMD [\"cat\", \"/msg\"]\n", "msg": "from a tar\n"} {
		tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(c))})
		tw.Write([]byte(c))
	}
	tw.Close()
	if _, err := e.b.Build(e.ctx, Options{Context: &tb, Tags: []string{"example.com/tar:1"}}); err != nil {
		t.Fatal(err)
	}
	if got, _ := e.run("example.com/tar:1"); got != "from a tar\n" {
		t.Errorf("run %q", got)
	}
	e.checkClean()
}

// WORKDIR makes a missing directory, owned by the stage's user, even when
// nothing uses it (the Dockerfile reference's rule); an existing one is
// left as it is and only configures.
func TestWorkdirCreates(t *testing.T) {
	e := newEnv(t)
	dir := e.dir(nil)
	df := `FROM BUSYBOX
WORKDIR /made/by
WORKDIR workdir
USER app
WORKDIR /home/app/sub
WORKDIR /tmp
CMD ["stat", "-c", "%n %u:%g %a", "/made", "/made/by/workdir", "/home/app", "/home/app/sub"]
`
	res := e.mustBuild(dir, df, Options{Tags: []string{"example.com/wd:1"}})
	got, _ := e.run("example.com/wd:1")
	want := "/made 0:0 755\n/made/by/workdir 0:0 755\n/home/app 1000:1000 755\n/home/app/sub 1000:1000 755\n"
	if got != want {
		t.Errorf("run:\n%s\nwant:\n%s", got, want)
	}
	// Three layers made, the last WORKDIR only configures.
	if n := len(res.Image.RootFS.DiffIDs); n != 4 {
		t.Errorf("%d layers, want 4", n)
	}
	if h := res.Image.History[len(res.Image.History)-2]; h.CreatedBy != "WORKDIR /tmp" || !h.EmptyLayer {
		t.Errorf("history %+v", h)
	}
	e.checkClean()
}
