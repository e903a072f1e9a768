package cgroup

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"slices"
	"time"
)

// Sweep removes the empty child cgroups of parent (such as "/berth"),
// left behind by processes that died before deleting theirs, and returns
// the paths it removed. A child counts as empty when no process is in it
// or its descendants, in any hierarchy; one that holds processes is never
// touched (the kernel refuses to remove it, so a process that joins in the
// meantime is safe too). A missing parent has nothing to sweep.
//
// A cgroup that New made and that has no process yet is empty too: while
// another program may be creating cgroups under parent, use SweepOlder.
func Sweep(parent string) ([]string, error) {
	return SweepOlder(parent, 0)
}

// SweepOlder is Sweep limited to children that have not changed for at
// least age: created, or had a child cgroup added or removed (the kernel
// keeps that time as the directory's modification time).
func SweepOlder(parent string, age time.Duration) ([]string, error) {
	m, _, err := newManager(parent)
	if err != nil {
		return nil, err
	}
	names, err := childNames(m)
	if err != nil {
		return nil, fmt.Errorf("cgroup: sweep %s: %w", parent, err)
	}
	var removed []string
	var errs []error
	for _, name := range names {
		p := path.Join(parent, name)
		child, _, err := newManager(p)
		if err != nil {
			continue // a name no cgroup path can have
		}
		if age > 0 && time.Since(changed(child)) < age {
			continue
		}
		procs, err := child.procs()
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err == nil && len(procs) > 0 {
			continue
		}
		if err == nil {
			err = child.remove(context.Background())
		}
		if err != nil {
			if !isBusy(err) {
				errs = append(errs, fmt.Errorf("cgroup: sweep %s: %w", p, err))
			}
			continue
		}
		removed = append(removed, p)
	}
	return removed, errors.Join(errs...)
}

// changed returns the latest modification time of m's directories.
func changed(m manager) time.Time {
	var latest time.Time
	for _, d := range managerDirs(m) {
		if st, err := os.Stat(d); err == nil && st.ModTime().After(latest) {
			latest = st.ModTime()
		}
	}
	return latest
}

// managerDirs returns m's directory in every hierarchy.
func managerDirs(m manager) []string {
	switch m := m.(type) {
	case *v1:
		out := make([]string, 0, len(m.h.mounts))
		for _, mp := range m.h.mounts {
			out = append(out, mp+m.path)
		}
		return out
	case *v2:
		return []string{m.dir}
	}
	return nil
}

// childNames lists the child cgroups of m, in any hierarchy, sorted.
func childNames(m manager) ([]string, error) {
	var names []string
	for _, d := range managerDirs(m) {
		n, err := subdirs(d)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, err
		}
		names = append(names, n...)
	}
	slices.Sort(names)
	return slices.Compact(names), nil
}
