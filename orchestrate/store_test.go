package orchestrate

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestStoreCreateGetUpdate(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore()
	p := simplePod("a", "", "c")
	created, err := s.Create(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	m := created.Meta()
	if m.UID == "" || m.Generation != 1 || m.ResourceVersion == 0 || m.CreationTime.IsZero() {
		t.Fatalf("metadata not set: %+v", m)
	}
	if _, err := s.Create(ctx, p); !errors.Is(err, ErrExists) {
		t.Errorf("second Create: %v, want ErrExists", err)
	}
	if _, err := s.Create(ctx, &Pod{}); !errors.Is(err, ErrInvalid) {
		t.Errorf("Create without a name: %v, want ErrInvalid", err)
	}

	// A metadata change does not bump the generation; a spec change does.
	upd := created.DeepCopy().(*Pod)
	upd.Labels["tier"] = "front"
	u1, err := s.Update(ctx, upd)
	if err != nil {
		t.Fatal(err)
	}
	if u1.Meta().Generation != 1 || u1.Meta().ResourceVersion <= m.ResourceVersion || u1.Meta().UID != m.UID {
		t.Errorf("after label change: %+v", u1.Meta())
	}
	upd = u1.DeepCopy().(*Pod)
	upd.Spec.Hostname = "h"
	u2, err := s.Update(ctx, upd)
	if err != nil {
		t.Fatal(err)
	}
	if u2.Meta().Generation != 2 {
		t.Errorf("generation %d after spec change, want 2", u2.Meta().Generation)
	}
	// An unchanged update writes nothing.
	u3, err := s.Update(ctx, u2)
	if err != nil || u3.Meta().ResourceVersion != u2.Meta().ResourceVersion {
		t.Errorf("no-op update: %v, version %d → %d", err, u2.Meta().ResourceVersion, u3.Meta().ResourceVersion)
	}

	// A stale ResourceVersion conflicts; 0 skips the check.
	if _, err := s.Update(ctx, upd); !errors.Is(err, ErrConflict) {
		t.Errorf("stale Update: %v, want ErrConflict", err)
	}
	upd.ResourceVersion = 0
	upd.Spec.Hostname = "h2"
	if _, err := s.Update(ctx, upd); err != nil {
		t.Errorf("unconditional Update: %v", err)
	}
	if _, err := s.Update(ctx, simplePod("nope", "", "c")); !errors.Is(err, ErrNotFound) {
		t.Errorf("Update of a missing object: %v, want ErrNotFound", err)
	}

	// Status: UpdateStatus changes only the status; Update keeps it.
	cur, _ := s.Get(ctx, KindPod, "a")
	st := cur.DeepCopy().(*Pod)
	st.Status.Phase = PodRunning
	st.Spec.Hostname = "ignored"
	after, err := s.UpdateStatus(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	ap := after.(*Pod)
	if ap.Status.Phase != PodRunning || ap.Spec.Hostname != "h2" || ap.Generation != cur.Meta().Generation {
		t.Errorf("after UpdateStatus: phase %s hostname %s generation %d", ap.Status.Phase, ap.Spec.Hostname, ap.Generation)
	}
	spec := ap.DeepCopy().(*Pod)
	spec.Status = PodStatus{}
	spec.Labels = map[string]string{"x": "y"}
	after, err = s.Update(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	if after.(*Pod).Status.Phase != PodRunning {
		t.Error("Update dropped the status")
	}
	if _, err := s.UpdateStatus(ctx, &ConfigMap{ObjectMeta: ObjectMeta{Name: "a"}}); err == nil {
		t.Error("UpdateStatus of a kind without status succeeded")
	}

	// Delete.
	if err := s.Delete(ctx, KindPod, "a"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, KindPod, "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after Delete: %v", err)
	}
	if err := s.Delete(ctx, KindPod, "a"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second Delete: %v", err)
	}
}

func TestStoreConfigMapGeneration(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore()
	cm, _ := s.Create(ctx, &ConfigMap{ObjectMeta: ObjectMeta{Name: "c"}, Data: map[string]string{"k": "1"}})
	upd := cm.DeepCopy().(*ConfigMap)
	upd.Data["k"] = "2"
	got, err := s.Update(ctx, upd)
	if err != nil || got.Meta().Generation != 2 {
		t.Errorf("data change: %v, generation %d, want 2", err, got.Meta().Generation)
	}
}

func TestStoreCopies(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore()
	p := simplePod("a", "", "c")
	created, _ := s.Create(ctx, p)
	p.Labels["app"] = "changed"
	p.Spec.Containers[0].Command[0] = "changed"
	created.(*Pod).Spec.Containers[0].Image = "changed"
	got, _ := s.Get(ctx, KindPod, "a")
	gp := got.(*Pod)
	if gp.Labels["app"] != "a" || gp.Spec.Containers[0].Command[0] != "sleep" || gp.Spec.Containers[0].Image != "busybox" {
		t.Errorf("stored object changed through a caller's copy: %+v", gp)
	}
	gp.Labels["app"] = "x"
	list, _ := s.List(ctx, KindPod, nil)
	if list[0].Meta().Labels["app"] != "a" {
		t.Error("stored object changed through a Get result")
	}
}

func TestStoreList(t *testing.T) {
	ctx := context.Background()
	s := NewMemoryStore()
	for _, n := range []string{"c", "a", "b"} {
		p := simplePod(n, "", "x")
		p.Labels["tier"] = map[string]string{"a": "front", "b": "back", "c": "front"}[n]
		s.Create(ctx, p)
	}
	s.Create(ctx, &ConfigMap{ObjectMeta: ObjectMeta{Name: "a"}})
	all, _ := s.List(ctx, KindPod, nil)
	if names := objNames(all); fmt.Sprint(names) != "[a b c]" {
		t.Errorf("List = %v, want [a b c]", names)
	}
	front, _ := s.List(ctx, KindPod, &LabelSelector{MatchLabels: map[string]string{"tier": "front"}})
	if names := objNames(front); fmt.Sprint(names) != "[a c]" {
		t.Errorf("List front = %v, want [a c]", names)
	}
}

func objNames(objs []Object) []string {
	var out []string
	for _, o := range objs {
		out = append(out, o.Meta().Name)
	}
	return out
}

func TestStoreWatch(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := NewMemoryStore()
	s.Create(ctx, simplePod("old", "", "c"))
	s.Create(ctx, &ConfigMap{ObjectMeta: ObjectMeta{Name: "cm"}})
	all, err := s.Watch(ctx, "", true)
	if err != nil {
		t.Fatal(err)
	}
	pods, _ := s.Watch(ctx, KindPod, false)

	created, _ := s.Create(ctx, simplePod("new", "", "c"))
	upd := created.DeepCopy().(*Pod)
	upd.Status.Phase = PodRunning
	s.UpdateStatus(ctx, upd)
	s.Delete(ctx, KindPod, "new")

	next := func(ch <-chan WatchEvent) WatchEvent {
		t.Helper()
		select {
		case ev := <-ch:
			return ev
		case <-time.After(5 * time.Second):
			t.Fatal("no watch event")
		}
		return WatchEvent{}
	}
	var got []string
	for range 5 {
		ev := next(all)
		got = append(got, fmt.Sprintf("%s %s/%s", ev.Type, ev.Object.Kind(), ev.Object.Meta().Name))
	}
	want := "[Added ConfigMap/cm Added Pod/old Added Pod/new Modified Pod/new Deleted Pod/new]"
	if fmt.Sprint(got) != want {
		t.Errorf("watch all = %v, want %v", got, want)
	}
	got = nil
	var last WatchEvent
	for range 3 {
		last = next(pods)
		got = append(got, string(last.Type)+" "+last.Object.Meta().Name)
	}
	if fmt.Sprint(got) != "[Added new Modified new Deleted new]" {
		t.Errorf("watch pods = %v", got)
	}
	if last.Object.(*Pod).Status.Phase != PodRunning {
		t.Error("Deleted event does not carry the last state")
	}
	cancel()
	for range all {
	}
	for range pods {
	}
}

func TestStoreConcurrentWriters(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := NewMemoryStore()
	s.Create(ctx, &ConfigMap{ObjectMeta: ObjectMeta{Name: "counter"}, Data: map[string]string{"n": ""}})
	w, _ := s.Watch(ctx, KindConfigMap, false)
	const writers, each = 8, 50
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			for j := 0; j < each; {
				obj, _ := s.Get(ctx, KindConfigMap, "counter")
				cm := obj.(*ConfigMap)
				cm.Data["n"] += "x"
				cm.Data[fmt.Sprintf("w%d", i)] = fmt.Sprint(j)
				if _, err := s.Update(ctx, cm); errors.Is(err, ErrConflict) {
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
	obj, _ := s.Get(ctx, KindConfigMap, "counter")
	if n := len(obj.(*ConfigMap).Data["n"]); n != writers*each {
		t.Errorf("counter %d, want %d: an update was lost", n, writers*each)
	}
	var prev uint64
	for range writers * each {
		ev := <-w
		if rv := ev.Object.Meta().ResourceVersion; rv <= prev {
			t.Fatalf("watch out of order: %d after %d", rv, prev)
		} else {
			prev = rv
		}
	}
}
