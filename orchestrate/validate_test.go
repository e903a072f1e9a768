package orchestrate

import (
	"errors"
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
	good := simplePod("p", RestartAlways, "c")
	pt.apply(good)
	running := pt.mustRun("p", "c")
	before := pt.pod("p")

	podOf := func(f func(p *Pod)) *Pod {
		p := simplePod("p", RestartAlways, "c")
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
	for _, tc := range []struct {
		field string
		obj   Object
	}{
		{"metadata.name", podOf(func(p *Pod) { p.Name = "Bad_Name" })},
		{"metadata.labels", podOf(func(p *Pod) { p.Labels = map[string]string{"a": "b c"} })},
		{"metadata.annotations", podOf(func(p *Pod) { p.Annotations = map[string]string{"/x": "y"} })},
		{"spec.containers", podOf(func(p *Pod) { p.Spec.Containers = nil })},
		{"spec.containers[1].name", podOf(func(p *Pod) { p.Spec.Containers = append(p.Spec.Containers, p.Spec.Containers[0]) })},
		{"spec.containers[0].name", ctr(func(c *Container) { c.Name = "C" })},
		{"spec.containers[0].image", ctr(func(c *Container) { c.Image = "" })},
		{"spec.containers[0].image", ctr(func(c *Container) { c.Image = "no/such:image" })},
		{"spec.containers[0].workingDir", ctr(func(c *Container) { c.WorkingDir = "rel" })},
		{"spec.containers[0].resources", ctr(func(c *Container) { c.Resources = cgroup.Resources{CPUQuota: -5} })},
		{"spec.containers[0].env[0].name", ctr(func(c *Container) { c.Env = []EnvVar{{Name: "A=B"}} })},
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
		{"spec.containers[0].livenessProbe", probe(func(pr *Probe) { pr.TCPSocket = &TCPSocketAction{Port: 80} })},
		{"spec.containers[0].livenessProbe", probe(func(pr *Probe) { pr.Exec = nil })},
		{"spec.containers[0].livenessProbe.exec.command", probe(func(pr *Probe) { pr.Exec.Command = nil })},
		{"spec.containers[0].livenessProbe.successThreshold", probe(func(pr *Probe) { pr.SuccessThreshold = 2 })},
		{"spec.containers[0].livenessProbe.period", probe(func(pr *Probe) { pr.Period = -time.Second })},
		{"spec.containers[0].livenessProbe.failureThreshold", probe(func(pr *Probe) { pr.FailureThreshold = -1 })},
		{"spec.containers[0].readinessProbe.httpGet.port", ctr(func(c *Container) { c.ReadinessProbe = &Probe{HTTPGet: &HTTPGetAction{Port: 70000}} })},
		{"spec.containers[0].readinessProbe.httpGet.scheme", ctr(func(c *Container) { c.ReadinessProbe = &Probe{HTTPGet: &HTTPGetAction{Port: 80, Scheme: "FTP"}} })},
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
		{"spec.volumes[0].secret.mode", podOf(func(p *Pod) { p.Spec.Volumes = []Volume{{Name: "v", Secret: &SecretVolume{Name: "s", Mode: 0o4755}}} })},
		{"spec", podOf(func(p *Pod) { p.Spec.Hostname = "changed" })}, // a valid spec, but pods are immutable
		{"data", &ConfigMap{ObjectMeta: ObjectMeta{Name: "c"}, Data: map[string]string{"a/b": "x"}}},
		{"binaryData", &ConfigMap{ObjectMeta: ObjectMeta{Name: "c"}, Data: map[string]string{"k": "x"}, BinaryData: map[string][]byte{"k": nil}}},
		{"data", &Secret{ObjectMeta: ObjectMeta{Name: "s"}, Data: map[string][]byte{"..": nil}}},
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
		if objs, _ := pt.m.List(pt.ctx, k, nil); len(objs) != 0 {
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
}
