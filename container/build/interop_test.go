package build

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
)

// peer runs a container tool (buildah, podman) on storage of its own
// under dir, removed with everything in it when the test ends.
type peer struct {
	t       *testing.T
	tool    string
	dir     string
	runroot string
}

func newPeer(t *testing.T, tool string) *peer {
	t.Helper()
	if _, err := exec.LookPath(tool); err != nil {
		t.Skipf("needs %s (apt-get install %s)", tool, tool)
	}
	// Lowercase: buildah and podman name an image pulled from a layout
	// after its path.
	dir, err := os.MkdirTemp(scratch, "peer-")
	if err != nil {
		t.Fatal(err)
	}
	// podman wants a short run root.
	run, err := os.MkdirTemp("/var/tmp", "bp-")
	if err != nil {
		t.Fatal(err)
	}
	p := &peer{t: t, tool: tool, dir: strings.ToLower(dir), runroot: run}
	if p.dir != dir {
		t.Skipf("temporary directory %s is not lowercase", dir)
	}
	t.Cleanup(func() {
		p.cmd("rm", "--all").Run()
		p.cmd("rmi", "--all", "--force").Run()
		exec.Command("umount", "-R", filepath.Join(dir, "root")).Run()
		exec.Command("umount", "-R", run).Run()
		os.RemoveAll(dir)
		os.RemoveAll(run)
	})
	return p
}

func (p *peer) cmd(args ...string) *exec.Cmd {
	base := []string{"--root", filepath.Join(p.dir, "root"), "--runroot", p.runroot, "--storage-driver", "overlay"}
	if p.tool == "podman" {
		base = append(base, "--cgroup-manager=cgroupfs", "--runtime", "runc")
	}
	return exec.Command(p.tool, append(base, args...)...)
}

func (p *peer) run(args ...string) string {
	p.t.Helper()
	out, err := p.cmd(args...).CombinedOutput()
	if err != nil {
		p.t.Fatalf("%s %s: %v\n%s", p.tool, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// export writes the berth images names to an OCI layout in a lowercase
// directory and returns it.
func (e *env) export(names ...string) string {
	e.t.Helper()
	dir, err := os.MkdirTemp(scratch, "layout-")
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(func() { os.RemoveAll(dir) })
	os.Remove(dir)
	if err := e.store.Content.ExportLayout(e.ctx, dir, names...); err != nil {
		e.t.Fatal(err)
	}
	return dir
}

// An image berth built runs under podman, and skopeo reads its config.
func TestInteropPodmanSkopeo(t *testing.T) {
	e := newEnv(t)
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Skip("needs skopeo")
	}
	pm := newPeer(t, "podman")
	dir := e.dir(map[string]string{"msg": "from berth\n"})
	df := `FROM BUSYBOX
COPY msg /msg
RUN echo built >> /msg
HEALTHCHECK --interval=3s CMD true
ENV MODE=interop
CMD ["sh", "-c", "cat /msg; echo $MODE"]
`
	e.mustBuild(dir, df, Options{Tags: []string{"example.com/interop:1"}})
	layout := e.export("example.com/interop:1")
	ref := "oci:" + layout + ":example.com/interop:1"
	out, err := exec.Command("skopeo", "inspect", "--raw", "--config", ref).CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo inspect: %v\n%s", err, out)
	}
	var cfg struct {
		Config struct {
			Cmd         []string
			Env         []string
			Healthcheck *struct{ Test []string }
		} `json:"config"`
		History []struct {
			EmptyLayer bool `json:"empty_layer"`
		} `json:"history"`
	}
	if err := json.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("config from skopeo: %v\n%s", err, out)
	}
	if !slices.Contains(cfg.Config.Env, "MODE=interop") || cfg.Config.Healthcheck == nil || cfg.Config.Healthcheck.Test[0] != "CMD-SHELL" || len(cfg.Config.Cmd) != 3 {
		t.Errorf("config as skopeo reads it: %s", out)
	}
	id := strings.TrimSpace(pm.run("pull", "-q", ref))
	got := pm.run("run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", id)
	if got != "from berth\nbuilt\ninterop\n" {
		t.Errorf("podman run: %q", got)
	}
}

var emptySum = hex.EncodeToString(sha256.New().Sum(nil))

// fileInfo is what the comparison looks at for each path.
type fileInfo struct {
	Mode     fs.FileMode
	UID, GID uint32
	Link     string
	Sum      string
}

// snapshotTree describes every path of the tree root.
func snapshotTree(t *testing.T, root string) map[string]fileInfo {
	t.Helper()
	m := map[string]fileInfo{}
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		st := fi.Sys().(*syscall.Stat_t)
		rel, _ := filepath.Rel(root, p)
		info := fileInfo{Mode: fi.Mode(), UID: st.Uid, GID: st.Gid}
		switch {
		case fi.Mode()&fs.ModeSymlink != 0:
			info.Link, _ = os.Readlink(p)
		case fi.Mode().IsRegular():
			f, err := os.Open(p)
			if err != nil {
				return err
			}
			h := sha256.New()
			io.Copy(h, f)
			f.Close()
			info.Sum = hex.EncodeToString(h.Sum(nil))
		}
		m[rel] = info
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// For a set of Dockerfiles, berth and buildah make images with the same
// files, modes, owners and config.
func TestInteropBuildahSameResult(t *testing.T) {
	e := newEnv(t)
	bh := newPeer(t, "buildah")
	dir := e.dir(map[string]string{"f": "file\n", "d/x": "x\n", "d/sub/y": "y\n", "script.sh": "echo hi\n", ".dockerignore": "*.log\n", "skip.log": "no\n"})
	os.Chmod(filepath.Join(dir, "script.sh"), 0o755)
	os.Symlink("f", filepath.Join(dir, "d/link"))
	layout := e.export(busyboxName)
	id := strings.TrimSpace(bh.run("pull", "-q", "oci:"+layout+":"+busyboxName))
	bh.run("tag", id, busyboxName) // named as berth names it

	dockerfiles := map[string]string{
		"copy and run": `FROM BUSYBOX
ENV APP=/app PATH=/bin:/usr/local/bin
WORKDIR $APP
COPY f script.sh ./
COPY d /app/d/
COPY --chown=app:app f /home/app/owned
COPY --chmod=600 f /secret
RUN mkdir -p /data/x && echo $APP > /data/x/app && chmod 750 /data && rm /bin/vi
USER app
EXPOSE 8080 53/udp
VOLUME /data
LABEL org.example.name=demo
STOPSIGNAL SIGQUIT
ENTRYPOINT ["/app/script.sh"]
CMD ["--flag"]
`,
		"multi-stage": `FROM BUSYBOX AS one
RUN echo one > /one && mkdir /out && cp /one /out/
FROM BUSYBOX
COPY --from=one /out /copied/
COPY . /ctx/
HEALTHCHECK --interval=7s --retries=2 CMD cat /copied/one
SHELL ["/bin/sh", "-ec"]
RUN test "$-" != "${-#*e}" && echo errexit > /shell
CMD ["sh", "-c", "cat /shell"]
`,
	}
	names := slices.Sorted(func(yield func(string) bool) {
		for k := range dockerfiles {
			if !yield(k) {
				return
			}
		}
	})
	for i, name := range names {
		t.Run(name, func(t *testing.T) {
			df := strings.ReplaceAll(dockerfiles[name], "BUSYBOX", busyboxName)
			os.WriteFile(filepath.Join(dir, "Dockerfile"), []byte(df), 0o644)
			tag := fmt.Sprintf("example.com/same:%d", i)
			res, err := e.b.Build(e.ctx, Options{ContextDir: dir, Tags: []string{tag}})
			if err != nil {
				t.Fatal(err)
			}
			bh.run("bud", "--layers", "--isolation", "chroot", "--ulimit", "nofile=1024:1024", "--format", "docker", "-q", "-t", tag, dir)

			// Files.
			mine, release, err := e.b.viewOf(e.ctx, res)
			if err != nil {
				t.Fatal(err)
			}
			defer release()
			ctr := strings.TrimSpace(bh.run("from", "-q", tag))
			theirs := strings.TrimSpace(bh.run("mount", ctr))
			defer bh.run("rm", ctr)
			a, b := snapshotTree(t, mine), snapshotTree(t, theirs)
			var diffs []string
			for _, p := range slices.Sorted(mapKeys(a, b)) {
				x, okx := a[p]
				y, oky := b[p]
				if p == "." {
					continue // the mount point's own mode
				}
				if !okx && y.Sum == emptySum && (p == "etc/hosts" || p == "etc/hostname" || p == "etc/resolv.conf") {
					continue // buildah leaves the empty targets of its RUN bind mounts
				}
				if x.Mode.IsDir() && y.Mode.IsDir() {
					x.Sum, y.Sum = "", ""
				}
				if x != y || okx != oky {
					diffs = append(diffs, fmt.Sprintf("%s: berth %+v (%v), buildah %+v (%v)", p, x, okx, y, oky))
				}
			}
			if len(diffs) > 0 {
				t.Errorf("trees differ:\n%s", strings.Join(diffs, "\n"))
			}

			// Config.
			var insp struct {
				Docker struct {
					Config struct {
						User, WorkingDir, StopSignal string
						Env, Entrypoint, Cmd, Shell  []string
						ExposedPorts, Volumes        map[string]struct{}
						Labels                       map[string]string
						Healthcheck                  *struct {
							Test     []string
							Interval int64
							Retries  int
						}
					} `json:"config"`
				} `json:"Docker"`
			}
			if err := json.Unmarshal([]byte(bh.run("inspect", "--type", "image", tag)), &insp); err != nil {
				t.Fatal(err)
			}
			var mineCfg = insp.Docker.Config
			c := res.Image.Config
			mineCfg.User, mineCfg.WorkingDir, mineCfg.StopSignal = c.User, c.WorkingDir, c.StopSignal
			mineCfg.Env, mineCfg.Entrypoint, mineCfg.Cmd, mineCfg.Shell = c.Env, c.Entrypoint, c.Cmd, c.Shell
			mineCfg.ExposedPorts, mineCfg.Volumes, mineCfg.Labels = c.ExposedPorts, c.Volumes, c.Labels
			mineCfg.Healthcheck = nil
			if h := c.Healthcheck; h != nil {
				mineCfg.Healthcheck = &struct {
					Test     []string
					Interval int64
					Retries  int
				}{h.Test, int64(h.Interval), h.Retries}
			}
			// buildah adds its own labels (io.buildah.version).
			for k, v := range insp.Docker.Config.Labels {
				if strings.HasPrefix(k, "io.buildah.") {
					if mineCfg.Labels == nil {
						mineCfg.Labels = map[string]string{}
					}
					mineCfg.Labels[k] = v
				}
			}
			// Empty and absent are the same; buildah reorders Env
			// where Docker (and berth) replace a variable in place.
			for _, cf := range []*struct {
				User, WorkingDir, StopSignal string
				Env, Entrypoint, Cmd, Shell  []string
				ExposedPorts, Volumes        map[string]struct{}
				Labels                       map[string]string
				Healthcheck                  *struct {
					Test     []string
					Interval int64
					Retries  int
				}
			}{&mineCfg, &insp.Docker.Config} {
				slices.Sort(cf.Env)
				if len(cf.Entrypoint) == 0 {
					cf.Entrypoint = nil
				}
				if len(cf.Volumes) == 0 {
					cf.Volumes = nil
				}
			}
			theirCfg, _ := json.Marshal(insp.Docker.Config)
			myCfg, _ := json.Marshal(mineCfg)
			if string(myCfg) != string(theirCfg) {
				t.Errorf("config differs:\nberth   %s\nbuildah %s", myCfg, theirCfg)
			}
		})
	}
	e.checkClean()
}

func mapKeys(ms ...map[string]fileInfo) func(func(string) bool) {
	return func(yield func(string) bool) {
		seen := map[string]bool{}
		for _, m := range ms {
			keys := make([]string, 0, len(m))
			for k := range m {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				if !seen[k] {
					seen[k] = true
					if !yield(k) {
						return
					}
				}
			}
		}
	}
}
