package regtest_test

import (
	"context"
	"fmt"
	"net/http"
	"regexp"

	"github.com/berthlabs/berth/internal/regtest"
)

func ExampleStartProcess() {
	r, err := regtest.StartProcess(regtest.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()

	img, err := regtest.NewTestImage(map[string]string{"etc/motd": "hello\n"})
	if err != nil {
		fmt.Println(err)
		return
	}
	if err := r.PushImage(context.Background(), "demo/hello", "v1", img); err != nil {
		fmt.Println(err)
		return
	}

	req, _ := http.NewRequest(http.MethodGet, r.URL+"/v2/demo/hello/manifests/v1", nil)
	req.Header.Set("Accept", img.Manifest.MediaType)
	resp, err := r.HTTPClient().Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	resp.Body.Close()
	fmt.Println(resp.Status, resp.Header.Get("Content-Type"))
	fmt.Println("same digest:", resp.Header.Get("Docker-Content-Digest") == img.Manifest.Digest)
	// Output:
	// 200 OK application/vnd.oci.image.manifest.v1+json
	// same digest: true
}

func ExampleProxy_Add() {
	r, err := regtest.StartProcess(regtest.Options{})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer r.Close()
	p, err := regtest.StartProxy(r)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer p.Close()

	// The first GET of /v2/ fails with 503, later ones pass.
	p.Add(regtest.Fault{Method: http.MethodGet, Path: regexp.MustCompile(`^/v2/$`), Times: 1, Status: http.StatusServiceUnavailable})
	for i := 0; i < 2; i++ {
		resp, err := http.Get(p.URL + "/v2/")
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
	}
	for _, line := range p.Requests() {
		fmt.Println(line)
	}
	// Output:
	// GET /v2/ -> 503
	// GET /v2/ -> 200
}
