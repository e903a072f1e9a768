package manifest_test

import (
	"fmt"
	"strings"

	"github.com/berthlabs/berth/orchestrate/manifest"
)

func Example() {
	objs, err := manifest.Decode(strings.NewReader(`
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
data:
  mode: fast
---
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox
        command: [httpd, -f]
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, o := range objs {
		fmt.Println(o.Kind(), o.Meta().Name)
	}
	_, err = manifest.Decode(strings.NewReader(`
apiVersion: v1
kind: Pod
metadata: {name: typo}
spec:
  containers:
  - {name: c, image: busybox, imagePullPolicyy: Always}
`))
	fmt.Println(err)
	// Output:
	// ConfigMap settings
	// Deployment web
	// manifest: document 0 (Pod typo): spec.containers[0].imagePullPolicyy: unknown field, or one berth does not support
}
