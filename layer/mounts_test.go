package layer

import (
	"testing"

	"github.com/berthlabs/berth/layer/snapshot"
)

func TestDirectDir(t *testing.T) {
	bind := func(opts ...string) []snapshot.Mount {
		return []snapshot.Mount{{Type: "bind", Source: "/s/1/fs", Options: opts}}
	}
	overlay := func(opts ...string) []snapshot.Mount {
		return []snapshot.Mount{{Type: "overlay", Source: "overlay", Options: append([]string{"index=off", "lowerdir=/s/1/fs:/s/2/fs"}, opts...)}}
	}
	for _, tc := range []struct {
		what    string
		ms      []snapshot.Mount
		write   bool
		dir     string
		overlay bool
		ok      bool
	}{
		{"rw bind, to write", bind("bind", "rw"), true, "/s/1/fs", false, true},
		{"ro bind, to write", bind("bind", "ro"), true, "", false, false},
		{"ro bind, to read", bind("bind", "ro"), false, "/s/1/fs", false, true},
		{"rbind without a type", []snapshot.Mount{{Source: "/d", Options: []string{"rbind"}}}, true, "/d", false, true},
		{"overlay with an upper directory", overlay("upperdir=/s/3/fs", "workdir=/s/3/work"), true, "/s/3/fs", true, true},
		{"overlay without one (a view)", overlay(), false, "", false, false},
		{"overlay with userxattr (archive writes user.overlay.opaque)", overlay("userxattr", "upperdir=/s/3/fs", "workdir=/s/3/work"), true, "/s/3/fs", true, true},
		{"two mounts", append(bind("bind", "rw"), bind("bind", "rw")...), true, "", false, false},
		{"no mounts", nil, true, "", false, false},
		{"another filesystem", []snapshot.Mount{{Type: "ext4", Source: "/dev/loop0"}}, true, "", false, false},
	} {
		dir, ov, ok := directDir(tc.ms, tc.write)
		if ok != tc.ok || ok && (dir != tc.dir || ov != tc.overlay) {
			t.Errorf("%s: directDir = %q, %v, %v; want %q, %v, %v", tc.what, dir, ov, ok, tc.dir, tc.overlay, tc.ok)
		}
	}
}
