package orchestrate_test

import (
	"context"
	. "github.com/berthlabs/berth/orchestrate"
	"testing"
	"time"

	"github.com/berthlabs/berth/orchestrate/fakeruntime"
)

// checkNoFakeLeaks fails t if a container or sandbox is left.
func checkNoFakeLeaks(t *testing.T, f *fakeruntime.Runtime) {
	t.Helper()
	if cs, sbs := f.Live(); len(cs) > 0 || len(sbs) > 0 {
		t.Errorf("left behind: containers %v, sandboxes %v", cs, sbs)
	}
}

var _ Runtime = (*fakeruntime.Runtime)(nil)

// waitFor polls cond (in real time) until it holds, failing t after a
// few seconds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// podsByDeletion splits the pods of the store into those being deleted
// and the others.
func podsByDeletion(t *testing.T, m *Manager) (terminating, live []*Pod) {
	t.Helper()
	pods, err := List[*Pod](context.Background(), m, "", nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pods {
		if p.DeletionTime != nil {
			terminating = append(terminating, p)
		} else {
			live = append(live, p)
		}
	}
	return terminating, live
}
