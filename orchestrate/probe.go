package orchestrate

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Probe defaults, as in Kubernetes.
const (
	defaultProbePeriod    = 10 * time.Second
	defaultProbeTimeout   = time.Second
	defaultProbeFailures  = 3
	defaultProbeSuccesses = 1
)

// probeState is where one probe of a running container stands. Its
// times are on the Manager's clock.
type probeState struct {
	probe     *Probe
	next      time.Time // when it runs next
	successes int       // in a row
	failures  int       // in a row
}

func newProbeState(p *Probe, started time.Time) probeState {
	return probeState{probe: p, next: started.Add(max(p.initialDelay(), 0))}
}

func (p *Probe) initialDelay() time.Duration {
	if p == nil {
		return 0
	}
	return p.InitialDelay
}

func (p *Probe) period() time.Duration {
	if p.Period > 0 {
		return p.Period
	}
	return defaultProbePeriod
}

func (p *Probe) timeout() time.Duration {
	if p.Timeout > 0 {
		return p.Timeout
	}
	return defaultProbeTimeout
}

func (p *Probe) failureThreshold() int {
	if p.FailureThreshold > 0 {
		return p.FailureThreshold
	}
	return defaultProbeFailures
}

func (p *Probe) successThreshold() int {
	if p.SuccessThreshold > 0 {
		return p.SuccessThreshold
	}
	return defaultProbeSuccesses
}

// namedProbe is a probe with the state it runs under.
type namedProbe struct {
	kind  string // "Startup", "Liveness", "Readiness"
	state *probeState
}

// activeProbes returns the probes that run now: the startup probe until
// it passes, then the liveness and readiness probes.
func (c *ctrState) activeProbes() []namedProbe {
	if !c.started {
		if c.startup.probe != nil {
			return []namedProbe{{"Startup", &c.startup}}
		}
		return nil
	}
	var out []namedProbe
	if c.liveness.probe != nil {
		out = append(out, namedProbe{"Liveness", &c.liveness})
	}
	if c.readines.probe != nil {
		out = append(out, namedProbe{"Readiness", &c.readines})
	}
	return out
}

// probe runs the probes of c that are due and acts on their results:
// a startup or liveness probe that fails FailureThreshold times in a row
// kills the container; the readiness probe sets it ready or not.
func (pc *podController) probe(ctx context.Context, st *podState, pod *Pod, c *ctrState, now time.Time) {
	if c.started && c.readines.probe == nil {
		c.ready = true
	}
	for _, np := range c.activeProbes() {
		ps := np.state
		if ps.next.After(now) {
			continue
		}
		ps.next = now.Add(ps.probe.period())
		ok, msg := pc.runProbe(ctx, st, c, ps.probe)
		if ok {
			ps.successes++
			ps.failures = 0
		} else {
			ps.failures++
			ps.successes = 0
			pc.m.recordEvent(pod, EventWarning, "Unhealthy", "%s probe of container %s failed: %s", np.kind, c.spec.Name, msg)
		}
		switch np.kind {
		case "Startup":
			if ok {
				c.started = true
				// The other probes' initial delays count from the start.
				c.liveness.next = maxTime(now, c.liveness.next)
				c.readines.next = maxTime(now, c.readines.next)
				if c.readines.probe == nil {
					c.ready = true
				}
				// Run them now if they are due.
				pc.probe(ctx, st, pod, c, now)
				return
			}
			if ps.failures >= ps.probe.failureThreshold() {
				pc.kill(ctx, st, pod, c, "failed startup probe", now)
				return
			}
		case "Liveness":
			if !ok && ps.failures >= ps.probe.failureThreshold() {
				pc.kill(ctx, st, pod, c, "failed liveness probe", now)
				return
			}
		case "Readiness":
			if ok && ps.successes >= ps.probe.successThreshold() {
				c.ready = true
			}
			if !ok && ps.failures >= ps.probe.failureThreshold() {
				c.ready = false
			}
		}
	}
}

func maxTime(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// runProbe runs one probe once, bounded by its timeout, and says
// whether it passed and, if not, why.
func (pc *podController) runProbe(ctx context.Context, st *podState, c *ctrState, p *Probe) (bool, string) {
	ctx, cancel := context.WithTimeout(ctx, p.timeout())
	defer cancel()
	switch {
	case p.Exec != nil:
		code, out, err := pc.rt.Exec(ctx, c.id, p.Exec.Command)
		if err != nil {
			return false, err.Error()
		}
		if code != 0 {
			return false, fmt.Sprintf("exit code %d: %s", code, strings.TrimSpace(string(out)))
		}
		return true, ""
	case p.TCPSocket != nil:
		conn, err := pc.rt.Dial(ctx, st.sandbox, "tcp", hostPort(p.TCPSocket.Host, p.TCPSocket.Port))
		if err != nil {
			return false, err.Error()
		}
		conn.Close()
		return true, ""
	case p.HTTPGet != nil:
		return pc.httpProbe(ctx, st, p.HTTPGet)
	}
	return false, "probe has no action"
}

func hostPort(host string, port int) string {
	if host == "" {
		host = "127.0.0.1"
	}
	return net.JoinHostPort(host, strconv.Itoa(port))
}

// httpProbe sends GET from inside the pod's network namespace; a status
// of 200 to 399 passes. Redirects are not followed.
func (pc *podController) httpProbe(ctx context.Context, st *podState, g *HTTPGetAction) (bool, string) {
	scheme := "http"
	if strings.EqualFold(g.Scheme, "HTTPS") {
		scheme = "https"
	}
	path := g.Path
	if path == "" {
		path = "/"
	}
	sandbox := st.sandbox
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return pc.rt.Dial(ctx, sandbox, network, addr)
		},
		TLSClientConfig:   &tls.Config{InsecureSkipVerify: true}, // as the kubelet: probes do not verify
		DisableKeepAlives: true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+hostPort(g.Host, g.Port)+path, nil)
	if err != nil {
		return false, err.Error()
	}
	req.Header.Set("User-Agent", "berth-probe/1.0")
	for k, v := range g.Headers {
		if strings.EqualFold(k, "Host") {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := client.Do(req)
	if err != nil {
		return false, err.Error()
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode >= 400 {
		return false, fmt.Sprintf("HTTP status %d", resp.StatusCode)
	}
	return true, ""
}
