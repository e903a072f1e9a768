package manifest_test

import (
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/berthlabs/berth/orchestrate"
	"github.com/berthlabs/berth/orchestrate/manifest"
)

// Kubernetes' Service examples decode into Services and Endpoints, apply,
// and come back the same through Encode.
func TestServiceManifests(t *testing.T) {
	objs := decodeFile(t, "services.yaml")
	if got := kindsAndNames(objs); got != "Service/my-service Pod/nginx Service/nginx-service Service/my-nodeport Service/my-headless Namespace/prod Service/my-service Service/sticky Service/no-selector Endpoints/no-selector" {
		t.Fatalf("decoded %s", got)
	}
	svc := func(i int) *orchestrate.Service { return objs[i].(*orchestrate.Service) }
	if p := svc(0).Spec.Ports[0]; p.TargetPort != "9376" || p.Port != 80 || p.Protocol != orchestrate.ProtocolTCP {
		t.Errorf("numeric targetPort: %+v", p)
	}
	if p := svc(2).Spec.Ports[0]; p.TargetPort != "http-web-svc" || p.Name != "name-of-service-port" {
		t.Errorf("named targetPort: %+v", p)
	}
	if pod := objs[1].(*orchestrate.Pod); pod.Spec.Containers[0].Ports[0].Name != "http-web-svc" || pod.Spec.Containers[0].Ports[0].ContainerPort != 80 {
		t.Errorf("container ports: %+v", pod.Spec.Containers[0].Ports)
	}
	if s := svc(3); s.Spec.Type != orchestrate.ServiceTypeNodePort || s.Spec.Ports[0].NodePort != 30007 {
		t.Errorf("NodePort: %+v", s.Spec)
	}
	if s := svc(4); s.Spec.ClusterIP != orchestrate.ClusterIPNone {
		t.Errorf("headless: %+v", s.Spec)
	}
	if s := svc(6); s.Namespace != "prod" || s.Spec.Type != orchestrate.ServiceTypeExternalName || s.Spec.ExternalName != "my.database.example.com" {
		t.Errorf("ExternalName: %+v %+v", s.ObjectMeta, s.Spec)
	}
	if s := svc(7); s.Spec.SessionAffinity != orchestrate.SessionAffinityClientIP || s.Spec.SessionAffinityTimeout != 3*time.Hour || s.Spec.Ports[0].Protocol != orchestrate.ProtocolUDP {
		t.Errorf("ClientIP affinity: %+v", s.Spec)
	}
	eps := objs[9].(*orchestrate.Endpoints)
	want := []orchestrate.EndpointAddress{{IP: "10.4.5.6", Ready: true, Serving: true}, {IP: "10.4.5.7"}}
	if len(eps.Subsets) != 1 || !reflect.DeepEqual(eps.Subsets[0].Addresses, want) || eps.Subsets[0].Ports[0].Port != 9376 {
		t.Errorf("Endpoints: %+v", eps.Subsets)
	}

	got, buf := applyAndEncode(t, newManager(t), objs)
	for _, w := range []string{"targetPort: 9376", "targetPort: http-web-svc", "timeoutSeconds: 10800", "notReadyAddresses:"} {
		if !strings.Contains(buf.String(), w) {
			t.Errorf("encoded YAML lacks %q:\n%s", w, buf.String())
		}
	}
	back, err := manifest.Decode(buf)
	if err != nil {
		t.Fatalf("decode what Encode wrote: %v\n%s", err, buf.String())
	}
	for i := range objs {
		if a, b := specOnly(got[i]), specOnly(back[i]); !reflect.DeepEqual(a, b) {
			t.Errorf("%s %s changed in the round trip:\n got %+v\nwant %+v", objs[i].Kind(), objs[i].Meta().Name, b, a)
		}
	}
}

func TestServiceManifestErrors(t *testing.T) {
	for _, tc := range []struct{ doc, want string }{
		{"apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80, targetPort: [1]}]}\n", "targetPort"},
		{"apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {ports: [{port: 80}], topologyKeys: [x]}\n", "topologyKeys"},
		{"apiVersion: v1\nkind: Service\nmetadata: {name: s}\nspec: {sessionAffinityTimeout: 5}\n", "sessionAffinityTimeout"},
		{"apiVersion: v1\nkind: Endpoints\nmetadata: {name: e}\nsubsets: [{addresses: [{ip: 10.0.0.1, targetRef: {kind: Node, name: n}}]}]\n", "targetRef"},
	} {
		_, err := manifest.Decode(strings.NewReader(tc.doc))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want an error naming %s", tc.doc, err, tc.want)
		}
	}
}
