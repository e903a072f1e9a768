package manifest

import (
	"errors"
	"maps"

	"github.com/berthlabs/berth/orchestrate"
)

// replicationController is a v1 ReplicationController as it is read:
// berth keeps it as the ReplicaSet it is the ancestor of, whose
// matchLabels selector is the controller's equality selector.
type replicationController struct {
	orchestrate.ObjectMeta `json:"metadata"`
	Spec                   rcSpec                       `json:"spec"`
	Status                 orchestrate.ReplicaSetStatus `json:"status,omitzero"`
}

type rcSpec struct {
	// Replicas left out means 1, as in Kubernetes.
	Replicas *int `json:"replicas,omitempty"`
	// Selector left out means the template's labels, as in Kubernetes.
	Selector        map[string]string        `json:"selector,omitempty"`
	Template        *orchestrate.PodTemplate `json:"template,omitempty"`
	MinReadySeconds int                      `json:"minReadySeconds,omitempty"`
}

// Kind returns "ReplicationController".
func (rc *replicationController) Kind() string { return "ReplicationController" }

// Meta returns the controller's metadata.
func (rc *replicationController) Meta() *orchestrate.ObjectMeta { return &rc.ObjectMeta }

// DeepCopy returns a copy of the controller (only Decode uses one, and
// never shares it).
func (rc *replicationController) DeepCopy() orchestrate.Object {
	c := *rc
	return &c
}

// Convert returns the ReplicaSet the controller is kept as.
func (rc *replicationController) Convert() (orchestrate.Object, error) {
	if rc.Spec.Template == nil {
		return nil, errors.New("spec.template: missing")
	}
	rs := &orchestrate.ReplicaSet{ObjectMeta: rc.ObjectMeta}
	rs.Spec.Replicas = 1
	if rc.Spec.Replicas != nil {
		rs.Spec.Replicas = *rc.Spec.Replicas
	}
	sel := rc.Spec.Selector
	if len(sel) == 0 {
		sel = rc.Spec.Template.Labels
	}
	rs.Spec.Selector = &orchestrate.LabelSelector{MatchLabels: maps.Clone(sel)}
	rs.Spec.Template = *rc.Spec.Template
	rs.Spec.MinReadySeconds = rc.Spec.MinReadySeconds
	return rs, nil
}
