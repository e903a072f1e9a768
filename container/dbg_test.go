package container
import ("testing"; "time"; "context"; "fmt"; "github.com/berthlabs/berth/cgroup")
func TestDbgPhases(t *testing.T) {
	needRoot(t)
	ctx := context.Background()
	initPath()
	var tc, ts, tw, td time.Duration
	for i := 0; i < 30; i++ {
		t0 := time.Now()
		c, err := Create(ctx, fmt.Sprintf("dbg-%d", i), &Spec{Rootfs: testRootfs, Process: Process{Args: []string{"/bin/true"}}, Resources: cgroup.Resources{MemoryLimit: 64 << 20, PidsLimit: 64}})
		if err != nil { t.Fatal(err) }
		t1 := time.Now()
		if err := c.Start(ctx); err != nil { t.Fatal(err) }
		t2 := time.Now()
		c.Wait(ctx)
		t3 := time.Now()
		c.Delete(ctx)
		t4 := time.Now()
		tc += t1.Sub(t0); ts += t2.Sub(t1); tw += t3.Sub(t2); td += t4.Sub(t3)
	}
	t.Logf("create %v start %v wait %v delete %v", tc/30, ts/30, tw/30, td/30)
}
