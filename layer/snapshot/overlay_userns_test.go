package snapshot

import "testing"

func TestKernelAtLeast(t *testing.T) {
	for _, tc := range []struct {
		rel  string
		want bool
	}{
		{"5.11.0", true}, {"5.10.200-generic", false}, {"6.1.0-13-amd64", true},
		{"4.19.0", false}, {"5.11", true}, {"10.0", true}, {"garbage", false}, {"", false},
	} {
		if got := kernelAtLeast(tc.rel, 5, 11); got != tc.want {
			t.Errorf("kernelAtLeast(%q, 5, 11) = %v, want %v", tc.rel, got, tc.want)
		}
	}
}
