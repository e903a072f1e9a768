package network

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"testing"
	"time"
)

// BenchmarkAttachDetach attaches a fresh network namespace to a network
// and detaches it; the sub-benchmarks time the parts.
func BenchmarkAttachDetach(b *testing.B) {
	for _, name := range []string{DefaultName, "user"} {
		b.Run(name, func(b *testing.B) {
			m := newManager(b)
			ctx := context.Background()
			n, err := m.Get(ctx, DefaultName)
			if name != DefaultName {
				n, err = m.Create(ctx, Config{Name: name})
			}
			if err != nil {
				b.Fatal(err)
			}
			var attach, publish, unpublish, detach time.Duration
			for b.Loop() {
				b.StopTimer()
				ns := newNS(b)
				b.StartTimer()
				t0 := time.Now()
				e, err := n.Attach(ctx, ns, AttachOptions{Name: "x"})
				if err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				p, err := Publish(ctx, e.IP(), []PortMapping{{HostIP: netip.MustParseAddr("127.0.0.1"), ContainerPort: 80}}, nil)
				if err != nil {
					b.Fatal(err)
				}
				t2 := time.Now()
				p.Close()
				t3 := time.Now()
				if err := e.Detach(); err != nil {
					b.Fatal(err)
				}
				t4 := time.Now()
				attach += t1.Sub(t0)
				publish += t2.Sub(t1)
				unpublish += t3.Sub(t2)
				detach += t4.Sub(t3)
				b.StopTimer()
				ns.Close()
				b.StartTimer()
			}
			nn := time.Duration(b.N)
			b.ReportMetric(float64((attach / nn).Microseconds()), "attach-us")
			b.ReportMetric(float64((publish / nn).Microseconds()), "publish-us")
			b.ReportMetric(float64((unpublish / nn).Microseconds()), "unpublish-us")
			b.ReportMetric(float64((detach / nn).Microseconds()), "detach-us")
		})
	}
}

// BenchmarkServiceRequests: HTTP requests from a client namespace to
// three backends through a service's virtual IP, against the same
// straight to one backend's address, each on a new connection (the VIP's
// DNAT, masquerade and conntrack entry every time) and on kept-alive
// connections. Compare the sub-benchmarks' ns/op round by round (issue
// target: the VIP at least 0.9x the direct rate).
func BenchmarkServiceRequests(b *testing.B) {
	requireRoot(b)
	m := New(Options{DNSUpstreams: []netip.AddrPort{}})
	defer m.Close()
	ctx := context.Background()
	n, err := m.Create(ctx, Config{Name: "svcbench"})
	if err != nil {
		b.Fatal(err)
	}
	var backends []netip.AddrPort
	for i := range 3 {
		ns := newNS(b)
		e, err := n.Attach(ctx, ns, AttachOptions{Name: fmt.Sprintf("b%d", i)})
		if err != nil {
			b.Fatal(err)
		}
		l, err := Listen(ctx, ns, "tcp", netip.AddrPortFrom(e.IP(), 8080).String())
		if err != nil {
			b.Fatal(err)
		}
		srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok\n") })}
		go srv.Serve(l)
		defer srv.Close()
		backends = append(backends, netip.AddrPortFrom(e.IP(), 8080))
	}
	client := newNS(b)
	if _, err := n.Attach(ctx, client, AttachOptions{Name: "client"}); err != nil {
		b.Fatal(err)
	}
	vip := netip.MustParseAddr("10.96.0.10")
	if err := m.SetService(ctx, ServiceConfig{Name: "web", VIP: vip, Ports: []ServicePort{{Name: "http", Port: 80, Backends: backends}}}); err != nil {
		b.Fatal(err)
	}
	dial := func(ctx context.Context, netw, addr string) (net.Conn, error) { return Dial(ctx, client, netw, addr) }
	fresh := &http.Client{Transport: &http.Transport{DisableKeepAlives: true, DialContext: dial}}
	kept := &http.Client{Transport: &http.Transport{DialContext: dial, MaxIdleConnsPerHost: 8}}
	var hc *http.Client
	get := func(b *testing.B, url string) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				resp, err := hc.Get(url)
				if err != nil {
					b.Error(err)
					return
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	for r := range 3 { // interleaved rounds: compare the same rounds
		for _, mode := range []struct {
			name string
			c    *http.Client
		}{{"new-conn", fresh}, {"keep-alive", kept}} {
			hc = mode.c
			b.Run(fmt.Sprintf("%s/direct/%d", mode.name, r), func(b *testing.B) { get(b, "http://"+backends[0].String()+"/") })
			b.Run(fmt.Sprintf("%s/clusterip/%d", mode.name, r), func(b *testing.B) { get(b, "http://"+netip.AddrPortFrom(vip, 80).String()+"/") })
		}
	}
}
