package manifest_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/manifest"
	"github.com/berthlabs/berth/orchestrate/memstore"
)

func newManager(t *testing.T) *orchestrate.Manager {
	t.Helper()
	m, err := orchestrate.NewManager(orchestrate.Options{Store: memstore.New()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close(context.Background()) })
	return m
}

func decodeFile(t *testing.T, name string) []orchestrate.Object {
	t.Helper()
	f, err := os.Open("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	objs, err := manifest.Decode(f)
	if err != nil {
		t.Fatal(err)
	}
	return objs
}

func kindsAndNames(objs []orchestrate.Object) string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Kind()+"/"+o.Meta().Name)
	}
	return strings.Join(out, " ")
}

// Kubernetes' documentation examples decode as they are written and
// apply.
func TestKubernetesExamples(t *testing.T) {
	ctx := context.Background()

	objs := decodeFile(t, "nginx-deployment.yaml")
	d, ok := objs[0].(*orchestrate.Deployment)
	if len(objs) != 1 || !ok {
		t.Fatalf("nginx-deployment.yaml: %s", kindsAndNames(objs))
	}
	c := d.Spec.Template.Spec.Containers[0]
	if d.Spec.Replicas != 3 || d.Spec.Selector.MatchLabels["app"] != "nginx" || d.Spec.Template.Labels["app"] != "nginx" ||
		c.Name != "nginx" || c.Image != "busybox" || len(c.Ports) != 1 || c.Ports[0].ContainerPort != 80 {
		t.Errorf("nginx Deployment decoded as %+v", d)
	}

	objs = decodeFile(t, "secret-pods.yaml")
	if got := kindsAndNames(objs); got != "Secret/test-secret Pod/secret-test-pod Pod/env-single-secret" {
		t.Fatalf("secret-pods.yaml: %s", got)
	}
	if s := objs[0].(*orchestrate.Secret); string(s.Data["username"]) != "my-app" || string(s.Data["password"]) != "39528$vdg7Jb" {
		t.Errorf("Secret data: %q", s.Data)
	}
	if p := objs[1].(*orchestrate.Pod); p.Spec.Volumes[0].Secret == nil || p.Spec.Volumes[0].Secret.Name != "test-secret" ||
		!p.Spec.Containers[0].VolumeMounts[0].ReadOnly {
		t.Errorf("secret volume pod: %+v", p.Spec)
	}
	if p := objs[2].(*orchestrate.Pod); p.Spec.Containers[0].Env[0].ValueFrom.SecretKeyRef.Key != "username" {
		t.Errorf("secret env pod: %+v", p.Spec.Containers[0].Env)
	}

	objs = append(objs, decodeFile(t, "configmap-pod.yaml")...)
	cm := objs[3].(*orchestrate.ConfigMap)
	if cm.Data["player_initial_lives"] != "3" || !strings.HasPrefix(cm.Data["game.properties"], "enemy.types=aliens,monsters\n") {
		t.Errorf("ConfigMap data: %q", cm.Data)
	}
	p := objs[4].(*orchestrate.Pod)
	if v := p.Spec.Volumes[0].ConfigMap; v == nil || v.Name != "game-demo" || len(v.Items) != 2 || p.Spec.Containers[0].Env[1].ValueFrom.ConfigMapKeyRef.Key != "ui_properties_file_name" {
		t.Errorf("configmap pod: %+v", p.Spec)
	}

	objs = append(objs, d)
	m := newManager(t)
	stored, err := manifest.Apply(ctx, m, objs)
	if err != nil {
		t.Fatal(err)
	}
	for _, o := range stored {
		if o.Meta().Namespace != orchestrate.NamespaceDefault || o.Meta().UID == "" {
			t.Errorf("%s %s stored in %q, UID %q", o.Kind(), o.Meta().Name, o.Meta().Namespace, o.Meta().UID)
		}
	}
}

// specOnly is obj without the metadata the store sets and without status.
func specOnly(obj orchestrate.Object) orchestrate.Object {
	c := obj.DeepCopy()
	m := c.Meta()
	*m = orchestrate.ObjectMeta{Name: m.Name, Namespace: orchestrate.NamespaceOf(c.Kind(), m.Namespace), Labels: m.Labels, Annotations: m.Annotations, OwnerReferences: m.OwnerReferences}
	if s := reflect.ValueOf(c).Elem().FieldByName("Status"); s.IsValid() {
		s.Set(reflect.Zero(s.Type()))
	}
	return c
}

// applyAndEncode applies objs to m, reads them back and encodes them.
func applyAndEncode(t *testing.T, m *orchestrate.Manager, objs []orchestrate.Object) ([]orchestrate.Object, *bytes.Buffer) {
	t.Helper()
	ctx := context.Background()
	if _, err := manifest.Apply(ctx, m, objs); err != nil {
		t.Fatal(err)
	}
	var got []orchestrate.Object
	for _, o := range objs {
		g, err := m.Get(ctx, o.Kind(), o.Meta().Namespace, o.Meta().Name)
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, g)
	}
	var buf bytes.Buffer
	if err := manifest.Encode(&buf, got...); err != nil {
		t.Fatal(err)
	}
	return got, &buf
}

// decode → apply → get → encode → decode gives the same objects, with
// the metadata the store set.
func TestRoundTrip(t *testing.T) {
	ctx := context.Background()
	first := decodeFile(t, "everything.yaml")
	if got := kindsAndNames(first); got != "Namespace/team ConfigMap/cfg Secret/creds Deployment/web ReplicaSet/cache ReplicaSet/legacy Job/migrate Pod/solo" {
		t.Fatalf("decoded %s", got)
	}
	sec := first[2].(*orchestrate.Secret)
	if string(sec.Data["password"]) != "s3cret" || string(sec.Data["user"]) != "admin" || sec.Type != "Opaque" {
		t.Errorf("Secret with stringData: %q %q", sec.Data, sec.Type)
	}
	if rc := first[5].(*orchestrate.ReplicaSet); rc.Spec.Selector.MatchLabels["app"] != "legacy" || rc.Spec.Replicas != 1 {
		t.Errorf("ReplicationController as a ReplicaSet: %+v", rc.Spec)
	}
	if rs := first[4].(*orchestrate.ReplicaSet); rs.Spec.Replicas != 1 {
		t.Errorf("ReplicaSet without replicas: %d, want 1", rs.Spec.Replicas)
	}
	web := first[3].(*orchestrate.Deployment)
	c := web.Spec.Template.Spec.Containers[0]
	if c.Resources.CPUQuota != 50000 || c.Resources.MemoryLimit != 64<<20 || c.Resources.CPUShares != 102 || c.User != "1000:1000" ||
		c.ReadinessProbe.Period != 5*time.Second || web.Spec.ProgressDeadline != 2*time.Minute ||
		*web.Spec.Strategy.MaxSurge != *orchestrate.Count(1) || *web.Spec.Strategy.MaxUnavailable != *orchestrate.Percent(25) ||
		web.Spec.Template.Spec.TerminationGracePeriod != 10*time.Second {
		t.Errorf("Deployment decoded as %+v", web.Spec)
	}

	m := newManager(t)
	got, buf := applyAndEncode(t, m, first)
	for _, want := range []string{"apiVersion: apps/v1\nkind: Deployment\n", "apiVersion: v1\nkind: Namespace\n", "memory: 64Mi", "maxUnavailable: 25%", "uid: ", "resourceVersion: \"", "creationTimestamp: \""} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("encoded YAML lacks %q:\n%s", want, buf.String())
		}
	}
	second, err := manifest.Decode(buf)
	if err != nil {
		t.Fatalf("decode what Encode wrote: %v\n%s", err, buf.String())
	}
	if len(second) != len(first) {
		t.Fatalf("%d objects back, want %d", len(second), len(first))
	}
	for i := range first {
		if a, b := specOnly(first[i]), specOnly(second[i]); !reflect.DeepEqual(a, b) {
			t.Errorf("%s %s changed in the round trip:\n got %+v\nwant %+v", first[i].Kind(), first[i].Meta().Name, b, a)
		}
		g, s := got[i].Meta(), second[i].Meta()
		if g.UID != s.UID || g.ResourceVersion != s.ResourceVersion || g.Generation != s.Generation || !g.CreationTime.Equal(s.CreationTime) {
			t.Errorf("%s %s: metadata %+v back as %+v", first[i].Kind(), g.Name, *g, *s)
		}
	}
	// Applied again, unchanged: nothing is written.
	rev, _ := m.Store().Revision(ctx)
	if _, err := manifest.Apply(ctx, m, second); err != nil {
		t.Fatal(err)
	}
	if after, _ := m.Store().Revision(ctx); after != rev {
		t.Errorf("applying the same objects again wrote (revision %d → %d)", rev, after)
	}
	// Applied with a change: updated in place, UID kept.
	web2 := second[3].(*orchestrate.Deployment)
	web2.Spec.Replicas = 5
	web2.Labels["v"] = "2"
	out, err := manifest.Apply(ctx, m, []orchestrate.Object{web2})
	if err != nil {
		t.Fatal(err)
	}
	if d := out[0].(*orchestrate.Deployment); d.UID != got[3].Meta().UID || d.Generation != 2 || d.Spec.Replicas != 5 || d.Labels["v"] != "2" {
		t.Errorf("updated Deployment: UID %s generation %d replicas %d", d.UID, d.Generation, d.Spec.Replicas)
	}
}

// What Decode does not understand is an error naming the document and
// the field.
func TestDecodeErrors(t *testing.T) {
	pod := func(extra string) string {
		return "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\nspec:\n  containers:\n  - name: c\n    image: busybox\n" + extra
	}
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown field", pod("    imagePullPolicyy: Always\n"), []string{"document 0 (Pod web)", "spec.containers[0].imagePullPolicyy: unknown field"}},
		{"unsupported field", pod("  tolerations: [{key: a}]\n"), []string{"spec.tolerations: unknown field, or one berth does not support"}},
		{"unsupported metadata", "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: c\n  finalizers: [x]\n", []string{"metadata.finalizers"}},
		{"case matters", pod("    Image: other\n"), []string{"spec.containers[0].Image"}},
		{"wrong type", pod("    command: sleep\n"), []string{"spec.containers[0].command", "not a valid []string"}},
		{"wrong type of a number", "apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: d}\nspec:\n  replicas: three\n", []string{"(Deployment d)", "spec.replicas"}},
		{"bad quantity", pod("    resources: {limits: {memory: lots}}\n"), []string{`"lots" is not a quantity`}},
		{"unknown kind", "apiVersion: v1\nkind: Gadget\nmetadata: {name: g}\n", []string{"unknown apiVersion and kind: v1 Gadget"}},
		{"wrong apiVersion", "apiVersion: apps/v1\nkind: Pod\nmetadata: {name: p}\n", []string{"Pod is not served as apps/v1 (it is v1)"}},
		{"missing kind", "apiVersion: v1\nmetadata: {name: p}\n", []string{"kind: missing"}},
		{"missing name", "apiVersion: v1\nkind: ConfigMap\nmetadata: {labels: {a: b}}\n", []string{"(ConfigMap)", "metadata.name: missing"}},
		{"second document", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: ok}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: bad}\ndata: {k: 1}\n", []string{"document 1 (ConfigMap bad)", "data.k"}},
		{"not a mapping", "- a\n- b\n", []string{"document 0", "must be an object"}},
		{"list item", `{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a"},"dataa":{}},{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b"},"dataa":{"k":"v"}}]}`, []string{"(ConfigMap b)", "items[1].dataa"}},
		{"owner apiVersion", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  ownerReferences: [{apiVersion: v1, kind: ReplicaSet, name: r, uid: u}]\nspec: {containers: [{name: c, image: i}]}\n", []string{"metadata.ownerReferences", "not the apiVersion of kind"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			objs, err := manifest.Decode(strings.NewReader(tc.yaml))
			if err == nil {
				t.Fatalf("no error; decoded %s", kindsAndNames(objs))
			}
			var de *manifest.DocumentError
			if !errors.As(err, &de) {
				t.Errorf("%v is not a *DocumentError", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
			if objs != nil {
				t.Errorf("objects returned with the error: %s", kindsAndNames(objs))
			}
		})
	}
	if _, err := manifest.Decode(strings.NewReader("apiVersion: v1\nkind: Gadget\nmetadata: {name: g}\n")); !errors.Is(err, manifest.ErrUnknownKind) {
		t.Errorf("unknown kind: %v does not match ErrUnknownKind", err)
	}
}

// Empty documents, comments and a JSON List decode; zero values of
// fields berth lacks are accepted.
func TestDecodeForms(t *testing.T) {
	objs, err := manifest.Decode(strings.NewReader("---\n# nothing\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: a\n  creationTimestamp: null\n  finalizers: []\nimmutable: false\n---\n\n"))
	if err != nil || kindsAndNames(objs) != "ConfigMap/a" {
		t.Fatalf("%s, %v", kindsAndNames(objs), err)
	}
	objs, err = manifest.Decode(strings.NewReader(`{"apiVersion":"v1","kind":"List","items":[{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"x"}},{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"b","namespace":"x"}}]}`))
	if err != nil || kindsAndNames(objs) != "Namespace/x ConfigMap/b" || objs[1].Meta().Namespace != "x" {
		t.Fatalf("List: %s, %v", kindsAndNames(objs), err)
	}
	objs, err = manifest.Decode(strings.NewReader(`{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"j"}}`))
	if err != nil || kindsAndNames(objs) != "ConfigMap/j" {
		t.Fatalf("JSON object: %s, %v", kindsAndNames(objs), err)
	}
}

// Apply is all or nothing: a second object that fails validation, or one
// in a namespace that does not exist, leaves the store as it was.
func TestApplyAllOrNothing(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct{ name, yaml, want string }{
		{"invalid second", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec: {containers: []}\n", "at least one container"},
		{"unknown namespace", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: nope}\n", `namespace "nope" does not exist`},
		{"bad label", "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: first}\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: {\"bad key!\": x}}\n", "metadata.labels"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := newManager(t)
			objs, err := manifest.Decode(strings.NewReader(tc.yaml))
			if err != nil {
				t.Fatal(err)
			}
			_, err = manifest.Apply(ctx, m, objs)
			if !errors.Is(err, orchestrate.ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Apply: %v, want ErrInvalid and %q", err, tc.want)
			}
			if rev, _ := m.Store().Revision(ctx); rev != 0 {
				t.Errorf("the store was written (revision %d)", rev)
			}
		})
	}
	// A namespace in the same manifest counts.
	m := newManager(t)
	objs, err := manifest.Decode(strings.NewReader("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, namespace: new}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: new}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := manifest.Apply(ctx, m, objs); err != nil {
		t.Fatal(err)
	}
}

// Encode refuses what has no manifest form.
func TestEncodeRefuses(t *testing.T) {
	var buf bytes.Buffer
	p := &orchestrate.Pod{ObjectMeta: orchestrate.ObjectMeta{Name: "p"}, Spec: orchestrate.PodSpec{Containers: []orchestrate.Container{{Name: "c", Image: "i", User: "nobody"}}}}
	if err := manifest.Encode(&buf, p); err == nil || buf.Len() != 0 {
		t.Errorf("Encode of a user name: %v, wrote %q", err, buf.String())
	}
}
