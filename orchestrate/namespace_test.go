package orchestrate_test

import (
	"errors"
	"strings"
	"testing"
	"time"

	. "github.com/berthlabs/berth/orchestrate"
)

func namespace(name string) *Namespace {
	return &Namespace{ObjectMeta: ObjectMeta{Name: name}}
}

func inNamespace[T Object](ns string, obj T) T {
	obj.Meta().Namespace = ns
	return obj
}

// Two pods "web" in two namespaces are two pods; a new Namespace becomes
// Active.
func TestNamespaceNamesIsolate(t *testing.T) {
	h := newWLHarness(t)
	h.apply(namespace("team"))
	a := h.apply(simplePod("web", "", "c")).(*Pod)
	b := h.apply(inNamespace("team", simplePod("web", "", "c"))).(*Pod)
	h.settle()
	if a.Namespace != NamespaceDefault || b.Namespace != "team" || a.UID == b.UID {
		t.Fatalf("pods: %s/%s %s, %s/%s %s", a.Namespace, a.Name, a.UID, b.Namespace, b.Name, b.UID)
	}
	got, err := Get[*Pod](h.ctx, h.m, "team", "web")
	if err != nil || got.UID != b.UID {
		t.Fatalf("Get team/web: %v, %v", got, err)
	}
	all, _ := List[*Pod](h.ctx, h.m, NamespaceAll, nil)
	inTeam, _ := List[*Pod](h.ctx, h.m, "team", nil)
	if len(all) != 2 || len(inTeam) != 1 {
		t.Errorf("List: %d in all, %d in team; want 2 and 1", len(all), len(inTeam))
	}
	n, _ := Get[*Namespace](h.ctx, h.m, "", "team")
	if n.Status.Phase != NamespaceActive {
		t.Errorf("namespace phase %q, want Active", n.Status.Phase)
	}
}

// A ReplicaSet's selector does not reach pods of another namespace, and
// its pods are made in its namespace.
func TestNamespaceSelectorsDoNotCross(t *testing.T) {
	h := newWLHarness(t)
	h.apply(namespace("team"))
	orphan := simplePod("stray", "", "c")
	orphan.Labels = map[string]string{"app": "web"}
	h.apply(orphan) // in default, matching the selector
	rs := h.apply(inNamespace("team", newRS("web", 2))).(*ReplicaSet)
	h.settle()
	pods, _ := List[*Pod](h.ctx, h.m, "team", nil)
	if len(pods) != 2 {
		t.Fatalf("%d pods in team, want 2", len(pods))
	}
	for _, p := range pods {
		if ref := ControllerOf(&p.ObjectMeta); ref == nil || ref.UID != rs.UID {
			t.Errorf("pod %s not controlled by the ReplicaSet", p.Name)
		}
	}
	stray, _ := Get[*Pod](h.ctx, h.m, "", "stray")
	if ControllerOf(&stray.ObjectMeta) != nil {
		t.Errorf("the ReplicaSet of team adopted default/stray")
	}
	// A ReplicaSet of the same name in default is another one.
	h.apply(newRS("web", 1))
	h.settle()
	if got, _ := Get[*ReplicaSet](h.ctx, h.m, "team", "web"); got.Status.Replicas != 2 {
		t.Errorf("team/web has %d replicas, want 2", got.Status.Replicas)
	}
	if got, _ := Get[*ReplicaSet](h.ctx, h.m, "", "web"); got.Status.Replicas != 1 {
		t.Errorf("default/web has %d replicas (it adopted default/stray: want 1)", got.Status.Replicas)
	}
}

// Deleting a Namespace marks it Terminating, deletes what is in it (pods
// gracefully: their containers stop first), then the Namespace; other
// namespaces keep theirs.
func TestNamespaceDeletionCascades(t *testing.T) {
	h, rt := newWLHarnessRuntime(t, "busybox", "web:v1")
	h.apply(namespace("team"))
	h.apply(inNamespace("team", newRS("web", 2)))
	h.apply(inNamespace("team", &ConfigMap{ObjectMeta: ObjectMeta{Name: "cfg"}, Data: map[string]string{"k": "v"}}))
	h.apply(inNamespace("team", simplePod("solo", "", "c")))
	h.apply(simplePod("keep", "", "c"))
	h.settle()
	if _, live := podsByDeletion(t, h.m); len(live) != 4 {
		t.Fatalf("%d pods before, want 4", len(live))
	}
	if err := h.m.Delete(h.ctx, KindNamespace, "", "team"); err != nil {
		t.Fatal(err)
	}
	h.settle()
	// The fake runtime's containers stop on the fake clock's grace
	// period: until then the Namespace is Terminating.
	if n, err := Get[*Namespace](h.ctx, h.m, "", "team"); err == nil {
		if n.Status.Phase != NamespaceTerminating {
			t.Errorf("phase %q while being deleted, want Terminating", n.Status.Phase)
		}
		if _, err := h.m.Apply(h.ctx, inNamespace("team", simplePod("late", "", "c"))); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "being deleted") {
			t.Errorf("Apply in a terminating namespace: %v", err)
		}
	}
	for range 20 {
		h.step(10 * time.Second)
	}
	if _, err := Get[*Namespace](h.ctx, h.m, "", "team"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Namespace after its deletion: %v, want ErrNotFound", err)
	}
	for _, kind := range []string{KindPod, KindReplicaSet, KindConfigMap} {
		if left, _ := h.m.List(h.ctx, kind, "team", nil); len(left) != 0 {
			t.Errorf("%d %s left in the deleted namespace", len(left), kind)
		}
	}
	if _, err := Get[*Pod](h.ctx, h.m, "", "keep"); err != nil {
		t.Errorf("default/keep: %v", err)
	}
	if cs, _ := rt.Live(); len(cs) != 1 {
		t.Errorf("%d containers run, want 1 (default/keep's)", len(cs))
	}
}

// Objects are refused in a namespace that does not exist (the error
// names it), a cluster-scoped object cannot name a namespace, and the
// default namespace cannot be deleted.
func TestNamespaceUnknownRefused(t *testing.T) {
	h := newWLHarness(t)
	_, err := h.m.Apply(h.ctx, inNamespace("nope", simplePod("web", "", "c")))
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), `namespace "nope" does not exist`) {
		t.Errorf("Apply in an unknown namespace: %v", err)
	}
	if _, err := h.m.Apply(h.ctx, inNamespace("team", namespace("x"))); !errors.Is(err, ErrInvalid) {
		t.Errorf("Apply of a Namespace with a namespace: %v", err)
	}
	if _, err := h.m.Apply(h.ctx, inNamespace("Bad_NS", simplePod("web", "", "c"))); !errors.Is(err, ErrInvalid) {
		t.Errorf("Apply in an invalid namespace name: %v", err)
	}
	if err := h.m.Delete(h.ctx, KindNamespace, "", NamespaceDefault); !errors.Is(err, ErrInvalid) {
		t.Errorf("Delete the default namespace: %v", err)
	}
	if objs, _ := h.m.List(h.ctx, KindPod, NamespaceAll, nil); len(objs) != 0 {
		t.Errorf("%d pods stored", len(objs))
	}
}

// ApplyAll checks every object first: a Namespace among them counts as
// existing, and one bad object means nothing is written.
func TestApplyAll(t *testing.T) {
	h := newWLHarness(t)
	bad := simplePod("bad", "", "c")
	bad.Spec.Containers = nil
	_, err := h.m.ApplyAll(h.ctx, inNamespace("team", simplePod("web", "", "c")), namespace("team"), bad)
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "object 2") {
		t.Fatalf("ApplyAll with a bad object: %v", err)
	}
	for _, kind := range []string{KindPod, KindNamespace} {
		if objs, _ := h.m.List(h.ctx, kind, NamespaceAll, nil); len(objs) != 0 {
			t.Errorf("%d %s written by a refused ApplyAll", len(objs), kind)
		}
	}
	out, err := h.m.ApplyAll(h.ctx, inNamespace("team", simplePod("web", "", "c")), namespace("team"))
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Meta().Namespace != "team" || out[1].Kind() != KindNamespace {
		t.Errorf("ApplyAll returned %v", out)
	}
}

// A pod's ConfigMaps and Secrets are those of its namespace.
func TestNamespaceConfigOfPodsNamespace(t *testing.T) {
	h, rt := newWLHarnessRuntime(t, "busybox")
	h.apply(namespace("team"))
	h.apply(&ConfigMap{ObjectMeta: ObjectMeta{Name: "cfg"}, Data: map[string]string{"mode": "default"}})
	h.apply(inNamespace("team", &ConfigMap{ObjectMeta: ObjectMeta{Name: "cfg"}, Data: map[string]string{"mode": "team"}}))
	h.apply(inNamespace("team", &Secret{ObjectMeta: ObjectMeta{Name: "creds"}, Data: map[string][]byte{"pw": []byte("team-pw")}}))
	p := inNamespace("team", simplePod("reader", "", "c"))
	p.Spec.Containers[0].EnvFrom = []EnvFromSource{{ConfigMap: "cfg"}}
	p.Spec.Containers[0].Env = []EnvVar{{Name: "PW", ValueFrom: &EnvVarSource{SecretKeyRef: &KeySelector{Name: "creds", Key: "pw"}}}}
	h.apply(p)
	h.settle()
	c := rt.Running("reader", "c")
	if c == nil {
		pod, _ := Get[*Pod](h.ctx, h.m, "team", "reader")
		t.Fatalf("not running: %+v", pod.Status)
	}
	env := strings.Join(c.Config.Env, " ")
	if !strings.Contains(env, "mode=team") || !strings.Contains(env, "PW=team-pw") {
		t.Errorf("env %q, want team's ConfigMap and Secret", env)
	}
	// A pod of another namespace does not see team's Secret.
	q := simplePod("other", "", "c")
	q.Spec.Containers[0].Env = []EnvVar{{Name: "PW", ValueFrom: &EnvVarSource{SecretKeyRef: &KeySelector{Name: "creds", Key: "pw"}}}}
	h.apply(q)
	h.settle()
	if rt.Running("other", "c") != nil {
		t.Errorf("default/other runs with team's Secret")
	}
}
