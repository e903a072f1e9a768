package orchestrate_test

import (
	"errors"
	. "github.com/berthlabs/berth/orchestrate"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berthlabs/berth/cgroup"
)

// TestApplyRefusesInvalidPods applies each bad pod over a good stored
// one: ErrInvalid naming the field, and neither the store nor the
// running containers change.
func TestApplyRefusesInvalidPods(t *testing.T) {
	pt := newPodTest(t)
	good := simplePod("p", RestartPolicyAlways, "c")
	pt.apply(good)
	running := pt.mustRun("p", "c")
	before := pt.pod("p")

	podOf := func(f func(p *Pod)) *Pod {
		p := simplePod("p", RestartPolicyAlways, "c")
		f(p)
		return p
	}
	ctr := func(f func(c *Container)) *Pod { return podOf(func(p *Pod) { f(&p.Spec.Containers[0]) }) }
	probe := func(f func(pr *Probe)) *Pod {
		return ctr(func(c *Container) {
			c.LivenessProbe = &Probe{Exec: &ExecAction{Command: []string{"true"}}}
			f(c.LivenessProbe)
		})
	}
	httpGet := func(f func(g *HTTPGetAction)) *Pod {
		return ctr(func(c *Container) {
			c.ReadinessProbe = &Probe{HTTPGet: &HTTPGetAction{Port: 80}}
			f(c.ReadinessProbe.HTTPGet)
		})
	}
	tcp := func(f func(s *TCPSocketAction)) *Pod {
		return ctr(func(c *Container) {
			c.ReadinessProbe = &Probe{TCPSocket: &TCPSocketAction{Port: 80}}
			f(c.ReadinessProbe.TCPSocket)
		})
	}
	cmItems := func(items ...KeyToPath) *Pod {
		return podOf(func(p *Pod) {
			p.Spec.Volumes = []Volume{{Name: "v", ConfigMap: &ConfigMapVolume{Name: "c", Items: items}}}
		})
	}
	secretItems := func(items ...KeyToPath) *Pod {
		return podOf(func(p *Pod) { p.Spec.Volumes = []Volume{{Name: "v", Secret: &SecretVolume{Name: "s", Items: items}}} })
	}
	mounts := func(ms ...VolumeMount) *Pod {
		return podOf(func(p *Pod) {
			p.Spec.Volumes = []Volume{{Name: "v", EmptyDir: &EmptyDirVolume{}}}
			p.Spec.Containers[0].VolumeMounts = ms
		})
	}
	for _, tc := range []struct {
		field string
		obj   Object
	}{
		{"metadata.name", podOf(func(p *Pod) { p.Name = "Bad_Name" })},
		{"metadata.labels", podOf(func(p *Pod) { p.Labels = map[string]string{"a": "b c"} })},
		{"metadata.annotations", podOf(func(p *Pod) { p.Annotations = map[string]string{"/x": "y"} })},
		{"metadata.annotations", podOf(func(p *Pod) { p.Annotations = map[string]string{"a b": "y"} })},
		{"metadata.annotations", podOf(func(p *Pod) { p.Annotations = map[string]string{"Example.com/x": "y"} })},
		{"metadata.annotations", podOf(func(p *Pod) { p.Annotations = map[string]string{"x-": "y"} })},
		{"metadata.annotations", podOf(func(p *Pod) { p.Annotations = map[string]string{strings.Repeat("x", 64): "y"} })},
		{"metadata.annotations", podOf(func(p *Pod) { p.Annotations = map[string]string{"a": strings.Repeat("x", 256<<10)} })},
		{"metadata.annotations", podOf(func(p *Pod) {
			p.Annotations = map[string]string{"a": strings.Repeat("x", 128<<10), "b": strings.Repeat("x", 128<<10)}
		})},
		{"spec.containers", podOf(func(p *Pod) { p.Spec.Containers = nil })},
		{"spec.containers[0].ports[0].containerPort", ctr(func(c *Container) { c.Ports = []ContainerPort{{ContainerPort: 0}} })},
		{"spec.containers[0].ports[0].containerPort", ctr(func(c *Container) { c.Ports = []ContainerPort{{ContainerPort: 70000}} })},
		{"spec.containers[0].ports[0].name", ctr(func(c *Container) { c.Ports = []ContainerPort{{Name: "8080", ContainerPort: 80}} })},
		{"spec.containers[0].ports[0].name", ctr(func(c *Container) { c.Ports = []ContainerPort{{Name: "a-very-long-port-name", ContainerPort: 80}} })},
		{"spec.containers[0].ports[1].name", ctr(func(c *Container) {
			c.Ports = []ContainerPort{{Name: "http", ContainerPort: 80}, {Name: "http", ContainerPort: 81}}
		})},
		{"spec.containers[0].ports[1].containerPort", ctr(func(c *Container) {
			c.Ports = []ContainerPort{{ContainerPort: 80}, {ContainerPort: 80, Protocol: ProtocolTCP}}
		})},
		{"spec.containers[0].ports[0].protocol", ctr(func(c *Container) { c.Ports = []ContainerPort{{ContainerPort: 80, Protocol: "SCTP"}} })},
		{"spec.containers[0].ports[0].hostPort", ctr(func(c *Container) { c.Ports = []ContainerPort{{ContainerPort: 80, HostPort: -1}} })},
		{"spec.containers[0].ports[1].hostPort", ctr(func(c *Container) {
			c.Ports = []ContainerPort{{ContainerPort: 80, HostPort: 8080}, {ContainerPort: 81, HostPort: 8080}}
		})},
		{"spec.containers[1].name", podOf(func(p *Pod) { p.Spec.Containers = append(p.Spec.Containers, p.Spec.Containers[0]) })},
		{"spec.containers[0].name", ctr(func(c *Container) { c.Name = "C" })},
		{"spec.containers[0].image", ctr(func(c *Container) { c.Image = "" })},
		{"spec.containers[0].image", ctr(func(c *Container) { c.Image = "no/such:image" })},
		{"spec.containers[0].workingDir", ctr(func(c *Container) { c.WorkingDir = "rel" })},
		{"spec.containers[0].resources", ctr(func(c *Container) { c.Resources = cgroup.Resources{CPUQuota: -5} })},
		{"spec.containers[0].env[0].name", ctr(func(c *Container) { c.Env = []EnvVar{{Name: "A=B"}} })},
		{"spec.containers[0].env[0].name", ctr(func(c *Container) { c.Env = []EnvVar{{Name: ""}} })},
		{"spec.containers[0].env[0].name", ctr(func(c *Container) { c.Env = []EnvVar{{Name: "1A"}} })},
		{"spec.containers[0].env[0].name", ctr(func(c *Container) { c.Env = []EnvVar{{Name: "A B"}} })},
		{"spec.containers[0].env[0].name", ctr(func(c *Container) { c.Env = []EnvVar{{Name: "."}} })},
		{"spec.containers[0].env[0].name", ctr(func(c *Container) { c.Env = []EnvVar{{Name: ".."}} })},
		{"spec.containers[0].env[1].name", ctr(func(c *Container) { c.Env = []EnvVar{{Name: "A"}, {Name: "..A"}} })},
		{"spec.containers[0].env[0].valueFrom.configMapKeyRef.key", ctr(func(c *Container) {
			c.Env = []EnvVar{{Name: "A", ValueFrom: &EnvVarSource{ConfigMapKeyRef: &KeySelector{Name: "c", Key: ".."}}}}
		})},
		{"spec.containers[0].env[0].valueFrom.secretKeyRef.key", ctr(func(c *Container) {
			c.Env = []EnvVar{{Name: "A", ValueFrom: &EnvVarSource{SecretKeyRef: &KeySelector{Name: "s", Key: strings.Repeat("k", 254)}}}}
		})},
		{"spec.containers[0].envFrom[0].prefix", ctr(func(c *Container) { c.EnvFrom = []EnvFromSource{{ConfigMap: "a", Prefix: "A="}} })},
		{"spec.containers[0].envFrom[0].prefix", ctr(func(c *Container) { c.EnvFrom = []EnvFromSource{{Secret: "s", Prefix: ".."}} })},
		{"spec.containers[0].env[0]", ctr(func(c *Container) {
			c.Env = []EnvVar{{Name: "A", Value: "v", ValueFrom: &EnvVarSource{ConfigMapKeyRef: &KeySelector{Name: "c", Key: "k"}}}}
		})},
		{"spec.containers[0].env[0].valueFrom", ctr(func(c *Container) { c.Env = []EnvVar{{Name: "A", ValueFrom: &EnvVarSource{}}} })},
		{"spec.containers[0].envFrom[0]", ctr(func(c *Container) { c.EnvFrom = []EnvFromSource{{ConfigMap: "a", Secret: "b"}} })},
		{"spec.containers[0].volumeMounts[0].name", ctr(func(c *Container) { c.VolumeMounts = []VolumeMount{{Name: "nope", MountPath: "/x"}} })},
		{"spec.containers[0].volumeMounts[0].mountPath", podOf(func(p *Pod) {
			p.Spec.Volumes = []Volume{{Name: "v", EmptyDir: &EmptyDirVolume{}}}
			p.Spec.Containers[0].VolumeMounts = []VolumeMount{{Name: "v", MountPath: "x"}}
		})},
		{"spec.containers[0].volumeMounts[0].mountPath", mounts(VolumeMount{Name: "v", MountPath: ""})},
		{"spec.containers[0].volumeMounts[0].mountPath", mounts(VolumeMount{Name: "v", MountPath: "/"})},
		{"spec.containers[0].volumeMounts[0].mountPath", mounts(VolumeMount{Name: "v", MountPath: "/a/.."})},
		{"spec.containers[0].volumeMounts[0].mountPath", mounts(VolumeMount{Name: "v", MountPath: "/a\x00b"})},
		{"spec.containers[0].volumeMounts[1].mountPath", mounts(VolumeMount{Name: "v", MountPath: "/x"}, VolumeMount{Name: "v", MountPath: "/x"})},
		{"spec.containers[0].volumeMounts[1].mountPath", mounts(VolumeMount{Name: "v", MountPath: "/x/y"}, VolumeMount{Name: "v", MountPath: "/x//y/"})},
		{"spec.containers[0].livenessProbe", probe(func(pr *Probe) { pr.TCPSocket = &TCPSocketAction{Port: 80} })},
		{"spec.containers[0].livenessProbe", probe(func(pr *Probe) { pr.Exec = nil })},
		{"spec.containers[0].livenessProbe.exec.command", probe(func(pr *Probe) { pr.Exec.Command = nil })},
		{"spec.containers[0].livenessProbe.successThreshold", probe(func(pr *Probe) { pr.SuccessThreshold = 2 })},
		{"spec.containers[0].livenessProbe.period", probe(func(pr *Probe) { pr.Period = -time.Second })},
		{"spec.containers[0].livenessProbe.failureThreshold", probe(func(pr *Probe) { pr.FailureThreshold = -1 })},
		{"spec.containers[0].readinessProbe.httpGet.port", ctr(func(c *Container) { c.ReadinessProbe = &Probe{HTTPGet: &HTTPGetAction{Port: 70000}} })},
		{"spec.containers[0].readinessProbe.httpGet.scheme", ctr(func(c *Container) { c.ReadinessProbe = &Probe{HTTPGet: &HTTPGetAction{Port: 80, Scheme: "FTP"}} })},
		{"spec.containers[0].readinessProbe.httpGet.port", httpGet(func(g *HTTPGetAction) { g.Port = 0 })},
		{"spec.containers[0].readinessProbe.httpGet.port", httpGet(func(g *HTTPGetAction) { g.Port = -1 })},
		{"spec.containers[0].readinessProbe.httpGet.port", httpGet(func(g *HTTPGetAction) { g.Port = 65536 })},
		{"spec.containers[0].readinessProbe.httpGet.scheme", httpGet(func(g *HTTPGetAction) { g.Scheme = "https" })},
		{"spec.containers[0].readinessProbe.httpGet.scheme", httpGet(func(g *HTTPGetAction) { g.Scheme = "Http" })},
		{"spec.containers[0].readinessProbe.httpGet.host", httpGet(func(g *HTTPGetAction) { g.Host = "not a host" })},
		{"spec.containers[0].readinessProbe.httpGet.host", httpGet(func(g *HTTPGetAction) { g.Host = "evil.com/x?" })},
		{"spec.containers[0].readinessProbe.httpGet.host", httpGet(func(g *HTTPGetAction) { g.Host = "user@evil.com" })},
		{"spec.containers[0].readinessProbe.httpGet.host", httpGet(func(g *HTTPGetAction) { g.Host = "[::1]" })},
		{"spec.containers[0].readinessProbe.httpGet.host", httpGet(func(g *HTTPGetAction) { g.Host = "host:80" })},
		{"spec.containers[0].readinessProbe.httpGet.host", httpGet(func(g *HTTPGetAction) { g.Host = "-a.example" })},
		{"spec.containers[0].readinessProbe.httpGet.host", httpGet(func(g *HTTPGetAction) { g.Host = "example.com." })},
		{"spec.containers[0].readinessProbe.httpGet.host", httpGet(func(g *HTTPGetAction) { g.Host = strings.Repeat("a", 64) + ".com" })},
		{"spec.containers[0].readinessProbe.httpGet.path", httpGet(func(g *HTTPGetAction) { g.Path = "healthz" })},
		{"spec.containers[0].readinessProbe.httpGet.path", httpGet(func(g *HTTPGetAction) { g.Path = "/a b" })},
		{"spec.containers[0].readinessProbe.httpGet.path", httpGet(func(g *HTTPGetAction) { g.Path = "/a\r\nX-Injected: 1" })},
		{"spec.containers[0].readinessProbe.httpGet.path", httpGet(func(g *HTTPGetAction) { g.Path = "/a#frag" })},
		{"spec.containers[0].readinessProbe.httpGet.path", httpGet(func(g *HTTPGetAction) { g.Path = "/%zz" })},
		{"spec.containers[0].readinessProbe.httpGet.headers", httpGet(func(g *HTTPGetAction) { g.Headers = map[string]string{"": "x"} })},
		{"spec.containers[0].readinessProbe.httpGet.headers", httpGet(func(g *HTTPGetAction) { g.Headers = map[string]string{"X Probe": "x"} })},
		{"spec.containers[0].readinessProbe.httpGet.headers", httpGet(func(g *HTTPGetAction) { g.Headers = map[string]string{"X-Probe:": "x"} })},
		{"spec.containers[0].readinessProbe.httpGet.headers", httpGet(func(g *HTTPGetAction) { g.Headers = map[string]string{"X-Pröbe": "x"} })},
		{"spec.containers[0].readinessProbe.httpGet.headers", httpGet(func(g *HTTPGetAction) { g.Headers = map[string]string{"X-A": "a\r\nX-Injected: 1"} })},
		{"spec.containers[0].readinessProbe.httpGet.headers", httpGet(func(g *HTTPGetAction) { g.Headers = map[string]string{"X-A": "a\nb"} })},
		{"spec.containers[0].readinessProbe.httpGet.headers", httpGet(func(g *HTTPGetAction) { g.Headers = map[string]string{"X-A": "a\x00b"} })},
		{"spec.containers[0].readinessProbe.httpGet.headers", httpGet(func(g *HTTPGetAction) { g.Headers = map[string]string{"X-A": "1", "x-a": "2"} })},
		{"spec.containers[0].readinessProbe.httpGet.headers", httpGet(func(g *HTTPGetAction) { g.Headers = map[string]string{"Host": "a b"} })},
		{"spec.containers[0].readinessProbe.tcpSocket.port", tcp(func(s *TCPSocketAction) { s.Port = 0 })},
		{"spec.containers[0].readinessProbe.tcpSocket.port", tcp(func(s *TCPSocketAction) { s.Port = 65536 })},
		{"spec.containers[0].readinessProbe.tcpSocket.host", tcp(func(s *TCPSocketAction) { s.Host = "a b" })},
		{"spec.containers[0].readinessProbe.tcpSocket.host", tcp(func(s *TCPSocketAction) { s.Host = "[::1]" })},
		{"spec.containers[0].readinessProbe.tcpSocket.host", tcp(func(s *TCPSocketAction) { s.Host = "10.0.0.1:80" })},
		{"spec.containers[0].readinessProbe.tcpSocket.host", tcp(func(s *TCPSocketAction) { s.Host = "a_b.example" })},
		{"spec.restartPolicy", podOf(func(p *Pod) { p.Spec.RestartPolicy = "Sometimes" })},
		{"spec.terminationGracePeriod", podOf(func(p *Pod) { p.Spec.TerminationGracePeriod = -1 })},
		{"spec.hostname", podOf(func(p *Pod) { p.Spec.Hostname = "not a host" })},
		{"spec.volumes[1].name", podOf(func(p *Pod) {
			p.Spec.Volumes = []Volume{{Name: "v", EmptyDir: &EmptyDirVolume{}}, {Name: "v", EmptyDir: &EmptyDirVolume{}}}
		})},
		{"spec.volumes[0]", podOf(func(p *Pod) { p.Spec.Volumes = []Volume{{Name: "v"}} })},
		{"spec.volumes[0]", podOf(func(p *Pod) {
			p.Spec.Volumes = []Volume{{Name: "v", EmptyDir: &EmptyDirVolume{}, HostPath: &HostPathVolume{Path: "/x"}}}
		})},
		{"spec.volumes[0].hostPath.path", podOf(func(p *Pod) { p.Spec.Volumes = []Volume{{Name: "v", HostPath: &HostPathVolume{Path: "rel"}}} })},
		{"spec.volumes[0].configMap.items[0].path", podOf(func(p *Pod) {
			p.Spec.Volumes = []Volume{{Name: "v", ConfigMap: &ConfigMapVolume{Name: "c", Items: []KeyToPath{{Key: "k", Path: "../escape"}}}}}
		})},
		{"spec.volumes[0].configMap.items[0].path", cmItems(KeyToPath{Key: "k", Path: ""})},
		{"spec.volumes[0].configMap.items[0].path", cmItems(KeyToPath{Key: "k", Path: "."})},
		{"spec.volumes[0].configMap.items[0].path", cmItems(KeyToPath{Key: "k", Path: ".."})},
		{"spec.volumes[0].configMap.items[0].path", cmItems(KeyToPath{Key: "k", Path: "a/.."})},
		{"spec.volumes[0].configMap.items[0].path", cmItems(KeyToPath{Key: "k", Path: "a/../b"})},
		{"spec.volumes[0].configMap.items[0].path", cmItems(KeyToPath{Key: "k", Path: "./a"})},
		{"spec.volumes[0].configMap.items[0].path", cmItems(KeyToPath{Key: "k", Path: "a/./b"})},
		{"spec.volumes[0].configMap.items[0].path", cmItems(KeyToPath{Key: "k", Path: "a//b"})},
		{"spec.volumes[0].configMap.items[0].path", cmItems(KeyToPath{Key: "k", Path: "a/"})},
		{"spec.volumes[0].configMap.items[0].path", cmItems(KeyToPath{Key: "k", Path: "/etc/passwd"})},
		{"spec.volumes[0].configMap.items[0].path", cmItems(KeyToPath{Key: "k", Path: "..data"})},
		{"spec.volumes[0].configMap.items[0].path", cmItems(KeyToPath{Key: "k", Path: "a\x00b"})},
		{"spec.volumes[0].configMap.items[0].path", cmItems(KeyToPath{Key: "k", Path: strings.Repeat("a", 256)})},
		{"spec.volumes[0].configMap.items[0].path", cmItems(KeyToPath{Key: "k", Path: strings.Repeat("a/", 2048) + "a"})},
		{"spec.volumes[0].configMap.items[1].path", cmItems(KeyToPath{Key: "a", Path: "x"}, KeyToPath{Key: "b", Path: "x"})},
		{"spec.volumes[0].configMap.items[1].path", cmItems(KeyToPath{Key: "a", Path: "x"}, KeyToPath{Key: "b", Path: "x/y"})},
		{"spec.volumes[0].configMap.items[1].path", cmItems(KeyToPath{Key: "a", Path: "x/y"}, KeyToPath{Key: "b", Path: "x"})},
		{"spec.volumes[0].configMap.items[2].path", cmItems(KeyToPath{Key: "a", Path: "x/y/z"}, KeyToPath{Key: "b", Path: "x-y"}, KeyToPath{Key: "c", Path: "x/y"})},
		{"spec.volumes[0].configMap.items[2].path", cmItems(KeyToPath{Key: "a", Path: "x"}, KeyToPath{Key: "b", Path: "x-y/z"}, KeyToPath{Key: "c", Path: "x/y/z"})},
		{"spec.volumes[0].configMap.items[0].key", cmItems(KeyToPath{Key: "", Path: "p"})},
		{"spec.volumes[0].configMap.items[0].key", cmItems(KeyToPath{Key: "a/b", Path: "p"})},
		{"spec.volumes[0].configMap.items[0].key", cmItems(KeyToPath{Key: ".", Path: "p"})},
		{"spec.volumes[0].configMap.items[0].key", cmItems(KeyToPath{Key: "..", Path: "p"})},
		{"spec.volumes[0].configMap.items[0].key", cmItems(KeyToPath{Key: "..k", Path: "p"})},
		{"spec.volumes[0].configMap.items[0].key", cmItems(KeyToPath{Key: "a b", Path: "p"})},
		{"spec.volumes[0].configMap.items[0].key", cmItems(KeyToPath{Key: strings.Repeat("k", 254), Path: "p"})},
		{"spec.volumes[0].secret.items[0].path", secretItems(KeyToPath{Key: "k", Path: "../escape"})},
		{"spec.volumes[0].secret.items[0].path", secretItems(KeyToPath{Key: "k", Path: "a/./b"})},
		{"spec.volumes[0].secret.items[1].path", secretItems(KeyToPath{Key: "a", Path: "d/f"}, KeyToPath{Key: "b", Path: "d"})},
		{"spec.volumes[0].secret.items[0].key", secretItems(KeyToPath{Key: "k:1", Path: "p"})},
		{"spec.volumes[0].secret.mode", podOf(func(p *Pod) { p.Spec.Volumes = []Volume{{Name: "v", Secret: &SecretVolume{Name: "s", Mode: 0o4755}}} })},
		{"spec", podOf(func(p *Pod) { p.Spec.Hostname = "changed" })}, // a valid spec, but pods are immutable
		{"data", &ConfigMap{ObjectMeta: ObjectMeta{Name: "c"}, Data: map[string]string{"a/b": "x"}}},
		{"binaryData", &ConfigMap{ObjectMeta: ObjectMeta{Name: "c"}, Data: map[string]string{"k": "x"}, BinaryData: map[string][]byte{"k": nil}}},
		{"data", &Secret{ObjectMeta: ObjectMeta{Name: "s"}, Data: map[string][]byte{"..": nil}}},
		{"data", &ConfigMap{ObjectMeta: ObjectMeta{Name: "c"}, Data: map[string]string{"": "x"}}},
		{"data", &ConfigMap{ObjectMeta: ObjectMeta{Name: "c"}, Data: map[string]string{".": "x"}}},
		{"data", &ConfigMap{ObjectMeta: ObjectMeta{Name: "c"}, Data: map[string]string{"..data": "x"}}},
		{"data", &ConfigMap{ObjectMeta: ObjectMeta{Name: "c"}, Data: map[string]string{strings.Repeat("k", 254): "x"}}},
		{"binaryData", &ConfigMap{ObjectMeta: ObjectMeta{Name: "c"}, BinaryData: map[string][]byte{"..": nil}}},
		{"binaryData", &ConfigMap{ObjectMeta: ObjectMeta{Name: "c"}, BinaryData: map[string][]byte{"a b": nil}}},
		{"data", &Secret{ObjectMeta: ObjectMeta{Name: "s"}, Data: map[string][]byte{"..x": nil}}},
		{"data", &Secret{ObjectMeta: ObjectMeta{Name: "s"}, Data: map[string][]byte{"a/b": nil}}},
		{"data", &Secret{ObjectMeta: ObjectMeta{Name: "s"}, Data: map[string][]byte{strings.Repeat("k", 254): nil}}},
		{"metadata.annotations", &ConfigMap{ObjectMeta: ObjectMeta{Name: "c", Annotations: map[string]string{"a": strings.Repeat("x", 256<<10)}}}},
		{"metadata.annotations", &Secret{ObjectMeta: ObjectMeta{Name: "s", Annotations: map[string]string{"_x": "y"}}}},
	} {
		_, err := pt.m.Apply(pt.ctx, tc.obj)
		var fe *FieldError
		if !errors.Is(err, ErrInvalid) || !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("want ErrInvalid naming %s, got %v", tc.field, err)
			continue
		}
		if !strings.Contains(err.Error(), tc.field) {
			t.Errorf("error %q does not name %s", err, tc.field)
		}
	}
	pt.settle()
	if after := pt.pod("p"); !reflect.DeepEqual(after, before) {
		t.Errorf("stored pod changed:\n%+v\n%+v", before, after)
	}
	if c := pt.mustRun("p", "c"); c.ID != running.ID {
		t.Error("the running container changed")
	}
	for _, k := range []string{KindConfigMap, KindSecret} {
		if objs, _ := pt.m.List(pt.ctx, k, "", nil); len(objs) != 0 {
			t.Errorf("invalid %s stored", k)
		}
	}
	if _, err := pt.m.Apply(pt.ctx, &Pod{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("nameless pod: %v", err)
	}
}

func TestApplyUpdates(t *testing.T) {
	pt := newPodTest(t)
	cm := pt.apply(&ConfigMap{ObjectMeta: ObjectMeta{Name: "c"}, Data: map[string]string{"k": "1"}})
	got := pt.apply(&ConfigMap{ObjectMeta: ObjectMeta{Name: "c", Labels: map[string]string{"a": "b"}}, Data: map[string]string{"k": "2"}})
	if got.Meta().UID != cm.Meta().UID || got.Meta().Generation != 2 || got.Meta().Labels["a"] != "b" {
		t.Errorf("after apply: %+v", got.Meta())
	}
	stale := got.DeepCopy().(*ConfigMap)
	stale.ResourceVersion = cm.Meta().ResourceVersion
	if _, err := pt.m.Apply(pt.ctx, stale); !errors.Is(err, ErrConflict) {
		t.Errorf("apply with a stale version: %v, want ErrConflict", err)
	}
	// Re-applying a pod with its own spec (new labels) is fine.
	pt.apply(simplePod("p", "", "c"))
	p := simplePod("p", "", "c")
	p.Labels["extra"] = "yes"
	if got := pt.apply(p); got.Meta().Labels["extra"] != "yes" {
		t.Error("pod labels not updated")
	}
	// Empty slices and maps mean what nil does (as after a JSON round
	// trip): the same spec, not a change.
	p = simplePod("p", "", "c")
	p.Spec.Volumes = []Volume{}
	p.Spec.Containers[0].Env = []EnvVar{}
	gen := pt.pod("p").Generation
	if got, err := pt.m.Apply(pt.ctx, p); err != nil {
		t.Errorf("re-apply with empty instead of nil slices: %v", err)
	} else if got.Meta().Generation != gen {
		t.Errorf("generation %d -> %d for the same spec", gen, got.Meta().Generation)
	}
}

// TestValidateAccepts applies objects at the edges of what validation
// allows: each must be stored.
func TestValidateAccepts(t *testing.T) {
	pt := newPodTest(t)
	p := simplePod("edges", RestartPolicyAlways, "c")
	p.Annotations = map[string]string{
		"example.com/some-key_1.x": strings.Repeat("v", 200<<10),
		"a":                        "",
		"berth.dev/A.b":            "any value\nat all",
	}
	p.Spec.Volumes = []Volume{
		{Name: "cm", ConfigMap: &ConfigMapVolume{Name: "c", Items: []KeyToPath{
			{Key: "a", Path: "x/a"}, {Key: "b", Path: "x/b"}, {Key: "a", Path: "x-y"}, {Key: ".hidden", Path: ".hidden"},
			{Key: "k", Path: "x.y/..z"}, {Key: strings.Repeat("k", 253), Path: "deep/er/still/" + strings.Repeat("f", 255)},
		}}},
		{Name: "s", Secret: &SecretVolume{Name: "s", Items: []KeyToPath{{Key: "tls.crt", Path: "tls/crt"}, {Key: "tls.key", Path: "tls/key"}}}},
		{Name: "e", EmptyDir: &EmptyDirVolume{}},
	}
	c := &p.Spec.Containers[0]
	c.Env = []EnvVar{
		{Name: "my.env-name", Value: "1"}, {Name: "_A"}, {Name: "-x"}, {Name: ".a"},
		{Name: "K", ValueFrom: &EnvVarSource{ConfigMapKeyRef: &KeySelector{Name: "c", Key: "a.b-c_d"}}},
	}
	c.EnvFrom = []EnvFromSource{{ConfigMap: "c", Prefix: "CFG_"}}
	c.VolumeMounts = []VolumeMount{{Name: "cm", MountPath: "/etc/cfg"}, {Name: "s", MountPath: "/etc/cfg/tls"}, {Name: "e", MountPath: "/data/"}}
	c.LivenessProbe = &Probe{HTTPGet: &HTTPGetAction{
		Path: "/healthz?full=1&x=%20", Port: 65535, Host: "::1", Scheme: "HTTPS",
		Headers: map[string]string{"X-Probe": "yes\tplease", "Host": "Example.com:8080", "Accept": "", "x-custom_1!": "a: b"},
	}}
	c.ReadinessProbe = &Probe{HTTPGet: &HTTPGetAction{Port: 1, Host: "My-Svc.default.local", Scheme: "HTTP"}}
	c.StartupProbe = &Probe{TCPSocket: &TCPSocketAction{Port: 80, Host: "10.0.0.1"}}
	for _, obj := range []Object{
		p,
		&ConfigMap{ObjectMeta: ObjectMeta{Name: "c"}, Data: map[string]string{".hidden": "x", "a-b_c.d": "y", strings.Repeat("k", 253): "z"}, BinaryData: map[string][]byte{"b.bin": {1}}},
		&Secret{ObjectMeta: ObjectMeta{Name: "s"}, Data: map[string][]byte{"tls.crt": nil, "tls.key": nil, "a..b": nil}},
	} {
		if _, err := pt.m.Apply(pt.ctx, obj); err != nil {
			t.Errorf("apply %s %s: %v", obj.Kind(), obj.Meta().Name, err)
		}
	}
	for _, host := range []string{"", "127.0.0.1", "localhost", "fe80::1", "a.b-c.d"} {
		if err := ValidateHost("host", host); err != nil {
			t.Errorf("host %q: %v", host, err)
		}
	}
}

// TestValidateAnnotationsSize: keys and values together may fill 256 KiB
// exactly, not a byte more.
func TestValidateAnnotationsSize(t *testing.T) {
	full := map[string]string{"a": strings.Repeat("x", 256<<10-2), "b": ""}
	if err := ValidateAnnotations("spec.template.annotations", full); err != nil {
		t.Errorf("256 KiB: %v", err)
	}
	full["b"] = "x"
	err := ValidateAnnotations("spec.template.annotations", full)
	var fe *FieldError
	if !errors.Is(err, ErrInvalid) || !errors.As(err, &fe) || fe.Field != "spec.template.annotations" {
		t.Errorf("256 KiB + 1: %v", err)
	}
	if err := ValidateAnnotations("metadata.annotations", nil); err != nil {
		t.Errorf("nil: %v", err)
	}
}

// Template annotations are validated.
func TestTemplateAnnotationsValidated(t *testing.T) {
	h := newWLHarness(t)
	bad := map[string]string{"bad key!": "v"}
	rs := newRS("web", 1)
	rs.Spec.Template.Annotations = bad
	d := newDeployment("site", 1)
	d.Spec.Template.Annotations = bad
	j := newJob("batch", 1, 1)
	j.Spec.Template.Annotations = bad
	for _, obj := range []Object{rs, d, j} {
		if _, err := h.m.Apply(h.ctx, obj); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "spec.template.annotations") {
			t.Errorf("%s with a bad template annotation: %v, want ErrInvalid naming spec.template.annotations", obj.Kind(), err)
		}
	}
}
