package orchestrate

import (
	"fmt"
	"strconv"
	"strings"
)

// Count returns an IntOrPercent holding the number n, for a
// DeploymentStrategy's MaxSurge or MaxUnavailable.
func Count(n int) *IntOrPercent { return &IntOrPercent{Value: n} }

// Percent returns an IntOrPercent holding p percent, for a
// DeploymentStrategy's MaxSurge or MaxUnavailable.
func Percent(p int) *IntOrPercent { return &IntOrPercent{Value: p, Percent: true} }

// ParseIntOrPercent parses a count ("3") or a percentage ("25%"), as
// Kubernetes writes maxSurge and maxUnavailable. Negative values are
// refused.
func ParseIntOrPercent(s string) (IntOrPercent, error) {
	num, pct := strings.CutSuffix(strings.TrimSpace(s), "%")
	n, err := strconv.Atoi(num)
	if err != nil || n < 0 || strings.HasPrefix(num, "+") {
		return IntOrPercent{}, fmt.Errorf("%w: %q is not a non-negative number or percentage", ErrInvalid, s)
	}
	return IntOrPercent{Value: n, Percent: pct}, nil
}

// String returns v as ParseIntOrPercent reads it: "3" or "25%".
func (v IntOrPercent) String() string {
	if v.Percent {
		return strconv.Itoa(v.Value) + "%"
	}
	return strconv.Itoa(v.Value)
}

// Scaled returns the count v stands for out of total: the number itself,
// or the percentage of total rounded up (roundUp, as maxSurge is) or down
// (as maxUnavailable is).
func (v IntOrPercent) Scaled(total int, roundUp bool) int {
	if !v.Percent {
		return v.Value
	}
	if roundUp {
		return (v.Value*total + 99) / 100
	}
	return v.Value * total / 100
}

// validateIntOrPercent checks a maxSurge or maxUnavailable value: not
// negative, and at most 100% when max100 is set.
func validateIntOrPercent(field string, v *IntOrPercent, max100 bool) error {
	if v == nil {
		return nil
	}
	if v.Value < 0 {
		return invalidf(field, "%s must not be negative", v)
	}
	if max100 && v.Percent && v.Value > 100 {
		return invalidf(field, "%s must not be more than 100%%", v)
	}
	return nil
}

// defaultRollingParam is what a nil maxSurge or maxUnavailable means.
var defaultRollingParam = IntOrPercent{Value: 25, Percent: true}

// resolveFenceposts returns a rolling update's surge and unavailable
// counts for desired replicas as Kubernetes does: surge rounds up,
// unavailable rounds down, and when both come to zero (a percentage
// rounded down) unavailable is 1 so that the rollout can proceed.
func resolveFenceposts(s DeploymentStrategy, desired int) (surge, unavailable int) {
	ms, mu := defaultRollingParam, defaultRollingParam
	if s.MaxSurge != nil {
		ms = *s.MaxSurge
	}
	if s.MaxUnavailable != nil {
		mu = *s.MaxUnavailable
	}
	surge = ms.Scaled(desired, true)
	unavailable = mu.Scaled(desired, false)
	if surge == 0 && unavailable == 0 {
		unavailable = 1
	}
	return surge, unavailable
}
