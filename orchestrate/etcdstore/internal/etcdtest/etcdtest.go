// Package etcdtest runs real etcd servers (Debian's etcd-server, the
// etcd binary on $PATH or in $BERTH_ETCD) for tests: one member or a
// cluster of several, on 127.0.0.1 with free ports and temporary data
// directories, started and stopped by the test.
package etcdtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// ErrUnavailable is wrapped by StartCluster's error when no etcd binary
// is installed; Start skips the test on it.
var ErrUnavailable = errors.New("etcdtest: etcd unavailable (apt-get install etcd-server)")

// BinaryEnv names an environment variable that, when set, is the etcd
// binary to run instead of etcd from $PATH.
const BinaryEnv = "BERTH_ETCD"

// Member is one etcd server process.
type Member struct {
	// Name is the member's name (m0, m1, ...).
	Name string
	// ClientURL is "http://127.0.0.1:PORT", where clients connect.
	ClientURL string
	// PeerURL is where the other members connect.
	PeerURL string
	// Dir is the member's data directory.
	Dir string

	args []string
	mu   sync.Mutex
	cmd  *exec.Cmd
	done chan struct{}
	log  logBuffer
}

// logBuffer is what a process writes, safe to read meanwhile.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// Cluster is a running etcd cluster.
type Cluster struct {
	// Members are its servers, in order.
	Members []*Member
	tmp     string
}

// Endpoints returns the members' client addresses (host:port).
func (c *Cluster) Endpoints() []string {
	var out []string
	for _, m := range c.Members {
		out = append(out, strings.TrimPrefix(m.ClientURL, "http://"))
	}
	return out
}

// Start starts a cluster of n members for t and stops it (removing its
// data) when t ends; it skips t when etcd is not installed.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	c, err := StartCluster(n, t.TempDir())
	if errors.Is(err, ErrUnavailable) {
		t.Skip(err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Stop)
	return c
}

// freePorts returns n ports on 127.0.0.1 that were free a moment ago.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// StartCluster starts n members with data under dir and waits until
// every one answers /health. Stop stops them.
func StartCluster(n int, dir string) (*Cluster, error) {
	bin := os.Getenv(BinaryEnv)
	if bin == "" {
		var err error
		if bin, err = exec.LookPath("etcd"); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	var lastErr error
	for range 3 { // a port taken between freePorts and etcd's listen
		c, err := startCluster(bin, n, dir)
		if err == nil {
			return c, nil
		}
		lastErr = err
		if !strings.Contains(err.Error(), "address already in use") {
			break
		}
	}
	return nil, lastErr
}

func startCluster(bin string, n int, dir string) (*Cluster, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(dir, "etcd")
	if err != nil {
		return nil, err
	}
	c := &Cluster{tmp: tmp}
	var initial []string
	for i := range n {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			PeerURL:   fmt.Sprintf("http://127.0.0.1:%d", ports[2*i+1]),
			Dir:       filepath.Join(tmp, fmt.Sprintf("m%d", i)),
		}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	for _, m := range c.Members {
		m.args = []string{bin,
			"--name", m.Name, "--data-dir", m.Dir,
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", filepath.Base(tmp),
			// Short elections, so that losing a member is over fast.
			"--heartbeat-interval", "50", "--election-timeout", "500",
			"--log-level", "warn",
		}
		if err := m.start(); err != nil {
			c.Stop()
			return nil, err
		}
	}
	for _, m := range c.Members {
		if err := m.waitHealthy(15 * time.Second); err != nil {
			c.Stop()
			return nil, err
		}
	}
	return c, nil
}

// start runs the member's process (again, after Kill).
func (m *Member) start() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	cmd := exec.Command(m.args[0], m.args[1:]...)
	cmd.Stdout = &m.log
	cmd.Stderr = &m.log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("etcdtest: start %s: %w", m.Name, err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	m.cmd, m.done = cmd, done
	return nil
}

// waitHealthy waits until the member answers /health with true.
func (m *Member) waitHealthy(limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		m.mu.Lock()
		done := m.done
		m.mu.Unlock()
		select {
		case <-done:
			return fmt.Errorf("etcdtest: %s exited: %s", m.Name, m.Log())
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, m.ClientURL+"/health", nil)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			if strings.Contains(b.String(), `"true"`) {
				cancel()
				return nil
			}
		}
		cancel()
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("etcdtest: %s not healthy after %v: %s", m.Name, limit, m.Log())
}

// Log returns what the member's process wrote.
func (m *Member) Log() string { return m.log.String() }

// Kill stops the member's process with SIGKILL and waits for it.
func (m *Member) Kill() {
	m.mu.Lock()
	cmd, done := m.cmd, m.done
	m.mu.Unlock()
	if cmd == nil {
		return
	}
	cmd.Process.Kill()
	<-done
}

// Restart starts the member again on its data directory after Kill
// and waits until it is healthy.
func (m *Member) Restart() error {
	m.mu.Lock()
	for i, a := range m.args {
		if a == "--initial-cluster-state" {
			m.args[i+1] = "existing"
		}
	}
	m.mu.Unlock()
	if err := m.start(); err != nil {
		return err
	}
	return m.waitHealthy(15 * time.Second)
}

// Stop kills every member and removes their data.
func (c *Cluster) Stop() {
	for _, m := range c.Members {
		m.Kill()
	}
	os.RemoveAll(c.tmp)
}
