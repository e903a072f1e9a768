package build

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestBadInput(t *testing.T) {
	e := newEnv(t)
	dir := e.dir(map[string]string{"ok": "ok\n", "sub/f": "f\n"})
	outside := filepath.Join(e.root, "outside-secret")
	os.WriteFile(outside, []byte("secret\n"), 0o644)
	os.Symlink(outside, filepath.Join(dir, "link-out"))
	os.Symlink("../../outside-secret", filepath.Join(dir, "sub/rel-out"))
	os.Symlink("sub", filepath.Join(dir, "link-in"))
	cases := []struct {
		name, df string
		is       error
		line     int
		contains string
	}{
		{"syntax error", "FROM BUSYBOX\nRUN echo ok\nCOPY --chown\n", ErrDockerfile, 3, ""},
		{"unknown instruction", "FROM BUSYBOX\nRUN true\nFROBNICATE x\n", ErrDockerfile, 3, "frobnicate"},
		{"no FROM", "RUN true\n", ErrDockerfile, 1, ""},
		{"missing base image", "FROM BUSYBOX\nRUN true\nFROM example.com/nope:1\n", ErrImageNotFound, 3, "example.com/nope:1"},
		{"copy ../", "FROM BUSYBOX\nCOPY ../outside-secret /x\n", ErrOutsideContext, 2, ""},
		{"copy absolute", "FROM BUSYBOX\nCOPY /etc/passwd /x\n", ErrOutsideContext, 2, ""},
		{"copy symlink out", "FROM BUSYBOX\nCOPY link-out /x\n", ErrOutsideContext, 2, ""},
		{"copy through a relative symlink out", "FROM BUSYBOX\nCOPY sub/rel-out /x\n", ErrOutsideContext, 2, ""},
		{"missing source", "FROM BUSYBOX\nCOPY ok /ok\nCOPY missing /x\n", ErrSourceNotFound, 3, "missing"},
		{"glob matching nothing", "FROM BUSYBOX\nCOPY *.nope /x/\n", ErrSourceNotFound, 2, ""},
		{"failing RUN", "FROM BUSYBOX\nRUN echo first line; echo last words >&2; exit 3\n", ErrRunFailed, 2, "last words"},
		{"unknown --from stage", "FROM BUSYBOX AS a\nFROM BUSYBOX\nCOPY --from=nosuchstage /x /x\n", ErrImageNotFound, 3, "nosuchstage"},
		{"--from a later stage", "FROM BUSYBOX\nCOPY --from=later /x /x\nFROM BUSYBOX AS later\n", ErrDockerfile, 2, "later"},
		{"foreign platform", "FROM --platform=linux/s390x BUSYBOX\n", ErrUnsupported, 1, "s390x"},
		{"RUN --mount", "FROM BUSYBOX\nRUN --mount=type=cache,target=/c true\n", ErrUnsupported, 2, "mount"},
		{"many sources, file destination", "FROM BUSYBOX\nCOPY ok sub /dest\n", ErrDockerfile, 2, "end with a /"},
		{"bad chown", "FROM BUSYBOX\nCOPY --chown=nosuchuser ok /ok\n", nil, 2, "nosuchuser"},
		{"unknown target", "FROM BUSYBOX\n", ErrDockerfile, 0, "target"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tag := "example.com/bad:" + strings.ReplaceAll(c.name, " ", "-")
			opts := Options{Tags: []string{tag}}
			if c.name == "unknown target" {
				opts.Target = "nope"
			}
			if i%2 == 1 {
				opts.NoCache = true
			}
			_, out, err := e.build(dir, c.df, opts)
			if err == nil {
				t.Fatalf("no error\n%s", out)
			}
			t.Logf("%v", err)
			if c.is != nil && !errors.Is(err, c.is) {
				t.Errorf("error does not match %v", c.is)
			}
			if c.contains != "" && !strings.Contains(strings.ToLower(err.Error()), strings.ToLower(c.contains)) {
				t.Errorf("error does not mention %q", c.contains)
			}
			line := 0
			var se *StepError
			var le *LineError
			switch {
			case errors.As(err, &se):
				line = se.Line
			case errors.As(err, &le):
				line = le.Line
			}
			if line != c.line {
				t.Errorf("line %d, want %d", line, c.line)
			}
			if c.name == "failing RUN" {
				if se == nil || se.ExitCode != 3 || se.Step != 2 || len(se.Output) != 2 || se.Output[1] != "last words" || !strings.HasPrefix(se.Instruction, "RUN echo first") {
					t.Errorf("step error %+v", se)
				}
			}
			if _, err := e.store.Content.Resolve(e.ctx, tag); err == nil {
				t.Errorf("%s tagged", tag)
			}
			e.checkClean()
		})
	}
	if strings.Contains(rawOrEmpty(t, e), "secret") {
		t.Error("a file from outside the context got into an image")
	}
}

// rawOrEmpty lists every image of the store, to check nothing outside
// the context got in: it reads no layer content, only names.
func rawOrEmpty(t *testing.T, e *env) string {
	imgs, err := e.store.Content.Images(e.ctx)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, i := range imgs {
		b.WriteString(i.Name + "\n")
	}
	return b.String()
}

// A symlink inside a copied directory is copied as a symlink, never
// followed, and COPY of a symlink inside the context follows it there.
func TestCopySymlinks(t *testing.T) {
	e := newEnv(t)
	dir := e.dir(map[string]string{"sub/f": "f\n"})
	os.Symlink("/etc/shadow", filepath.Join(dir, "sub/abs"))
	os.Symlink("sub", filepath.Join(dir, "link-in"))
	e.mustBuild(dir, "FROM BUSYBOX\nCOPY sub /s/\nCOPY link-in /l/\nCMD [\"sh\", \"-c\", \"readlink /s/abs; cat /l/f\"]\n", Options{Tags: []string{"example.com/links:1"}})
	if got, _ := e.run("example.com/links:1"); got != "/etc/shadow\nf\n" {
		t.Errorf("run %q", got)
	}
	e.checkClean()
}
