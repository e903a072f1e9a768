// Command queuebench runs the same synthetic loads against berth's
// reconcile.Queue and client-go's rate-limiting workqueue, interleaved
// (the order alternates every round), and prints the medians over the
// rounds side by side with the median of the per-round ratios
// berth/client-go.
//
//	go run . [-rounds 5] [-d 300ms] [-load REGEXP] [-impl NAME] [-v] [-cpuprofile FILE]
//
// For throughput (adds/s, gets/s) a ratio above 1 means berth is faster;
// for latency (p50, p99) a ratio below 1 means berth is faster. IQR is
// half the interquartile range of the runs, in percent of the median: on
// a small machine the contended loads vary a lot from run to run.
// bench_test.go has the plain Add/Get/Done loads as go test benchmarks
// (go test -bench .).
package main

import (
	"flag"
	"fmt"
	"os"
	"regexp"
	"runtime"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"text/tabwriter"
	"time"
)

func main() {
	rounds := flag.Int("rounds", 5, "runs of each load on each implementation")
	d := flag.Duration("d", 300*time.Millisecond, "length of one run")
	filter := flag.String("load", "", "run only the loads whose name matches this regexp")
	only := flag.String("impl", "", "run only this implementation (berth or client-go)")
	verbose := flag.Bool("v", false, "print every run")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	re, err := regexp.Compile(*filter)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}

	fmt.Printf("%s, GOMAXPROCS %d, %d CPUs, client-go %s; %d rounds of %v, medians\n\n",
		runtime.Version(), runtime.GOMAXPROCS(0), runtime.NumCPU(), depVersion("k8s.io/client-go"), *rounds, *d)

	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "load\tmetric\tberth\tIQR\tclient-go\tIQR\tberth/client-go\t")
	for _, l := range loads {
		if !re.MatchString(l.name) {
			continue
		}
		res := make([][]result, len(impls))
		for r := range *rounds {
			for j := range impls {
				i := j
				if r%2 == 1 {
					i = len(impls) - 1 - j
				}
				if *only != "" && impls[i].name != *only {
					res[i] = append(res[i], result{elapsed: 1})
					continue
				}
				runtime.GC()
				r := l.run(impls[i], *d)
				res[i] = append(res[i], r)
				if *verbose {
					p50, p99, _ := latencies(r)
					fmt.Fprintf(os.Stderr, "%s %s: adds/s %s gets/s %s p50 %v p99 %v\n", l.name, impls[i].name, rate(r.addsPerSec()), rate(r.getsPerSec()), p50, p99)
				}
			}
		}
		row := func(metric string, f func(result) (float64, bool), format func(float64) string) {
			var med, iqr [2]float64
			var vals [2][]float64
			for i := range impls {
				for _, r := range res[i] {
					x, ok := f(r)
					if !ok {
						return
					}
					vals[i] = append(vals[i], x)
				}
				med[i], iqr[i] = median(vals[i]), spread(vals[i])
			}
			// The ratio is the median of the ratios of the two runs of each
			// round, which ran one after the other: it is less sensitive
			// than the ratio of the medians to other work on the machine
			// that comes and goes.
			var ratios []float64
			for r := range vals[0] {
				ratios = append(ratios, vals[0][r]/vals[1][r])
			}
			fmt.Fprintf(w, "%s\t%s\t%s\t±%.0f%%\t%s\t±%.0f%%\t%.2f\t\n", l.name, metric,
				format(med[0]), iqr[0], format(med[1]), iqr[1], median(ratios))
		}
		same := true // every add handed out once: one row for both
		for i := range res {
			for _, r := range res[i] {
				same = same && r.adds == r.gets
			}
		}
		if same {
			row("items/s", func(r result) (float64, bool) { return r.addsPerSec(), true }, rate)
		} else {
			row("adds/s", func(r result) (float64, bool) { return r.addsPerSec(), true }, rate)
			row("gets/s", func(r result) (float64, bool) { return r.getsPerSec(), true }, rate)
		}
		row("latency p50", func(r result) (float64, bool) {
			p50, _, ok := latencies(r)
			return float64(p50), ok
		}, dur)
		row("latency p99", func(r result) (float64, bool) {
			_, p99, ok := latencies(r)
			return float64(p99), ok
		}, dur)
	}
	w.Flush()
	fmt.Println()
	for _, l := range loads {
		if re.MatchString(l.name) {
			fmt.Printf("%-14s %s\n", l.name, l.desc)
		}
	}
}

func median(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	if n := len(v); n%2 == 0 {
		return (v[n/2-1] + v[n/2]) / 2
	}
	return v[len(v)/2]
}

// spread returns half the interquartile range of v in percent of its
// median.
func spread(v []float64) float64 {
	v = slices.Clone(v)
	slices.Sort(v)
	q := func(p float64) float64 { return v[int(float64(len(v)-1)*p+0.5)] }
	return (q(0.75) - q(0.25)) / 2 / median(v) * 100
}

func rate(x float64) string {
	switch {
	case x >= 1e6:
		return fmt.Sprintf("%.2fM", x/1e6)
	case x >= 1e3:
		return fmt.Sprintf("%.1fk", x/1e3)
	}
	return fmt.Sprintf("%.0f", x)
}

func dur(x float64) string {
	return time.Duration(x).Round(100 * time.Nanosecond).String()
}

func depVersion(path string) string {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return "?"
	}
	for _, m := range bi.Deps {
		if m.Path == path {
			return m.Version
		}
	}
	return "?"
}
