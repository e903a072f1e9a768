package content

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

func TestOpenCreatesLayout(t *testing.T) {
	root := filepath.Join(t.TempDir(), "a", "b")
	if _, err := Open(root); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(filepath.Join(root, "oci-layout"))
	if err != nil || string(b) != `{"imageLayoutVersion":"1.0.0"}` {
		t.Errorf("oci-layout = %q, %v", b, err)
	}
	b, err = os.ReadFile(filepath.Join(root, "index.json"))
	if err != nil || string(b) != `{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[]}` {
		t.Errorf("index.json = %q, %v", b, err)
	}
	if st, err := os.Stat(filepath.Join(root, "blobs", "sha256")); err != nil || !st.IsDir() {
		t.Errorf("blobs/sha256: %v", err)
	}
	// Opening again keeps what is there.
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Put(context.Background(), "", strings.NewReader("x"), ""); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(root); err != nil {
		t.Fatal(err)
	}
	if n := len(blobSet(t, s)); n != 1 {
		t.Errorf("%d blobs after reopening, want 1", n)
	}
}

func TestOpenRejectsBadLayout(t *testing.T) {
	for name, files := range map[string]map[string]string{
		"malformed index.json":  {"oci-layout": `{"imageLayoutVersion":"1.0.0"}`, "index.json": `{"schemaVersion":2,"manifests":[`},
		"index.json not object": {"index.json": `[]`},
		"index.json bad digest": {"index.json": `{"schemaVersion":2,"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:nothex","size":1}]}`},
		"index.json version":    {"index.json": `{"schemaVersion":1,"manifests":[]}`},
		"layout version":        {"oci-layout": `{"imageLayoutVersion":"2.0.0"}`},
		"layout malformed":      {"oci-layout": `{`},
	} {
		t.Run(name, func(t *testing.T) {
			root := t.TempDir()
			for n, c := range files {
				os.WriteFile(filepath.Join(root, n), []byte(c), 0o644)
			}
			_, err := Open(root)
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("Open = %v, want ErrInvalid", err)
			}
			t.Log(err)
			entries, _ := os.ReadDir(root)
			if len(entries) != len(files) {
				t.Errorf("Open changed the directory: %d entries, want %d", len(entries), len(files))
			}
			for n, c := range files {
				if b, _ := os.ReadFile(filepath.Join(root, n)); string(b) != c {
					t.Errorf("%s changed to %q", n, b)
				}
			}
		})
	}
}

func TestBlobs(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := "hello, berth"
	want := digest.FromString(data)
	d, err := s.Put(ctx, "text/plain", strings.NewReader(data), "")
	if err != nil {
		t.Fatal(err)
	}
	if d.Digest != want || d.Size != int64(len(data)) || d.MediaType != "text/plain" {
		t.Errorf("Put = %+v", d)
	}
	// Again, with the digest: a no-op that does not read.
	d2, err := s.Put(ctx, "text/plain", iotestErrReader{}, want)
	if err != nil || d2.Digest != d.Digest || d2.Size != d.Size {
		t.Errorf("Put again = %+v, %v", d2, err)
	}
	if n, err := s.Info(ctx, want); err != nil || n != int64(len(data)) {
		t.Errorf("Info = %d, %v", n, err)
	}
	rc, err := s.Open(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	if string(b) != data {
		t.Errorf("Open read %q", b)
	}
	if st, _ := os.Stat(filepath.Join(s.Root(), "blobs", "sha256", want.Encoded())); st.Mode().Perm() != 0o644 {
		t.Errorf("blob mode %v, want 0644", st.Mode())
	}
	empty, err := s.Put(ctx, "", strings.NewReader(""), digest.FromString(""))
	if err != nil || empty.Size != 0 {
		t.Errorf("Put empty = %+v, %v", empty, err)
	}
	var walked []digest.Digest
	s.Walk(ctx, func(d digest.Digest, n int64) error {
		walked = append(walked, d)
		return nil
	})
	if len(walked) != 2 {
		t.Errorf("Walk saw %v", walked)
	}
	if err := s.Delete(ctx, want); err != nil {
		t.Fatal(err)
	}
	for name, err := range map[string]error{
		"Delete": s.Delete(ctx, want),
		"Info":   func() error { _, err := s.Info(ctx, want); return err }(),
		"Open":   func() error { _, err := s.Open(ctx, want); return err }(),
	} {
		if !errors.Is(err, ErrNotFound) {
			t.Errorf("%s of a deleted blob = %v, want ErrNotFound", name, err)
		}
	}
	for _, bad := range []digest.Digest{"sha256:abc", "md5:d41d8cd98f00b204e9800998ecf8427e", "nocolon", "sha256:../../../../etc/passwd"} {
		if _, err := s.Info(ctx, bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Info(%q) = %v, want ErrInvalid", bad, err)
		}
		if _, err := s.Put(ctx, "", strings.NewReader("x"), bad); !errors.Is(err, ErrInvalid) {
			t.Errorf("Put(%q) = %v, want ErrInvalid", bad, err)
		}
	}
}

type iotestErrReader struct{}

func (iotestErrReader) Read([]byte) (int, error) { return 0, errors.New("must not be read") }

func TestSHA512Blob(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	d := digest.SHA512.FromString("x")
	if _, err := s.Put(ctx, "", strings.NewReader("x"), d); err != nil {
		t.Fatal(err)
	}
	if n, err := s.Info(ctx, d); err != nil || n != 1 {
		t.Errorf("Info = %d, %v", n, err)
	}
	if _, ok := blobSet(t, s)[d]; !ok {
		t.Errorf("Walk does not see %s", d)
	}
}

func TestDigestMismatchKeepsNothing(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	before := snapshot(t, s)
	full := bytes.Repeat([]byte("layer data "), 10000)
	good := digest.FromBytes(full)
	cases := map[string]func() error{
		"wrong content": func() error {
			_, err := s.Put(ctx, "", strings.NewReader("other"), good)
			return err
		},
		"truncated": func() error {
			_, err := s.Put(ctx, "", bytes.NewReader(full[:len(full)-1]), good)
			return err
		},
		"size short": func() error {
			w, err := s.Writer(ctx, ocispec.Descriptor{Digest: good, Size: int64(len(full)) + 1})
			if err != nil {
				return err
			}
			defer w.Close()
			w.Write(full)
			_, err = w.Commit(ctx)
			return err
		},
		"size over": func() error {
			w, err := s.Writer(ctx, ocispec.Descriptor{Digest: good, Size: 10})
			if err != nil {
				return err
			}
			defer w.Close()
			if _, err := w.Write(full); !errors.Is(err, ErrDigestMismatch) {
				t.Errorf("Write past the size = %v, want ErrDigestMismatch", err)
			}
			_, err = w.Commit(ctx)
			return err
		},
	}
	for name, f := range cases {
		err := f()
		if !errors.Is(err, ErrDigestMismatch) {
			t.Errorf("%s: %v, want ErrDigestMismatch", name, err)
		} else {
			t.Logf("%s: %v", name, err)
		}
		if after := snapshot(t, s); after != before {
			t.Errorf("%s changed the store:\n%s\nwant\n%s", name, after, before)
		}
	}
	// The digest is free again for a correct writer.
	if _, err := s.Put(ctx, "", bytes.NewReader(full), good); err != nil {
		t.Fatal(err)
	}
}

func TestWriterCloseAbandons(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	d := digest.FromString("abc")
	w, err := s.Writer(ctx, ocispec.Descriptor{Digest: d})
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("ab"))
	if tf := tempFiles(t, s.Root()); len(tf) != 2 {
		t.Errorf("while writing: %v, want a temporary file and the digest's lock file", tf)
	}
	w.Close()
	w.Close()
	if tf := tempFiles(t, s.Root()); len(tf) != 0 {
		t.Errorf("Close left %v", tf)
	}
	if _, err := w.Commit(ctx); !errors.Is(err, ErrInvalid) {
		t.Errorf("Commit after Close = %v", err)
	}
	// The lock was released.
	ctx2, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if _, err := s.Put(ctx2, "", strings.NewReader("abc"), d); err != nil {
		t.Fatal(err)
	}
}

func TestConcurrentWritersSameDigest(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	data := make([]byte, 1<<20)
	rand.Read(data)
	d := digest.FromBytes(data)
	const n = 50
	var wg sync.WaitGroup
	var mu sync.Mutex
	var wrote, exists int
	var errs []error
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w, err := s.Writer(ctx, ocispec.Descriptor{Digest: d, Size: int64(len(data))})
			mu.Lock()
			defer mu.Unlock()
			if errors.Is(err, ErrExists) {
				exists++
				return
			}
			if err != nil {
				errs = append(errs, err)
				return
			}
			mu.Unlock()
			for off := 0; off < len(data); off += 64 << 10 {
				w.Write(data[off : off+64<<10])
			}
			_, err = w.Commit(ctx)
			mu.Lock()
			if err != nil {
				errs = append(errs, err)
			}
			wrote++
		}()
	}
	wg.Wait()
	if len(errs) > 0 || wrote != 1 || exists != n-1 {
		t.Errorf("%d wrote, %d saw ErrExists, errors %v; want 1, %d, none", wrote, exists, errs, n-1)
	}
	if got := blobSet(t, s); len(got) != 1 || got[d] != int64(len(data)) {
		t.Errorf("blobs %v", got)
	}
	if tf := tempFiles(t, s.Root()); len(tf) != 0 {
		t.Errorf("left %v", tf)
	}

	// Put from 50 goroutines, half without the digest: all succeed.
	other := append([]byte("other"), data...)
	od := digest.FromBytes(other)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			exp := od
			if i%2 == 0 {
				exp = ""
			}
			got, err := s.Put(ctx, "", bytes.NewReader(other), exp)
			if err != nil || got.Digest != od || got.Size != int64(len(other)) {
				t.Errorf("Put = %+v, %v", got, err)
			}
		}()
	}
	wg.Wait()
	if got := blobSet(t, s); len(got) != 2 {
		t.Errorf("blobs %v", got)
	}
	checkBlobs(t, s.Root())
	if tf := tempFiles(t, s.Root()); len(tf) != 0 {
		t.Errorf("left %v", tf)
	}
}

func TestDifferentDigestsDoNotContend(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	a, b := digest.FromString("a"), digest.FromString("b")
	wa, err := s.Writer(ctx, ocispec.Descriptor{Digest: a})
	if err != nil {
		t.Fatal(err)
	}
	defer wa.Close()
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	if _, err := s.Put(short, "", strings.NewReader("b"), b); err != nil {
		t.Fatalf("Put of another digest while a writer is open: %v", err)
	}
	// The same digest waits, and gives up with its context.
	short2, cancel2 := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel2()
	if _, err := s.Writer(short2, ocispec.Descriptor{Digest: a}); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("second writer of the same digest = %v, want to wait", err)
	}
	wa.Write([]byte("a"))
	if _, err := wa.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Writer(ctx, ocispec.Descriptor{Digest: a}); !errors.Is(err, ErrExists) {
		t.Errorf("writer after commit = %v, want ErrExists", err)
	}
}

func TestWriterContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	s := newStore(t)
	w, err := s.Writer(ctx, ocispec.Descriptor{})
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte("x"))
	cancel()
	if _, err := w.Write([]byte("y")); !errors.Is(err, context.Canceled) {
		t.Errorf("Write after cancel = %v", err)
	}
	if _, err := w.Commit(context.Background()); !errors.Is(err, context.Canceled) {
		t.Errorf("Commit after cancel = %v", err)
	}
	if len(blobSet(t, s)) != 0 || len(tempFiles(t, s.Root())) != 0 {
		t.Errorf("a cancelled writer left something")
	}
}

// TestOpenKeepsLiveWriters checks that the clean-up of Open leaves the
// temporary file of a writer that is still going.
func TestOpenKeepsLiveWriters(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	w, err := s.Writer(ctx, ocispec.Descriptor{})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	w.Write([]byte("live"))
	if _, err := Open(s.Root()); err != nil {
		t.Fatal(err)
	}
	if len(tempFiles(t, s.Root())) != 1 {
		t.Fatal("Open removed a live writer's file")
	}
	w.Write([]byte(" writer"))
	d, err := w.Commit(ctx)
	if err != nil || d.Digest != digest.FromString("live writer") {
		t.Fatalf("Commit = %v, %v", d, err)
	}
}
