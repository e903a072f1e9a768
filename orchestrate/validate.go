package orchestrate

import (
	"context"
	"fmt"
	"net"
	"net/url"
	"path"
	"regexp"
	"sort"
	"strings"
)

// envNameRE is what Kubernetes allows as an environment variable name.
var envNameRE = regexp.MustCompile(`^[-._a-zA-Z][-._a-zA-Z0-9]*$`)

// configKeyRE is a ConfigMap or Secret key.
var configKeyRE = regexp.MustCompile(`^[-._a-zA-Z0-9]+$`)

// Limits, as in Kubernetes.
const (
	// maxAnnotationsSize bounds the keys and values of an object's
	// annotations together.
	maxAnnotationsSize = 256 << 10
	// maxConfigKeyLen bounds a ConfigMap or Secret key.
	maxConfigKeyLen = 253
	// maxDNSNameLen bounds a DNS name (an RFC 1123 subdomain).
	maxDNSNameLen = 253
	// maxVolumePathLen and maxVolumePathPart bound a file path inside a
	// volume and each of its components (PATH_MAX, NAME_MAX).
	maxVolumePathLen  = 4096
	maxVolumePathPart = 255
)

// validateAnnotations checks annotations: every key is a qualified name
// as a label key is ([DNS-subdomain prefix "/"] name of at most 63
// alphanumerics, '-', '_' and '.', starting and ending alphanumeric);
// values are free, but keys and values together are at most 256 KiB.
func validateAnnotations(field string, a map[string]string) error {
	keys := make([]string, 0, len(a))
	size := 0
	for k, v := range a {
		keys = append(keys, k)
		size += len(k) + len(v)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := validateLabelKey(field, k); err != nil {
			return err
		}
	}
	if size > maxAnnotationsSize {
		return invalidf(field, "%d bytes of keys and values, more than the %d allowed", size, maxAnnotationsSize)
	}
	return nil
}

// validateConfigKey checks a ConfigMap or Secret key, as Kubernetes:
// 1 to 253 alphanumerics, '-', '_' and '.', not "." nor starting with
// "..". Such a key is also a safe file name in a volume.
func validateConfigKey(f, key string) error {
	switch {
	case len(key) > maxConfigKeyLen:
		return invalidf(f, "key %.20q... is longer than %d characters", key, maxConfigKeyLen)
	case !configKeyRE.MatchString(key):
		return invalidf(f, "%q is not a valid key (1 to %d alphanumerics, '-', '_' and '.')", key, maxConfigKeyLen)
	case key == ".":
		return invalidf(f, "key must not be '.'")
	case strings.HasPrefix(key, ".."):
		return invalidf(f, "key %q must not start with '..'", key)
	}
	return nil
}

// validateEnvName checks an environment variable name (or a prefix of
// one), as Kubernetes: [-._a-zA-Z][-._a-zA-Z0-9]*, not "." nor starting
// with "..".
func validateEnvName(f, name, what string) error {
	if !envNameRE.MatchString(name) || name == "." || strings.HasPrefix(name, "..") {
		return invalidf(f, "%q is not a valid variable %s ([-._a-zA-Z][-._a-zA-Z0-9]*, not '.' nor starting with '..')", name, what)
	}
	return nil
}

// validateHost checks a probe's host: empty (127.0.0.1), an IP address
// (without brackets or zone) or a DNS name (an RFC 1123 subdomain,
// letters of either case, without a final dot).
func validateHost(f, host string) error {
	if host == "" || net.ParseIP(host) != nil {
		return nil
	}
	if len(host) <= maxDNSNameLen {
		ok := true
		for _, label := range strings.Split(strings.ToLower(host), ".") {
			if len(label) > 63 || !dnsLabelRE.MatchString(label) {
				ok = false
				break
			}
		}
		if ok {
			return nil
		}
	}
	return invalidf(f, "%q is neither an IP address nor a DNS name", host)
}

// isHTTPToken reports whether s is an HTTP token (RFC 9110), as a header
// field name must be.
func isHTTPToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// validHeaderValue reports whether v can be sent as an HTTP header field
// value: no control characters (CR, LF, NUL...) other than tab.
func validHeaderValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// validHostHeader reports whether v is a Host header value that Go's
// HTTP client sends (the bytes of a host name, an IP literal and a port).
func validHostHeader(v string) bool {
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!$%&'()*+,-.:;=[]_~", c) >= 0:
		default:
			return false
		}
	}
	return true
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
	case "", RestartPolicyAlways, RestartPolicyOnFailure, RestartPolicyNever:
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
	return validatePorts(field, spec.Containers)
}

// validatePorts checks the containers' ports, which share the pod's
// network namespace: names unique in the pod (IANA service names, at
// most 15 characters with a letter), numbers in range, protocols known,
// a host port asked for once.
func validatePorts(field string, ctrs []Container) error {
	names := map[string]bool{}
	used := map[string]bool{}
	hostPorts := map[string]bool{}
	for i, c := range ctrs {
		for j, p := range c.Ports {
			f := fmt.Sprintf("%s.containers[%d].ports[%d]", field, i, j)
			if p.Name != "" {
				if len(p.Name) > 15 || !isDNSLabel(p.Name) || !strings.ContainsAny(p.Name, "abcdefghijklmnopqrstuvwxyz") {
					return invalidf(f+".name", "%q: want an IANA service name (at most 15 lowercase letters, digits and '-', with a letter)", p.Name)
				}
				if names[p.Name] {
					return invalidf(f+".name", "duplicate port name %q in the pod", p.Name)
				}
				names[p.Name] = true
			}
			if p.ContainerPort < 1 || p.ContainerPort > 65535 {
				return invalidf(f+".containerPort", "%d out of 1-65535", p.ContainerPort)
			}
			switch p.Protocol {
			case "", ProtocolTCP, ProtocolUDP:
			default:
				return invalidf(f+".protocol", "%q: want TCP or UDP", p.Protocol)
			}
			k := fmt.Sprintf("%d/%s", p.ContainerPort, p.protocol())
			if used[k] {
				return invalidf(f+".containerPort", "%s given twice in the pod", k)
			}
			used[k] = true
			if p.HostPort < 0 || p.HostPort > 65535 {
				return invalidf(f+".hostPort", "%d out of 0-65535", p.HostPort)
			}
			if hk := fmt.Sprintf("%d/%s", p.HostPort, p.protocol()); p.HostPort != 0 {
				if hostPorts[hk] {
					return invalidf(f+".hostPort", "%s given twice in the pod", hk)
				}
				hostPorts[hk] = true
			}
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
	files := map[string]bool{} // the items' paths
	dirs := map[string]bool{}  // the directories they are in
	for i, it := range items {
		fi := fmt.Sprintf("%s.items[%d]", f, i)
		if err := validateConfigKey(fi+".key", it.Key); err != nil {
			return err
		}
		if err := validateRelPath(fi+".path", it.Path); err != nil {
			return err
		}
		// validateRelPath leaves no "." or empty component: the path is
		// clean, and equal paths are equal strings.
		switch {
		case files[it.Path]:
			return invalidf(fi+".path", "duplicate path %q", it.Path)
		case dirs[it.Path]:
			return invalidf(fi+".path", "%q is a directory of another item's path", it.Path)
		}
		for d := path.Dir(it.Path); d != "."; d = path.Dir(d) {
			if files[d] {
				return invalidf(fi+".path", "%q is under %q, another item's file", it.Path, d)
			}
			dirs[d] = true
		}
		files[it.Path] = true
	}
	return nil
}

// validateRelPath checks a file path inside a volume, as Kubernetes and
// more: relative, not starting with "..", with no ".", ".." or empty
// component, no NUL, at most 4096 bytes and 255 a component.
func validateRelPath(f, p string) error {
	switch {
	case p == "":
		return invalidf(f, "must not be empty")
	case path.IsAbs(p):
		return invalidf(f, "%q must be a relative path", p)
	case len(p) > maxVolumePathLen:
		return invalidf(f, "path is longer than %d bytes", maxVolumePathLen)
	case strings.IndexByte(p, 0) >= 0:
		return invalidf(f, "%q must not contain NUL", p)
	case strings.HasPrefix(p, ".."):
		return invalidf(f, "%q must not start with '..'", p)
	}
	for _, part := range strings.Split(p, "/") {
		switch {
		case part == "":
			return invalidf(f, "%q must not have an empty component (leading, trailing or doubled '/')", p)
		case part == "." || part == "..":
			return invalidf(f, "%q must not have a %q component", p, part)
		case len(part) > maxVolumePathPart:
			return invalidf(f, "%q has a component longer than %d bytes", p, maxVolumePathPart)
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
		if err := validateEnvName(fe+".name", e.Name, "name"); err != nil {
			return err
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
		if err := validateConfigKey(rf+".key", ref.Key); err != nil {
			return err
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
		if e.Prefix != "" {
			if err := validateEnvName(fe+".prefix", e.Prefix, "name prefix"); err != nil {
				return err
			}
		}
	}
	mounts := map[string]bool{}
	for i, vm := range c.VolumeMounts {
		fm := fmt.Sprintf("%s.volumeMounts[%d]", f, i)
		if volumes[vm.Name] == nil {
			return invalidf(fm+".name", "no volume %q in the pod", vm.Name)
		}
		if !path.IsAbs(vm.MountPath) || path.Clean(vm.MountPath) == "/" || strings.IndexByte(vm.MountPath, 0) >= 0 {
			return invalidf(fm+".mountPath", "%q must be an absolute path other than /, without NUL", vm.MountPath)
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
	if g := p.HTTPGet; g != nil {
		n++
		if err := validateHTTPGet(f+".httpGet", g); err != nil {
			return err
		}
	}
	if t := p.TCPSocket; t != nil {
		n++
		if err := validatePort(f+".tcpSocket.port", t.Port); err != nil {
			return err
		}
		if err := validateHost(f+".tcpSocket.host", t.Host); err != nil {
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

// validateHTTPGet checks an HTTP probe as Kubernetes does, and for what
// Go's HTTP client would refuse to send: the port, the scheme (exactly
// HTTP or HTTPS, or empty for HTTP), the host, the path (starting with
// "/" when set, a request URI without spaces, control characters or
// fragment) and the headers (token names, each once whatever its case;
// values without control characters).
func validateHTTPGet(f string, g *HTTPGetAction) error {
	if err := validatePort(f+".port", g.Port); err != nil {
		return err
	}
	switch g.Scheme {
	case "", "HTTP", "HTTPS":
	default:
		return invalidf(f+".scheme", "%q is not HTTP or HTTPS", g.Scheme)
	}
	if err := validateHost(f+".host", g.Host); err != nil {
		return err
	}
	if g.Path != "" {
		if !strings.HasPrefix(g.Path, "/") {
			return invalidf(f+".path", "%q must start with /", g.Path)
		}
		if strings.ContainsAny(g.Path, " \t#") || !validHeaderValue(g.Path) {
			return invalidf(f+".path", "%q must not contain spaces, control characters or '#'", g.Path)
		}
		if _, err := url.ParseRequestURI(g.Path); err != nil {
			return invalidf(f+".path", "%q is not a request URI: %v", g.Path, err)
		}
	}
	seen := map[string]string{}
	for _, k := range sortedKeys(g.Headers) {
		v := g.Headers[k]
		if !isHTTPToken(k) {
			return invalidf(f+".headers", "%q is not a valid header name", k)
		}
		if !validHeaderValue(v) {
			return invalidf(f+".headers", "the value of %s must not contain CR, LF or other control characters", k)
		}
		if strings.EqualFold(k, "Host") && !validHostHeader(v) {
			return invalidf(f+".headers", "%q is not a valid Host header", v)
		}
		lk := strings.ToLower(k)
		if prev, ok := seen[lk]; ok {
			return invalidf(f+".headers", "%q and %q are the same header", prev, k)
		}
		seen[lk] = k
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
			if err := validateConfigKey("data", k); err != nil {
				return err
			}
		}
		for _, k := range sortedKeys(cm.BinaryData) {
			if err := validateConfigKey("binaryData", k); err != nil {
				return err
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
			if err := validateConfigKey("data", k); err != nil {
				return err
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
