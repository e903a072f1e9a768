package initproc

import "testing"

func TestInIDMap(t *testing.T) {
	m := "         0       1001          1\n         1     100000      65536\n"
	for _, tc := range []struct {
		id   uint32
		want bool
	}{{0, true}, {1, true}, {65536, true}, {65537, false}, {1001, true}, {4000000000, false}} {
		if got := inIDMap(m, tc.id); got != tc.want {
			t.Errorf("inIDMap(%d) = %v, want %v", tc.id, got, tc.want)
		}
	}
	if !inIDMap("0 0 4294967295\n", 4294967294) {
		t.Error("the initial namespace's map does not hold every ID")
	}
}
