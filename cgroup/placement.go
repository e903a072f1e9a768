package cgroup

import (
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Dirs returns the cgroup's directories: one per mounted hierarchy berth
// uses on v1, the one directory on v2.
func (c *Cgroup) Dirs() []string {
	switch m := c.m.(type) {
	case *v1:
		out := make([]string, 0, len(m.h.mounts))
		for _, mnt := range m.h.mounts {
			out = append(out, mnt+m.path)
		}
		return out
	case *v2:
		return []string{m.dir}
	}
	return nil
}

// OpenPlacement opens what places a process into the cgroup as it is
// created, for a process that is not itself in the cgroup (a container's
// init, say) and starts processes that must be:
//
//   - on v2, one descriptor of the cgroup's directory, for
//     syscall.SysProcAttr.CgroupFD with UseCgroupFD (CLONE_INTO_CGROUP);
//   - on v1, the "tasks" file of each hierarchy, opened for writing:
//     writing a thread ID moves that one thread, and a child it forks
//     afterwards is born in the cgroup.
//
// The caller closes the files.
func (c *Cgroup) OpenPlacement() ([]*os.File, error) {
	if c.version == V2 {
		f, err := c.OpenDir()
		if err != nil {
			return nil, err
		}
		return []*os.File{f}, nil
	}
	var files []*os.File
	for _, d := range c.Dirs() {
		fd, err := unix.Open(d+"/tasks", unix.O_WRONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			for _, f := range files {
				f.Close()
			}
			return nil, c.wrap("open placement files of", fmt.Errorf("%s/tasks: %w", d, err))
		}
		files = append(files, os.NewFile(uintptr(fd), d+"/tasks"))
	}
	return files, nil
}
