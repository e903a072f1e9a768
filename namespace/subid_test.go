package namespace

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseSubIDs(t *testing.T) {
	in := "# comment\nalice:100000:65536\nbob:200000:1000\n1001:300000:10\nalice:500000:5\nbroken:line\ncarol:x:5\ndave:1:0\n\nalice:4294967290:10\n"
	for _, tc := range []struct {
		name string
		id   uint32
		want []SubIDRange
	}{
		{"alice", 1000, []SubIDRange{{100000, 65536}, {500000, 5}}},
		{"bob", 1000, []SubIDRange{{200000, 1000}}},
		{"someone", 1001, []SubIDRange{{300000, 10}}}, // by numeric ID
		{"carol", 1002, nil},                          // malformed count
		{"dave", 1003, nil},                           // zero count
		{"nobody", 9, nil},
	} {
		got := parseSubIDs(strings.NewReader(in), tc.name, tc.id)
		if !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
	if r, err := ReadSubIDs(filepath.Join(t.TempDir(), "missing"), "alice", 1); r != nil || err != nil {
		t.Errorf("missing file: %v, %v; want nothing and no error", r, err)
	}
	f := filepath.Join(t.TempDir(), "subuid")
	os.WriteFile(f, []byte(in), 0o644)
	if r, err := ReadSubIDs(f, "bob", 5); err != nil || len(r) != 1 {
		t.Errorf("ReadSubIDs: %v, %v", r, err)
	}
}

func TestCheckSubIDs(t *testing.T) {
	ranges := []SubIDRange{{100000, 65536}}
	for _, tc := range []struct {
		what   string
		maps   []IDMap
		ranges []SubIDRange
		err    error
	}{
		{"own ID", []IDMap{{0, 1000, 1}}, nil, nil},
		{"own and range", []IDMap{{0, 1000, 1}, {1, 100000, 65536}}, ranges, nil},
		{"part of the range", []IDMap{{0, 1000, 1}, {1, 100010, 10}}, ranges, nil},
		{"past the range", []IDMap{{0, 1000, 1}, {1, 100000, 65537}}, ranges, ErrNoSubIDs},
		{"no ranges", []IDMap{{0, 1000, 1}, {1, 100000, 10}}, nil, ErrNoSubIDs},
		{"another user's ID", []IDMap{{0, 1001, 1}}, ranges, ErrNoSubIDs},
		{"own ID twice as wide", []IDMap{{0, 1000, 2}}, nil, ErrNoSubIDs},
		{"overlap", []IDMap{{0, 1000, 1}, {0, 100000, 10}}, ranges, ErrInvalidIDMap},
	} {
		err := CheckSubIDs("uid", "/etc/subuid", "alice", tc.maps, 1000, tc.ranges)
		if tc.err == nil && err != nil || tc.err != nil && !errors.Is(err, tc.err) {
			t.Errorf("%s: %v, want %v", tc.what, err, tc.err)
		}
	}
}

func TestWriteIDMapsHelperMissing(t *testing.T) {
	old := NewUIDMap
	NewUIDMap = "berth-no-such-newuidmap"
	defer func() { NewUIDMap = old }()
	err := WriteIDMapsHelper(os.Getpid(), []IDMap{{0, 1000, 1}}, nil)
	if !errors.Is(err, ErrNoIDMapHelper) {
		t.Errorf("WriteIDMapsHelper without newuidmap: %v, want ErrNoIDMapHelper", err)
	}
}
