package orchestrate

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// volumeDir returns the host directory of a pod volume.
func (st *podState) volumeDir(name string) string {
	return filepath.Join(st.dir, "volumes", name)
}

// prepareVolumes makes the host side of a pod's volumes: emptyDir
// directories (tmpfs mounts for Memory), and the files of ConfigMap and
// Secret volumes, written as the objects are when the pod starts.
func (pc *podController) prepareVolumes(ctx context.Context, st *podState) error {
	if err := os.MkdirAll(filepath.Join(st.dir, "logs"), 0o700); err != nil {
		return err
	}
	for i := range st.spec.Volumes {
		v := &st.spec.Volumes[i]
		dir := st.volumeDir(v.Name)
		switch {
		case v.EmptyDir != nil:
			if err := os.MkdirAll(dir, 0o777); err != nil {
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
			if err := os.Chmod(dir, 0o777); err != nil { // writable by any user of the containers, as in Kubernetes
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
			if v.EmptyDir.Memory && !slices.Contains(st.tmpfs, dir) {
				opts := "mode=0777"
				if v.EmptyDir.SizeLimit > 0 {
					opts += ",size=" + strconv.FormatInt(v.EmptyDir.SizeLimit, 10)
				}
				if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, opts); err != nil {
					return fmt.Errorf("volume %s: mount tmpfs: %w", v.Name, err)
				}
				st.tmpfs = append(st.tmpfs, dir)
			}
		case v.ConfigMap != nil:
			files, err := pc.configFiles(ctx, st.namespace, KindConfigMap, v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Optional)
			if err != nil {
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
			if err := writeFiles(dir, files, fileMode(v.ConfigMap.Mode, 0o644)); err != nil {
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
		case v.Secret != nil:
			files, err := pc.configFiles(ctx, st.namespace, KindSecret, v.Secret.Name, v.Secret.Items, v.Secret.Optional)
			if err != nil {
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
			if err := writeFiles(dir, files, fileMode(v.Secret.Mode, 0o400)); err != nil {
				return fmt.Errorf("volume %s: %w", v.Name, err)
			}
		}
	}
	return nil
}

func fileMode(m, def uint32) os.FileMode {
	if m == 0 {
		return os.FileMode(def)
	}
	return os.FileMode(m & 0o777)
}

// writeFiles writes files (relative path → content) into a fresh dir.
func writeFiles(dir string, files map[string][]byte, mode os.FileMode) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for _, p := range sortedKeys(files) {
		full := filepath.Join(dir, filepath.Clean(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(full, files[p], mode); err != nil {
			return err
		}
		if err := os.Chmod(full, mode); err != nil { // not narrowed by the umask
			return err
		}
	}
	return nil
}

// configData returns the data of a ConfigMap or Secret; nil and no
// error when it does not exist and optional is set.
func (pc *podController) configData(ctx context.Context, namespace, kind, name string, optional bool) (map[string][]byte, error) {
	obj, err := pc.m.store.Get(ctx, kind, namespace, name)
	if errors.Is(err, ErrNotFound) {
		if optional {
			return nil, nil
		}
		return nil, fmt.Errorf("%s %q not found", kind, name)
	}
	if err != nil {
		return nil, err
	}
	data := map[string][]byte{}
	switch o := obj.(type) {
	case *ConfigMap:
		for k, v := range o.BinaryData {
			data[k] = v
		}
		for k, v := range o.Data {
			data[k] = []byte(v)
		}
	case *Secret:
		for k, v := range o.Data {
			data[k] = v
		}
	}
	return data, nil
}

// configFiles returns the files of a ConfigMap or Secret volume.
func (pc *podController) configFiles(ctx context.Context, namespace, kind, name string, items []KeyToPath, optional bool) (map[string][]byte, error) {
	data, err := pc.configData(ctx, namespace, kind, name, optional)
	if err != nil {
		return nil, err
	}
	files := map[string][]byte{}
	if len(items) == 0 {
		for k, v := range data {
			files[k] = v
		}
		return files, nil
	}
	for _, it := range items {
		v, ok := data[it.Key]
		if !ok {
			if optional {
				continue
			}
			return nil, fmt.Errorf("%s %q has no key %q", kind, name, it.Key)
		}
		files[it.Path] = v
	}
	return files, nil
}

// removeVolumes unmounts a pod's tmpfs volumes and removes its directory.
func (pc *podController) removeVolumes(st *podState) error {
	for len(st.tmpfs) > 0 {
		dir := st.tmpfs[len(st.tmpfs)-1]
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("unmount %s: %w", dir, err)
		}
		st.tmpfs = st.tmpfs[:len(st.tmpfs)-1]
	}
	return os.RemoveAll(st.dir)
}

// containerConfig resolves a container of a pod for the runtime: its
// environment (ConfigMap and Secret values looked up now) and mounts.
func (pc *podController) containerConfig(ctx context.Context, st *podState, c *ctrState) (ContainerConfig, error) {
	spec := c.spec
	env, err := pc.resolveEnv(ctx, st.namespace, spec)
	if err != nil {
		return ContainerConfig{}, err
	}
	// Service variables of the Services that exist now; the container's
	// own variables win.
	var svcEnv []string
	for _, kv := range pc.m.serviceEnv(ctx, st.namespace) {
		k, _, _ := strings.Cut(kv, "=")
		if !slices.ContainsFunc(env, func(e string) bool { return strings.HasPrefix(e, k+"=") }) {
			svcEnv = append(svcEnv, kv)
		}
	}
	env = append(svcEnv, env...)
	cfg := ContainerConfig{
		Image:      spec.Image,
		Command:    slices.Clone(spec.Command),
		Args:       slices.Clone(spec.Args),
		Env:        env,
		WorkingDir: spec.WorkingDir,
		User:       spec.User,
		Resources:  spec.Resources,
		LogPath:    filepath.Join(st.dir, "logs", spec.Name+".log"),
		StopGrace:  st.grace(),
	}
	for _, vm := range spec.VolumeMounts {
		i := slices.IndexFunc(st.spec.Volumes, func(v Volume) bool { return v.Name == vm.Name })
		if i < 0 {
			return ContainerConfig{}, fmt.Errorf("no volume %q", vm.Name)
		}
		v := &st.spec.Volumes[i]
		m := ContainerMount{HostPath: st.volumeDir(v.Name), ContainerPath: vm.MountPath, ReadOnly: vm.ReadOnly}
		switch {
		case v.HostPath != nil:
			m.HostPath = v.HostPath.Path
		case v.ConfigMap != nil, v.Secret != nil:
			m.ReadOnly = true
		}
		cfg.Mounts = append(cfg.Mounts, m)
	}
	return cfg, nil
}

// resolveEnv returns a container's environment: the keys of its EnvFrom
// sources, then its Env (which wins), as KEY=value.
func (pc *podController) resolveEnv(ctx context.Context, namespace string, spec *Container) ([]string, error) {
	var names []string
	vals := map[string]string{}
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			names = append(names, k)
		}
		vals[k] = v
	}
	for _, ef := range spec.EnvFrom {
		kind, name := KindConfigMap, ef.ConfigMap
		if ef.Secret != "" {
			kind, name = KindSecret, ef.Secret
		}
		data, err := pc.configData(ctx, namespace, kind, name, ef.Optional)
		if err != nil {
			return nil, err
		}
		for _, k := range sortedKeys(data) {
			if envNameRE.MatchString(ef.Prefix + k) {
				set(ef.Prefix+k, string(data[k]))
			}
		}
	}
	for _, e := range spec.Env {
		if e.ValueFrom == nil {
			set(e.Name, e.Value)
			continue
		}
		kind, ref := KindConfigMap, e.ValueFrom.ConfigMapKeyRef
		if ref == nil {
			kind, ref = KindSecret, e.ValueFrom.SecretKeyRef
		}
		data, err := pc.configData(ctx, namespace, kind, ref.Name, ref.Optional)
		if err != nil {
			return nil, fmt.Errorf("variable %s: %w", e.Name, err)
		}
		v, ok := data[ref.Key]
		if !ok {
			if ref.Optional {
				continue
			}
			return nil, fmt.Errorf("variable %s: %s %q has no key %q", e.Name, kind, ref.Name, ref.Key)
		}
		set(e.Name, string(v))
	}
	env := make([]string, 0, len(names))
	for _, k := range names {
		env = append(env, k+"="+vals[k])
	}
	return env, nil
}

// usesConfig reports whether a pod spec refers to the ConfigMap or
// Secret kind/name.
func usesConfig(spec *PodSpec, kind, name string) bool {
	for _, v := range spec.Volumes {
		if kind == KindConfigMap && v.ConfigMap != nil && v.ConfigMap.Name == name ||
			kind == KindSecret && v.Secret != nil && v.Secret.Name == name {
			return true
		}
	}
	for _, c := range spec.Containers {
		for _, ef := range c.EnvFrom {
			if kind == KindConfigMap && ef.ConfigMap == name || kind == KindSecret && ef.Secret == name {
				return true
			}
		}
		for _, e := range c.Env {
			if e.ValueFrom == nil {
				continue
			}
			if kind == KindConfigMap && e.ValueFrom.ConfigMapKeyRef != nil && e.ValueFrom.ConfigMapKeyRef.Name == name ||
				kind == KindSecret && e.ValueFrom.SecretKeyRef != nil && e.ValueFrom.SecretKeyRef.Name == name {
				return true
			}
		}
	}
	return false
}
