package orchestrate

import (
	"context"
	"fmt"
	"path"
	"regexp"
	"sort"
	"strings"
)

// envNameRE is what Kubernetes allows as an environment variable name.
var envNameRE = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)

// configKeyRE is a ConfigMap or Secret key.
var configKeyRE = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)

// validateAnnotations checks annotation keys (as label keys); values are
// free.
func validateAnnotations(field string, a map[string]string) error {
	keys := make([]string, 0, len(a))
	for k := range a {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := validateLabelKey(field, k); err != nil {
			return err
		}
	}
	return nil
}

// validatePod checks a Pod for Apply.
func (m *Manager) validatePod(ctx context.Context, obj Object) error {
	p, ok := obj.(*Pod)
	if !ok {
		return invalidf("kind", "%T is not a *Pod", obj)
	}
	return m.validatePodSpec(ctx, "spec", &p.Spec)
}

// validatePodSpec checks a pod spec; field is its path, such as
// "spec.template.spec", which prefixes the field an error names. Images
// are looked up in the Runtime, when there is one.
func (m *Manager) validatePodSpec(ctx context.Context, field string, spec *PodSpec) error {
	if spec == nil {
		return invalidf(field, "missing")
	}
	switch spec.RestartPolicy {
	case "", RestartAlways, RestartOnFailure, RestartNever:
	default:
		return invalidf(field+".restartPolicy", "unknown policy %q (want Always, OnFailure or Never)", spec.RestartPolicy)
	}
	if spec.TerminationGracePeriod < 0 {
		return invalidf(field+".terminationGracePeriod", "negative (%v)", spec.TerminationGracePeriod)
	}
	if spec.Hostname != "" {
		if err := validateName(field+".hostname", spec.Hostname); err != nil {
			return err
		}
	}
	volumes := map[string]*Volume{}
	for i := range spec.Volumes {
		v := &spec.Volumes[i]
		f := fmt.Sprintf("%s.volumes[%d]", field, i)
		if err := validateName(f+".name", v.Name); err != nil {
			return err
		}
		if volumes[v.Name] != nil {
			return invalidf(f+".name", "duplicate volume name %q", v.Name)
		}
		volumes[v.Name] = v
		if err := validateVolume(f, v); err != nil {
			return err
		}
	}
	if len(spec.Containers) == 0 {
		return invalidf(field+".containers", "a pod needs at least one container")
	}
	names := map[string]bool{}
	for i := range spec.Containers {
		c := &spec.Containers[i]
		f := fmt.Sprintf("%s.containers[%d]", field, i)
		if err := validateName(f+".name", c.Name); err != nil {
			return err
		}
		if names[c.Name] {
			return invalidf(f+".name", "duplicate container name %q", c.Name)
		}
		names[c.Name] = true
		if err := m.validateContainer(ctx, f, c, volumes); err != nil {
			return err
		}
	}
	return nil
}

func validateVolume(f string, v *Volume) error {
	n := 0
	for _, set := range []bool{v.EmptyDir != nil, v.ConfigMap != nil, v.Secret != nil, v.HostPath != nil} {
		if set {
			n++
		}
	}
	if n != 1 {
		return invalidf(f, "volume %q must have exactly one source (emptyDir, configMap, secret or hostPath), has %d", v.Name, n)
	}
	switch {
	case v.EmptyDir != nil:
		if v.EmptyDir.SizeLimit < 0 {
			return invalidf(f+".emptyDir.sizeLimit", "negative (%d)", v.EmptyDir.SizeLimit)
		}
	case v.ConfigMap != nil:
		return validateKeyVolume(f+".configMap", v.ConfigMap.Name, v.ConfigMap.Items, v.ConfigMap.Mode)
	case v.Secret != nil:
		return validateKeyVolume(f+".secret", v.Secret.Name, v.Secret.Items, v.Secret.Mode)
	case v.HostPath != nil:
		if !path.IsAbs(v.HostPath.Path) {
			return invalidf(f+".hostPath.path", "%q is not an absolute path", v.HostPath.Path)
		}
	}
	return nil
}

func validateKeyVolume(f, name string, items []KeyToPath, mode uint32) error {
	if err := validateName(f+".name", name); err != nil {
		return err
	}
	if mode > 0o777 {
		return invalidf(f+".mode", "%#o is not a file permission (0 to 0777)", mode)
	}
	paths := map[string]bool{}
	for i, it := range items {
		fi := fmt.Sprintf("%s.items[%d]", f, i)
		if !configKeyRE.MatchString(it.Key) {
			return invalidf(fi+".key", "%q is not a valid key", it.Key)
		}
		if err := validateRelPath(fi+".path", it.Path); err != nil {
			return err
		}
		if paths[path.Clean(it.Path)] {
			return invalidf(fi+".path", "duplicate path %q", it.Path)
		}
		paths[path.Clean(it.Path)] = true
	}
	return nil
}

// validateRelPath checks a path inside a volume: relative, no "..".
func validateRelPath(f, p string) error {
	if p == "" || path.IsAbs(p) {
		return invalidf(f, "%q must be a non-empty relative path", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return invalidf(f, "%q must not contain '..'", p)
		}
	}
	return nil
}

func (m *Manager) validateContainer(ctx context.Context, f string, c *Container, volumes map[string]*Volume) error {
	if c.Image == "" {
		return invalidf(f+".image", "must not be empty")
	}
	if m.runtime != nil {
		ok, err := m.runtime.ImageExists(ctx, c.Image)
		if err != nil {
			return fmt.Errorf("look up image %q for %s.image: %w", c.Image, f, err)
		}
		if !ok {
			return invalidf(f+".image", "unknown image %q (not in the runtime's image store)", c.Image)
		}
	}
	if c.WorkingDir != "" && !path.IsAbs(c.WorkingDir) {
		return invalidf(f+".workingDir", "%q is not an absolute path", c.WorkingDir)
	}
	if err := c.Resources.Validate(); err != nil {
		return invalidf(f+".resources", "%v", err)
	}
	for i, e := range c.Env {
		fe := fmt.Sprintf("%s.env[%d]", f, i)
		if !envNameRE.MatchString(e.Name) {
			return invalidf(fe+".name", "%q is not a valid variable name", e.Name)
		}
		if e.ValueFrom == nil {
			continue
		}
		if e.Value != "" {
			return invalidf(fe, "%s has both value and valueFrom", e.Name)
		}
		src := e.ValueFrom
		if (src.ConfigMapKeyRef == nil) == (src.SecretKeyRef == nil) {
			return invalidf(fe+".valueFrom", "exactly one of configMapKeyRef and secretKeyRef must be set")
		}
		ref, rf := src.ConfigMapKeyRef, fe+".valueFrom.configMapKeyRef"
		if ref == nil {
			ref, rf = src.SecretKeyRef, fe+".valueFrom.secretKeyRef"
		}
		if err := validateName(rf+".name", ref.Name); err != nil {
			return err
		}
		if !configKeyRE.MatchString(ref.Key) {
			return invalidf(rf+".key", "%q is not a valid key", ref.Key)
		}
	}
	for i, e := range c.EnvFrom {
		fe := fmt.Sprintf("%s.envFrom[%d]", f, i)
		if (e.ConfigMap == "") == (e.Secret == "") {
			return invalidf(fe, "exactly one of configMap and secret must be set")
		}
		if err := validateName(fe+".name", e.ConfigMap+e.Secret); err != nil {
			return err
		}
		if e.Prefix != "" && !envNameRE.MatchString(e.Prefix) {
			return invalidf(fe+".prefix", "%q is not a valid variable name prefix", e.Prefix)
		}
	}
	mounts := map[string]bool{}
	for i, vm := range c.VolumeMounts {
		fm := fmt.Sprintf("%s.volumeMounts[%d]", f, i)
		if volumes[vm.Name] == nil {
			return invalidf(fm+".name", "no volume %q in the pod", vm.Name)
		}
		if !path.IsAbs(vm.MountPath) || path.Clean(vm.MountPath) == "/" {
			return invalidf(fm+".mountPath", "%q must be an absolute path other than /", vm.MountPath)
		}
		if mounts[path.Clean(vm.MountPath)] {
			return invalidf(fm+".mountPath", "duplicate mount path %q", vm.MountPath)
		}
		mounts[path.Clean(vm.MountPath)] = true
	}
	for _, p := range []struct {
		name  string
		probe *Probe
	}{{"livenessProbe", c.LivenessProbe}, {"readinessProbe", c.ReadinessProbe}, {"startupProbe", c.StartupProbe}} {
		if p.probe == nil {
			continue
		}
		if err := validateProbe(f+"."+p.name, p.probe, p.name != "readinessProbe"); err != nil {
			return err
		}
	}
	return nil
}

func validateProbe(f string, p *Probe, oneSuccess bool) error {
	n := 0
	if p.Exec != nil {
		n++
		if len(p.Exec.Command) == 0 || p.Exec.Command[0] == "" {
			return invalidf(f+".exec.command", "must not be empty")
		}
	}
	if p.HTTPGet != nil {
		n++
		if err := validatePort(f+".httpGet.port", p.HTTPGet.Port); err != nil {
			return err
		}
		switch strings.ToUpper(p.HTTPGet.Scheme) {
		case "", "HTTP", "HTTPS":
		default:
			return invalidf(f+".httpGet.scheme", "%q is not HTTP or HTTPS", p.HTTPGet.Scheme)
		}
		if p.HTTPGet.Path != "" && !strings.HasPrefix(p.HTTPGet.Path, "/") {
			return invalidf(f+".httpGet.path", "%q must start with /", p.HTTPGet.Path)
		}
	}
	if p.TCPSocket != nil {
		n++
		if err := validatePort(f+".tcpSocket.port", p.TCPSocket.Port); err != nil {
			return err
		}
	}
	if n != 1 {
		return invalidf(f, "exactly one of exec, httpGet and tcpSocket must be set, %d are", n)
	}
	switch {
	case p.InitialDelay < 0:
		return invalidf(f+".initialDelay", "negative")
	case p.Period < 0:
		return invalidf(f+".period", "negative")
	case p.Timeout < 0:
		return invalidf(f+".timeout", "negative")
	case p.SuccessThreshold < 0:
		return invalidf(f+".successThreshold", "negative")
	case p.FailureThreshold < 0:
		return invalidf(f+".failureThreshold", "negative")
	case oneSuccess && p.SuccessThreshold > 1:
		return invalidf(f+".successThreshold", "must be 1 for liveness and startup probes")
	}
	return nil
}

func validatePort(f string, port int) error {
	if port < 1 || port > 65535 {
		return invalidf(f, "%d is not a port (1 to 65535)", port)
	}
	return nil
}

// registerConfigKinds registers ConfigMap and Secret: validated by
// Apply, with no controller of their own (the Pod controller reads them).
func registerConfigKinds(m *Manager) {
	m.register(KindConfigMap, nil, nil, func(ctx context.Context, obj Object) error {
		cm, ok := obj.(*ConfigMap)
		if !ok {
			return invalidf("kind", "%T is not a *ConfigMap", obj)
		}
		for _, k := range sortedKeys(cm.Data) {
			if !configKeyRE.MatchString(k) || k == "." || k == ".." {
				return invalidf("data", "%q is not a valid key (alphanumerics, '-', '_' and '.')", k)
			}
		}
		for _, k := range sortedKeys(cm.BinaryData) {
			if !configKeyRE.MatchString(k) || k == "." || k == ".." {
				return invalidf("binaryData", "%q is not a valid key (alphanumerics, '-', '_' and '.')", k)
			}
			if _, ok := cm.Data[k]; ok {
				return invalidf("binaryData", "key %q is in data too", k)
			}
		}
		return nil
	})
	m.register(KindSecret, nil, nil, func(ctx context.Context, obj Object) error {
		s, ok := obj.(*Secret)
		if !ok {
			return invalidf("kind", "%T is not a *Secret", obj)
		}
		for _, k := range sortedKeys(s.Data) {
			if !configKeyRE.MatchString(k) || k == "." || k == ".." {
				return invalidf("data", "%q is not a valid key (alphanumerics, '-', '_' and '.')", k)
			}
		}
		return nil
	})
}

// sortedKeys returns the keys of a map in order.
func sortedKeys[V any](mp map[string]V) []string {
	keys := make([]string, 0, len(mp))
	for k := range mp {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
