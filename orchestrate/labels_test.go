package orchestrate

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"
)

func TestSelectorMatches(t *testing.T) {
	labels := map[string]string{"app": "web", "tier": "front", "env": ""}
	for _, tc := range []struct {
		name string
		sel  *LabelSelector
		want bool
	}{
		{"nil", nil, true},
		{"empty", &LabelSelector{}, true},
		{"matchLabels", &LabelSelector{MatchLabels: map[string]string{"app": "web"}}, true},
		{"matchLabels wrong value", &LabelSelector{MatchLabels: map[string]string{"app": "db"}}, false},
		{"matchLabels missing", &LabelSelector{MatchLabels: map[string]string{"zone": "a"}}, false},
		{"matchLabels empty value", &LabelSelector{MatchLabels: map[string]string{"env": ""}}, true},
		{"In", req("tier", LabelSelectorOpIn, "front", "back"), true},
		{"In no", req("tier", LabelSelectorOpIn, "back"), false},
		{"In missing key", req("zone", LabelSelectorOpIn, "a"), false},
		{"NotIn", req("tier", LabelSelectorOpNotIn, "back"), true},
		{"NotIn no", req("tier", LabelSelectorOpNotIn, "front"), false},
		{"NotIn missing key", req("zone", LabelSelectorOpNotIn, "a"), true},
		{"Exists", req("app", LabelSelectorOpExists), true},
		{"Exists empty value", req("env", LabelSelectorOpExists), true},
		{"Exists no", req("zone", LabelSelectorOpExists), false},
		{"DoesNotExist", req("zone", LabelSelectorOpDoesNotExist), true},
		{"DoesNotExist no", req("app", LabelSelectorOpDoesNotExist), false},
		{"unknown operator", req("app", "Like", "web"), false},
		{"all must hold", &LabelSelector{
			MatchLabels:      map[string]string{"app": "web"},
			MatchExpressions: []LabelSelectorRequirement{{Key: "tier", Operator: LabelSelectorOpIn, Values: []string{"back"}}},
		}, false},
	} {
		if got := tc.sel.Matches(labels); got != tc.want {
			t.Errorf("%s: Matches = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func req(key string, op LabelSelectorOperator, values ...string) *LabelSelector {
	return &LabelSelector{MatchExpressions: []LabelSelectorRequirement{{Key: key, Operator: op, Values: values}}}
}

func TestSelectorString(t *testing.T) {
	sel := &LabelSelector{
		MatchLabels: map[string]string{"b": "2", "a": "1"},
		MatchExpressions: []LabelSelectorRequirement{
			{Key: "t", Operator: LabelSelectorOpIn, Values: []string{"y", "x"}},
			{Key: "u", Operator: LabelSelectorOpNotIn, Values: []string{"z"}},
			{Key: "v", Operator: LabelSelectorOpExists},
			{Key: "w", Operator: LabelSelectorOpDoesNotExist},
		},
	}
	if got, want := sel.String(), "a=1,b=2,t in (x,y),u notin (z),v,!w"; got != want {
		t.Errorf("String = %q, want %q", got, want)
	}
	if (*LabelSelector)(nil).String() != "" {
		t.Error("nil selector String not empty")
	}
}

func TestSelectorValidate(t *testing.T) {
	for _, tc := range []struct {
		sel   *LabelSelector
		field string // "" means valid
	}{
		{nil, ""},
		{&LabelSelector{MatchLabels: map[string]string{"example.com/app": "web-1", "a_b.c": ""}}, ""},
		{req("k", LabelSelectorOpIn, "a"), ""},
		{req("k", LabelSelectorOpExists), ""},
		{&LabelSelector{MatchLabels: map[string]string{"-bad": "x"}}, "selector.matchLabels"},
		{&LabelSelector{MatchLabels: map[string]string{"Example.com/app": "x"}}, "selector.matchLabels"},
		{&LabelSelector{MatchLabels: map[string]string{strings.Repeat("a", 64): "x"}}, "selector.matchLabels"},
		{&LabelSelector{MatchLabels: map[string]string{"app": "bad value"}}, "selector.matchLabels"},
		{&LabelSelector{MatchLabels: map[string]string{"app": strings.Repeat("v", 64)}}, "selector.matchLabels"},
		{req("k", LabelSelectorOpIn), "selector.matchExpressions[0].values"},
		{req("k", LabelSelectorOpNotIn), "selector.matchExpressions[0].values"},
		{req("k", LabelSelectorOpExists, "a"), "selector.matchExpressions[0].values"},
		{req("k", LabelSelectorOpDoesNotExist, "a"), "selector.matchExpressions[0].values"},
		{req("k", "Like", "a"), "selector.matchExpressions[0].operator"},
		{req("", LabelSelectorOpExists), "selector.matchExpressions[0].key"},
		{req("k", LabelSelectorOpIn, "-x"), "selector.matchExpressions[0].values"},
	} {
		err := tc.sel.Validate()
		if tc.field == "" {
			if err != nil {
				t.Errorf("%s: %v, want valid", tc.sel, err)
			}
			continue
		}
		var fe *FieldError
		if !errors.Is(err, ErrInvalid) || !errors.As(err, &fe) || fe.Field != tc.field {
			t.Errorf("%s: %v, want ErrInvalid for %s", tc.sel, err, tc.field)
		}
	}
}

func TestValidateName(t *testing.T) {
	for name, ok := range map[string]bool{
		"web": true, "web-1": true, "1a": true, strings.Repeat("a", 63): true,
		"": false, "Web": false, "-web": false, "web-": false, "w_b": false, "w.b": false, strings.Repeat("a", 64): false,
	} {
		if err := validateName("metadata.name", name); (err == nil) != ok {
			t.Errorf("validateName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestEvents(t *testing.T) {
	r := newEventRecorder(3)
	t0 := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	ctx, cancel := context.WithCancel(context.Background())
	sub := r.subscribe(ctx, EventFilter{Reason: "Started"}, 10)
	for i, reason := range []string{"Created", "Started", "Killing", "Started", "BackOff"} {
		r.record(Event{Time: t0.Add(time.Duration(i) * time.Second), Kind: KindPod, Name: "p", Reason: reason})
	}
	all := r.list(EventFilter{})
	var reasons []string
	for _, e := range all {
		reasons = append(reasons, e.Reason)
	}
	if strings.Join(reasons, ",") != "Killing,Started,BackOff" {
		t.Errorf("ring holds %v, want the last 3 in order", reasons)
	}
	if got := r.list(EventFilter{Since: t0.Add(4 * time.Second)}); len(got) != 1 || got[0].Reason != "BackOff" {
		t.Errorf("Since filter: %v", got)
	}
	if got := r.list(EventFilter{Kind: KindPod, Name: "q"}); len(got) != 0 {
		t.Errorf("Name filter: %v", got)
	}
	cancel()
	var n int
	for range sub {
		n++
	}
	if n != 2 {
		t.Errorf("subscriber got %d Started events, want 2", n)
	}
}
