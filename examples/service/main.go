// Command service runs a replicated web application behind Kubernetes
// Services, from a YAML manifest, with berth's orchestrate: three busybox
// httpd replicas (a Deployment), a Service "web" in front of them and a
// NodePort Service "web-node" on the host's loopback.
//
//	go run ./examples/service
//
// It applies app.yaml (embedded in the program) with manifest.Decode and
// manifest.Apply, waits for the three replicas to be ready, and then
//
//   - from a client pod, resolves the Service's name through the pods'
//     DNS server (127.0.0.11) and fetches it several times, printing which
//     replica answered each time;
//   - fetches the NodePort from the host, at 127.0.0.1:nodePort;
//   - rolls the Deployment out to a new version (maxSurge 1,
//     maxUnavailable 0) while a client loop on the host fetches the
//     Service's ClusterIP over a new connection each time, and prints how
//     many requests there were and how many failed (none should).
//
// The image is built on the fly from the host's static busybox (Debian's
// busybox-static). It needs root (namespaces, cgroups, mounts, veths,
// nftables) and removes everything it made before it exits; it exits
// non-zero when something does not work as it should.
package main

import (
	"bytes"
	"context"
	_ "embed"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/containertest"
	"github.com/berthlabs/berth/container/network"
	"github.com/berthlabs/berth/layer"
	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/containerruntime"
	"github.com/berthlabs/berth/orchestrate/manifest"
	"github.com/berthlabs/berth/orchestrate/memstore"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

//go:embed app.yaml
var appYAML []byte

func main() {
	timeout := flag.Duration("timeout", 2*time.Minute, "give up after this long")
	flag.Parse()
	if err := run(*timeout); err != nil {
		fmt.Fprintln(os.Stderr, "service:", err)
		os.Exit(1)
	}
}

func run(timeout time.Duration) (err error) {
	if os.Geteuid() != 0 {
		return errors.New("needs root: containers use namespaces, cgroups, mounts, veths and nftables")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()

	dir, err := os.MkdirTemp("", "berth-service-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	images, err := buildImage(ctx, dir)
	if err != nil {
		return err
	}
	defer images.Close()

	// The pods' network. Its DNS server answers the Services' names; it
	// has no upstream resolvers: this example needs no other names.
	nets := network.New(network.Options{DNSUpstreams: []netip.AddrPort{}})
	defer func() { err = errors.Join(err, nets.Close()) }()
	podNet, err := nets.Create(ctx, network.Config{Name: "svc-example"})
	if err != nil {
		return err
	}
	rt := containerruntime.New(&container.Runtime{Images: images},
		containerruntime.WithNetwork(podNet), containerruntime.WithSandboxDir(filepath.Join(dir, "sandboxes")))
	m, err := orchestrate.NewManager(orchestrate.Options{Store: memstore.New(), Runtime: rt, StateDir: filepath.Join(dir, "state")})
	if err != nil {
		return err
	}
	runCtx, stopRun := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(runCtx) }()
	defer func() {
		stopRun()
		err = errors.Join(err, <-done)
		if cerr := m.Close(context.Background()); cerr != nil {
			err = errors.Join(err, fmt.Errorf("close: %w", cerr))
		}
		fmt.Printf("%s  manager closed: every pod, container and Service rule removed\n", stamp())
	}()

	// The manifest.
	objs, err := manifest.Decode(bytes.NewReader(appYAML))
	if err != nil {
		return err
	}
	for _, o := range objs {
		fmt.Printf("%s  apply %s %s\n", stamp(), o.Kind(), o.Meta().Name)
	}
	if _, err := manifest.Apply(ctx, m, objs); err != nil {
		return err
	}
	if err := waitRollout(ctx, m, "v1"); err != nil {
		return err
	}
	svc, err := orchestrate.Get[*orchestrate.Service](ctx, m, "", "web")
	if err != nil {
		return err
	}
	eps, err := orchestrate.Get[*orchestrate.Endpoints](ctx, m, "", "web")
	if err != nil {
		return err
	}
	fmt.Printf("%s  service web: clusterIP %s, port 80 -> endpoints %s\n", stamp(), svc.Spec.ClusterIP, endpointList(eps))

	// A client pod fetches the Service by name.
	if err := fromClientPod(ctx, m, rt, svc.Spec.ClusterIP); err != nil {
		return err
	}

	// The NodePort, from the host.
	node, err := orchestrate.Get[*orchestrate.Service](ctx, m, "", "web-node")
	if err != nil {
		return err
	}
	nodeURL := fmt.Sprintf("http://127.0.0.1:%d/", node.Spec.Ports[0].NodePort)
	for range 4 {
		body, err := fetch(ctx, nodeURL)
		if err != nil {
			return fmt.Errorf("the NodePort: %w", err)
		}
		fmt.Printf("%s  host -> %s (NodePort of web-node): %s\n", stamp(), nodeURL, body)
	}

	// A rolling update, with a client on the host all along.
	return rollingUpdate(ctx, m, "http://"+svc.Spec.ClusterIP+"/")
}

// fromClientPod starts a pod "client" and, inside it, resolves "web"
// through the pod's resolv.conf (the DNS server at 127.0.0.11, search
// default.svc.cluster.local) and fetches it over HTTP six times with nc
// (busybox's static wget cannot resolve names itself: glibc's NSS in a
// static binary).
func fromClientPod(ctx context.Context, m *orchestrate.Manager, rt orchestrate.Runtime, clusterIP string) error {
	client := &orchestrate.Pod{ObjectMeta: orchestrate.ObjectMeta{Name: "client"}, Spec: orchestrate.PodSpec{
		TerminationGracePeriod: time.Second,
		Containers:             []orchestrate.Container{{Name: "sh", Image: "busybox", Command: []string{"sleep", "3600"}}},
	}}
	if _, err := m.Apply(ctx, client); err != nil {
		return err
	}
	var id string
	if err := poll(ctx, "the client pod to run", func() (bool, error) {
		p, err := orchestrate.Get[*orchestrate.Pod](ctx, m, "", "client")
		if err != nil {
			return false, err
		}
		if p.Status.Phase == orchestrate.PodRunning && len(p.Status.Containers) == 1 {
			id = p.Status.Containers[0].ID
		}
		return id != "", nil
	}); err != nil {
		return err
	}
	exec := func(script string) (string, error) {
		ectx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		code, out, err := rt.Exec(ectx, id, []string{"sh", "-c", script})
		if err == nil && code != 0 {
			err = fmt.Errorf("exit status %d: %s", code, out)
		}
		return strings.TrimSpace(string(out)), err
	}
	// busybox's nslookup tries every search domain, prints the answer it
	// gets and exits 1 for the names that do not exist: take the answer.
	out, err := exec(`nslookup web 2>/dev/null | awk '/^Name:/ {n=$2} /^Address: / && n != "" {print n, $2; exit}'`)
	if err != nil {
		return fmt.Errorf("nslookup web in the client pod: %w", err)
	}
	name, ip, _ := strings.Cut(out, " ")
	fmt.Printf("%s  client pod: nslookup web (DNS server 127.0.0.11) -> %s is %s\n", stamp(), name, ip)
	if ip != clusterIP {
		return fmt.Errorf("web resolved to %q, want the ClusterIP %s", ip, clusterIP)
	}
	seen := map[string]bool{}
	for range 6 {
		body, err := exec(`printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 ` + ip + ` 80 | tail -n 1`)
		if err != nil || body == "" {
			return fmt.Errorf("client pod: fetch http://web/: %q %v", body, err)
		}
		seen[body] = true
		fmt.Printf("%s  client pod -> http://web/ (%s:80): %s\n", stamp(), ip, body)
	}
	fmt.Printf("%s  client pod: %d different replicas answered\n", stamp(), len(seen))
	return m.Delete(ctx, orchestrate.KindPod, "", "client")
}

// rollingUpdate changes the page's version (an environment variable of
// the template) from v1 to v2 while a client fetches url over a new
// connection each time, and fails if one request failed or if a v1
// replica still answers afterwards.
func rollingUpdate(ctx context.Context, m *orchestrate.Manager, url string) error {
	var (
		mu               sync.Mutex
		requests, failed int
		byVersion        = map[string]int{}
		firstFailure     error
	)
	loopCtx, stopLoop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		for loopCtx.Err() == nil {
			body, err := fetch(loopCtx, url)
			if loopCtx.Err() != nil {
				return
			}
			mu.Lock()
			requests++
			if err != nil {
				failed++
				if firstFailure == nil {
					firstFailure = err
				}
			} else {
				v, _, _ := strings.Cut(body, " ")
				byVersion[v]++
			}
			mu.Unlock()
			time.Sleep(5 * time.Millisecond)
		}
	})
	defer func() { stopLoop(); wg.Wait() }()

	d, err := orchestrate.Get[*orchestrate.Deployment](ctx, m, "", "web")
	if err != nil {
		return err
	}
	d.Spec.Template.Spec.Containers[0].Env = []orchestrate.EnvVar{{Name: "VERSION", Value: "v2"}}
	fmt.Printf("%s  roll out v2 (maxSurge 1, maxUnavailable 0) while the host fetches %s in a loop\n", stamp(), url)
	if _, err := m.Apply(ctx, d); err != nil {
		return err
	}
	if err := waitRollout(ctx, m, "v2"); err != nil {
		return err
	}
	stopLoop()
	wg.Wait()
	mu.Lock()
	fmt.Printf("%s  during the rollout: %d requests, %d failed (v1 answered %d, v2 %d)\n",
		stamp(), requests, failed, byVersion["v1"], byVersion["v2"])
	if failed > 0 {
		err = fmt.Errorf("%d of %d requests failed during the rollout, the first: %w", failed, requests, firstFailure)
	}
	mu.Unlock()
	if err != nil {
		return err
	}
	for range 6 {
		body, err := fetch(ctx, url)
		if err != nil {
			return err
		}
		fmt.Printf("%s  host -> %s: %s\n", stamp(), url, body)
		if !strings.HasPrefix(body, "v2 ") {
			return fmt.Errorf("after the rollout %q answered", body)
		}
	}
	return nil
}

// waitRollout waits until the Deployment web has rolled out: three
// pods, all ready and of version, none terminating, and its Service's
// Endpoints listing exactly them. It prints the pods whenever they
// change.
func waitRollout(ctx context.Context, m *orchestrate.Manager, version string) error {
	last := ""
	return poll(ctx, "the rollout of "+version, func() (bool, error) {
		d, err := orchestrate.Get[*orchestrate.Deployment](ctx, m, "", "web")
		if err != nil {
			return false, err
		}
		pods, err := orchestrate.List[*orchestrate.Pod](ctx, m, "", d.Spec.Selector)
		if err != nil {
			return false, err
		}
		var marks []string
		ready := 0
		for _, p := range pods {
			v := ""
			for _, e := range p.Spec.Containers[0].Env {
				if e.Name == "VERSION" {
					v = e.Value
				}
			}
			mark := "-" // not ready (yet)
			switch {
			case p.DeletionTime != nil:
				mark = "x" // terminating
			case p.Status.Ready && v == version:
				mark = "+"
				ready++
			case p.Status.Ready:
				mark = "+"
			}
			marks = append(marks, mark+v)
		}
		slices.Sort(marks)
		eps, err := orchestrate.Get[*orchestrate.Endpoints](ctx, m, "", "web")
		if errors.Is(err, orchestrate.ErrNotFound) {
			eps, err = &orchestrate.Endpoints{}, nil
		}
		if err != nil {
			return false, err
		}
		nready := 0
		for _, ss := range eps.Subsets {
			for _, a := range ss.Addresses {
				if a.Ready {
					nready++
				}
			}
		}
		line := fmt.Sprintf("pods [%s]  ready endpoints %d", strings.Join(marks, " "), nready)
		if line != last {
			fmt.Printf("%s  %s\n", stamp(), line)
			last = line
		}
		return len(pods) == 3 && ready == 3 && nready == 3 &&
			d.Status.ObservedGeneration >= d.Generation && d.Status.UpdatedReplicas == 3 && d.Status.AvailableReplicas == 3, nil
	})
}

// endpointList is "IP:port (pod), ..." of the ready addresses.
func endpointList(eps *orchestrate.Endpoints) string {
	var l []string
	for _, ss := range eps.Subsets {
		for _, a := range ss.Addresses {
			if a.Ready && len(ss.Ports) > 0 {
				l = append(l, fmt.Sprintf("%s:%d (%s)", a.IP, ss.Ports[0].Port, a.TargetRef))
			}
		}
	}
	return strings.Join(l, ", ")
}

// buildImage stores an image "busybox" in a layer store under dir: a
// busybox root filesystem, run as sh.
func buildImage(ctx context.Context, dir string) (*layer.Store, error) {
	store, err := layer.Open(filepath.Join(dir, "layers"))
	if err != nil {
		return nil, err
	}
	rootfs := filepath.Join(dir, "rootfs")
	if err := containertest.BusyboxRootfs(rootfs); err != nil {
		store.Close()
		return nil, err
	}
	cfg := ocispec.ImageConfig{Env: []string{"PATH=/bin"}, Cmd: []string{"sh"}}
	if _, err := store.ImportDirs(ctx, "busybox", cfg, rootfs); err != nil {
		store.Close()
		return nil, err
	}
	return store, nil
}

// client fetches over a new connection each time.
var client = &http.Client{Timeout: 3 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

// fetch GETs url and returns its body without the trailing newline.
func fetch(ctx context.Context, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err == nil && resp.StatusCode != http.StatusOK {
		err = fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return strings.TrimSpace(string(b)), err
}

// poll calls cond every 25ms until it holds, fails, or ctx ends.
func poll(ctx context.Context, what string, cond func() (bool, error)) error {
	for {
		ok, err := cond()
		if ok || err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

var start = time.Now()

// stamp is the time since the start, for the printed lines.
func stamp() string { return fmt.Sprintf("%6.2fs", time.Since(start).Seconds()) }
