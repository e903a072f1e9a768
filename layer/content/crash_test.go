package content

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// The test binary re-executed with helperEnv set is a helper process that
// writes to the store in $BERTH_CONTENT_ROOT until it is killed.
const helperEnv = "BERTH_CONTENT_HELPER"

func TestMain(m *testing.M) {
	if mode := os.Getenv(helperEnv); mode != "" {
		if err := runHelper(mode, os.Getenv("BERTH_CONTENT_ROOT")); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(2)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func runHelper(mode, root string) error {
	ctx := context.Background()
	s, err := Open(root)
	if err != nil {
		return err
	}
	switch mode {
	case "slowput":
		// A blob of 1 GiB, 64 KiB every millisecond: it is killed long
		// before it ends.
		_, err := s.Put(ctx, "", &slowReader{left: 1 << 30}, "")
		return err
	case "putloop":
		// Blobs of 256 KiB, as fast as possible.
		buf := make([]byte, 256<<10)
		for i := 0; ; i++ {
			rand.Read(buf)
			w, err := s.Writer(ctx, ocispec.Descriptor{Digest: digest.FromBytes(buf), Size: int64(len(buf))})
			if err != nil {
				return err
			}
			for off := 0; off < len(buf); off += 32 << 10 {
				w.Write(buf[off : off+32<<10])
			}
			if _, err := w.Commit(ctx); err != nil {
				return err
			}
			if i == 0 {
				fmt.Println("ready")
			}
		}
	case "holdwriter":
		// Write half of sharedBlob, then wait for the go file before
		// the rest.
		w, err := s.Writer(ctx, ocispec.Descriptor{Digest: digest.FromBytes(sharedBlob), Size: int64(len(sharedBlob))})
		if err != nil {
			return err
		}
		w.Write(sharedBlob[:len(sharedBlob)/2])
		fmt.Println("ready")
		for {
			if _, err := os.Stat(root + ".go"); err == nil {
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		w.Write(sharedBlob[len(sharedBlob)/2:])
		_, err = w.Commit(ctx)
		return err
	case "tagloop":
		target, err := s.Resolve(ctx, "base")
		if err != nil {
			return err
		}
		for i := 0; ; i++ {
			if err := s.Tag(ctx, fmt.Sprintf("img%d", i%20), target); err != nil {
				return err
			}
			if i == 0 {
				fmt.Println("ready")
			}
		}
	}
	return fmt.Errorf("unknown mode %q", mode)
}

// sharedBlob is what the holdwriter helper and TestWriterAcrossProcesses
// both write.
var sharedBlob = bytes.Repeat([]byte("shared blob "), 10000)

type slowReader struct {
	left    int64
	started bool
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.left == 0 {
		return 0, io.EOF
	}
	if r.started {
		time.Sleep(time.Millisecond)
	}
	n := min(len(p), 64<<10, int(r.left))
	rand.Read(p[:n])
	r.left -= int64(n)
	if !r.started {
		r.started = true
		fmt.Println("ready")
	}
	return n, nil
}

// startHelper runs the test binary as a helper on root and waits until it
// says it is writing.
func startHelper(t *testing.T, mode, root string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, "BERTH_CONTENT_ROOT="+root)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(out).ReadString('\n')
	if strings.TrimSpace(line) != "ready" {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("helper %s did not start: %q, %v; stderr: %s", mode, line, err, stderr.String())
	}
	return cmd
}

func kill(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := cmd.Wait()
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("helper was not killed by SIGKILL: %v", err)
	}
}

func randomDelay(maxMS int64) time.Duration {
	n, _ := rand.Int(rand.Reader, big.NewInt(maxMS))
	return time.Duration(n.Int64()+1) * time.Millisecond
}

// TestCrashDuringPut kills a process in the middle of writing a large blob:
// the partial blob is never visible under a digest, Open removes the
// temporary file, and the store works.
func TestCrashDuringPut(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	img := smallImage(t, s, "before")
	if err := s.Tag(ctx, "before", img.manifest); err != nil {
		t.Fatal(err)
	}
	blobsBefore := blobSet(t, s)
	cmd := startHelper(t, "slowput", s.Root())
	time.Sleep(150 * time.Millisecond)
	kill(t, cmd)

	tmps := tempFiles(t, s.Root())
	if len(tmps) != 1 {
		t.Fatalf("temporary files after the kill: %v, want the one of the killed writer", tmps)
	}
	if st, err := os.Stat(tmps[0]); err != nil || st.Size() < 64<<10 {
		t.Fatalf("the killed writer's file: %v, %v", st, err)
	} else {
		t.Logf("killed writer left %s, %d bytes", filepath.Base(tmps[0]), st.Size())
	}
	if got := blobSet(t, s); len(got) != len(blobsBefore) {
		t.Errorf("blobs after the kill: %v, want %v", got, blobsBefore)
	}

	s2, err := Open(s.Root())
	if err != nil {
		t.Fatal(err)
	}
	if tmps := tempFiles(t, s.Root()); len(tmps) != 0 {
		t.Errorf("Open left %v", tmps)
	}
	checkBlobs(t, s.Root())
	if _, _, err := s2.Manifest(ctx, img.manifest, nil); err != nil {
		t.Errorf("image after the crash: %v", err)
	}
	other := smallImage(t, s2, "after")
	if err := s2.Tag(ctx, "after", other.manifest); err != nil {
		t.Fatal(err)
	}
	if imgs, err := s2.Images(ctx); err != nil || len(imgs) != 2 {
		t.Errorf("Images = %v, %v", imgs, err)
	}
}

// TestCrashDuringCommit kills a process that commits blob after blob at
// random moments: every blob under a digest name is complete.
func TestCrashDuringCommit(t *testing.T) {
	s := newStore(t)
	total := 0
	for range 5 {
		cmd := startHelper(t, "putloop", s.Root())
		time.Sleep(randomDelay(60))
		kill(t, cmd)
		if _, err := Open(s.Root()); err != nil {
			t.Fatal(err)
		}
		if tmps := tempFiles(t, s.Root()); len(tmps) != 0 {
			t.Errorf("Open left %v", tmps)
		}
		total = checkBlobs(t, s.Root())
	}
	t.Logf("%d complete blobs, none partial", total)
	if total == 0 {
		t.Errorf("the helper wrote nothing")
	}
}

// TestCrashDuringTag kills a process that rewrites index.json in a loop:
// index.json is always whole and Open removes the temporary files.
func TestCrashDuringTag(t *testing.T) {
	ctx := context.Background()
	s := newStore(t)
	img := smallImage(t, s, "base")
	if err := s.Tag(ctx, "base", img.manifest); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		cmd := startHelper(t, "tagloop", s.Root())
		time.Sleep(randomDelay(60))
		kill(t, cmd)
		s2, err := Open(s.Root())
		if err != nil {
			t.Fatalf("Open after a kill during Tag: %v", err)
		}
		if tmps := tempFiles(t, s.Root()); len(tmps) != 0 {
			t.Errorf("Open left %v", tmps)
		}
		imgs, err := s2.Images(ctx)
		if err != nil || len(imgs) < 2 {
			t.Fatalf("Images = %v, %v", imgs, err)
		}
		if d, err := s2.Resolve(ctx, "base"); err != nil || d.Digest != img.manifest.Digest {
			t.Errorf("Resolve(base) = %v, %v", d, err)
		}
	}
	// The store still takes tags (the killed process's lock is gone).
	ctx2, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := s.Tag(ctx2, "final", img.manifest); err != nil {
		t.Fatal(err)
	}
}

// TestWriterAcrossProcesses checks that writers of one digest in two
// processes take turns: while a helper process holds the digest's writer,
// a writer here waits, and once the helper has committed it finds the blob
// there (ErrExists), so a second puller downloads nothing.
func TestWriterAcrossProcesses(t *testing.T) {
	root := filepath.Join(t.TempDir(), "store")
	s, err := Open(root)
	if err != nil {
		t.Fatal(err)
	}
	cmd := startHelper(t, "holdwriter", root)
	d := digest.FromBytes(sharedBlob)
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if w, err := s.Writer(ctx, ocispec.Descriptor{Digest: d}); !errors.Is(err, context.DeadlineExceeded) {
		if w != nil {
			w.Close()
		}
		t.Fatalf("Writer while another process writes the digest: %v, want it to wait", err)
	}
	if err := os.WriteFile(root+".go", nil, 0o644); err != nil {
		t.Fatal(err)
	}
	ctx2, cancel2 := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel2()
	if _, err := s.Writer(ctx2, ocispec.Descriptor{Digest: d}); !errors.Is(err, ErrExists) {
		t.Fatalf("Writer after the other process committed: %v, want ErrExists", err)
	}
	_, created, err := s.put(ctx2, "", bytes.NewReader(sharedBlob), d, 0)
	if err != nil || created {
		t.Errorf("put after the other process: created %v, %v; want the blob found", created, err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	if tf := tempFiles(t, root); len(tf) != 0 {
		t.Errorf("left behind: %v", tf)
	}
}
