package orchestrate

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/berthlabs/berth/cgroup"
)

// The objects' JSON is Kubernetes' JSON: the field names and shapes of
// the Kubernetes API (metadata.name, spec.template.spec.containers[].
// resources.limits.memory "64Mi", terminationGracePeriodSeconds, a
// maxSurge of "25%" or 1, conditions with status "True"), so that
// Kubernetes manifests decode into berth's objects (package
// orchestrate/manifest) and berth's objects encode as kubectl shows
// them. Where berth's Go types differ in shape, the methods below
// convert; what has no Kubernetes form is an error, never dropped.

// durationSeconds returns d in whole seconds for JSON, rounded up; nil
// for 0 (the field is left out).
func durationSeconds(d time.Duration) *int64 {
	if d == 0 {
		return nil
	}
	s := int64((d + time.Second - 1) / time.Second)
	if d < 0 {
		s = int64(d / time.Second)
	}
	return &s
}

// secondsDuration returns a JSON seconds field as a duration (nil: 0).
func secondsDuration(s *int64) time.Duration {
	if s == nil {
		return 0
	}
	return time.Duration(*s) * time.Second
}

// MarshalJSON writes the template as Kubernetes' PodTemplateSpec:
// metadata (labels and annotations) and spec.
func (t PodTemplate) MarshalJSON() ([]byte, error) {
	w := podTemplateJSON{Spec: t.Spec}
	if len(t.Labels) > 0 || len(t.Annotations) > 0 {
		w.Metadata = &templateMetaJSON{Labels: t.Labels, Annotations: t.Annotations}
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads Kubernetes' PodTemplateSpec; its metadata may have
// labels and annotations only.
func (t *PodTemplate) UnmarshalJSON(b []byte) error {
	var w podTemplateJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*t = PodTemplate{Spec: w.Spec}
	if w.Metadata != nil {
		t.Labels, t.Annotations = w.Metadata.Labels, w.Metadata.Annotations
	}
	return nil
}

type podTemplateJSON struct {
	Metadata *templateMetaJSON `json:"metadata,omitempty"`
	Spec     PodSpec           `json:"spec"`
}

type templateMetaJSON struct {
	Labels      map[string]string `json:"labels,omitempty"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// MarshalJSON writes TerminationGracePeriod as
// terminationGracePeriodSeconds (whole seconds, rounded up).
func (s PodSpec) MarshalJSON() ([]byte, error) {
	type plain PodSpec
	return json.Marshal(struct {
		plain
		TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds,omitempty"`
	}{plain(s), durationSeconds(s.TerminationGracePeriod)})
}

// UnmarshalJSON reads terminationGracePeriodSeconds; 0 (kill at once)
// is refused: berth's shortest grace period is 1 second.
func (s *PodSpec) UnmarshalJSON(b []byte) error {
	type plain PodSpec
	w := struct {
		*plain
		TerminationGracePeriodSeconds *int64 `json:"terminationGracePeriodSeconds"`
	}{plain: (*plain)(s)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	if p := w.TerminationGracePeriodSeconds; p != nil && *p == 0 {
		return fmt.Errorf("terminationGracePeriodSeconds: 0 (kill at once) is not supported; the shortest grace period is 1")
	}
	s.TerminationGracePeriod = secondsDuration(w.TerminationGracePeriodSeconds)
	return nil
}

// containerJSON is the part of a Container whose shape differs from
// Kubernetes': resources and the user (securityContext).
type containerJSON struct {
	Resources       *resourcesJSON       `json:"resources,omitempty"`
	SecurityContext *securityContextJSON `json:"securityContext,omitempty"`
}

type resourcesJSON struct {
	Limits   map[string]quantity `json:"limits,omitempty"`
	Requests map[string]quantity `json:"requests,omitempty"`
}

type securityContextJSON struct {
	RunAsUser  *int64 `json:"runAsUser,omitempty"`
	RunAsGroup *int64 `json:"runAsGroup,omitempty"`
}

// defaultCPUPeriod is the CFS period, in microseconds, that a
// Kubernetes CPU limit is a quota of.
const defaultCPUPeriod = 100000

// MarshalJSON writes Resources as Kubernetes' resources (limits.cpu from
// CPUQuota, limits.memory from MemoryLimit, requests.cpu from CPUShares,
// requests.memory from MemoryReservation) and User as
// securityContext.runAsUser and runAsGroup. A limit with no Kubernetes
// form (CPUs, Mems, MemorySwap, PidsLimit, IOWeight, CPUWeight) and a
// user name (Kubernetes takes numeric IDs) are errors.
func (c Container) MarshalJSON() ([]byte, error) {
	type plain Container
	var x containerJSON
	r := c.Resources
	switch {
	case r.CPUs != "", r.Mems != "":
		return nil, fmt.Errorf("container %s: resources: a cpuset (CPUs, Mems) has no Kubernetes form", c.Name)
	case r.MemorySwap != 0, r.PidsLimit != 0, r.IOWeight != 0, r.CPUWeight != 0:
		return nil, fmt.Errorf("container %s: resources: MemorySwap, PidsLimit, IOWeight and CPUWeight have no Kubernetes form", c.Name)
	}
	limits, requests := map[string]quantity{}, map[string]quantity{}
	if r.CPUQuota > 0 {
		period := int64(r.CPUPeriod)
		if period == 0 {
			period = defaultCPUPeriod
		}
		limits["cpu"] = quantity(formatMillis((r.CPUQuota*1000 + period - 1) / period))
	}
	if r.MemoryLimit > 0 {
		limits["memory"] = quantity(formatBytes(r.MemoryLimit))
	}
	if r.CPUShares > 0 {
		requests["cpu"] = quantity(formatMillis(int64((r.CPUShares*1000 + 1023) / 1024)))
	}
	if r.MemoryReservation > 0 {
		requests["memory"] = quantity(formatBytes(r.MemoryReservation))
	}
	if len(limits) > 0 || len(requests) > 0 {
		x.Resources = &resourcesJSON{}
		if len(limits) > 0 {
			x.Resources.Limits = limits
		}
		if len(requests) > 0 {
			x.Resources.Requests = requests
		}
	}
	if c.User != "" {
		uid, gid, hasGID := strings.Cut(c.User, ":")
		u, err := strconv.ParseInt(uid, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("container %s: user %q: Kubernetes' securityContext takes numeric IDs", c.Name, c.User)
		}
		x.SecurityContext = &securityContextJSON{RunAsUser: &u}
		if hasGID {
			g, err := strconv.ParseInt(gid, 10, 64)
			if err != nil {
				return nil, fmt.Errorf("container %s: user %q: Kubernetes' securityContext takes numeric IDs", c.Name, c.User)
			}
			x.SecurityContext.RunAsGroup = &g
		}
	}
	return json.Marshal(struct {
		plain
		containerJSON
	}{plain(c), x})
}

// UnmarshalJSON reads Kubernetes' resources (limits and requests of cpu
// and memory; see MarshalJSON) and securityContext (runAsUser, and
// runAsGroup with it).
func (c *Container) UnmarshalJSON(b []byte) error {
	type plain Container
	w := struct {
		*plain
		containerJSON
	}{plain: (*plain)(c)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	c.Resources, c.User = cgroup.Resources{}, ""
	if r := w.containerJSON.Resources; r != nil {
		for _, m := range []struct {
			name string
			q    map[string]quantity
		}{{"limits", r.Limits}, {"requests", r.Requests}} {
			for _, k := range sortedKeys(m.q) {
				f := "resources." + m.name + "." + k
				var err error
				switch k {
				case "cpu":
					var milli int64
					if milli, err = parseMillis(string(m.q[k])); err == nil {
						if m.name == "limits" {
							c.Resources.CPUQuota = milli * defaultCPUPeriod / 1000
						} else {
							c.Resources.CPUShares = uint64(max(2, milli*1024/1000))
						}
					}
				case "memory":
					var n int64
					if n, err = parseBytes(string(m.q[k])); err == nil {
						if m.name == "limits" {
							c.Resources.MemoryLimit = n
						} else {
							c.Resources.MemoryReservation = n
						}
					}
				default:
					return fmt.Errorf("%s: resource %q is not supported (cpu and memory are)", f, k)
				}
				if err != nil {
					return fmt.Errorf("%s: %v", f, err)
				}
			}
		}
	}
	if sc := w.SecurityContext; sc != nil {
		switch {
		case sc.RunAsUser == nil && sc.RunAsGroup != nil:
			return fmt.Errorf("securityContext.runAsGroup: needs runAsUser")
		case sc.RunAsUser != nil && *sc.RunAsUser < 0, sc.RunAsGroup != nil && *sc.RunAsGroup < 0:
			return fmt.Errorf("securityContext: negative user or group ID")
		case sc.RunAsUser != nil:
			c.User = strconv.FormatInt(*sc.RunAsUser, 10)
			if sc.RunAsGroup != nil {
				c.User += ":" + strconv.FormatInt(*sc.RunAsGroup, 10)
			}
		}
	}
	return nil
}

type envFromJSON struct {
	Prefix       string           `json:"prefix,omitempty"`
	ConfigMapRef *optionalRefJSON `json:"configMapRef,omitempty"`
	SecretRef    *optionalRefJSON `json:"secretRef,omitempty"`
}

type optionalRefJSON struct {
	Name     string `json:"name"`
	Optional bool   `json:"optional,omitempty"`
}

// MarshalJSON writes Kubernetes' EnvFromSource: prefix, and configMapRef
// or secretRef with a name and optional.
func (e EnvFromSource) MarshalJSON() ([]byte, error) {
	w := envFromJSON{Prefix: e.Prefix}
	if e.ConfigMap != "" {
		w.ConfigMapRef = &optionalRefJSON{Name: e.ConfigMap, Optional: e.Optional}
	}
	if e.Secret != "" {
		w.SecretRef = &optionalRefJSON{Name: e.Secret, Optional: e.Optional}
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads Kubernetes' EnvFromSource.
func (e *EnvFromSource) UnmarshalJSON(b []byte) error {
	var w envFromJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*e = EnvFromSource{Prefix: w.Prefix}
	if r := w.ConfigMapRef; r != nil {
		e.ConfigMap, e.Optional = r.Name, r.Optional
	}
	if r := w.SecretRef; r != nil {
		e.Secret, e.Optional = r.Name, e.Optional || r.Optional
	}
	return nil
}

type emptyDirJSON struct {
	Medium    string    `json:"medium,omitempty"`
	SizeLimit *quantity `json:"sizeLimit,omitempty"`
}

// MarshalJSON writes Kubernetes' EmptyDirVolumeSource: medium "Memory"
// and sizeLimit.
func (v EmptyDirVolume) MarshalJSON() ([]byte, error) {
	var w emptyDirJSON
	if v.Memory {
		w.Medium = "Memory"
	}
	if v.SizeLimit > 0 {
		q := quantity(formatBytes(v.SizeLimit))
		w.SizeLimit = &q
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads Kubernetes' EmptyDirVolumeSource; a medium other
// than "" and "Memory" (HugePages) is refused.
func (v *EmptyDirVolume) UnmarshalJSON(b []byte) error {
	var w emptyDirJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*v = EmptyDirVolume{}
	switch w.Medium {
	case "":
	case "Memory":
		v.Memory = true
	default:
		return fmt.Errorf("emptyDir.medium: %q is not supported (\"\" or \"Memory\")", w.Medium)
	}
	if w.SizeLimit != nil {
		n, err := parseBytes(string(*w.SizeLimit))
		if err != nil {
			return fmt.Errorf("emptyDir.sizeLimit: %v", err)
		}
		v.SizeLimit = n
	}
	return nil
}

type probeTimesJSON struct {
	InitialDelaySeconds *int64 `json:"initialDelaySeconds,omitempty"`
	PeriodSeconds       *int64 `json:"periodSeconds,omitempty"`
	TimeoutSeconds      *int64 `json:"timeoutSeconds,omitempty"`
}

// MarshalJSON writes the probe's durations as Kubernetes' whole seconds
// (initialDelaySeconds, periodSeconds, timeoutSeconds), rounded up.
func (p Probe) MarshalJSON() ([]byte, error) {
	type plain Probe
	return json.Marshal(struct {
		plain
		probeTimesJSON
	}{plain(p), probeTimesJSON{durationSeconds(p.InitialDelay), durationSeconds(p.Period), durationSeconds(p.Timeout)}})
}

// UnmarshalJSON reads Kubernetes' probe.
func (p *Probe) UnmarshalJSON(b []byte) error {
	type plain Probe
	w := struct {
		*plain
		probeTimesJSON
	}{plain: (*plain)(p)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	p.InitialDelay = secondsDuration(w.InitialDelaySeconds)
	p.Period = secondsDuration(w.PeriodSeconds)
	p.Timeout = secondsDuration(w.TimeoutSeconds)
	return nil
}

type httpHeaderJSON struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// portNumber is a probe's port: a number; Kubernetes' named ports (a
// string) are refused.
type portNumber int

// UnmarshalJSON reads a port number.
func (p *portNumber) UnmarshalJSON(b []byte) error {
	var n int
	if err := json.Unmarshal(b, &n); err != nil {
		var s string
		if json.Unmarshal(b, &s) == nil {
			return fmt.Errorf("port: named port %q is not supported; give the number", s)
		}
		return fmt.Errorf("port: %s is not a port number", b)
	}
	*p = portNumber(n)
	return nil
}

// MarshalJSON writes Headers as Kubernetes' httpHeaders list (sorted by
// name).
func (g HTTPGetAction) MarshalJSON() ([]byte, error) {
	type plain HTTPGetAction
	var hs []httpHeaderJSON
	for _, k := range sortedKeys(g.Headers) {
		hs = append(hs, httpHeaderJSON{k, g.Headers[k]})
	}
	return json.Marshal(struct {
		plain
		HTTPHeaders []httpHeaderJSON `json:"httpHeaders,omitempty"`
	}{plain(g), hs})
}

// UnmarshalJSON reads Kubernetes' HTTPGetAction; a header given twice is
// refused (berth's Headers is a map).
func (g *HTTPGetAction) UnmarshalJSON(b []byte) error {
	type plain HTTPGetAction
	w := struct {
		*plain
		Port        portNumber       `json:"port"`
		HTTPHeaders []httpHeaderJSON `json:"httpHeaders"`
	}{plain: (*plain)(g)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	g.Port, g.Headers = int(w.Port), nil
	for i, h := range w.HTTPHeaders {
		if g.Headers == nil {
			g.Headers = map[string]string{}
		}
		if _, dup := g.Headers[h.Name]; dup {
			return fmt.Errorf("httpHeaders[%d]: header %q given twice", i, h.Name)
		}
		g.Headers[h.Name] = h.Value
	}
	return nil
}

// UnmarshalJSON reads Kubernetes' TCPSocketAction (a numbered port).
func (t *TCPSocketAction) UnmarshalJSON(b []byte) error {
	type plain TCPSocketAction
	w := struct {
		*plain
		Port portNumber `json:"port"`
	}{plain: (*plain)(t)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	t.Port = int(w.Port)
	return nil
}

type containerStateJSON struct {
	Waiting    *stateWaitingJSON    `json:"waiting,omitempty"`
	Running    *stateRunningJSON    `json:"running,omitempty"`
	Terminated *stateTerminatedJSON `json:"terminated,omitempty"`
}

type stateWaitingJSON struct {
	Reason  string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

type stateRunningJSON struct {
	StartedAt time.Time `json:"startedAt,omitzero"`
}

type stateTerminatedJSON struct {
	ExitCode   int       `json:"exitCode"`
	Reason     string    `json:"reason,omitempty"`
	Message    string    `json:"message,omitempty"`
	StartedAt  time.Time `json:"startedAt,omitzero"`
	FinishedAt time.Time `json:"finishedAt,omitzero"`
}

type containerStatusJSON struct {
	Name         string              `json:"name"`
	Image        string              `json:"image,omitempty"`
	ContainerID  string              `json:"containerID,omitempty"`
	Ready        bool                `json:"ready"`
	Started      bool                `json:"started"`
	RestartCount int                 `json:"restartCount"`
	State        *containerStateJSON `json:"state,omitempty"`
	LastState    *containerStateJSON `json:"lastState,omitempty"`
}

// MarshalJSON writes Kubernetes' ContainerStatus: state.waiting,
// state.running or state.terminated, and for a waiting container that
// ran before, how it ended as lastState.terminated.
func (s ContainerStatus) MarshalJSON() ([]byte, error) {
	w := containerStatusJSON{Name: s.Name, Image: s.Image, ContainerID: s.ID, Ready: s.Ready, Started: s.Started, RestartCount: s.RestartCount}
	ended := &stateTerminatedJSON{ExitCode: s.ExitCode, StartedAt: s.StartedAt, FinishedAt: s.FinishedAt}
	switch s.State {
	case "":
		if s.Reason != "" || s.Message != "" || s.ExitCode != 0 || !s.StartedAt.IsZero() || !s.FinishedAt.IsZero() {
			return nil, fmt.Errorf("container status %s: a state is needed for its reason, exit code and times", s.Name)
		}
	case ContainerWaiting:
		w.State = &containerStateJSON{Waiting: &stateWaitingJSON{Reason: s.Reason, Message: s.Message}}
		if s.ExitCode != 0 || !s.StartedAt.IsZero() || !s.FinishedAt.IsZero() {
			w.LastState = &containerStateJSON{Terminated: ended}
		}
	case ContainerRunning:
		w.State = &containerStateJSON{Running: &stateRunningJSON{StartedAt: s.StartedAt}}
		if s.Reason != "" || s.Message != "" || s.ExitCode != 0 || !s.FinishedAt.IsZero() {
			return nil, fmt.Errorf("container status %s: a running container has no reason, exit code or finish time", s.Name)
		}
	case ContainerTerminated:
		ended.Reason, ended.Message = s.Reason, s.Message
		w.State = &containerStateJSON{Terminated: ended}
	default:
		return nil, fmt.Errorf("container status %s: unknown state %q", s.Name, s.State)
	}
	return json.Marshal(w)
}

// UnmarshalJSON reads Kubernetes' ContainerStatus (one state set).
func (s *ContainerStatus) UnmarshalJSON(b []byte) error {
	var w containerStatusJSON
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	*s = ContainerStatus{Name: w.Name, Image: w.Image, ID: w.ContainerID, Ready: w.Ready, Started: w.Started, RestartCount: w.RestartCount}
	if w.State == nil {
		return nil
	}
	n := 0
	if st := w.State.Waiting; st != nil {
		n++
		s.State, s.Reason, s.Message = ContainerWaiting, st.Reason, st.Message
		if w.LastState != nil && w.LastState.Terminated != nil {
			t := w.LastState.Terminated
			s.ExitCode, s.StartedAt, s.FinishedAt = t.ExitCode, t.StartedAt, t.FinishedAt
		}
	}
	if st := w.State.Running; st != nil {
		n++
		s.State, s.StartedAt = ContainerRunning, st.StartedAt
	}
	if st := w.State.Terminated; st != nil {
		n++
		s.State, s.Reason, s.Message = ContainerTerminated, st.Reason, st.Message
		s.ExitCode, s.StartedAt, s.FinishedAt = st.ExitCode, st.StartedAt, st.FinishedAt
	}
	if n > 1 {
		return fmt.Errorf("containerStatuses %s: state: more than one of waiting, running and terminated", w.Name)
	}
	return nil
}

// MarshalJSON writes the count as a number, or the percentage as a
// string ("25%"), as Kubernetes' IntOrString.
func (v IntOrPercent) MarshalJSON() ([]byte, error) {
	if v.Percent {
		return json.Marshal(v.String())
	}
	return json.Marshal(v.Value)
}

// UnmarshalJSON reads a number or a string ("25%", or "3").
func (v *IntOrPercent) UnmarshalJSON(b []byte) error {
	var n int
	if err := json.Unmarshal(b, &n); err == nil {
		if n < 0 {
			return fmt.Errorf("%d must not be negative", n)
		}
		*v = IntOrPercent{Value: n}
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%s is neither a number nor a percentage", b)
	}
	p, err := ParseIntOrPercent(s)
	if err != nil {
		return err
	}
	*v = p
	return nil
}

// UnmarshalJSON reads Kubernetes' ReplicaSetSpec; replicas left out
// means 1, as the API server defaults it.
func (s *ReplicaSetSpec) UnmarshalJSON(b []byte) error {
	type plain ReplicaSetSpec
	p := plain{Replicas: 1}
	if err := json.Unmarshal(b, &p); err != nil {
		return err
	}
	*s = ReplicaSetSpec(p)
	return nil
}

// MarshalJSON writes ProgressDeadline as progressDeadlineSeconds.
func (s DeploymentSpec) MarshalJSON() ([]byte, error) {
	type plain DeploymentSpec
	return json.Marshal(struct {
		plain
		ProgressDeadlineSeconds *int64 `json:"progressDeadlineSeconds,omitempty"`
	}{plain(s), durationSeconds(s.ProgressDeadline)})
}

// UnmarshalJSON reads Kubernetes' DeploymentSpec; replicas left out
// means 1, as the API server defaults it.
func (s *DeploymentSpec) UnmarshalJSON(b []byte) error {
	type plain DeploymentSpec
	w := struct {
		*plain
		ProgressDeadlineSeconds *int64 `json:"progressDeadlineSeconds"`
	}{plain: (*plain)(s)}
	*s = DeploymentSpec{Replicas: 1}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	s.ProgressDeadline = secondsDuration(w.ProgressDeadlineSeconds)
	return nil
}

type rollingUpdateJSON struct {
	MaxSurge       *IntOrPercent `json:"maxSurge,omitempty"`
	MaxUnavailable *IntOrPercent `json:"maxUnavailable,omitempty"`
}

// MarshalJSON writes Kubernetes' DeploymentStrategy: type and
// rollingUpdate (maxSurge, maxUnavailable).
func (s DeploymentStrategy) MarshalJSON() ([]byte, error) {
	type plain DeploymentStrategy
	var ru *rollingUpdateJSON
	if s.MaxSurge != nil || s.MaxUnavailable != nil {
		ru = &rollingUpdateJSON{s.MaxSurge, s.MaxUnavailable}
	}
	return json.Marshal(struct {
		plain
		RollingUpdate *rollingUpdateJSON `json:"rollingUpdate,omitempty"`
	}{plain(s), ru})
}

// UnmarshalJSON reads Kubernetes' DeploymentStrategy.
func (s *DeploymentStrategy) UnmarshalJSON(b []byte) error {
	type plain DeploymentStrategy
	w := struct {
		*plain
		RollingUpdate *rollingUpdateJSON `json:"rollingUpdate"`
	}{plain: (*plain)(s)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	s.MaxSurge, s.MaxUnavailable = nil, nil
	if ru := w.RollingUpdate; ru != nil {
		s.MaxSurge, s.MaxUnavailable = ru.MaxSurge, ru.MaxUnavailable
	}
	return nil
}

// MarshalJSON writes ActiveDeadline as activeDeadlineSeconds.
func (s JobSpec) MarshalJSON() ([]byte, error) {
	type plain JobSpec
	return json.Marshal(struct {
		plain
		ActiveDeadlineSeconds *int64 `json:"activeDeadlineSeconds,omitempty"`
	}{plain(s), durationSeconds(s.ActiveDeadline)})
}

// UnmarshalJSON reads Kubernetes' JobSpec.
func (s *JobSpec) UnmarshalJSON(b []byte) error {
	type plain JobSpec
	w := struct {
		*plain
		ActiveDeadlineSeconds *int64 `json:"activeDeadlineSeconds"`
	}{plain: (*plain)(s)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	s.ActiveDeadline = secondsDuration(w.ActiveDeadlineSeconds)
	return nil
}

// MarshalJSON writes Status as Kubernetes' "True" or "False".
func (c Condition) MarshalJSON() ([]byte, error) {
	type plain Condition
	status := "False"
	if c.Status {
		status = "True"
	}
	return json.Marshal(struct {
		plain
		Status string `json:"status"`
	}{plain(c), status})
}

// UnmarshalJSON reads a condition; its status must be "True" or
// "False" ("Unknown" is refused).
func (c *Condition) UnmarshalJSON(b []byte) error {
	type plain Condition
	w := struct {
		*plain
		Status string `json:"status"`
	}{plain: (*plain)(c)}
	if err := json.Unmarshal(b, &w); err != nil {
		return err
	}
	switch w.Status {
	case "True":
		c.Status = true
	case "False":
		c.Status = false
	default:
		return fmt.Errorf("condition %s: status %q is not True or False", c.Type, w.Status)
	}
	return nil
}
