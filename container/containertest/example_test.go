package containertest_test

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/berthlabs/berth/container/containertest"
)

// A busybox root filesystem to run containers on, without an image.
func ExampleTempBusyboxRootfs() {
	rootfs, err := containertest.TempBusyboxRootfs()
	if err != nil {
		fmt.Println(err) // containertest.ErrNoBusybox without busybox-static
		return
	}
	defer os.RemoveAll(rootfs)
	target, _ := os.Readlink(filepath.Join(rootfs, "bin/sh"))
	fmt.Println("/bin/sh ->", target)
	// Output: /bin/sh -> busybox
}

// A web server in a sandbox, asked through the sandbox's own HTTP
// client: no port is published on the host. In a test, Run(t, ...)
// does the same and removes the sandbox when the test ends. Needs root
// and a static busybox.
func ExampleNew() {
	ctx := context.Background()
	image, err := containertest.BusyboxImage(ctx)
	if err != nil {
		panic(err)
	}
	s, err := containertest.New(ctx, image,
		containertest.WithFile("/www/index.html", []byte("hello from a sandbox\n"), 0o644),
		containertest.WithCmd("httpd", "-f", "-p", "8080", "-h", "/www"),
		containertest.WaitFor(containertest.ForHTTP("/").WithPort(8080)))
	if err != nil {
		panic(err)
	}
	defer s.Terminate(ctx)

	resp, err := s.HTTPClient().Get("http://web:8080/index.html")
	if err != nil {
		panic(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	fmt.Print(resp.Status, ": ", string(body))
	// Output: 200 OK: hello from a sandbox
}
