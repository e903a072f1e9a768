package orchestrate_test

import (
	"bufio"
	. "github.com/berthlabs/berth/orchestrate"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// procStatusKB returns a field of /proc/self/status in kB (VmRSS, VmHWM).
func procStatusKB(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			n, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return n
		}
	}
	return 0
}

// BenchmarkReplicaSet50Ready measures the time from applying a
// ReplicaSet of 50 busybox httpd pods (HTTP readiness probe every 100ms)
// to all 50 ready, and the embedding process's memory with them
// running: ms-to-ready, MB-rss-50 (VmRSS sampled with the 50 running)
// and MB-peak (VmHWM, the process's peak so far).
func BenchmarkReplicaSet50Ready(b *testing.B) {
	e := newE2EEnv(b)
	const n = 50
	var total time.Duration
	var rss float64
	for b.Loop() {
		rs := &ReplicaSet{
			ObjectMeta: ObjectMeta{Name: "bench"},
			Spec: ReplicaSetSpec{
				Replicas: n,
				Selector: &LabelSelector{MatchLabels: map[string]string{"app": "web"}},
				Template: httpdTemplate("web:a"),
			},
		}
		start := time.Now()
		if _, err := e.m.Apply(e.ctx, rs); err != nil {
			b.Fatal(err)
		}
		e.waitFor("50 ready pods", 60*time.Second, func() (bool, string) {
			pods, ready := e.webPods()
			return len(pods) == n && ready == n, strconv.Itoa(ready) + " ready"
		})
		total += time.Since(start)
		b.StopTimer()
		rss = max(rss, procStatusKB("VmRSS"))
		if err := e.m.Delete(e.ctx, KindReplicaSet, "", "bench"); err != nil {
			b.Fatal(err)
		}
		e.waitFor("the pods to go", 60*time.Second, func() (bool, string) {
			pods, _ := e.webPods()
			return len(pods) == 0, strconv.Itoa(len(pods)) + " left"
		})
		b.StartTimer()
	}
	b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms-to-ready")
	b.ReportMetric(rss/1024, "MB-rss-50")
	b.ReportMetric(procStatusKB("VmHWM")/1024, "MB-peak")
}
