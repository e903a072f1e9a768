package regtest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/opencontainers/image-spec/specs-go/v1"
)

func get(t *testing.T, c *http.Client, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body
}

func TestStartPlain(t *testing.T) {
	t.Parallel()
	r := Start(t, Options{})
	if !strings.HasPrefix(r.URL, "http://127.0.0.1:") || r.URL != "http://"+r.Host {
		t.Errorf("Host %q URL %q", r.Host, r.URL)
	}
	if r.CAFile != "" || r.CertDir != "" || r.CAPool != nil {
		t.Errorf("TLS fields set without TLS: %q %q %v", r.CAFile, r.CertDir, r.CAPool)
	}
	if fi, err := os.Stat(r.Dir); err != nil || !fi.IsDir() {
		t.Errorf("storage root %s: %v", r.Dir, err)
	}
	resp, body := get(t, r.HTTPClient(), r.URL+"/v2/")
	if resp.StatusCode != http.StatusOK || strings.TrimSpace(string(body)) != "{}" {
		t.Errorf("GET /v2/: %s %q", resp.Status, body)
	}
}

func TestHtpasswd(t *testing.T) {
	t.Parallel()
	r := Start(t, Options{User: "alice", Password: "s3cret"})
	c := r.HTTPClient()
	resp, _ := get(t, c, r.URL+"/v2/")
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unauthenticated GET /v2/: %s", resp.Status)
	}
	if ch := resp.Header.Get("WWW-Authenticate"); !strings.HasPrefix(ch, "Basic ") {
		t.Errorf("challenge %q", ch)
	}

	for _, tc := range []struct {
		user, pass string
		want       int
	}{{"alice", "s3cret", 200}, {"alice", "wrong", 401}, {"bob", "s3cret", 401}} {
		req, _ := http.NewRequest(http.MethodGet, r.URL+"/v2/", nil)
		req.SetBasicAuth(tc.user, tc.pass)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("GET /v2/ as %s:%s: %s, want %d", tc.user, tc.pass, resp.Status, tc.want)
		}
	}

	// The push helpers authenticate.
	d, err := r.PushBlob(context.Background(), "auth/repo", []byte("secret layer"))
	if err != nil {
		t.Fatal(err)
	}
	resp, _ = get(t, c, r.URL+"/v2/auth/repo/blobs/"+d)
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unauthenticated blob GET: %s", resp.Status)
	}
}

func TestTLS(t *testing.T) {
	t.Parallel()
	r := Start(t, Options{TLS: true})
	if !strings.HasPrefix(r.URL, "https://127.0.0.1:") {
		t.Errorf("URL %q", r.URL)
	}
	resp, _ := get(t, r.HTTPClient(), r.URL+"/v2/")
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET /v2/: %s", resp.Status)
	}

	// A client that does not trust the CA fails verification.
	plain := &http.Client{Transport: &http.Transport{}}
	_, err := plain.Get(r.URL + "/v2/")
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("default client: %v, want an x509 unknown authority error", err)
	}

	// The certificate is good for every loopback name.
	conn, err := tls.Dial("tcp", r.Host, &tls.Config{RootCAs: r.CAPool})
	if err != nil {
		t.Fatal(err)
	}
	leaf := conn.ConnectionState().PeerCertificates[0]
	conn.Close()
	for _, name := range []string{"127.0.0.1", "::1", "localhost"} {
		if err := leaf.VerifyHostname(name); err != nil {
			t.Error(err)
		}
	}

	// CAFile and CertDir/ca.crt hold the CA.
	pem, err := os.ReadFile(r.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	inDir, err := os.ReadFile(filepath.Join(r.CertDir, "ca.crt"))
	if err != nil || !bytes.Equal(pem, inDir) {
		t.Errorf("CertDir/ca.crt differs from CAFile (%v)", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("CAFile holds no certificate")
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, DNSName: "localhost"}); err != nil {
		t.Error(err)
	}
}

func TestPushAndRead(t *testing.T) {
	t.Parallel()
	r := Start(t, Options{})
	ctx := context.Background()
	c := r.HTTPClient()

	data := []byte("hello, blob")
	d, err := r.PushBlob(ctx, "lib/hello", data)
	if err != nil {
		t.Fatal(err)
	}
	if d != "sha256:"+sha256hex(data) {
		t.Errorf("digest %s", d)
	}
	resp, body := get(t, c, r.URL+"/v2/lib/hello/blobs/"+d)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, data) || resp.Header.Get("Docker-Content-Digest") != d {
		t.Errorf("GET blob: %s %q %s", resp.Status, body, resp.Header.Get("Docker-Content-Digest"))
	}

	img, err := NewTestImage(map[string]string{"etc/motd": "hello\n", "bin/true": "#!/bin/sh\n"})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.PushImage(ctx, "lib/hello", "v1", img); err != nil {
		t.Fatal(err)
	}
	resp, body = get(t, c, r.URL+"/v2/lib/hello/manifests/v1", "Accept", v1.MediaTypeImageManifest)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, img.Manifest.Data) {
		t.Fatalf("GET manifest: %s %s", resp.Status, body)
	}
	if ct := resp.Header.Get("Content-Type"); ct != v1.MediaTypeImageManifest {
		t.Errorf("Content-Type %q", ct)
	}
	if got := resp.Header.Get("Docker-Content-Digest"); got != img.Manifest.Digest {
		t.Errorf("manifest digest %s, want %s", got, img.Manifest.Digest)
	}
	resp, body = get(t, c, r.URL+"/v2/lib/hello/blobs/"+img.Layers[0].Digest)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, img.Layers[0].Data) {
		t.Errorf("GET layer: %s", resp.Status)
	}

	// By digest as well, and the same image twice gives the same digests.
	if err := r.PushImage(ctx, "lib/hello", "", img); err != nil {
		t.Fatal(err)
	}
	again, _ := NewTestImage(map[string]string{"bin/true": "#!/bin/sh\n", "etc/motd": "hello\n"})
	if again.Manifest.Digest != img.Manifest.Digest {
		t.Error("NewTestImage is not deterministic")
	}
	if ref := r.Ref("lib/hello", img.Manifest.Digest); ref != r.Host+"/lib/hello@"+img.Manifest.Digest {
		t.Errorf("Ref: %s", ref)
	}
	if ref := r.Ref("lib/hello", "v1"); ref != r.Host+"/lib/hello:v1" {
		t.Errorf("Ref: %s", ref)
	}

	// A manifest naming a missing blob is refused, and the helper says why.
	_, err = r.PutManifest(ctx, "lib/hello", "bad", v1.MediaTypeImageManifest,
		bytes.ReplaceAll(img.Manifest.Data, []byte(img.Config.Digest[7:]), []byte(strings.Repeat("0", 64))))
	if err == nil || !strings.Contains(err.Error(), "MANIFEST_BLOB_UNKNOWN") {
		t.Errorf("manifest with a missing blob: %v", err)
	}
}

func TestSkopeoInspect(t *testing.T) {
	t.Parallel()
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		t.Skip("skopeo not installed")
	}
	img, err := NewTestImage(map[string]string{"hello.txt": "hello from regtest\n"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		opts Options
	}{{"plain", Options{}}, {"tls+auth", Options{TLS: true, User: "u", Password: "p"}}} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := Start(t, tc.opts)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := r.PushImage(ctx, "skopeo/test", "latest", img); err != nil {
				t.Fatal(err)
			}
			args := []string{"inspect"}
			if r.CertDir != "" {
				args = append(args, "--cert-dir", r.CertDir)
			} else {
				args = append(args, "--tls-verify=false")
			}
			if r.User != "" {
				args = append(args, "--creds", r.User+":"+r.Password)
			}
			args = append(args, "docker://"+r.Ref("skopeo/test", "latest"))
			cmd := exec.CommandContext(ctx, skopeo, args...)
			cmd.Env = append(os.Environ(), "HOME="+t.TempDir()) // no user auth or policy files
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Fatalf("skopeo %s: %v\n%s", strings.Join(args, " "), err, out)
			}
			var got struct {
				Digest       string
				Architecture string
				Os           string
				Layers       []string
			}
			if err := json.Unmarshal(out, &got); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			if got.Digest != img.Manifest.Digest || got.Os != "linux" || len(got.Layers) != 1 || got.Layers[0] != img.Layers[0].Digest {
				t.Errorf("skopeo inspect: %s", out)
			}
		})
	}
}

func TestReadOnlySharedRoot(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	ctx := context.Background()
	rw := Start(t, Options{RootDir: root})
	img, err := NewTestImage(map[string]string{"a": "a"})
	if err != nil {
		t.Fatal(err)
	}
	if err := rw.PushImage(ctx, "ro/img", "v1", img); err != nil {
		t.Fatal(err)
	}
	ro := Start(t, Options{RootDir: root, ReadOnly: true})
	resp, body := get(t, ro.HTTPClient(), ro.URL+"/v2/ro/img/manifests/v1", "Accept", v1.MediaTypeImageManifest)
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, img.Manifest.Data) {
		t.Errorf("read-only GET manifest: %s", resp.Status)
	}
	if _, err := ro.PushBlob(ctx, "ro/img", []byte("new")); err == nil {
		t.Error("push to a read-only registry succeeded")
	} else {
		t.Logf("read-only push: %v", err)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "docker")); err != nil {
		t.Errorf("Close removed the caller's RootDir: %v", err)
	}
}

func TestCloseLeavesNothing(t *testing.T) {
	t.Parallel()
	r, err := StartProcess(Options{TLS: true, User: "u", Password: "p"})
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	pid, tmp := r.PID(), r.tmp
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		t.Fatalf("pid %d not running", pid)
	}
	if pgid, err := syscall.Getpgid(pid); err != nil || pgid != pid {
		t.Errorf("registry's process group %d (%v), want its own %d", pgid, err, pid)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
		t.Errorf("pid %d after Close: kill 0 gives %v, want ESRCH", pid, err)
	}
	for _, dir := range []string{tmp, r.Dir, r.CertDir, filepath.Dir(r.CAFile)} {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s after Close: %v", dir, err)
		}
	}
	if err := r.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := net.DialTimeout("tcp", r.Host, time.Second); err == nil {
		t.Errorf("%s still accepts connections", r.Host)
	}
}

// TestPortRace starts on a port another listener holds: the registry
// fails to bind and StartProcess tries another port.
func TestPortRace(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	calls := 0
	pickPort = func() (int, error) {
		calls++
		if calls == 1 {
			return busy.Addr().(*net.TCPAddr).Port, nil
		}
		return freePort()
	}
	defer func() { pickPort = freePort }()
	r := Start(t, Options{})
	if calls != 2 || r.Host == busy.Addr().String() {
		t.Errorf("%d ports tried, serving on %s (busy %s)", calls, r.Host, busy.Addr())
	}
}

func TestUnavailable(t *testing.T) {
	t.Setenv(BinaryEnv, "/nonexistent/docker-registry")
	_, err := StartProcess(Options{})
	if !errors.Is(err, ErrUnavailable) {
		t.Fatalf("StartProcess with a missing binary: %v", err)
	}
	skipped := false
	ft := &fakeTB{TB: t, skip: func() { skipped = true }}
	func() {
		defer func() { _ = recover() }()
		Start(ft, Options{})
	}()
	if !skipped {
		t.Error("Start did not skip")
	}
}

// fakeTB catches Skip, which panics to stop the caller.
type fakeTB struct {
	testing.TB
	skip func()
}

func (f *fakeTB) Skipf(format string, args ...any) {
	f.skip()
	panic("skipped")
}

func TestConfigQuoting(t *testing.T) {
	cfg := config("127.0.0.1:1", `/tmp/a "b"`, "", "", "", true)
	for _, want := range []string{`rootdirectory: "/tmp/a \"b\""`, "enabled: true", `addr: "127.0.0.1:1"`} {
		if !strings.Contains(cfg, want) {
			t.Errorf("config lacks %q:\n%s", want, cfg)
		}
	}
	if strings.Contains(cfg, "auth:") || strings.Contains(cfg, "tls:") {
		t.Errorf("config has auth or tls unasked:\n%s", cfg)
	}
}

// fakeRegistry writes a shell script standing in for docker-registry and
// points BinaryEnv at it.
func fakeRegistry(t *testing.T, script string) {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "docker-registry")
	if err := os.WriteFile(bin, []byte("#!/bin/sh\n"+script+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv(BinaryEnv, bin)
}

func TestStartErrors(t *testing.T) {
	t.Run("exits", func(t *testing.T) {
		fakeRegistry(t, `echo "configuration error: boom" >&2; exit 3`)
		_, err := StartProcess(Options{})
		if err == nil || errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "boom") || !strings.Contains(err.Error(), "exit status 3") {
			t.Errorf("StartProcess: %v", err)
		}
	})
	t.Run("silent", func(t *testing.T) {
		fakeRegistry(t, `echo waiting >&2; exec sleep 60`)
		defer func(d time.Duration) { ReadyTimeout = d }(ReadyTimeout)
		ReadyTimeout = 300 * time.Millisecond
		start := time.Now()
		_, err := StartProcess(Options{})
		if err == nil || !strings.Contains(err.Error(), "did not answer") || !strings.Contains(err.Error(), "waiting") {
			t.Errorf("StartProcess: %v", err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Errorf("gave up after %v", el)
		}
	})
}

// TestParentDeath kills a test binary that runs a registry: the registry
// dies with it.
func TestParentDeath(t *testing.T) {
	if os.Getenv("REGTEST_CHILD") == "1" {
		r, err := StartProcess(Options{})
		if err != nil {
			os.Stdout.WriteString("error " + err.Error() + "\n")
			os.Exit(1)
		}
		os.Stdout.WriteString("pid " + strconv.Itoa(r.PID()) + " " + r.tmp + "\n")
		time.Sleep(time.Minute)
		os.Exit(0)
	}
	if _, err := binary(); err != nil {
		t.Skip(err)
	}
	t.Parallel()
	cmd := exec.Command(os.Args[0], "-test.run=^TestParentDeath$", "-test.count=1")
	cmd.Env = append(os.Environ(), "REGTEST_CHILD=1")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("child: %v", err)
	}
	var pid int
	var tmp string
	if _, err := fmt.Sscanf(line, "pid %d %s", &pid, &tmp); err != nil {
		t.Fatalf("child: %s", line)
	}
	// Nobody will run Close: remove the temporary directory here.
	defer os.RemoveAll(tmp)
	if syscall.Kill(pid, 0) != nil {
		t.Fatalf("registry %d not running", pid)
	}
	cmd.Process.Kill()
	cmd.Wait()
	waitFor(t, func() bool {
		stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
		// Gone, or a zombie waiting for init to reap it.
		return err != nil || strings.Contains(string(stat), ") Z ")
	})
}
