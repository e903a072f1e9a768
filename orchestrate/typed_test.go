package orchestrate_test

import (
	"context"
	"errors"
	"testing"

	. "github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/memstore"
)

// notAPod is another Go type that says it is a Pod.
type notAPod struct{ ObjectMeta }

func (p *notAPod) Kind() string      { return KindPod }
func (p *notAPod) Meta() *ObjectMeta { return &p.ObjectMeta }
func (p *notAPod) DeepCopy() Object  { c := *p; return &c }

func TestTypedGetList(t *testing.T) {
	ctx := context.Background()
	if k := KindOf[*Deployment](); k != KindDeployment {
		t.Errorf("KindOf[*Deployment] = %q", k)
	}
	s := memstore.New()
	if _, err := s.Create(ctx, &ConfigMap{ObjectMeta: ObjectMeta{Name: "a"}, Data: map[string]string{"k": "v"}}); err != nil {
		t.Fatal(err)
	}
	cm, err := Get[*ConfigMap](ctx, s, "", "a")
	if err != nil || cm.Data["k"] != "v" {
		t.Errorf("Get[*ConfigMap] = %+v, %v", cm, err)
	}
	if p, err := Get[*Pod](ctx, s, "", "a"); !errors.Is(err, ErrNotFound) || p != nil {
		t.Errorf("Get[*Pod] of a ConfigMap's name = %v, %v; want nil and ErrNotFound", p, err)
	}
	if _, err := s.Create(ctx, &notAPod{ObjectMeta{Name: "x"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Get[*Pod](ctx, s, "", "x"); err == nil || errors.Is(err, ErrNotFound) {
		t.Errorf("Get[*Pod] of another Go type: %v, want an error that is not ErrNotFound", err)
	}
	if _, err := List[*Pod](ctx, s, "", nil); err == nil {
		t.Error("List[*Pod] with another Go type stored under the kind succeeded")
	}
	cms, err := List[*ConfigMap](ctx, s, "", nil)
	if err != nil || len(cms) != 1 || cms[0].Name != "a" {
		t.Errorf("List[*ConfigMap] = %v, %v", cms, err)
	}
}

func TestNewManagerNeedsStore(t *testing.T) {
	if _, err := NewManager(Options{}); err == nil {
		t.Error("NewManager without a Store succeeded")
	}
}
