package container

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// DefaultVolumeRoot is where a Runtime keeps its named volumes when
// Runtime.VolumeRoot is empty (for an unprivileged caller,
// RootlessDataDir()/volumes instead).
const DefaultVolumeRoot = "/var/lib/berth/volumes"

// Errors of the volume calls, for errors.Is.
var (
	// ErrVolumeExists is returned by CreateVolume for a name in use.
	ErrVolumeExists = errors.New("volume already exists")
	// ErrVolumeNotFound is returned for a volume that does not exist.
	ErrVolumeNotFound = errors.New("volume not found")
	// ErrVolumeInUse is returned by RemoveVolume while a container, of
	// this process or any other, uses the volume.
	ErrVolumeInUse = errors.New("volume is in use")
)

// Volume is a named volume (`docker volume create`): a directory that
// containers mount by name (a Mount of type VolumeMount) and share, and that
// outlives them until RemoveVolume.
//
// A volume lives in its own directory under the runtime's VolumeRoot:
// NAME/_data holds its files (Mountpoint), NAME/volume.json its name,
// labels and creation time, NAME/copyup.lock serialises filling it from
// a container's files, and NAME/lock is the file every container
// using the volume holds a shared flock(2) on, from Create until Delete
// (or until its process dies, kill -9 included). RemoveVolume takes an
// exclusive lock without waiting, so it fails with ErrVolumeInUse while
// any process has a container on the volume. Volume directories are
// made under a temporary name and renamed into place, and renamed away
// before they are removed, so that a process killed in between leaves
// no half volume under a real name.
type Volume struct {
	// Name is the volume's name: [a-zA-Z0-9][a-zA-Z0-9_.-]+, as Docker
	// allows.
	Name string `json:"name"`
	// Mountpoint is the host directory holding the volume's files.
	Mountpoint string `json:"-"`
	// Labels are the labels it was created with.
	Labels map[string]string `json:"labels,omitempty"`
	// CreatedAt is when it was created.
	CreatedAt time.Time `json:"createdAt"`
}

// VolumeOptions are the settings of a new volume.
type VolumeOptions struct {
	// Labels are key=value metadata (`docker volume create --label`).
	Labels map[string]string
}

var volumeName = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]+$`)

func (r *Runtime) volumeRoot() string {
	if r.VolumeRoot != "" {
		return r.VolumeRoot
	}
	if unprivileged() {
		if d, err := RootlessDataDir(); err == nil {
			return filepath.Join(d, "volumes")
		}
	}
	return DefaultVolumeRoot
}

func checkVolumeName(name string) error {
	if !volumeName.MatchString(name) || len(name) > 255 {
		return fmt.Errorf("%w: volume name %q: want [a-zA-Z0-9][a-zA-Z0-9_.-]+", ErrInvalidSpec, name)
	}
	return nil
}

// CreateVolume creates the named volume, empty, like `docker volume
// create`. It fails with ErrVolumeExists when the name is taken (by this
// process or another) and ErrInvalidSpec for a bad name.
func (r *Runtime) CreateVolume(ctx context.Context, name string, opts VolumeOptions) (*Volume, error) {
	if err := checkVolumeName(name); err != nil {
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	root := r.volumeRoot()
	if err := os.MkdirAll(root, 0o711); err != nil {
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	tmp, err := os.MkdirTemp(root, ".tmp-"+name+"-")
	if err != nil {
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	defer os.RemoveAll(tmp) // after the rename, nothing is there
	v := &Volume{Name: name, Labels: maps.Clone(opts.Labels), CreatedAt: time.Now().UTC()}
	meta, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	if err := os.Mkdir(filepath.Join(tmp, "_data"), 0o755); err != nil {
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "volume.json"), meta, 0o600); err != nil {
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	if err := os.WriteFile(filepath.Join(tmp, "lock"), nil, 0o600); err != nil {
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	// Init locks this one while it fills the volume, possibly as the root
	// of a user namespace: it only reads it.
	if err := os.WriteFile(filepath.Join(tmp, "copyup.lock"), nil, 0o644); err != nil {
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	if err := os.Chmod(tmp, 0o711); err != nil {
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	// rename(2) does not replace a directory that holds anything: of two
	// creators of one name, exactly one wins.
	if err := unix.Rename(tmp, filepath.Join(root, name)); err != nil {
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
			return nil, fmt.Errorf("create volume %s: %w", name, ErrVolumeExists)
		}
		return nil, fmt.Errorf("create volume %s: %w", name, err)
	}
	v.Mountpoint = filepath.Join(root, name, "_data")
	return v, nil
}

// Volume returns the named volume, or an error matching
// ErrVolumeNotFound.
func (r *Runtime) Volume(name string) (*Volume, error) {
	if err := checkVolumeName(name); err != nil {
		return nil, err
	}
	dir := filepath.Join(r.volumeRoot(), name)
	b, err := os.ReadFile(filepath.Join(dir, "volume.json"))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("volume %s: %w", name, ErrVolumeNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("volume %s: %w", name, err)
	}
	v := new(Volume)
	if err := json.Unmarshal(b, v); err != nil {
		return nil, fmt.Errorf("volume %s: %w", name, err)
	}
	v.Name = name
	v.Mountpoint = filepath.Join(dir, "_data")
	return v, nil
}

// Volumes lists the runtime's volumes (those under its VolumeRoot,
// whichever process made them), sorted by name. It also removes what a
// process killed while creating or removing a volume left behind.
func (r *Runtime) Volumes() ([]*Volume, error) {
	root := r.volumeRoot()
	ents, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("list volumes: %w", err)
	}
	var out []*Volume
	for _, e := range ents {
		name := e.Name()
		switch {
		case strings.HasPrefix(name, ".rm-"):
			os.RemoveAll(filepath.Join(root, name))
			continue
		case strings.HasPrefix(name, ".tmp-"):
			// Another process may be creating it right now.
			if fi, err := e.Info(); err == nil && time.Since(fi.ModTime()) > 10*time.Minute {
				os.RemoveAll(filepath.Join(root, name))
			}
			continue
		case !e.IsDir():
			continue
		}
		v, err := r.Volume(name)
		if errors.Is(err, ErrVolumeNotFound) || errors.Is(err, ErrInvalidSpec) {
			continue // removed meanwhile, or not a volume
		}
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// RemoveVolume removes the named volume and its files, like `docker
// volume rm`. It fails with ErrVolumeInUse while any container (of any
// process, running or not, until it is deleted) uses it, and with
// ErrVolumeNotFound when there is no such volume, unless force is set:
// then a missing volume is no error (`docker volume rm -f`). Force does
// not remove a volume in use.
func (r *Runtime) RemoveVolume(ctx context.Context, name string, force bool) error {
	if err := checkVolumeName(name); err != nil {
		return err
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	dir := filepath.Join(r.volumeRoot(), name)
	f, err := lockVolume(dir, unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, os.ErrNotExist) {
		if force {
			return nil
		}
		return fmt.Errorf("remove volume %s: %w", name, ErrVolumeNotFound)
	}
	if errors.Is(err, unix.EWOULDBLOCK) {
		return fmt.Errorf("remove volume %s: %w", name, ErrVolumeInUse)
	}
	if err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	defer f.Close()
	gone, err := os.MkdirTemp(r.volumeRoot(), ".rm-"+name+"-")
	if err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	// The rename replaces the empty directory just made: the volume's
	// name is free at once, and its files go below.
	if err := unix.Rename(dir, gone); err != nil {
		os.Remove(gone)
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	if err := os.RemoveAll(gone); err != nil {
		return fmt.Errorf("remove volume %s: %w", name, err)
	}
	return nil
}

// lockVolume opens the lock file of the volume in dir and flocks it
// with how. It returns an error matching os.ErrNotExist when there is no
// volume there, also when it was removed while the lock was awaited.
func lockVolume(dir string, how int) (*os.File, error) {
	p := filepath.Join(dir, "lock")
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	// A remover may have renamed the volume away between our open and
	// our lock: then the name no longer leads to this file.
	var ours, now unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &ours); err != nil {
		f.Close()
		return nil, err
	}
	if err := unix.Stat(p, &now); err != nil || ours.Dev != now.Dev || ours.Ino != now.Ino {
		f.Close()
		return nil, os.ErrNotExist
	}
	return f, nil
}

// useVolume returns the named volume, created when missing (as `docker
// run -v name:/path` creates it), with a shared lock on it that the
// caller holds for as long as a container uses the volume.
func (r *Runtime) useVolume(ctx context.Context, name string) (*Volume, *os.File, error) {
	for i := 0; ; i++ {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		f, err := lockVolume(filepath.Join(r.volumeRoot(), name), unix.LOCK_SH)
		if errors.Is(err, os.ErrNotExist) && i < 100 {
			if _, err := r.CreateVolume(ctx, name, VolumeOptions{}); err != nil && !errors.Is(err, ErrVolumeExists) {
				return nil, nil, err
			}
			continue
		}
		if err != nil {
			return nil, nil, fmt.Errorf("volume %s: %w", name, err)
		}
		v, err := r.Volume(name)
		if err != nil {
			f.Close()
			return nil, nil, err
		}
		return v, f, nil
	}
}

// useVolumes finds (or creates) the spec's named volumes and locks them
// for the container's lifetime.
func (c *Container) useVolumes(ctx context.Context) error {
	for _, m := range c.spec.Mounts {
		if m.Type != VolumeMount || c.volumes[m.Source] != nil {
			continue
		}
		v, lock, err := c.rt.useVolume(ctx, m.Source)
		if err != nil {
			return err
		}
		if c.volumes == nil {
			c.volumes = map[string]*Volume{}
		}
		c.volumes[m.Source] = v
		c.volumeLocks = append(c.volumeLocks, lock)
	}
	return nil
}

// releaseVolumes drops the container's locks on its volumes.
func (c *Container) releaseVolumes() {
	for _, f := range c.volumeLocks {
		f.Close()
	}
	c.volumeLocks = nil
}
