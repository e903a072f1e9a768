package namespace_test

import (
	"fmt"
	"log"
	"net"
	"os"
	"os/exec"
	"syscall"

	"github.com/berthlabs/berth/namespace"
)

// NewNet makes an isolated network namespace; Do runs code inside it.
// (This example needs root.)
func ExampleNewNet() {
	ns, err := namespace.NewNet("") // or "/run/netns/NAME" to keep it
	if err != nil {
		log.Fatal(err)
	}
	defer ns.Close()
	err = namespace.Do(func() error {
		ifs, err := net.Interfaces()
		for _, i := range ifs {
			up := "down"
			if i.Flags&net.FlagUp != 0 {
				up = "up"
			}
			fmt.Println(i.Name, up)
		}
		return err
	}, ns)
	if err != nil {
		log.Fatal(err)
	}
	// Output: lo up
}

// A child process gets new namespaces from CloneFlags and its user and
// group IDs mapped with SysProcIDMaps. (This example needs root.)
func ExampleSysProcIDMaps() {
	ids := []namespace.IDMap{{ContainerID: 0, HostID: 100000, Size: 65536}}
	if err := namespace.ValidateIDMaps(ids); err != nil {
		log.Fatal(err)
	}
	cmd := exec.Command("/bin/cat", "/proc/self/uid_map")
	cmd.Stdout = os.Stdout
	cmd.SysProcAttr = &syscall.SysProcAttr{
		Cloneflags:  namespace.CloneFlags(namespace.User, namespace.UTS, namespace.Net),
		UidMappings: namespace.SysProcIDMaps(ids),
		GidMappings: namespace.SysProcIDMaps(ids),
	}
	if err := cmd.Run(); err != nil {
		log.Fatal(err)
	}
	// Output: 0     100000      65536
}

func ExampleValidateIDMaps() {
	err := namespace.ValidateIDMaps([]namespace.IDMap{
		{ContainerID: 0, HostID: 100000, Size: 1000},
		{ContainerID: 500, HostID: 200000, Size: 10},
	})
	fmt.Println(err)
	// Output: namespace: invalid ID map: entry 1 (500 200000 10) overlaps entry 0 (0 100000 1000) inside the namespace
}

func ExampleParseKind() {
	for _, s := range []string{"net", "network", "mount", "netns"} {
		k, err := namespace.ParseKind(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(s, "->", k, k.OCI(), k.CloneFlag() == syscall.CLONE_NEWNS)
	}
	// Output:
	// net -> net network false
	// network -> net network false
	// mount -> mnt mount true
	// namespace: unknown namespace kind "netns" (want one of mnt, pid, uts, ipc, net, user, cgroup, time)
}
