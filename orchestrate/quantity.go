package orchestrate

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"
)

// quantity is a Kubernetes resource quantity as written in JSON: a
// string ("100m", "64Mi", "1e3") or a bare number (1, 0.5).
type quantity string

// UnmarshalJSON reads a string or a number.
func (q *quantity) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		*q = quantity(s)
		return nil
	}
	var n json.Number
	if err := json.Unmarshal(b, &n); err != nil {
		return fmt.Errorf("a quantity must be a string or a number, not %s", b)
	}
	*q = quantity(n.String())
	return nil
}

// quantitySuffixes are the suffixes of Kubernetes quantities and the
// factor each stands for.
var quantitySuffixes = map[string]*big.Rat{
	"n": big.NewRat(1, 1e9), "u": big.NewRat(1, 1e6), "m": big.NewRat(1, 1e3), "": big.NewRat(1, 1),
	"k": big.NewRat(1e3, 1), "M": big.NewRat(1e6, 1), "G": big.NewRat(1e9, 1), "T": big.NewRat(1e12, 1),
	"P": big.NewRat(1e15, 1), "E": big.NewRat(1e18, 1),
	"Ki": big.NewRat(1<<10, 1), "Mi": big.NewRat(1<<20, 1), "Gi": big.NewRat(1<<30, 1), "Ti": big.NewRat(1<<40, 1),
	"Pi": big.NewRat(1<<50, 1), "Ei": big.NewRat(1<<60, 1),
}

// parseQuantity parses a Kubernetes quantity ("100m", "64Mi", "1.5",
// "2e3": big.Rat reads the exponent form) into its value. Negative
// quantities are refused.
func parseQuantity(s string) (*big.Rat, error) {
	num := strings.TrimSpace(s)
	end := len(num)
	for end > 0 && !(num[end-1] >= '0' && num[end-1] <= '9' || num[end-1] == '.') {
		end--
	}
	number, suffix := num[:end], num[end:]
	factor, ok := quantitySuffixes[suffix]
	if !ok || number == "" || strings.HasPrefix(number, "-") || strings.HasPrefix(number, "+") {
		return nil, fmt.Errorf("%q is not a quantity (such as 100m, 0.5, 64Mi or 1G)", s)
	}
	v, ok := new(big.Rat).SetString(number)
	if !ok || v.Sign() < 0 {
		return nil, fmt.Errorf("%q is not a quantity (such as 100m, 0.5, 64Mi or 1G)", s)
	}
	return v.Mul(v, factor), nil
}

// ceilInt64 returns the least integer not below v, or an error when it
// does not fit an int64.
func ceilInt64(v *big.Rat) (int64, error) {
	q, r := new(big.Int).QuoRem(v.Num(), v.Denom(), new(big.Int))
	if r.Sign() > 0 {
		q.Add(q, big.NewInt(1))
	}
	if !q.IsInt64() {
		return 0, fmt.Errorf("%s is too large", v.FloatString(0))
	}
	return q.Int64(), nil
}

// parseMillis parses a CPU quantity into millicores, rounding up (as
// Kubernetes does).
func parseMillis(s string) (int64, error) {
	v, err := parseQuantity(s)
	if err != nil {
		return 0, err
	}
	return ceilInt64(v.Mul(v, big.NewRat(1000, 1)))
}

// parseBytes parses a memory quantity into bytes, rounding up.
func parseBytes(s string) (int64, error) {
	v, err := parseQuantity(s)
	if err != nil {
		return 0, err
	}
	return ceilInt64(v)
}

// formatMillis writes millicores as Kubernetes does: "2" for whole
// cores, else "250m".
func formatMillis(m int64) string {
	if m%1000 == 0 {
		return strconv.FormatInt(m/1000, 10)
	}
	return strconv.FormatInt(m, 10) + "m"
}

// formatBytes writes a byte count in its shortest exact form: "64Mi",
// "1G", "1500".
func formatBytes(n int64) string {
	best := strconv.FormatInt(n, 10)
	if n == 0 {
		return best
	}
	for _, s := range []struct {
		suffix string
		f      int64
	}{{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40}, {"Pi", 1 << 50}, {"Ei", 1 << 60},
		{"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12}, {"P", 1e15}, {"E", 1e18}} {
		if n%s.f == 0 {
			if c := strconv.FormatInt(n/s.f, 10) + s.suffix; len(c) < len(best) {
				best = c
			}
		}
	}
	return best
}
