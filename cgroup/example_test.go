package cgroup_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"

	"github.com/berthlabs/berth/cgroup"
)

// Create a cgroup with limits, put a process in it, read its stats, and
// delete it, which kills the process. Needs root.
func Example() {
	path := fmt.Sprintf("/berth-example-%d", os.Getpid())
	cg, err := cgroup.New(path, &cgroup.Resources{
		MemoryLimit: 64 << 20, // bytes
		CPUQuota:    50000,    // half a CPU: 50 ms of every 100 ms period
		PidsLimit:   10,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cg.Delete(context.Background())

	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		fmt.Println(err)
		return
	}
	if err := cg.Add(cmd.Process.Pid); err != nil {
		fmt.Println(err)
		return
	}
	procs, _ := cg.Processes()
	fmt.Println("processes:", len(procs))

	st, err := cg.Stats()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("memory limit:", st.Memory.Limit>>20, "MiB")
	fmt.Println("pids:", st.Pids.Current, "of", st.Pids.Limit)

	if err := cg.Delete(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("sleep:", cmd.Wait())
	_, err = cgroup.Load(path)
	fmt.Println("deleted:", errors.Is(err, cgroup.ErrNotFound))
	// Output:
	// processes: 1
	// memory limit: 64 MiB
	// pids: 1 of 10
	// sleep: signal: killed
	// deleted: true
}

// Parse Docker --device-cgroup-rule strings into device rules for
// Resources.Devices.
func ExampleParseDeviceRule() {
	for _, s := range []string{"c 1:3 rwm", "b 8:* r", "a", "c 1:3 rwx"} {
		r, err := cgroup.ParseDeviceRule(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Printf("%s: type %c, major %d, minor %d, access %s\n", r, r.Type, r.Major, r.Minor, r.Access)
	}
	// Output:
	// c 1:3 rwm: type c, major 1, minor 3, access rwm
	// b 8:* r: type b, major 8, minor -1, access r
	// a: type a, major -1, minor -1, access rwm
	// cgroup: invalid device rule "c 1:3 rwx": access "rwx": at most r, w and m, once each
}
