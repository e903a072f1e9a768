package orchestrate

// Protocol is the protocol of a port: ProtocolTCP or ProtocolUDP.
type Protocol string

// Protocols of ports, as Kubernetes spells them.
const (
	ProtocolTCP Protocol = "TCP"
	ProtocolUDP Protocol = "UDP"
)

// ContainerPort is a port a container serves (Kubernetes'
// containerPort).
type ContainerPort struct {
	// Name, if set, is what a Service's targetPort may name it by: an
	// IANA service name (at most 15 lowercase letters, digits and '-'),
	// unique in the pod.
	Name string `json:"name,omitempty"`
	// ContainerPort is the port in the pod's network namespace, 1 to
	// 65535.
	ContainerPort int `json:"containerPort"`
	// Protocol is ProtocolTCP (the default, when empty) or ProtocolUDP.
	Protocol Protocol `json:"protocol,omitempty"`
	// HostPort, if not zero, publishes the port on the host (every
	// address) at that port, as the kubelet does.
	HostPort int `json:"hostPort,omitempty"`
}

// PodIP is one address of a pod (Kubernetes' status.podIPs entry).
type PodIP struct {
	// IP is the address.
	IP string `json:"ip"`
}

func (p ContainerPort) protocol() Protocol {
	if p.Protocol == "" {
		return ProtocolTCP
	}
	return p.Protocol
}
