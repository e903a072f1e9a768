package orchestrate_test

import (
	"context"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/network"
	. "github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/containerruntime"
)

// probeTimer is the container runtime on a network, recording when each
// container's exec probe first succeeded.
type probeTimer struct {
	Runtime
	ServiceProxy
	mu      sync.Mutex
	firstOK map[string]time.Time // by container ID
}

func (p *probeTimer) Exec(ctx context.Context, id string, cmd []string) (int, []byte, error) {
	code, out, err := p.Runtime.Exec(ctx, id, cmd)
	if err == nil && code == 0 {
		now := time.Now()
		p.mu.Lock()
		if _, ok := p.firstOK[id]; !ok {
			p.firstOK[id] = now
		}
		p.mu.Unlock()
	}
	return code, out, err
}

func (p *probeTimer) probeOK(id string) (time.Time, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.firstOK[id]
	return t, ok
}

// newServiceBenchEnv is newE2EEnv (images web:a and web:b) with its pods
// on a berth network, through a probeTimer.
func newServiceBenchEnv(b *testing.B) (*e2eEnv, *network.Manager, *probeTimer) {
	needE2E(b)
	nm := network.New(network.Options{DNSUpstreams: []netip.AddrPort{}})
	b.Cleanup(func() { nm.Close() })
	n, err := nm.Create(context.Background(), network.Config{Name: "oe-bench"})
	if err != nil {
		b.Fatal(err)
	}
	var pt *probeTimer
	e := newE2EEnvRuntime(b, func(crt *container.Runtime) Runtime {
		rt := containerruntime.New(crt, containerruntime.WithNetwork(n))
		pt = &probeTimer{Runtime: rt, ServiceProxy: rt.(ServiceProxy), firstOK: map[string]time.Time{}}
		return pt
	})
	return e, nm, pt
}

// namedTemplate serves its pod's name on 8080 (containerPort "http"),
// ready (exec probe every 100ms) once the server answers.
func namedTemplate(app string) PodTemplate {
	return PodTemplate{Labels: map[string]string{"app": app}, Spec: PodSpec{
		TerminationGracePeriod: 2 * time.Second,
		Containers: []Container{{Name: "httpd", Image: "web:a",
			Command: []string{"sh", "-c", "mkdir -p /srv && hostname > /srv/index.html && exec httpd -f -p 8080 -h /srv"},
			Ports:   []ContainerPort{{Name: "http", ContainerPort: 8080}},
			ReadinessProbe: &Probe{Period: 100 * time.Millisecond,
				Exec: &ExecAction{Command: []string{"wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"}}},
		}}}}
}

// hit is a request that a pod answered: when it was dialled.
type hit struct {
	pod string
	at  time.Time
}

// serviceClient fetches addr from the host in loops (goroutines), each
// over a new connection at a time, until stop, recording which pod answered each request that
// succeeded. Refused connections (no ready endpoint) are retried after
// 200µs.
type serviceClient struct {
	mu   sync.Mutex
	hits []hit
	fail int
	stop chan struct{}
	done chan struct{}
}

func startServiceClient(addr string, loops int) *serviceClient {
	c := &serviceClient{stop: make(chan struct{}), done: make(chan struct{})}
	var wg sync.WaitGroup
	go func() { wg.Wait(); close(c.done) }()
	for range loops {
		wg.Add(1)
		go c.loop(addr, &wg)
	}
	return c
}

func (c *serviceClient) loop(addr string, wg *sync.WaitGroup) {
	defer wg.Done()
	{
		buf := make([]byte, 512)
		for {
			select {
			case <-c.stop:
				return
			default:
			}
			at := time.Now()
			pod, ok := getPod(addr, buf)
			c.mu.Lock()
			if ok {
				c.hits = append(c.hits, hit{pod, at})
			} else {
				c.fail++
			}
			c.mu.Unlock()
			if !ok {
				time.Sleep(200 * time.Microsecond)
			}
		}
	}
}

func (c *serviceClient) close() { close(c.stop); <-c.done }

// span returns the dial times of the first and last requests pod
// answered.
func (c *serviceClient) span(pod string) (first, last time.Time, n int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, h := range c.hits {
		if h.pod == pod {
			if n == 0 {
				first = h.at
			}
			last, n = h.at, n+1
		}
	}
	return first, last, n
}

// getPod GETs / from addr and returns the body, the name of the pod.
func getPod(addr string, buf []byte) (string, bool) {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return "", false
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(conn, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return "", false
	}
	n, err := io.ReadFull(conn, buf)
	if err != nil && err != io.ErrUnexpectedEOF {
		return "", false
	}
	_, body, ok := strings.Cut(string(buf[:n]), "\r\n\r\n")
	return strings.TrimSpace(body), ok && body != ""
}

// backendWatch polls a network Manager's service (every 100µs) and
// records when its set of backend addresses changes (as SetService
// returns, just after the nftables commit).
type backendWatch struct {
	mu      sync.Mutex
	changes []backendChange
	stop    chan struct{}
	done    chan struct{}
}

type backendChange struct {
	at  time.Time
	ips []netip.Addr
}

func watchBackends(nm *network.Manager, service string) *backendWatch {
	w := &backendWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		var last []netip.Addr
		for first := true; ; first = false {
			select {
			case <-w.stop:
				return
			default:
			}
			var ips []netip.Addr
			for _, s := range nm.Services() {
				if s.Name == service {
					for _, b := range s.Ports[0].Backends {
						ips = append(ips, b.Addr())
					}
				}
			}
			if first || !slices.Equal(ips, last) {
				w.mu.Lock()
				w.changes = append(w.changes, backendChange{time.Now(), ips})
				w.mu.Unlock()
				last = ips
			}
			time.Sleep(100 * time.Microsecond)
		}
	}()
	return w
}

func (w *backendWatch) close() { close(w.stop); <-w.done }

// since returns the first moment, at t or after, when ip was among the
// backends (in true) or not (in false); ok is false if none was seen.
func (w *backendWatch) since(t time.Time, ip netip.Addr, in bool) (at time.Time, ok bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for i, c := range w.changes {
		if i+1 < len(w.changes) && !w.changes[i+1].at.After(t) {
			continue // a later change was already made by t
		}
		if slices.Contains(c.ips, ip) == in {
			return later(c.at, t), true
		}
	}
	return time.Time{}, false
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// percentile returns the p-th percentile (0-100, nearest rank) of ds in
// milliseconds.
func percentile(ds []time.Duration, p float64) float64 {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(float64(len(s))*p/100+0.5) - 1
	i = min(max(i, 0), len(s)-1)
	return float64(s[i].Microseconds()) / 1000
}

// BenchmarkServiceEndpointLatency measures, over b.N trials of one pod
// behind a Service (the only one, so that every request that is not
// refused reaches it):
//
//   - ms-ready-rules-p50/p99: from the pod's readiness probe first
//     succeeding (the exec probe returning 0, timed in the Runtime) to
//     its address among the Service's backends in the network Manager
//     (polled every 100µs; network.Manager.Services shows a change once
//     SetService returns, after the nftables commit and the VIP's
//     route, so this is an upper bound of the data path's change): the
//     status write, the Endpoints and the rules in between;
//   - ms-ready-traffic-p50/p99: from the same moment to the first
//     request the pod answers, of a host client dialling the ClusterIP
//     all along (three loops, each a new connection per request; a
//     refused one is retried after 200µs; a request takes a few ms
//     here, which bounds the resolution);
//   - ms-delete-rules-p50/p99: from Manager.Delete of the pod to its
//     address gone from the backends (no new connection reaches it);
//   - ms-delete-traffic-p50/p99: from Manager.Delete to the dial of the
//     last request the pod answers (0 when it answers none after).
//
// With -benchtime=30x, p99 is the worst of 30.
func BenchmarkServiceEndpointLatency(b *testing.B) {
	e, nm, pt := newServiceBenchEnv(b)
	if _, err := e.m.Apply(e.ctx, &Service{ObjectMeta: ObjectMeta{Name: "oe-lat"}, Spec: ServiceSpec{
		Selector: map[string]string{"app": "oe-lat"},
		Ports:    []ServicePort{{Name: "http", Port: 80, TargetPort: "http"}},
	}}); err != nil {
		b.Fatal(err)
	}
	var svc *Service
	e.waitFor("a ClusterIP", 10*time.Second, func() (bool, string) {
		var err error
		svc, err = Get[*Service](e.ctx, e.m, NamespaceDefault, "oe-lat")
		return err == nil && svc.Spec.ClusterIP != "", "none"
	})
	watch := watchBackends(nm, "default/oe-lat")
	defer watch.close()
	client := startServiceClient(net.JoinHostPort(svc.Spec.ClusterIP, "80"), 3)
	defer client.close()
	var readyRules, readyTraffic, deleteRules, deleteTraffic []time.Duration
	trial := 0
	for b.Loop() {
		trial++
		name := "oe-lat-" + strconv.Itoa(trial)
		tmpl := namedTemplate("oe-lat")
		if _, err := e.m.Apply(e.ctx, &Pod{ObjectMeta: ObjectMeta{Name: name, Labels: tmpl.Labels}, Spec: tmpl.Spec}); err != nil {
			b.Fatal(err)
		}
		var (
			probed, routed time.Time
			ip             netip.Addr
		)
		e.waitFor(name+" answering", 30*time.Second, func() (bool, string) {
			p, err := Get[*Pod](e.ctx, e.m, NamespaceDefault, name)
			if err != nil || len(p.Status.Containers) == 0 || p.Status.PodIP == "" {
				return false, "no container yet"
			}
			var ok bool
			if probed, ok = pt.probeOK(p.Status.Containers[0].ID); !ok {
				return false, "probe not passed"
			}
			ip = netip.MustParseAddr(p.Status.PodIP)
			if routed, ok = watch.since(probed, ip, true); !ok {
				return false, "not a backend"
			}
			_, _, n := client.span(name)
			return n > 0, "no request answered"
		})
		first, _, _ := client.span(name)
		readyRules = append(readyRules, routed.Sub(probed))
		readyTraffic = append(readyTraffic, first.Sub(probed))
		deleted := time.Now()
		if err := e.m.Delete(e.ctx, KindPod, NamespaceDefault, name); err != nil {
			b.Fatal(err)
		}
		var unrouted time.Time
		e.waitFor(name+" gone", 30*time.Second, func() (bool, string) {
			if _, err := Get[*Pod](e.ctx, e.m, NamespaceDefault, name); err == nil {
				return false, "still there"
			}
			var ok bool
			unrouted, ok = watch.since(deleted, ip, false)
			return ok, "still a backend"
		})
		_, last, _ := client.span(name)
		deleteRules = append(deleteRules, unrouted.Sub(deleted))
		deleteTraffic = append(deleteTraffic, max(0, last.Sub(deleted)))
	}
	b.StopTimer()
	for _, m := range []struct {
		name string
		ds   []time.Duration
	}{{"ready-rules", readyRules}, {"ready-traffic", readyTraffic}, {"delete-rules", deleteRules}, {"delete-traffic", deleteTraffic}} {
		b.ReportMetric(percentile(m.ds, 50), "ms-"+m.name+"-p50")
		b.ReportMetric(percentile(m.ds, 99), "ms-"+m.name+"-p99")
	}
}

// BenchmarkDeployment50Service measures, in interleaved rounds on one
// network, the time from applying a 50-replica Deployment (the pods of
// BenchmarkReplicaSet50Ready: busybox httpd, an HTTP readiness probe
// every 100ms) to
//
//   - ms-plain: all 50 pods ready, without a Service;
//   - ms-service: with a Service in front (applied first), all 50 of
//     its Endpoints ready and all 50 backends in its nftables rules;
//
// and their ratio, service/plain. Each op is one round of both.
func BenchmarkDeployment50Service(b *testing.B) {
	e, nm, _ := newServiceBenchEnv(b)
	const n = 50
	const settle = 5 * time.Second
	var plain, withSvc []time.Duration
	backends := func() int {
		for _, s := range nm.Services() {
			if s.Name == "default/oe-bench" {
				return len(s.Ports[0].Backends)
			}
		}
		return 0
	}
	round := func(service bool) time.Duration {
		if service {
			if _, err := e.m.Apply(e.ctx, &Service{ObjectMeta: ObjectMeta{Name: "oe-bench"}, Spec: ServiceSpec{
				Selector: map[string]string{"app": "web"},
				Ports:    []ServicePort{{Name: "http", Port: 80, TargetPort: "8080"}},
			}}); err != nil {
				b.Fatal(err)
			}
		}
		d := &Deployment{ObjectMeta: ObjectMeta{Name: "bench"}, Spec: DeploymentSpec{
			Replicas: n,
			Selector: &LabelSelector{MatchLabels: map[string]string{"app": "web"}},
			Template: httpdTemplate("web:a"),
		}}
		start := time.Now()
		if _, err := e.m.Apply(e.ctx, d); err != nil {
			b.Fatal(err)
		}
		e.waitFor("50 ready", 120*time.Second, func() (bool, string) {
			pods, ready := e.webPods()
			if len(pods) != n || ready != n {
				return false, strconv.Itoa(ready) + " pods ready"
			}
			if !service {
				return true, ""
			}
			eps := 0
			if ep, err := Get[*Endpoints](e.ctx, e.m, NamespaceDefault, "oe-bench"); err == nil {
				for _, ss := range ep.Subsets {
					for _, a := range ss.Addresses {
						if a.Ready {
							eps++
						}
					}
				}
			}
			bk := backends()
			return eps == n && bk == n, strconv.Itoa(eps) + " endpoints, " + strconv.Itoa(bk) + " backends"
		})
		took := time.Since(start)
		if err := e.m.Delete(e.ctx, KindDeployment, NamespaceDefault, "bench"); err != nil {
			b.Fatal(err)
		}
		if service {
			if err := e.m.Delete(e.ctx, KindService, NamespaceDefault, "oe-bench"); err != nil {
				b.Fatal(err)
			}
		}
		e.waitFor("the pods to go", 120*time.Second, func() (bool, string) {
			pods, _ := e.webPods()
			return len(pods) == 0 && len(nm.Services()) == 0, strconv.Itoa(len(pods)) + " left"
		})
		// The kernel frees 50 network namespaces (and their veths) in
		// the background, for seconds: a round right after another
		// ran ~3x slower, Service or not.
		time.Sleep(settle)
		return took
	}
	round(false) // warm-up: caches, the hub, the first network namespaces
	for i := 0; b.Loop(); i++ {
		// Alternate which goes first, so that neither always follows
		// the other's teardown.
		if i%2 == 0 {
			plain = append(plain, round(false))
			withSvc = append(withSvc, round(true))
		} else {
			withSvc = append(withSvc, round(true))
			plain = append(plain, round(false))
		}
	}
	b.StopTimer()
	p, s := percentile(plain, 50), percentile(withSvc, 50)
	b.ReportMetric(p, "ms-plain")
	b.ReportMetric(s, "ms-service")
	if p > 0 {
		b.ReportMetric(s/p, "service/plain")
	}
}
