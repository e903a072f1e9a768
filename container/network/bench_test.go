package network

import (
	"context"
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
