package orchestrate

import (
	"encoding/json"
	"fmt"
	"strconv"
)

// Services and Endpoints in Kubernetes' JSON: a targetPort is a number or
// a port name; ClientIP affinity's timeout is
// sessionAffinityConfig.clientIP.timeoutSeconds; Endpoints list ready
// addresses under addresses and the others under notReadyAddresses (with
// berth's serving and terminating conditions, which v1 Endpoints lack, as
// extra fields when set).

type sessionAffinityConfigJSON struct {
	ClientIP *struct {
		TimeoutSeconds *int64 `json:"timeoutSeconds,omitempty"`
	} `json:"clientIP,omitempty"`
}

// MarshalJSON writes the spec with Kubernetes' sessionAffinityConfig.
func (s ServiceSpec) MarshalJSON() ([]byte, error) {
	type plain ServiceSpec
	var cfg *sessionAffinityConfigJSON
	if s.SessionAffinityTimeout != 0 {
		cfg = &sessionAffinityConfigJSON{}
		cfg.ClientIP = &struct {
			TimeoutSeconds *int64 `json:"timeoutSeconds,omitempty"`
		}{durationSeconds(s.SessionAffinityTimeout)}
	}
	return json.Marshal(struct {
		plain
		SessionAffinityTimeout *int64                     `json:"sessionAffinityTimeout,omitempty"` // hides the field
		SessionAffinityConfig  *sessionAffinityConfigJSON `json:"sessionAffinityConfig,omitempty"`
	}{plain: plain(s), SessionAffinityConfig: cfg})
}

// UnmarshalJSON reads the spec with Kubernetes' sessionAffinityConfig.
func (s *ServiceSpec) UnmarshalJSON(b []byte) error {
	type plain ServiceSpec
	w := struct {
		*plain
		SessionAffinityTimeout json.RawMessage            `json:"sessionAffinityTimeout,omitempty"`
		SessionAffinityConfig  *sessionAffinityConfigJSON `json:"sessionAffinityConfig,omitempty"`
	}{plain: (*plain)(s)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	if w.SessionAffinityTimeout != nil {
		return fmt.Errorf("unknown field \"sessionAffinityTimeout\" (use sessionAffinityConfig.clientIP.timeoutSeconds)")
	}
	s.SessionAffinityTimeout = 0
	if c := w.SessionAffinityConfig; c != nil && c.ClientIP != nil {
		s.SessionAffinityTimeout = secondsDuration(c.ClientIP.TimeoutSeconds)
	}
	return nil
}

// MarshalJSON writes targetPort as a number when it is one, as
// Kubernetes' IntOrString does.
func (p ServicePort) MarshalJSON() ([]byte, error) {
	type plain ServicePort
	var tp any
	if n, err := strconv.Atoi(p.TargetPort); err == nil {
		tp = n
	} else if p.TargetPort != "" {
		tp = p.TargetPort
	}
	return json.Marshal(struct {
		plain
		TargetPort any `json:"targetPort,omitempty"`
	}{plain(p), tp})
}

// UnmarshalJSON reads targetPort as a number or a port name.
func (p *ServicePort) UnmarshalJSON(b []byte) error {
	type plain ServicePort
	w := struct {
		*plain
		TargetPort json.RawMessage `json:"targetPort,omitempty"`
	}{plain: (*plain)(p)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	p.TargetPort = ""
	if len(w.TargetPort) > 0 && string(w.TargetPort) != "null" {
		var n int
		if err := json.Unmarshal(w.TargetPort, &n); err == nil {
			p.TargetPort = strconv.Itoa(n)
		} else if err := json.Unmarshal(w.TargetPort, &p.TargetPort); err != nil {
			return fmt.Errorf("targetPort: want a port number or name, not %s", w.TargetPort)
		}
	}
	return nil
}

type endpointAddressJSON struct {
	IP        string         `json:"ip"`
	TargetRef *targetRefJSON `json:"targetRef,omitempty"`
	// berth's EndpointSlice-like conditions, not in v1 Endpoints.
	Serving     bool `json:"serving,omitempty"`
	Terminating bool `json:"terminating,omitempty"`
}

type targetRefJSON struct {
	Kind string `json:"kind"`
	Name string `json:"name"`
}

// MarshalJSON writes the subset as v1 Endpoints do: ready addresses
// under addresses, the others under notReadyAddresses.
func (s EndpointSubset) MarshalJSON() ([]byte, error) {
	var ready, notReady []endpointAddressJSON
	for _, a := range s.Addresses {
		j := endpointAddressJSON{IP: a.IP, Serving: a.Serving && !a.Ready, Terminating: a.Terminating}
		if a.TargetRef != "" {
			j.TargetRef = &targetRefJSON{Kind: KindPod, Name: a.TargetRef}
		}
		if a.Ready {
			ready = append(ready, j)
		} else {
			notReady = append(notReady, j)
		}
	}
	return json.Marshal(struct {
		Addresses         []endpointAddressJSON `json:"addresses,omitempty"`
		NotReadyAddresses []endpointAddressJSON `json:"notReadyAddresses,omitempty"`
		Ports             []EndpointPort        `json:"ports,omitempty"`
	}{ready, notReady, s.Ports})
}

// UnmarshalJSON reads v1 Endpoints' addresses (ready: they get traffic)
// and notReadyAddresses.
func (s *EndpointSubset) UnmarshalJSON(b []byte) error {
	var w struct {
		Addresses         []endpointAddressJSON `json:"addresses,omitempty"`
		NotReadyAddresses []endpointAddressJSON `json:"notReadyAddresses,omitempty"`
		Ports             []EndpointPort        `json:"ports,omitempty"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*s = EndpointSubset{Ports: w.Ports}
	add := func(list []endpointAddressJSON, ready bool) error {
		for _, a := range list {
			ea := EndpointAddress{IP: a.IP, Ready: ready, Serving: ready || a.Serving, Terminating: a.Terminating}
			if a.TargetRef != nil {
				if a.TargetRef.Kind != KindPod {
					return fmt.Errorf("targetRef kind %q: want Pod", a.TargetRef.Kind)
				}
				ea.TargetRef = a.TargetRef.Name
			}
			s.Addresses = append(s.Addresses, ea)
		}
		return nil
	}
	if err := add(w.Addresses, true); err != nil {
		return err
	}
	return add(w.NotReadyAddresses, false)
}
