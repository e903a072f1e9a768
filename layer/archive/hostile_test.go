package archive

import (
	"archive/tar"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// errAny stands for "some error" in the hostile table.
var errAny = errors.New("any error")

type hostileCase struct {
	name string
	// ents builds the layer; out is the absolute path of the sentinel
	// directory beside the root.
	ents    func(out string) []ent
	opts    Options
	wantErr error  // nil: the layer applies, confined
	wantMsg string // if set, the exact error message
	// inRoot, if set, checks where the confined entries landed.
	inRoot func(t *testing.T, root, out string)
}

func exists(t *testing.T, p string) {
	t.Helper()
	if _, err := os.Lstat(p); err != nil {
		t.Errorf("want %s: %v", p, err)
	}
}

func hostileCases() []hostileCase {
	return []hostileCase{
		{name: "dotdot", ents: func(string) []ent { return []ent{file("../escaped", "x", 0o644)} },
			wantErr: ErrUnsafe, wantMsg: `archive: entry "../escaped": path escapes the layer root`},
		{name: "dotdot-etc-passwd", ents: func(string) []ent { return []ent{file("../etc/passwd", "x", 0o644)} },
			wantErr: ErrUnsafe, wantMsg: `archive: entry "../etc/passwd": path escapes the layer root`},
		{name: "dotdot-deep", ents: func(string) []ent { return []ent{file("a/b/../../../outside/secret", "x", 0o644)} },
			wantErr: ErrUnsafe},
		{name: "dotdot-inner", ents: func(string) []ent { return []ent{dirEnt("a/", 0o755), file("a/../b", "x", 0o644)} },
			wantErr: ErrUnsafe, wantMsg: `archive: entry "a/../b": path has a ".." component`},
		{name: "dotdot-absolute", ents: func(string) []ent { return []ent{file("/../outside/secret", "x", 0o644)} },
			wantErr: ErrUnsafe},
		{name: "absolute-confined", ents: func(string) []ent { return []ent{file("/berth-archive-pwned", "x", 0o644)} },
			inRoot: func(t *testing.T, root, _ string) { exists(t, filepath.Join(root, "berth-archive-pwned")) }},
		{name: "absolute-outside-path-confined", ents: func(out string) []ent { return []ent{file(out+"/secret", "pwned", 0o644)} },
			inRoot: func(t *testing.T, root, out string) { exists(t, filepath.Join(root, out, "secret")) }},
		{name: "symlink-abs-out-write-through", ents: func(out string) []ent {
			return []ent{symlink("evil", out), file("evil/secret", "pwned", 0o644)}
		}, wantErr: errAny},
		{name: "symlink-rel-out-write-through", ents: func(string) []ent {
			return []ent{symlink("evil", "../outside"), file("evil/secret", "pwned", 0o644)}
		}, wantErr: errAny},
		{name: "symlink-etc-write-through", ents: func(string) []ent {
			return []ent{symlink("etc", "/etc"), file("etc/berth-archive-pwned", "pwned", 0o644)}
		}, wantErr: errAny},
		{name: "symlink-dotdot-chain", ents: func(string) []ent {
			return []ent{symlink("up", "../../../../.."), file("up/tmp/berth-archive-pwned", "pwned", 0o644)}
		}, inRoot: func(t *testing.T, root, _ string) { exists(t, filepath.Join(root, "tmp/berth-archive-pwned")) }},
		{name: "symlink-chain-out", ents: func(out string) []ent {
			return []ent{symlink("a", "b"), symlink("b", "c"), symlink("c", out), file("a/secret", "pwned", 0o644)}
		}, wantErr: errAny},
		{name: "symlink-chain-into-dir", ents: func(string) []ent {
			return []ent{dirEnt("real/", 0o755), symlink("a", "b"), symlink("b", "/real"), file("a/f", "ok", 0o644)}
		}, inRoot: func(t *testing.T, root, _ string) { exists(t, filepath.Join(root, "real/f")) }},
		{name: "symlink-loop", ents: func(string) []ent {
			return []ent{symlink("l1", "l2"), symlink("l2", "l1"), file("l1/x", "x", 0o644)}
		}, wantErr: errAny},
		{name: "symlink-self-loop", ents: func(string) []ent { return []ent{symlink("l", "l"), file("l/x", "x", 0o644)} },
			wantErr: errAny},
		{name: "symlink-proc-magic", ents: func(string) []ent {
			return []ent{symlink("p", "/proc/self/root/tmp"), file("p/berth-archive-pwned", "x", 0o644)}
		}, wantErr: errAny},
		{name: "symlink-proc-cwd", ents: func(string) []ent {
			return []ent{symlink("p", "/proc/self/cwd"), file("p/berth-archive-pwned", "x", 0o644)}
		}, wantErr: errAny},
		{name: "symlink-tmp-then-dir-entry", ents: func(string) []ent {
			return []ent{symlink("dir", "/tmp"), file("dir/berth-archive-pwned", "pwned", 0o644)}
		}, wantErr: errAny},
		{name: "symlink-then-dir-replaces-it", ents: func(out string) []ent {
			return []ent{symlink("dir", out), dirEnt("dir/", 0o755), file("dir/secret", "mine", 0o644)}
		}, inRoot: func(t *testing.T, root, _ string) {
			if b, _ := os.ReadFile(filepath.Join(root, "dir/secret")); string(b) != "mine" {
				t.Errorf("dir/secret = %q", b)
			}
		}},
		{name: "symlink-then-file-replaces-it", ents: func(out string) []ent {
			return []ent{symlink("x", out+"/secret"), file("x", "mine", 0o644)}
		}, inRoot: func(t *testing.T, root, _ string) {
			if fi, err := os.Lstat(filepath.Join(root, "x")); err != nil || !fi.Mode().IsRegular() {
				t.Errorf("x: %v %v", fi, err)
			}
		}},
		{name: "symlink-dangling-parent-dir-entry", ents: func(out string) []ent {
			return []ent{symlink("d", out+"/sub"), dirEnt("d/new/", 0o755)}
		}, wantErr: errAny},
		{name: "hardlink-etc-passwd", ents: func(string) []ent { return []ent{hardlink("pw", "/etc/passwd")} },
			wantErr: ErrUnsafe},
		{name: "hardlink-dotdot", ents: func(string) []ent { return []ent{hardlink("pw", "../outside/secret")} },
			wantErr: ErrUnsafe, wantMsg: `archive: entry "pw": hardlink target "../outside/secret": path escapes the layer root`},
		{name: "hardlink-abs-out", ents: func(out string) []ent { return []ent{hardlink("pw", out+"/secret")} },
			wantErr: ErrUnsafe},
		{name: "hardlink-through-symlink-abs", ents: func(out string) []ent {
			return []ent{symlink("s", out), hardlink("pw", "s/secret")}
		}, wantErr: ErrUnsafe},
		{name: "hardlink-through-symlink-rel", ents: func(string) []ent {
			return []ent{symlink("s", "../outside"), hardlink("pw", "s/secret")}
		}, wantErr: ErrUnsafe},
		{name: "hardlink-through-symlink-etc", ents: func(string) []ent {
			return []ent{symlink("s", "/etc"), hardlink("pw", "s/passwd")}
		}, wantErr: ErrUnsafe},
		{name: "hardlink-to-dir", ents: func(string) []ent { return []ent{dirEnt("d/", 0o755), hardlink("h", "d")} },
			wantErr: ErrUnsafe},
		{name: "hardlink-to-root", ents: func(string) []ent { return []ent{hardlink("h", "./")} },
			wantErr: ErrUnsafe},
		{name: "hardlink-to-itself", ents: func(string) []ent { return []ent{file("h", "x", 0o644), hardlink("h", "h")} },
			wantErr: ErrUnsafe},
		{name: "hardlink-later-entry", ents: func(string) []ent { return []ent{hardlink("h", "f"), file("f", "x", 0o644)} },
			wantErr: ErrUnsafe},
		{name: "hardlink-to-symlink-then-write-through", ents: func(out string) []ent {
			return []ent{symlink("s", out), hardlink("h", "s"), file("h/secret", "pwned", 0o644)}
		}, wantErr: errAny},
		{name: "whiteout-dotdot", ents: func(string) []ent { return []ent{whiteout("../.wh.outside")} },
			wantErr: ErrUnsafe},
		{name: "whiteout-of-dotdot", ents: func(string) []ent { return []ent{whiteout(".wh...")} },
			wantErr: ErrUnsafe},
		{name: "whiteout-of-dot", ents: func(string) []ent { return []ent{whiteout(".wh..")} },
			wantErr: ErrUnsafe},
		{name: "whiteout-through-symlink-abs", ents: func(out string) []ent {
			return []ent{symlink("s", out), whiteout("s/.wh.secret")}
		}},
		{name: "whiteout-through-symlink-rel", ents: func(string) []ent {
			return []ent{symlink("s", "../outside"), whiteout("s/.wh.secret"), symlink("u", ".."), whiteout("u/.wh.outside")}
		}},
		{name: "opaque-through-symlink-up", ents: func(string) []ent {
			return []ent{symlink("s", "../.."), whiteout("s/.wh..wh..opq")}
		}},
		{name: "opaque-through-symlink-abs", ents: func(out string) []ent {
			return []ent{symlink("s", out), whiteout("s/.wh..wh..opq")}
		}},
		{name: "overlay-whiteout-through-symlink", ents: func(out string) []ent {
			return []ent{symlink("s", out), whiteout("s/.wh.secret")}
		}, opts: Options{OverlayWhiteouts: true}, wantErr: errAny},
		{name: "overlay-opaque-through-symlink", ents: func(out string) []ent {
			return []ent{symlink("s", out), whiteout("s/.wh..wh..opq")}
		}, opts: Options{OverlayWhiteouts: true}, wantErr: errAny},
		{name: "overlay-opaque-through-symlink-up", ents: func(string) []ent {
			return []ent{symlink("s", ".."), whiteout("s/.wh..wh..opq"), whiteout("s/.wh.outside")}
		}, opts: Options{OverlayWhiteouts: true}},
		{name: "char-device-refused", ents: func(string) []ent { return []ent{device("dev/mem", tar.TypeChar, 1, 1)} },
			wantErr: ErrUnsafe, wantMsg: `archive: entry "dev/mem": device nodes are not allowed (Options.AllowDevices)`},
		{name: "block-device-refused", ents: func(string) []ent { return []ent{device("sda", tar.TypeBlock, 8, 0)} },
			wantErr: ErrDeviceNode},
		{name: "device-over-outside-via-symlink", ents: func(out string) []ent {
			return []ent{symlink("s", out), device("s/null", tar.TypeChar, 1, 3)}
		}, opts: Options{AllowDevices: true}, wantErr: errAny},
		{name: "fifo-then-file", ents: func(string) []ent {
			return []ent{device("f", tar.TypeFifo, 0, 0), file("f", "not blocked", 0o644)}
		}},
		{name: "unknown-type", ents: func(string) []ent {
			return []ent{{hdr: tar.Header{Typeflag: 'V', Name: "vol", ModTime: testTime}}}
		}, wantErr: errors.ErrUnsupported},
		{name: "file-over-root", ents: func(string) []ent { return []ent{file(".", "", 0o644)} },
			wantErr: ErrUnsafe},
		{name: "symlink-over-root", ents: func(out string) []ent { return []ent{symlink("/", out)} },
			wantErr: ErrUnsafe},
		{name: "too-many-files", ents: func(string) []ent {
			var es []ent
			for i := range 50 {
				es = append(es, file("f"+strings.Repeat("x", i), "", 0o644))
			}
			return es
		}, opts: Options{MaxFiles: 10}, wantErr: ErrLimit},
		{name: "too-many-bytes", ents: func(string) []ent {
			return []ent{file("a", strings.Repeat("a", 600<<10), 0o644), file("b", strings.Repeat("b", 600<<10), 0o644)}
		}, opts: Options{MaxBytes: 1 << 20}, wantErr: ErrLimit},
		{name: "negative-owner", ents: func(string) []ent {
			e := file("f", "x", 0o644)
			e.hdr.Uid = -1
			return []ent{e}
		}, wantErr: ErrUnsafe},
	}
}

// TestApplyHostile runs the hostile corpus. As root it is the real test;
// unprivileged (NoChown) it still checks confinement.
func TestApplyHostile(t *testing.T) {
	passwd := describe("/etc/passwd")
	for _, tc := range hostileCases() {
		t.Run(tc.name, func(t *testing.T) {
			if !isRoot() && (tc.opts.OverlayWhiteouts || tc.name == "negative-owner") {
				t.Skip("needs root (overlay whiteouts, chown)")
			}
			sb := newSandbox(t)
			layer := makeTar(t, tc.ents(sb.outside)...)
			tc.opts.NoChown = !isRoot()
			_, err := apply(t, sb.root, layer, tc.opts)
			switch {
			case tc.wantErr == nil && err != nil:
				t.Errorf("Apply: %v, want it to succeed, confined", err)
			case tc.wantErr == errAny && err == nil, tc.wantErr != nil && tc.wantErr != errAny && !errors.Is(err, tc.wantErr):
				t.Errorf("Apply: %v, want %v", err, tc.wantErr)
			case tc.wantMsg != "" && (err == nil || err.Error() != tc.wantMsg):
				t.Errorf("Apply: %v, want message %s", err, tc.wantMsg)
			}
			if err != nil {
				var ee *EntryError
				if !errors.As(err, &ee) {
					t.Errorf("error %v is not an *EntryError", err)
				}
				t.Logf("%v", err)
			}
			if tc.inRoot != nil {
				tc.inRoot(t, sb.root, sb.outside)
			}
			sb.check(t)
			if d := describe("/etc/passwd"); d != passwd {
				t.Errorf("/etc/passwd changed: %s", d)
			}
		})
	}
}

// A header that claims more data than the layer has must fail cleanly and
// allocate nothing in proportion to the claim.
func TestApplyHugeSizeClaims(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int64
		opts Options
		want error
	}{
		{"over-limit", 1 << 50, Options{}, ErrLimit},
		{"under-limit-truncated", 8 << 30, Options{}, errAny},
		{"under-small-limit-truncated", 100 << 20, Options{MaxBytes: 1 << 30}, errAny},
		{"stream-over-limit", 4096, Options{MaxBytes: 1 << 20}, ErrLimit},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sb := newSandbox(t)
			var buf bytes.Buffer
			tw := tar.NewWriter(&buf)
			if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: "big", Mode: 0o644, Size: tc.size}); err != nil {
				t.Fatal(err)
			}
			tw.Write(bytes.Repeat([]byte("x"), 4096)) // then the stream ends
			if tc.name == "stream-over-limit" {
				tw.Close()
				buf.Write(make([]byte, 2<<20)) // trailing zeros count as layer bytes
			}
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			tc.opts.NoChown = !isRoot()
			_, err := apply(t, sb.root, buf.Bytes(), tc.opts)
			runtime.ReadMemStats(&after)
			if err == nil || (tc.want != errAny && !errors.Is(err, tc.want)) {
				t.Fatalf("Apply: %v, want %v", err, tc.want)
			}
			t.Logf("%v", err)
			if n := after.TotalAlloc - before.TotalAlloc; n > 32<<20 {
				t.Errorf("Apply allocated %d bytes for a header claiming %d", n, tc.size)
			}
			sb.check(t)
		})
	}
}

// A procfs mounted inside the root must not be a way out: magic links are
// refused, and so is crossing into another mount.
func TestApplyMountInsideRoot(t *testing.T) {
	needRoot(t)
	sb := newSandbox(t)
	proc := filepath.Join(sb.root, "proc")
	if err := os.Mkdir(proc, 0o555); err != nil {
		t.Fatal(err)
	}
	if err := unix.Mount("proc", proc, "proc", 0, ""); err != nil {
		t.Skipf("mount proc: %v", err)
	}
	defer unix.Unmount(proc, unix.MNT_DETACH)
	for _, name := range []string{"proc/self/root/tmp/berth-archive-pwned", "proc/self/cwd/berth-archive-pwned", "proc/1/root/berth-archive-pwned"} {
		_, err := apply(t, sb.root, makeTar(t, file(name, "pwned", 0o644)), Options{})
		if err == nil {
			t.Errorf("%s: applied", name)
		}
		t.Logf("%v", err)
	}
	_, err := apply(t, sb.root, makeTar(t, symlink("p", "/proc/self/root"), file("p/tmp/berth-archive-pwned", "pwned", 0o644)), Options{})
	if err == nil {
		t.Errorf("through a symlink to a magic link: applied")
	}
	if _, err := os.Stat("berth-archive-pwned"); err == nil {
		t.Errorf("a file appeared in the working directory")
	}
	sb.check(t)
}
