// Package storetest checks an orchestrate.Store against the contract
// written on that interface, as containerd's snapshots/testsuite does
// for snapshotters. Every implementation runs it from its own tests:
//
//	func TestStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) orchestrate.Store { return memstore.New() })
//	}
//
// The suite checks behaviour only (what a caller of the interface can
// see), so a store on another back end (etcd) passes it unchanged.
package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/berthlabs/berth/orchestrate"
)

// Run runs the suite's tests as subtests of t, each on an empty store
// made by newStore (called once per subtest; the store is the subtest's
// to use, and t.Cleanup can close it). The suite assumes that a store
// keeps at least its last 16 changes for watches that replay them
// (WatchOptions.Since); what happens to older ones is the store's to
// test.
func Run(t *testing.T, newStore func(t *testing.T) orchestrate.Store) {
	tests := []struct {
		name string
		fn   func(t *testing.T, s orchestrate.Store)
	}{
		{"CreateSetsMetadata", testCreateSetsMetadata},
		{"CreateRefuses", testCreateRefuses},
		{"Generation", testGeneration},
		{"GenerationWithoutSpec", testGenerationWithoutSpec},
		{"NoOpUpdate", testNoOpUpdate},
		{"Conflicts", testConflicts},
		{"NotFound", testNotFound},
		{"Status", testStatus},
		{"Deletion", testDeletion},
		{"GracefulDeletion", testGracefulDeletion},
		{"Copies", testCopies},
		{"List", testList},
		{"ResourceVersions", testResourceVersions},
		{"Watch", testWatch},
		{"WatchInitial", testWatchInitial},
		{"WatchSince", testWatchSince},
		{"WatchCopies", testWatchCopies},
		{"WatchEnds", testWatchEnds},
		{"ConcurrentWriters", testConcurrentWriters},
		{"Namespaces", testNamespaces},
		{"NamespaceDefault", testNamespaceDefault},
		{"ClusterScoped", testClusterScoped},
		{"WatchNamespace", testWatchNamespace},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.fn(t, newStore(t))
		})
	}
}

// pod returns a pod named name with one container.
func pod(name string) *orchestrate.Pod {
	return &orchestrate.Pod{
		ObjectMeta: orchestrate.ObjectMeta{Name: name, Labels: map[string]string{"app": name}},
		Spec: orchestrate.PodSpec{Containers: []orchestrate.Container{
			{Name: "c", Image: "busybox", Command: []string{"sleep", "1000"}},
		}},
	}
}

// configMap returns a ConfigMap named name holding k=v.
func configMap(name, k, v string) *orchestrate.ConfigMap {
	return &orchestrate.ConfigMap{ObjectMeta: orchestrate.ObjectMeta{Name: name}, Data: map[string]string{k: v}}
}

func mustCreate[T orchestrate.Object](t *testing.T, s orchestrate.Store, obj T) T {
	t.Helper()
	got, err := s.Create(context.Background(), obj)
	if err != nil {
		t.Fatalf("create %s %s: %v", obj.Kind(), obj.Meta().Name, err)
	}
	return asT[T](t, got)
}

func mustUpdate[T orchestrate.Object](t *testing.T, s orchestrate.Store, obj T) T {
	t.Helper()
	got, err := s.Update(context.Background(), obj)
	if err != nil {
		t.Fatalf("update %s %s: %v", obj.Kind(), obj.Meta().Name, err)
	}
	return asT[T](t, got)
}

func mustGet[T orchestrate.Object](t *testing.T, s orchestrate.Store, name string) T {
	t.Helper()
	got, err := orchestrate.Get[T](context.Background(), s, "", name)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func mustGetIn[T orchestrate.Object](t *testing.T, s orchestrate.Store, namespace, name string) T {
	t.Helper()
	got, err := orchestrate.Get[T](context.Background(), s, namespace, name)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

func asT[T orchestrate.Object](t *testing.T, obj orchestrate.Object) T {
	t.Helper()
	got, ok := obj.(T)
	if !ok {
		var zero T
		t.Fatalf("the store returned a %T, want a %T", obj, zero)
	}
	return got
}

func names(objs []orchestrate.Object) string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Meta().Name)
	}
	return fmt.Sprint(out)
}

// Create sets UID, Generation, ResourceVersion and CreationTime, clears
// DeletionTime and the status, and a re-created object has a new UID.
func testCreateSetsMetadata(t *testing.T, s orchestrate.Store) {
	ctx := context.Background()
	p := pod("a")
	gone := time.Now()
	p.DeletionTime = &gone
	p.UID, p.Generation, p.ResourceVersion = "mine", 7, 99
	p.Status.Phase = orchestrate.PodRunning
	before := time.Now().Add(-time.Second)
	created := mustCreate(t, s, p)
	m := created.ObjectMeta
	if m.UID == "" || m.UID == "mine" || m.Generation != 1 || m.ResourceVersion == 0 || m.DeletionTime != nil {
		t.Errorf("metadata after Create: %+v", m)
	}
	if m.CreationTime.Before(before) || m.CreationTime.After(time.Now().Add(time.Second)) {
		t.Errorf("CreationTime %v, want about now", m.CreationTime)
	}
	if created.Status.Phase != "" {
		t.Errorf("status after Create: %+v, want none", created.Status)
	}
	got := mustGet[*orchestrate.Pod](t, s, "a")
	if got.UID != m.UID || got.ResourceVersion != m.ResourceVersion || got.Spec.Containers[0].Image != "busybox" {
		t.Errorf("Get after Create: %+v", got.ObjectMeta)
	}
	if err := s.Delete(ctx, orchestrate.KindPod, "", "a"); err != nil {
		t.Fatal(err)
	}
	again := mustCreate(t, s, pod("a"))
	if again.UID == m.UID || again.Generation != 1 {
		t.Errorf("re-created object: UID %s (old %s), generation %d", again.UID, m.UID, again.Generation)
	}
}

// Create refuses a taken name (ErrExists), and a nil object or one
// without a name (ErrInvalid); the same name in another kind is free.
func testCreateRefuses(t *testing.T, s orchestrate.Store) {
	ctx := context.Background()
	mustCreate(t, s, pod("a"))
	if _, err := s.Create(ctx, pod("a")); !errors.Is(err, orchestrate.ErrExists) {
		t.Errorf("second Create: %v, want ErrExists", err)
	}
	if _, err := s.Create(ctx, &orchestrate.Pod{}); !errors.Is(err, orchestrate.ErrInvalid) {
		t.Errorf("Create without a name: %v, want ErrInvalid", err)
	}
	if _, err := s.Create(ctx, nil); !errors.Is(err, orchestrate.ErrInvalid) {
		t.Errorf("Create(nil): %v, want ErrInvalid", err)
	}
	if _, err := s.Create(ctx, (*orchestrate.Pod)(nil)); !errors.Is(err, orchestrate.ErrInvalid) {
		t.Errorf("Create of a nil *Pod: %v, want ErrInvalid", err)
	}
	mustCreate(t, s, configMap("a", "k", "v"))
}

// Generation counts spec changes only; metadata changes give a new
// ResourceVersion and keep UID and CreationTime.
func testGeneration(t *testing.T, s orchestrate.Store) {
	created := mustCreate(t, s, pod("a"))
	upd := mustGet[*orchestrate.Pod](t, s, "a")
	upd.Labels["tier"] = "front"
	upd.Annotations = map[string]string{"note": "x"}
	u1 := mustUpdate(t, s, upd)
	if u1.Generation != 1 || u1.ResourceVersion <= created.ResourceVersion || u1.UID != created.UID ||
		!u1.CreationTime.Equal(created.CreationTime) || u1.Labels["tier"] != "front" {
		t.Errorf("after a label change: %+v", u1.ObjectMeta)
	}
	u1.Spec.Hostname = "h"
	u1.UID, u1.Generation = "", 40 // ignored
	u2 := mustUpdate(t, s, u1)
	if u2.Generation != 2 || u2.UID != created.UID {
		t.Errorf("after a spec change: generation %d UID %s, want 2 and %s", u2.Generation, u2.UID, created.UID)
	}
}

// For kinds without a Spec field every field but the metadata and
// status is the spec.
func testGenerationWithoutSpec(t *testing.T, s orchestrate.Store) {
	mustCreate(t, s, configMap("c", "k", "1"))
	upd := mustGet[*orchestrate.ConfigMap](t, s, "c")
	upd.Data["k"] = "2"
	if got := mustUpdate(t, s, upd); got.Generation != 2 {
		t.Errorf("data change: generation %d, want 2", got.Generation)
	}
	sec := mustCreate(t, s, &orchestrate.Secret{ObjectMeta: orchestrate.ObjectMeta{Name: "s"}, Data: map[string][]byte{"k": []byte("1")}})
	sec.Data["k"] = []byte("2")
	if got := mustUpdate(t, s, sec); got.Generation != 2 {
		t.Errorf("secret data change: generation %d, want 2", got.Generation)
	}
}

// An update that changes nothing is no write: same version, no event.
func testNoOpUpdate(t *testing.T, s orchestrate.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	created := mustCreate(t, s, pod("a"))
	w, err := s.Watch(ctx, orchestrate.KindPod, orchestrate.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	same := mustUpdate(t, s, created)
	if same.ResourceVersion != created.ResourceVersion {
		t.Errorf("no-op Update: version %d → %d", created.ResourceVersion, same.ResourceVersion)
	}
	st, err := s.UpdateStatus(ctx, created)
	if err != nil || st.Meta().ResourceVersion != created.ResourceVersion {
		t.Errorf("no-op UpdateStatus: %v, version %d → %d", err, created.ResourceVersion, st.Meta().ResourceVersion)
	}
	// A real write afterwards is the first event the watch sees.
	created.Labels["x"] = "y"
	real := mustUpdate(t, s, created)
	ev := next(t, w)
	if ev.Type != orchestrate.WatchModified || ev.ResourceVersion != real.ResourceVersion {
		t.Errorf("first event after no-op writes: %s at %d, want Modified at %d", ev.Type, ev.ResourceVersion, real.ResourceVersion)
	}
}

// Update and UpdateStatus with a stale ResourceVersion or another UID
// conflict; 0 and "" skip the checks.
func testConflicts(t *testing.T, s orchestrate.Store) {
	ctx := context.Background()
	v1 := mustCreate(t, s, pod("a"))
	v1.Labels["n"] = "1"
	v2 := mustUpdate(t, s, v1)
	stale := v1.DeepCopy().(*orchestrate.Pod)
	stale.Labels["n"] = "stale"
	if _, err := s.Update(ctx, stale); !errors.Is(err, orchestrate.ErrConflict) {
		t.Errorf("Update at a stale version: %v, want ErrConflict", err)
	}
	stale.Status.Phase = orchestrate.PodRunning
	if _, err := s.UpdateStatus(ctx, stale); !errors.Is(err, orchestrate.ErrConflict) {
		t.Errorf("UpdateStatus at a stale version: %v, want ErrConflict", err)
	}
	other := v2.DeepCopy().(*orchestrate.Pod)
	other.UID = "another-uid"
	other.Labels["n"] = "other"
	if _, err := s.Update(ctx, other); !errors.Is(err, orchestrate.ErrConflict) {
		t.Errorf("Update with another UID: %v, want ErrConflict", err)
	}
	if got := mustGet[*orchestrate.Pod](t, s, "a"); got.Labels["n"] != "1" || got.ResourceVersion != v2.ResourceVersion {
		t.Errorf("a refused update changed the object: %+v", got.ObjectMeta)
	}
	stale.ResourceVersion, stale.UID = 0, ""
	if got := mustUpdate(t, s, stale); got.Labels["n"] != "stale" {
		t.Errorf("unconditional Update: labels %v", got.Labels)
	}
}

// Get, Update, UpdateStatus and Delete of a missing object: ErrNotFound.
func testNotFound(t *testing.T, s orchestrate.Store) {
	ctx := context.Background()
	mustCreate(t, s, configMap("a", "k", "v")) // the name in another kind
	if _, err := s.Get(ctx, orchestrate.KindPod, "", "a"); !errors.Is(err, orchestrate.ErrNotFound) {
		t.Errorf("Get: %v, want ErrNotFound", err)
	}
	if _, err := s.Update(ctx, pod("a")); !errors.Is(err, orchestrate.ErrNotFound) {
		t.Errorf("Update: %v, want ErrNotFound", err)
	}
	if _, err := s.UpdateStatus(ctx, pod("a")); !errors.Is(err, orchestrate.ErrNotFound) {
		t.Errorf("UpdateStatus: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, orchestrate.KindPod, "", "a"); !errors.Is(err, orchestrate.ErrNotFound) {
		t.Errorf("Delete: %v, want ErrNotFound", err)
	}
	if _, err := orchestrate.Get[*orchestrate.Pod](ctx, s, "", "a"); !errors.Is(err, orchestrate.ErrNotFound) {
		t.Errorf("orchestrate.Get: %v, want ErrNotFound", err)
	}
}

// UpdateStatus changes only the status; Update keeps the stored status;
// a kind without status is refused.
func testStatus(t *testing.T, s orchestrate.Store) {
	ctx := context.Background()
	created := mustCreate(t, s, pod("a"))
	st := created.DeepCopy().(*orchestrate.Pod)
	st.Status.Phase = orchestrate.PodRunning
	st.Status.Containers = []orchestrate.ContainerStatus{{Name: "c", State: orchestrate.ContainerRunning}}
	st.Spec.Hostname = "ignored"
	st.Labels["ignored"] = "yes"
	obj, err := s.UpdateStatus(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	after := asT[*orchestrate.Pod](t, obj)
	if after.Status.Phase != orchestrate.PodRunning || len(after.Status.Containers) != 1 {
		t.Errorf("status after UpdateStatus: %+v", after.Status)
	}
	if after.Spec.Hostname != "" || after.Labels["ignored"] != "" || after.Generation != 1 || after.ResourceVersion <= created.ResourceVersion {
		t.Errorf("UpdateStatus changed more than the status, or not the version: %+v %+v", after.ObjectMeta, after.Spec)
	}
	spec := after.DeepCopy().(*orchestrate.Pod)
	spec.Status = orchestrate.PodStatus{Phase: orchestrate.PodFailed}
	spec.Labels["x"] = "y"
	if got := mustUpdate(t, s, spec); got.Status.Phase != orchestrate.PodRunning || got.Labels["x"] != "y" {
		t.Errorf("Update: status %s labels %v, want the stored status kept and the labels changed", got.Status.Phase, got.Labels)
	}
	cm := mustCreate(t, s, configMap("c", "k", "v"))
	if _, err := s.UpdateStatus(ctx, cm); !errors.Is(err, orchestrate.ErrInvalid) {
		t.Errorf("UpdateStatus of a kind without status: %v, want ErrInvalid", err)
	}
}

// Delete removes at once, whatever the DeletionTime, and a second
// Delete finds nothing.
func testDeletion(t *testing.T, s orchestrate.Store) {
	ctx := context.Background()
	p := mustCreate(t, s, pod("a"))
	now := time.Now()
	p.DeletionTime = &now
	mustUpdate(t, s, p)
	if err := s.Delete(ctx, orchestrate.KindPod, "", "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, orchestrate.KindPod, "", "a"); !errors.Is(err, orchestrate.ErrNotFound) {
		t.Errorf("Get after Delete: %v, want ErrNotFound", err)
	}
	if err := s.Delete(ctx, orchestrate.KindPod, "", "a"); !errors.Is(err, orchestrate.ErrNotFound) {
		t.Errorf("second Delete: %v, want ErrNotFound", err)
	}
	if list, _ := s.List(ctx, orchestrate.KindPod, "", nil); len(list) != 0 {
		t.Errorf("List after Delete: %s", names(list))
	}
}

// A DeletionTime, once set (only on a Pod), is kept, and the spec no
// longer changes.
func testGracefulDeletion(t *testing.T, s orchestrate.Store) {
	ctx := context.Background()
	cm := mustCreate(t, s, configMap("cfg", "k", "v"))
	now := time.Now().Truncate(time.Second)
	cm.DeletionTime = &now
	if _, err := s.Update(ctx, cm); !errors.Is(err, orchestrate.ErrInvalid) {
		t.Errorf("DeletionTime on a ConfigMap: %v, want ErrInvalid", err)
	}
	p := mustCreate(t, s, pod("a"))
	p.DeletionTime = &now
	deleting := mustUpdate(t, s, p)
	if deleting.DeletionTime == nil || !deleting.DeletionTime.Equal(now) {
		t.Fatalf("DeletionTime after Update: %v, want %v", deleting.DeletionTime, now)
	}
	later := now.Add(time.Hour)
	clear := deleting.DeepCopy().(*orchestrate.Pod)
	clear.DeletionTime = nil
	clear.Labels["x"] = "1"
	if got := mustUpdate(t, s, clear); got.DeletionTime == nil || !got.DeletionTime.Equal(now) {
		t.Errorf("DeletionTime after an Update clearing it: %v, want %v kept", got.DeletionTime, now)
	}
	moved := mustGet[*orchestrate.Pod](t, s, "a")
	moved.DeletionTime = &later
	if got := mustUpdate(t, s, moved); !got.DeletionTime.Equal(now) {
		t.Errorf("DeletionTime after an Update moving it: %v, want %v kept", got.DeletionTime, now)
	}
	spec := mustGet[*orchestrate.Pod](t, s, "a")
	spec.Spec.Hostname = "changed"
	if _, err := s.Update(ctx, spec); !errors.Is(err, orchestrate.ErrInvalid) {
		t.Errorf("spec change of a pod being deleted: %v, want ErrInvalid", err)
	}
}

// What goes in and comes out are copies.
func testCopies(t *testing.T, s orchestrate.Store) {
	ctx := context.Background()
	p := pod("a")
	created := mustCreate(t, s, p)
	p.Labels["app"] = "changed"
	p.Spec.Containers[0].Command[0] = "changed"
	created.Spec.Containers[0].Image = "changed"
	created.Labels["app"] = "changed"
	got := mustGet[*orchestrate.Pod](t, s, "a")
	if got.Labels["app"] != "a" || got.Spec.Containers[0].Command[0] != "sleep" || got.Spec.Containers[0].Image != "busybox" {
		t.Errorf("the stored object changed through a caller's object: %+v %+v", got.ObjectMeta, got.Spec)
	}
	got.Labels["app"] = "x"
	list, err := s.List(ctx, orchestrate.KindPod, "", nil)
	if err != nil || len(list) != 1 || list[0].Meta().Labels["app"] != "a" {
		t.Errorf("the stored object changed through a Get result: %v %v", list, err)
	}
	list[0].Meta().Labels["app"] = "y"
	upd := mustGet[*orchestrate.Pod](t, s, "a")
	upd.Labels["tier"] = "t"
	updated := mustUpdate(t, s, upd)
	upd.Labels["tier"] = "after"
	updated.Labels["tier"] = "after"
	if got := mustGet[*orchestrate.Pod](t, s, "a"); got.Labels["app"] != "a" || got.Labels["tier"] != "t" {
		t.Errorf("the stored object changed through a List or Update result: %v", got.Labels)
	}
}

// List sorts by name, filters by kind and selector, and is empty for a
// kind the store has nothing of.
func testList(t *testing.T, s orchestrate.Store) {
	ctx := context.Background()
	for _, n := range []string{"c", "a", "b"} {
		p := pod(n)
		p.Labels["tier"] = map[string]string{"a": "front", "b": "back", "c": "front"}[n]
		mustCreate(t, s, p)
	}
	mustCreate(t, s, configMap("a", "k", "v"))
	all, err := s.List(ctx, orchestrate.KindPod, "", nil)
	if err != nil || names(all) != "[a b c]" {
		t.Errorf("List = %s, %v; want [a b c]", names(all), err)
	}
	front, _ := s.List(ctx, orchestrate.KindPod, "", &orchestrate.LabelSelector{MatchLabels: map[string]string{"tier": "front"}})
	if names(front) != "[a c]" {
		t.Errorf("List tier=front = %s, want [a c]", names(front))
	}
	notFront, _ := s.List(ctx, orchestrate.KindPod, "", &orchestrate.LabelSelector{MatchExpressions: []orchestrate.LabelSelectorRequirement{
		{Key: "tier", Operator: orchestrate.LabelSelectorOpNotIn, Values: []string{"front"}},
	}})

	if names(notFront) != "[b]" {
		t.Errorf("List tier notin (front) = %s, want [b]", names(notFront))
	}
	none, err := s.List(ctx, orchestrate.KindJob, "", nil)
	if err != nil || len(none) != 0 {
		t.Errorf("List of a kind with nothing stored: %v, %v", none, err)
	}
	pods, err := orchestrate.List[*orchestrate.Pod](ctx, s, "", nil)
	if err != nil || len(pods) != 3 || pods[0].Name != "a" {
		t.Errorf("orchestrate.List: %v, %v", pods, err)
	}
}

// Every write gets a greater ResourceVersion, across kinds, and Revision
// is the latest; a deletion has its own.
func testResourceVersions(t *testing.T, s orchestrate.Store) {
	ctx := context.Background()
	rev := func() uint64 {
		t.Helper()
		r, err := s.Revision(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	start := rev()
	var last uint64 = start
	check := func(what string, v uint64) {
		t.Helper()
		if v <= last {
			t.Errorf("%s: version %d, not after %d", what, v, last)
		}
		if r := rev(); r != v {
			t.Errorf("%s: Revision %d, want %d", what, r, v)
		}
		last = v
	}
	p := mustCreate(t, s, pod("a"))
	check("create pod", p.ResourceVersion)
	cm := mustCreate(t, s, configMap("a", "k", "v"))
	check("create configmap", cm.ResourceVersion)
	p.Labels["x"] = "y"
	p = mustUpdate(t, s, p)
	check("update", p.ResourceVersion)
	p.Status.Phase = orchestrate.PodRunning
	obj, err := s.UpdateStatus(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	check("update status", obj.Meta().ResourceVersion)
	if err := s.Delete(ctx, orchestrate.KindConfigMap, "", "a"); err != nil {
		t.Fatal(err)
	}
	if r := rev(); r <= last {
		t.Errorf("delete: Revision %d, not after %d", r, last)
	}
}

func next(t *testing.T, ch <-chan orchestrate.WatchEvent) orchestrate.WatchEvent {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("the watch ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no watch event in 10 s")
	}
	return orchestrate.WatchEvent{}
}

// nextChange is next, skipping the bookmarks a store may send at any
// time.
func nextChange(t *testing.T, ch <-chan orchestrate.WatchEvent) orchestrate.WatchEvent {
	t.Helper()
	for {
		if ev := next(t, ch); ev.Type != orchestrate.WatchBookmark {
			return ev
		}
	}
}

func describe(ev orchestrate.WatchEvent) string {
	if ev.Object == nil {
		return string(ev.Type)
	}
	if ns := ev.Object.Meta().Namespace; ns != "" && ns != orchestrate.NamespaceDefault {
		return fmt.Sprintf("%s %s/%s in %s", ev.Type, ev.Object.Kind(), ev.Object.Meta().Name, ns)
	}
	return fmt.Sprintf("%s %s/%s", ev.Type, ev.Object.Kind(), ev.Object.Meta().Name)
}

// A watch sees the changes after it began, of its kind, in order, with
// each event's version that of its object; a deletion carries the last
// state with the deletion's version.
func testWatch(t *testing.T, s orchestrate.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mustCreate(t, s, pod("old"))
	all, err := s.Watch(ctx, "", orchestrate.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pods, err := s.Watch(ctx, orchestrate.KindPod, orchestrate.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	created := mustCreate(t, s, pod("new"))
	mustCreate(t, s, configMap("cm", "k", "v"))
	created.Status.Phase = orchestrate.PodRunning
	if _, err := s.UpdateStatus(ctx, created); err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(ctx, orchestrate.KindPod, "", "new"); err != nil {
		t.Fatal(err)
	}
	deletedAt, _ := s.Revision(ctx)

	var got []string
	var prev uint64
	for range 4 {
		ev := nextChange(t, all)
		got = append(got, describe(ev))
		if ev.ResourceVersion <= prev || ev.ResourceVersion != ev.Object.Meta().ResourceVersion {
			t.Errorf("%s: version %d (object's %d) after %d", describe(ev), ev.ResourceVersion, ev.Object.Meta().ResourceVersion, prev)
		}
		prev = ev.ResourceVersion
	}
	want := "[Added Pod/new Added ConfigMap/cm Modified Pod/new Deleted Pod/new]"
	if fmt.Sprint(got) != want {
		t.Errorf("watch of all kinds = %v, want %v", got, want)
	}
	got = nil
	var last orchestrate.WatchEvent
	for range 3 {
		last = nextChange(t, pods)
		got = append(got, describe(last))
	}
	if fmt.Sprint(got) != "[Added Pod/new Modified Pod/new Deleted Pod/new]" {
		t.Errorf("watch of pods = %v", got)
	}
	if p, ok := last.Object.(*orchestrate.Pod); !ok || p.Status.Phase != orchestrate.PodRunning {
		t.Errorf("the Deleted event does not carry the last state: %+v", last.Object)
	}
	if last.ResourceVersion != deletedAt {
		t.Errorf("the Deleted event's version %d, want the deletion's, %d", last.ResourceVersion, deletedAt)
	}
}

// SendInitial: the stored objects first, sorted by kind and name, then a
// bookmark at the revision of the start, then the changes after it.
func testWatchInitial(t *testing.T, s orchestrate.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mustCreate(t, s, pod("b"))
	mustCreate(t, s, pod("a"))
	mustCreate(t, s, configMap("z", "k", "v"))
	mustCreate(t, s, pod("gone"))
	if err := s.Delete(ctx, orchestrate.KindPod, "", "gone"); err != nil {
		t.Fatal(err)
	}
	startRev, _ := s.Revision(ctx)
	all, err := s.Watch(ctx, "", orchestrate.WatchOptions{SendInitial: true})
	if err != nil {
		t.Fatal(err)
	}
	pods, err := s.Watch(ctx, orchestrate.KindPod, orchestrate.WatchOptions{SendInitial: true})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, pod("c"))
	for _, tc := range []struct {
		ch   <-chan orchestrate.WatchEvent
		n    int
		want string
	}{
		{all, 5, "[Added ConfigMap/z Added Pod/a Added Pod/b Bookmark Added Pod/c]"},
		{pods, 4, "[Added Pod/a Added Pod/b Bookmark Added Pod/c]"},
	} {
		var got []string
		var bookmark uint64
		for len(got) < tc.n {
			ev := next(t, tc.ch)
			if ev.Type == orchestrate.WatchBookmark && bookmark != 0 {
				continue // a later bookmark, which a store may send
			}
			if ev.Type == orchestrate.WatchBookmark {
				bookmark = ev.ResourceVersion
				if ev.Object != nil {
					t.Errorf("a bookmark with an object: %+v", ev.Object)
				}
			}
			got = append(got, describe(ev))
		}
		if fmt.Sprint(got) != tc.want {
			t.Errorf("watch with initial events = %v, want %v", got, tc.want)
		}
		if bookmark != startRev {
			t.Errorf("the bookmark after the initial events is at %d, want the revision at the start, %d", bookmark, startRev)
		}
	}
	if _, err := s.Watch(ctx, "", orchestrate.WatchOptions{SendInitial: true, Since: 1}); !errors.Is(err, orchestrate.ErrInvalid) {
		t.Errorf("SendInitial with Since: %v, want ErrInvalid", err)
	}
}

// Since replays the changes after a version (the recent history any
// store keeps), then follows.
func testWatchSince(t *testing.T, s orchestrate.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mustCreate(t, s, pod("before"))
	from, _ := s.Revision(ctx)
	a := mustCreate(t, s, pod("a"))
	mustCreate(t, s, configMap("cm", "k", "v"))
	a.Labels["x"] = "y"
	mustUpdate(t, s, a)
	if err := s.Delete(ctx, orchestrate.KindPod, "", "a"); err != nil {
		t.Fatal(err)
	}
	w, err := s.Watch(ctx, orchestrate.KindPod, orchestrate.WatchOptions{Since: from})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, pod("after"))
	var got []string
	for range 4 {
		got = append(got, describe(nextChange(t, w)))
	}
	if want := "[Added Pod/a Modified Pod/a Deleted Pod/a Added Pod/after]"; fmt.Sprint(got) != want {
		t.Errorf("watch since %d = %v, want %v", from, got, want)
	}
	// From the current revision: only what comes next.
	now, _ := s.Revision(ctx)
	w2, err := s.Watch(ctx, "", orchestrate.WatchOptions{Since: now})
	if err != nil {
		t.Fatal(err)
	}
	mustCreate(t, s, configMap("next", "k", "v"))
	if ev := nextChange(t, w2); describe(ev) != "Added ConfigMap/next" {
		t.Errorf("watch since the current revision: first %s, want Added ConfigMap/next", describe(ev))
	}
}

// Watchers get copies: changing one event's object changes neither the
// store nor another watcher's.
func testWatchCopies(t *testing.T, s orchestrate.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w1, _ := s.Watch(ctx, orchestrate.KindPod, orchestrate.WatchOptions{})
	w2, _ := s.Watch(ctx, orchestrate.KindPod, orchestrate.WatchOptions{})
	mustCreate(t, s, pod("a"))
	ev1 := nextChange(t, w1)
	ev1.Object.Meta().Labels["app"] = "changed"
	ev2 := nextChange(t, w2)
	if ev2.Object.Meta().Labels["app"] != "a" {
		t.Error("a watcher's change reached another watcher")
	}
	if got := mustGet[*orchestrate.Pod](t, s, "a"); got.Labels["app"] != "a" {
		t.Error("a watcher's change reached the store")
	}
}

// A watch's channel is closed when its context ends, and writes go on
// while nobody reads a watch.
func testWatchEnds(t *testing.T, s orchestrate.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := s.Watch(ctx, "", orchestrate.WatchOptions{SendInitial: true})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 200 { // nobody reads w meanwhile
		mustCreate(t, s, configMap(fmt.Sprintf("c%d", i), "k", "v"))
	}
	cancel()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case _, ok := <-w:
			if !ok {
				return
			}
		case <-deadline:
			t.Fatal("the watch's channel is still open 10 s after its context ended")
		}
	}
}

// Concurrent read-modify-write loops lose no update, and a watch sees
// every write in order.
func testConcurrentWriters(t *testing.T, s orchestrate.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mustCreate(t, s, configMap("counter", "n", ""))
	w, err := s.Watch(ctx, orchestrate.KindConfigMap, orchestrate.WatchOptions{})
	if err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for j := 0; j < each; {
				cm, err := orchestrate.Get[*orchestrate.ConfigMap](ctx, s, "", "counter")
				if err != nil {
					t.Error(err)
					return
				}
				cm.Data["n"] += "x"
				cm.Data[fmt.Sprintf("w%d", i)] = fmt.Sprint(j)
				if _, err := s.Update(ctx, cm); errors.Is(err, orchestrate.ErrConflict) {
					continue // someone else wrote: read again
				} else if err != nil {
					t.Error(err)
					return
				}
				j++
			}
		})
	}
	wg.Wait()
	cm := mustGet[*orchestrate.ConfigMap](t, s, "counter")
	if n := len(cm.Data["n"]); n != writers*each {
		t.Errorf("counter %d, want %d: an update was lost", n, writers*each)
	}
	var prev uint64
	for range writers * each {
		rv := nextChange(t, w).ResourceVersion
		if rv <= prev {
			t.Fatalf("watch out of order: version %d after %d", rv, prev)
		}
		prev = rv
	}
}

// inNS returns pod(name) in namespace ns.
func inNS(ns string, p *orchestrate.Pod) *orchestrate.Pod {
	p.Namespace = ns
	return p
}

// Names are unique per kind and namespace: two pods "web" in two
// namespaces are two objects, each read, listed, updated and deleted
// on its own.
func testNamespaces(t *testing.T, s orchestrate.Store) {
	ctx := context.Background()
	a := mustCreate(t, s, inNS("a", pod("web")))
	b := mustCreate(t, s, inNS("b", pod("web")))
	if a.Namespace != "a" || b.Namespace != "b" || a.UID == b.UID {
		t.Fatalf("two pods web: namespaces %q %q, UIDs %s %s", a.Namespace, b.Namespace, a.UID, b.UID)
	}
	if _, err := s.Create(ctx, inNS("a", pod("web"))); !errors.Is(err, orchestrate.ErrExists) {
		t.Errorf("Create a/web again: %v, want ErrExists", err)
	}
	got, err := orchestrate.Get[*orchestrate.Pod](ctx, s, "b", "web")
	if err != nil || got.UID != b.UID {
		t.Errorf("Get b/web = %v, %v; want the pod of namespace b", got, err)
	}
	if _, err := s.Get(ctx, orchestrate.KindPod, "c", "web"); !errors.Is(err, orchestrate.ErrNotFound) {
		t.Errorf("Get c/web: %v, want ErrNotFound", err)
	}
	mustCreate(t, s, inNS("a", pod("api")))
	all, err := s.List(ctx, orchestrate.KindPod, orchestrate.NamespaceAll, nil)
	if err != nil || len(all) != 3 || all[0].Meta().Namespace != "a" || all[0].Meta().Name != "api" || all[2].Meta().Namespace != "b" {
		t.Errorf("List in all namespaces: %v, %v; want a/api a/web b/web", all, err)
	}
	inA, _ := s.List(ctx, orchestrate.KindPod, "a", &orchestrate.LabelSelector{MatchLabels: map[string]string{"app": "web"}})
	if len(inA) != 1 || inA[0].Meta().Namespace != "a" {
		t.Errorf("List app=web in a: %v; want a/web only", inA)
	}
	a.Labels["v"] = "2"
	upd := mustUpdate(t, s, a)
	if upd.Namespace != "a" || mustGetIn[*orchestrate.Pod](t, s, "b", "web").Labels["v"] != "" {
		t.Errorf("Update of a/web reached b/web, or lost its namespace (%q)", upd.Namespace)
	}
	if err := s.Delete(ctx, orchestrate.KindPod, "a", "web"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, orchestrate.KindPod, "b", "web"); err != nil {
		t.Errorf("deleting a/web deleted b/web: %v", err)
	}
	if err := s.Delete(ctx, orchestrate.KindPod, "a", "web"); !errors.Is(err, orchestrate.ErrNotFound) {
		t.Errorf("Delete a/web again: %v, want ErrNotFound", err)
	}
}

// An empty namespace is NamespaceDefault, in writes and in reads.
func testNamespaceDefault(t *testing.T, s orchestrate.Store) {
	ctx := context.Background()
	created := mustCreate(t, s, pod("web"))
	if created.Namespace != orchestrate.NamespaceDefault {
		t.Errorf("Create without a namespace: namespace %q, want %q", created.Namespace, orchestrate.NamespaceDefault)
	}
	if _, err := s.Create(ctx, inNS(orchestrate.NamespaceDefault, pod("web"))); !errors.Is(err, orchestrate.ErrExists) {
		t.Errorf("Create default/web after web: %v, want ErrExists", err)
	}
	for _, ns := range []string{"", orchestrate.NamespaceDefault} {
		got, err := s.Get(ctx, orchestrate.KindPod, ns, "web")
		if err != nil || got.Meta().Namespace != orchestrate.NamespaceDefault {
			t.Errorf("Get(%q, web) = %v, %v", ns, got, err)
		}
	}
	got, _ := s.List(ctx, orchestrate.KindPod, orchestrate.NamespaceDefault, nil)
	if len(got) != 1 {
		t.Errorf("List in default: %d objects, want 1", len(got))
	}
	created.Namespace = ""
	created.Labels["v"] = "2"
	if upd := mustUpdate(t, s, created); upd.Namespace != orchestrate.NamespaceDefault {
		t.Errorf("Update without a namespace: namespace %q", upd.Namespace)
	}
	if err := s.Delete(ctx, orchestrate.KindPod, "", "web"); err != nil {
		t.Errorf("Delete(\"\", web): %v", err)
	}
}

// A cluster-scoped object has no namespace: one that names one is
// refused; reads ignore the namespace they are given.
func testClusterScoped(t *testing.T, s orchestrate.Store) {
	ctx := context.Background()
	n := mustCreate(t, s, &orchestrate.Namespace{ObjectMeta: orchestrate.ObjectMeta{Name: "team"}})
	if n.Namespace != "" {
		t.Errorf("Namespace stored with namespace %q", n.Namespace)
	}
	bad := &orchestrate.Namespace{ObjectMeta: orchestrate.ObjectMeta{Name: "other", Namespace: "team"}}
	if _, err := s.Create(ctx, bad); !errors.Is(err, orchestrate.ErrInvalid) {
		t.Errorf("Create of a Namespace in a namespace: %v, want ErrInvalid", err)
	}
	if _, err := s.Get(ctx, orchestrate.KindNamespace, "", "team"); err != nil {
		t.Errorf("Get Namespace team: %v", err)
	}
	all, _ := s.List(ctx, orchestrate.KindNamespace, orchestrate.NamespaceAll, nil)
	if len(all) != 1 {
		t.Errorf("List of Namespaces: %d, want 1", len(all))
	}
	// A Namespace may be deleted gracefully, as a pod.
	now := time.Now()
	n.DeletionTime = &now
	if upd := mustUpdate(t, s, n); upd.DeletionTime == nil {
		t.Errorf("Update with DeletionTime of a Namespace: not kept")
	}
	if err := s.Delete(ctx, orchestrate.KindNamespace, "", "team"); err != nil {
		t.Errorf("Delete Namespace: %v", err)
	}
}

// A watch of one namespace sees only its objects, from the start and
// after, and SendInitial lists them in namespace order.
func testWatchNamespace(t *testing.T, s orchestrate.Store) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	mustCreate(t, s, inNS("b", pod("x")))
	mustCreate(t, s, inNS("a", pod("y")))
	all, err := s.Watch(ctx, "", orchestrate.WatchOptions{SendInitial: true})
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, all); ev.Object.Meta().Namespace != "a" {
		t.Errorf("first initial event %s, want a/y (namespace order)", describe(ev))
	}
	if ev := next(t, all); ev.Object.Meta().Namespace != "b" {
		t.Errorf("second initial event %s, want b/x", describe(ev))
	}
	ch, err := s.Watch(ctx, orchestrate.KindPod, orchestrate.WatchOptions{SendInitial: true, Namespace: "a"})
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Type != orchestrate.WatchAdded || ev.Object.Meta().Namespace != "a" {
		t.Fatalf("initial event %s, want a/y", describe(ev))
	}
	if ev := next(t, ch); ev.Type != orchestrate.WatchBookmark {
		t.Fatalf("after the initial events: %s, want a bookmark", describe(ev))
	}
	mustCreate(t, s, inNS("b", pod("z")))
	mustCreate(t, s, inNS("a", pod("z")))
	if ev := nextChange(t, ch); ev.Object.Meta().Namespace != "a" || ev.Object.Meta().Name != "z" {
		t.Errorf("watch of namespace a saw %s, want a/z", describe(ev))
	}
}
