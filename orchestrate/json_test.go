package orchestrate_test

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berthlabs/berth/cgroup"
	. "github.com/berthlabs/berth/orchestrate"
)

func richPod() *Pod {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	return &Pod{
		ObjectMeta: ObjectMeta{Name: "web", Namespace: "team", Labels: map[string]string{"app": "web"}, UID: "u1",
			Generation: 2, ResourceVersion: 42, CreationTime: t0,
			OwnerReferences: []OwnerReference{{Kind: KindReplicaSet, Name: "rs", UID: "u0", Controller: true}}},
		Spec: PodSpec{
			RestartPolicy: RestartPolicyAlways, TerminationGracePeriod: 30 * time.Second, Hostname: "h",
			Volumes: []Volume{
				{Name: "scratch", EmptyDir: &EmptyDirVolume{Memory: true, SizeLimit: 64 << 20}},
				{Name: "cfg", ConfigMap: &ConfigMapVolume{Name: "cfg", Items: []KeyToPath{{Key: "k", Path: "p"}}, Mode: 0o640}},
				{Name: "sec", Secret: &SecretVolume{Name: "s", Optional: true}},
				{Name: "host", HostPath: &HostPathVolume{Path: "/srv"}},
			},
			Containers: []Container{{
				Name: "app", Image: "busybox", Command: []string{"httpd"}, Args: []string{"-f"}, WorkingDir: "/",
				User:      "1000:100",
				Ports:     []ContainerPort{{Name: "http", ContainerPort: 80}},
				Resources: cgroup.Resources{CPUQuota: 10000, MemoryLimit: 64 << 20, CPUShares: 256, MemoryReservation: 32 << 20},
				Env: []EnvVar{{Name: "A", Value: "1"},
					{Name: "B", ValueFrom: &EnvVarSource{SecretKeyRef: &KeySelector{Name: "s", Key: "k", Optional: true}}}},
				EnvFrom:        []EnvFromSource{{ConfigMap: "cfg", Prefix: "C_"}},
				VolumeMounts:   []VolumeMount{{Name: "cfg", MountPath: "/etc/cfg", ReadOnly: true}},
				LivenessProbe:  &Probe{HTTPGet: &HTTPGetAction{Path: "/", Port: 80, Headers: map[string]string{"X": "y"}}, InitialDelay: 5 * time.Second, Period: 10 * time.Second},
				ReadinessProbe: &Probe{TCPSocket: &TCPSocketAction{Port: 80}, Timeout: 2 * time.Second, FailureThreshold: 3},
				StartupProbe:   &Probe{Exec: &ExecAction{Command: []string{"true"}}},
			}},
		},
		Status: PodStatus{Phase: PodRunning, Ready: true, ReadySince: t0, StartTime: t0, Containers: []ContainerStatus{
			{Name: "app", Image: "busybox", ID: "c1", State: ContainerWaiting, Reason: "CrashLoopBackOff", RestartCount: 2, ExitCode: 1, StartedAt: t0, FinishedAt: t0.Add(time.Second)},
		}},
	}
}

// Objects go through JSON unchanged, in Kubernetes' field names and
// forms.
func TestJSONKubernetesForm(t *testing.T) {
	p := richPod()
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	s := string(b)
	for _, want := range []string{`"metadata":{"name":"web","namespace":"team"`, `"resourceVersion":"42"`, `"creationTimestamp":"2025-01-02T03:04:05Z"`,
		`"terminationGracePeriodSeconds":30`, `"limits":{"cpu":"100m","memory":"64Mi"}`, `"requests":{"cpu":"250m","memory":"32Mi"}`,
		`"securityContext":{"runAsUser":1000,"runAsGroup":100}`, `"secretKeyRef":{"name":"s","key":"k","optional":true}`,
		`"configMapRef":{"name":"cfg"}`, `"emptyDir":{"medium":"Memory","sizeLimit":"64Mi"}`, `"defaultMode":416`, `"secretName":"s"`,
		`"httpHeaders":[{"name":"X","value":"y"}]`, `"initialDelaySeconds":5`, `"timeoutSeconds":2`, `"containerPort":80`,
		`"containerStatuses":[{"name":"app"`, `"state":{"waiting":{"reason":"CrashLoopBackOff"}}`, `"lastState":{"terminated":{"exitCode":1`} {
		if !strings.Contains(s, want) {
			t.Errorf("JSON lacks %s:\n%s", want, s)
		}
	}
	var back Pod
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&back, p) {
		t.Errorf("round trip:\n got %+v\nwant %+v", back, *p)
	}

	d := &Deployment{ObjectMeta: ObjectMeta{Name: "d"}, Spec: DeploymentSpec{Replicas: 0, Selector: &LabelSelector{MatchLabels: map[string]string{"a": "b"}},
		Template: PodTemplate{Labels: map[string]string{"a": "b"}, Spec: p.Spec}, ProgressDeadline: 600 * time.Second,
		Strategy: DeploymentStrategy{Type: RollingUpdateDeploymentStrategyType, MaxSurge: Percent(25), MaxUnavailable: Count(1)}},
		Status: DeploymentStatus{Conditions: []Condition{{Type: "Available", Status: true, Reason: "MinimumReplicasAvailable"}}}}
	b, err = json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`"replicas":0`, `"template":{"metadata":{"labels":{"a":"b"}},"spec":`, `"rollingUpdate":{"maxSurge":"25%","maxUnavailable":1}`,
		`"progressDeadlineSeconds":600`, `"status":"True"`, `"matchLabels":{"a":"b"}`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("Deployment JSON lacks %s:\n%s", want, b)
		}
	}
	var db Deployment
	if err := json.Unmarshal(b, &db); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&db, d) {
		t.Errorf("Deployment round trip:\n got %+v\nwant %+v", db, *d)
	}
	// Replicas left out mean 1, as in Kubernetes.
	var rs ReplicaSet
	if err := json.Unmarshal([]byte(`{"metadata":{"name":"r"},"spec":{"template":{"spec":{"containers":[]}}}}`), &rs); err != nil || rs.Spec.Replicas != 1 {
		t.Errorf("ReplicaSet without replicas: %d, %v; want 1", rs.Spec.Replicas, err)
	}
}

// What Kubernetes' JSON holds in forms berth cannot represent is an
// error, never dropped.
func TestJSONRefuses(t *testing.T) {
	for _, tc := range []struct{ json, want string }{
		{`{"name":"a","image":"i","resources":{"limits":{"nvidia.com/gpu":1}}}`, `resources.limits.nvidia.com/gpu: resource "nvidia.com/gpu" is not supported`},
		{`{"name":"a","image":"i","resources":{"limits":{"memory":"12Q"}}}`, `resources.limits.memory: "12Q" is not a quantity`},
		{`{"name":"a","image":"i","securityContext":{"runAsGroup":1}}`, `runAsGroup: needs runAsUser`},
		{`{"name":"a","image":"i","livenessProbe":{"httpGet":{"port":"http"}}}`, `named port "http" is not supported`},
	} {
		var c Container
		err := json.Unmarshal([]byte(tc.json), &c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: %v, want %q", tc.json, err, tc.want)
		}
	}
	if _, err := json.Marshal(Container{Name: "a", User: "nobody"}); err == nil || !strings.Contains(err.Error(), "numeric IDs") {
		t.Errorf("user name: %v", err)
	}
	if _, err := json.Marshal(Container{Name: "a", Resources: cgroup.Resources{PidsLimit: 10}}); err == nil {
		t.Errorf("PidsLimit: no error")
	}
}
