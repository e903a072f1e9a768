package build

import (
	"strings"
	"testing"
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
	if n := len(res.Image.RootFS.DiffIDs); n != 4 {
		t.Errorf("%d layers, want 4 (busybox and three steps)", n)
	}
	empty := 0
	for _, h := range res.Image.History {
		if h.EmptyLayer {
			empty++
		}
	}
	if empty != 4 {
		t.Errorf("history %+v: %d empty layers, want 4", res.Image.History, empty)
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
