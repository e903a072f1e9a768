package orchestrate

import (
	"errors"
	"testing"
)

func TestParseIntOrPercent(t *testing.T) {
	good := map[string]IntOrPercent{
		"0": {Value: 0}, "3": {Value: 3}, "25%": {Value: 25, Percent: true},
		"0%": {Value: 0, Percent: true}, "150%": {Value: 150, Percent: true},
	}
	for s, want := range good {
		got, err := ParseIntOrPercent(s)
		if err != nil || got != want {
			t.Errorf("ParseIntOrPercent(%q) = %+v, %v; want %+v", s, got, err, want)
		}
		if got.String() != s {
			t.Errorf("%+v.String() = %q, want %q", got, got.String(), s)
		}
	}
	for _, s := range []string{"", "%", "-1", "-5%", "2.5", "25 %", "x%", "+3", "3%%"} {
		if v, err := ParseIntOrPercent(s); !errors.Is(err, ErrInvalid) {
			t.Errorf("ParseIntOrPercent(%q) = %+v, %v; want ErrInvalid", s, v, err)
		}
	}
}

// TestResolveFenceposts is the rounding table: surge rounds up,
// unavailable rounds down, both 0 makes unavailable 1.
func TestResolveFenceposts(t *testing.T) {
	cases := []struct {
		surge, unavail    *IntOrPercent
		replicas          int
		wantS, wantU      int
		wantMaxUnavailble int
	}{
		{nil, nil, 10, 3, 2, 2},                    // 25% of 10: 2.5 up, 2.5 down
		{nil, nil, 4, 1, 1, 1},                     // exact
		{nil, nil, 1, 1, 0, 0},                     // 0.25 up and down
		{nil, nil, 3, 1, 0, 0},                     // 0.75
		{Percent(0), Percent(10), 5, 0, 1, 1},      // both would be 0: unavailable 1
		{Percent(50), Percent(50), 3, 2, 1, 1},     // 1.5
		{Percent(100), Percent(100), 5, 5, 5, 5},   // whole
		{Percent(200), Count(0), 3, 6, 0, 0},       // surge may exceed 100%
		{Count(2), Count(7), 5, 2, 7, 5},           // counts as given; capped at replicas
		{Percent(33), Percent(33), 10, 4, 3, 3},    // 3.3
		{Percent(1), Percent(99), 100, 1, 99, 99},  // exact
		{Percent(1), Percent(99), 101, 2, 99, 99},  // 1.01 up, 99.99 down
		{Count(0), Percent(20), 4, 0, 1, 1},        // 0.8 down to 0, then 1
		{Percent(25), Percent(25), 0, 0, 1, 0},     // no replicas: nothing unavailable
		{Count(1), Count(0), 3, 1, 0, 0},           // surge only
		{Count(0), Count(1), 3, 0, 1, 1},           // unavailable only
		{Percent(10), Percent(10), 9, 1, 0, 0},     // 0.9 up to 1, down to 0
		{Percent(30), Percent(30), 20, 6, 6, 6},    // exact
		{Percent(30), Percent(30), 21, 7, 6, 6},    // 6.3
		{Percent(75), Percent(75), 7, 6, 5, 5},     // 5.25
		{Percent(25), nil, 7, 2, 1, 1},             // 1.75
		{nil, Count(3), 7, 2, 3, 3},                // default surge
		{Percent(100), Percent(0), 1, 1, 0, 0},     // one replica, full surge
		{Percent(0), Percent(100), 1, 0, 1, 1},     // one replica, none kept
		{Percent(50), Percent(50), 1, 1, 0, 0},     // 0.5
		{Percent(99), Percent(99), 1, 1, 0, 0},     // 0.99
		{Percent(100), Percent(100), 1, 1, 1, 1},   // 1
		{Count(10), Count(10), 2, 10, 10, 2},       // capped
		{Percent(25), Percent(25), 40, 10, 10, 10}, // exact
		{Percent(25), Percent(25), 41, 11, 10, 10}, // 10.25
		{Percent(25), Percent(25), 43, 11, 10, 10}, // 10.75
		{Percent(25), Percent(25), 44, 11, 11, 11}, // 11
		{Percent(25), Percent(25), 45, 12, 11, 11}, // 11.25
		{Percent(25), Percent(25), 1000, 250, 250, 250},
	}
	for _, c := range cases {
		d := &Deployment{Spec: DeploymentSpec{Replicas: c.replicas, Strategy: DeploymentStrategy{MaxSurge: c.surge, MaxUnavailable: c.unavail}}}
		s, u := resolveFenceposts(d.Spec.Strategy, c.replicas)
		if s != c.wantS || u != c.wantU {
			t.Errorf("surge %v unavailable %v of %d: got %d, %d; want %d, %d", c.surge, c.unavail, c.replicas, s, u, c.wantS, c.wantU)
		}
		if got := maxUnavailable(d); got != c.wantMaxUnavailble {
			t.Errorf("maxUnavailable(surge %v unavailable %v of %d) = %d, want %d", c.surge, c.unavail, c.replicas, got, c.wantMaxUnavailble)
		}
	}
	d := &Deployment{Spec: DeploymentSpec{Replicas: 4, Strategy: DeploymentStrategy{Type: RecreateDeploymentStrategyType}}}
	if maxSurge(d) != 0 || maxUnavailable(d) != 0 {
		t.Errorf("Recreate: surge %d unavailable %d, want 0 0", maxSurge(d), maxUnavailable(d))
	}
}

func TestIntOrPercentScaled(t *testing.T) {
	for _, c := range []struct {
		v        IntOrPercent
		total    int
		up, down int
	}{
		{IntOrPercent{Value: 3}, 10, 3, 3},
		{IntOrPercent{Value: 25, Percent: true}, 10, 3, 2},
		{IntOrPercent{Value: 25, Percent: true}, 0, 0, 0},
		{IntOrPercent{Value: 100, Percent: true}, 7, 7, 7},
		{IntOrPercent{Value: 1, Percent: true}, 1, 1, 0},
	} {
		if got := c.v.Scaled(c.total, true); got != c.up {
			t.Errorf("%v of %d rounded up = %d, want %d", c.v, c.total, got, c.up)
		}
		if got := c.v.Scaled(c.total, false); got != c.down {
			t.Errorf("%v of %d rounded down = %d, want %d", c.v, c.total, got, c.down)
		}
	}
}
