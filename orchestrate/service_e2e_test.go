package orchestrate_test

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/berthlabs/berth/container/network"
	. "github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/containerruntime"
)

// serviceE2E is a podE2E whose pods are on a berth network.
func serviceE2E(t *testing.T) (*podE2E, *network.Manager) { return serviceE2EWith(t, Options{}) }

// serviceE2EWith is serviceE2E with the Manager's options.
func serviceE2EWith(t *testing.T, opts Options) (*podE2E, *network.Manager) {
	if testing.Short() {
		t.Skip("real containers")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: networks, namespaces and containers")
	}
	nm := network.New(network.Options{DNSUpstreams: []netip.AddrPort{}})
	t.Cleanup(func() { nm.Close() })
	e := newPodE2E(t, opts, containerruntime.WithNetwork(mustNetwork(t, nm)))
	return e, nm
}

func mustNetwork(t *testing.T, nm *network.Manager) *network.Network {
	t.Helper()
	n, err := nm.Create(context.Background(), network.Config{Name: "oe-svc"})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// webPod serves its own name over HTTP on 8080 (containerPort "http"),
// ready while /tmp/unready does not exist.
func webPod(name string) *Pod {
	return &Pod{ObjectMeta: ObjectMeta{Name: name, Labels: map[string]string{"app": "oe-web"}}, Spec: PodSpec{
		TerminationGracePeriod: time.Second,
		Containers: []Container{{Name: "web", Image: "busybox",
			Command: []string{"sh", "-c", "mkdir -p /www && echo " + name + " > /www/index.html && exec httpd -f -p 8080 -h /www"},
			Ports:   []ContainerPort{{Name: "http", ContainerPort: 8080}},
			ReadinessProbe: &Probe{Exec: &ExecAction{Command: []string{"sh", "-c", "! test -f /tmp/unready"}},
				Period: time.Second, FailureThreshold: 1},
		}}}}
}

func (e *podE2E) exec(pod string, cmd ...string) (int, string) {
	e.t.Helper()
	p := e.pod(pod)
	ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
	defer cancel()
	code, out, err := e.rt.Exec(ctx, p.Status.Containers[0].ID, cmd)
	if err != nil {
		e.t.Fatalf("exec %v in %s: %v", cmd, pod, err)
	}
	return code, string(out)
}

// http fetches / from "IP PORT" inside pod with busybox nc (its static
// wget crashes in glibc's resolver) and returns the body.
func (e *podE2E) http(pod, target string) (int, string) {
	e.t.Helper()
	code, out := e.exec(pod, "sh", "-c", `printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 3 `+target)
	if _, body, ok := strings.Cut(out, "\r\n\r\n"); ok {
		return code, body
	}
	return code, out
}

func TestServiceE2E(t *testing.T) {
	e, nm := serviceE2E(t)
	for _, n := range []string{"oe-web-0", "oe-web-1", "oe-web-2"} {
		e.apply(webPod(n))
	}
	e.apply(&Service{ObjectMeta: ObjectMeta{Name: "oe-web"}, Spec: ServiceSpec{
		Selector: map[string]string{"app": "oe-web"},
		Ports:    []ServicePort{{Name: "http", Port: 80, TargetPort: "http"}},
	}})
	e.apply(&Pod{ObjectMeta: ObjectMeta{Name: "oe-client"}, Spec: PodSpec{TerminationGracePeriod: time.Second,
		Containers: []Container{{Name: "c", Image: "busybox", Command: []string{"sleep", "3600"}}}}})
	var svc *Service
	e.waitFor("three ready endpoints", func() bool {
		ep, err := Get[*Endpoints](e.ctx, e.m, NamespaceDefault, "oe-web")
		if err != nil || len(ep.Subsets) != 1 {
			return false
		}
		n := 0
		for _, a := range ep.Subsets[0].Addresses {
			if a.Ready {
				n++
			}
		}
		svc, _ = Get[*Service](e.ctx, e.m, NamespaceDefault, "oe-web")
		return n == 3 && e.pod("oe-client").Status.Phase == PodRunning
	})
	if p := e.pod("oe-web-0"); p.Status.PodIP == "" || len(p.Status.PodIPs) != 1 || p.Status.PodIPs[0].IP != p.Status.PodIP {
		t.Fatalf("pod IPs: %q %v", p.Status.PodIP, p.Status.PodIPs)
	}
	if !DefaultServiceCIDR.Contains(netip.MustParseAddr(svc.Spec.ClusterIP)) {
		t.Fatalf("clusterIP %q", svc.Spec.ClusterIP)
	}
	// Every DNS form, from a pod, through its resolv.conf (busybox's
	// static wget cannot resolve names: glibc's NSS in a static binary).
	for _, name := range []string{"oe-web", "oe-web.default", "oe-web.default.svc.cluster.local"} {
		// (busybox's nslookup tries every search domain and exits 1 for
		// those that are NXDOMAIN.)
		_, out := e.exec("oe-client", "nslookup", name)
		if !strings.Contains(out, "Address: "+svc.Spec.ClusterIP) {
			t.Fatalf("nslookup %s: %q", name, out)
		}
	}
	if code, out := e.http("oe-client", svc.Spec.ClusterIP+" 80"); code != 0 || !strings.HasPrefix(out, "oe-web-") {
		t.Fatalf("wget the ClusterIP: %d %q", code, out)
	}
	// Containers of a pod reach each other on localhost: a pod's own
	// server on 127.0.0.1.
	if code, out := e.http("oe-web-0", "127.0.0.1 8080"); code != 0 || out != "oe-web-0\n" {
		t.Fatalf("localhost: %d %q", code, out)
	}
	spread := func(n int) map[string]int {
		seen := map[string]int{}
		for range n {
			code, out := e.http("oe-client", svc.Spec.ClusterIP+" 80")
			if code != 0 {
				t.Fatalf("wget the ClusterIP: %d %q", code, out)
			}
			seen[strings.TrimSpace(out)]++
		}
		return seen
	}
	if seen := spread(30); len(seen) != 3 {
		t.Fatalf("30 requests reached %v, want all three replicas", seen)
	}
	// A replica that fails its readiness probe gets no traffic.
	e.exec("oe-web-1", "touch", "/tmp/unready")
	e.waitFor("oe-web-1 unready", func() bool { return !e.pod("oe-web-1").Status.Ready })
	time.Sleep(200 * time.Millisecond)
	if seen := spread(20); seen["oe-web-1"] != 0 || len(seen) != 2 {
		t.Fatalf("with oe-web-1 unready: %v", seen)
	}
	e.exec("oe-web-1", "rm", "/tmp/unready")
	e.waitFor("oe-web-1 ready", func() bool { return e.pod("oe-web-1").Status.Ready })
	time.Sleep(200 * time.Millisecond)
	if seen := spread(30); seen["oe-web-1"] == 0 {
		t.Fatalf("oe-web-1 back: %v", seen)
	}
	// From the host.
	c, err := net.DialTimeout("tcp", svc.Spec.ClusterIP+":80", 3*time.Second)
	if err != nil {
		t.Fatalf("from the host: %v", err)
	}
	c.Close()
	// Service variables in pods started after the Service.
	if _, out := e.exec("oe-client", "env"); !strings.Contains(out, "OE_WEB_SERVICE_HOST="+svc.Spec.ClusterIP) || !strings.Contains(out, "OE_WEB_SERVICE_PORT=80") {
		t.Fatalf("env: %s", out)
	}
	// Headless and ExternalName.
	e.apply(&Service{ObjectMeta: ObjectMeta{Name: "oe-headless"}, Spec: ServiceSpec{ClusterIP: ClusterIPNone,
		Selector: map[string]string{"app": "oe-web"}, Ports: []ServicePort{{Port: 8080}}}})
	e.apply(&Service{ObjectMeta: ObjectMeta{Name: "oe-ext"}, Spec: ServiceSpec{Type: ServiceTypeExternalName, ExternalName: "db.example.org"}})
	e.waitFor("headless records", func() bool {
		_, out := e.exec("oe-client", "nslookup", "oe-headless.default.svc.cluster.local", "127.0.0.11")
		return strings.Count(out, "Address: ") >= 3
	})
	if _, out := e.exec("oe-client", "nslookup", "-type=cname", "oe-ext.default.svc.cluster.local", "127.0.0.11"); !strings.Contains(out, "db.example.org") {
		t.Fatalf("ExternalName: %s", out)
	}
	// No endpoints: refused at once.
	for _, n := range []string{"oe-web-0", "oe-web-1", "oe-web-2"} {
		e.exec(n, "touch", "/tmp/unready")
	}
	e.waitFor("no ready endpoint", func() bool {
		for _, r := range nm.Services() {
			if r.Name == "default/oe-web" {
				return len(r.Ports[0].Backends) == 0
			}
		}
		return false
	})
	start := time.Now()
	code, out := e.exec("oe-client", "sh", "-c", "nc -w 5 "+svc.Spec.ClusterIP+" 80 </dev/null 2>&1")
	if code == 0 || !strings.Contains(out, "refused") || time.Since(start) > 2*time.Second {
		t.Fatalf("no endpoints: %d %q after %v", code, out, time.Since(start))
	}
	// Deleting the Service removes its VIP, rules and DNS records.
	for _, name := range []string{"oe-web", "oe-headless", "oe-ext"} {
		if err := e.m.Delete(e.ctx, KindService, NamespaceDefault, name); err != nil {
			t.Fatal(err)
		}
	}
	e.waitFor("services gone", func() bool { return len(nm.Services()) == 0 && len(nm.DNSNames()) == 0 })
	e.closeAndCheck()
}
