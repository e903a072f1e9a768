// Package containerruntime is the orchestrate.Runtime that runs pods'
// containers with package container, on the host.
//
// A pod's sandbox is a network namespace (loopback up), an IPC namespace
// and a UTS namespace holding the pod's hostname, made with
// namespace.New and persisted by bind mounts in a directory of the
// sandbox directory (DefaultSandboxDir unless WithSandboxDir says
// otherwise), so that they outlive any one container: NAME/{net,ipc,uts},
// removed with the sandbox. Each container joins them and gets its own
// mount and PID namespaces. Images come from the container.Runtime's
// image store.
package containerruntime

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/berthlabs/berth/container"
	"github.com/berthlabs/berth/container/network"
	"github.com/berthlabs/berth/internal/owner"
	"github.com/berthlabs/berth/layer/content"
	"github.com/berthlabs/berth/namespace"
	"github.com/berthlabs/berth/orchestrate"
	"golang.org/x/sys/unix"
)

// DefaultSandboxDir is the directory under which sandboxes keep their
// namespaces unless WithSandboxDir says otherwise.
const DefaultSandboxDir = "/run/berth/sandboxes"

// Option configures a Runtime made by New.
type Option func(*containerRuntime)

// WithSandboxDir sets the host directory under which sandboxes keep
// their namespaces (DIR/NAME/{net,ipc,uts}); it is made if missing.
// Runtimes that share one must not run pods of the same name at once:
// give each Manager its own. Each sandbox records its owning process;
// a Runtime's first sandbox removes those of owners that died without
// removing them (kill -9), whose namespace mounts would otherwise stay.
func WithSandboxDir(dir string) Option {
	return func(r *containerRuntime) { r.sandboxDir = dir }
}

// WithNetwork puts every pod's sandbox on the network n: the sandbox
// gets an address on it (the pod's IP), its containers' hostPorts are
// published on the host, and its /etc/resolv.conf names n's embedded DNS
// server with the pod's search domains and "options ndots:5". The
// Runtime then also implements orchestrate.ServiceProxy on n's Manager:
// Services get virtual IPs and DNS names (under orchestrate.ClusterDomain,
// for which the embedded DNS server becomes authoritative). And it
// implements orchestrate.NodeNetwork with n's subnet and overlay
// (network.Network.SetOverlay): on a node with Options.NodeIP, the pods
// of every node reach each other, and Services lead to the pods of
// every node. Give each node's network a subnet of its own, and
// publish NodePorts on the node's address with the Manager's
// network.Options.NodePortAddrs.
func WithNetwork(n *network.Network) Option {
	return func(r *containerRuntime) { r.net = n }
}

// New returns an orchestrate.Runtime that runs pods with package
// container in rt, whose Images store holds the images pods name.
func New(rt *container.Runtime, opts ...Option) orchestrate.Runtime {
	r := &containerRuntime{rt: rt, sandboxDir: DefaultSandboxDir, sandboxes: map[string]*crSandbox{}, containers: map[string]*crContainer{}}
	for _, o := range opts {
		o(r)
	}
	if r.net != nil {
		r.net.Manager().SetDNSZones(orchestrate.ClusterDomain)
	}
	return r
}

var (
	_ orchestrate.ServiceProxy = (*containerRuntime)(nil)
	_ orchestrate.NodeNetwork  = (*containerRuntime)(nil)
)

type containerRuntime struct {
	rt         *container.Runtime
	sandboxDir string
	sweepOnce  sync.Once        // the sandboxes of dead processes, at the first sandbox
	net        *network.Network // nil: sandboxes have loopback only

	mu         sync.Mutex
	sandboxes  map[string]*crSandbox
	containers map[string]*crContainer
}

type crSandbox struct {
	name string
	dir  string
	net  *namespace.Namespace // kept open for Dial
	ep   *network.Endpoint    // on r.net
	pub  *network.Publication // its hostPorts
}

type crContainer struct {
	c       *container.Container
	started time.Time
	done    chan struct{} // closed when the exit has been recorded
	exit    *container.ExitStatus
}

var sandboxKinds = []namespace.Kind{namespace.Net, namespace.IPC, namespace.UTS}

func (r *containerRuntime) ImageExists(ctx context.Context, image string) (bool, error) {
	if r.rt.Images == nil {
		return false, errors.New("the container runtime has no image store")
	}
	_, err := r.rt.Images.Content.Resolve(ctx, image)
	if errors.Is(err, content.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

func (r *containerRuntime) CreateSandbox(ctx context.Context, cfg orchestrate.SandboxConfig) (id string, err error) {
	if !idPatternOK(cfg.Name) {
		return "", fmt.Errorf("create sandbox: bad name %q", cfg.Name)
	}
	r.mu.Lock()
	if _, ok := r.sandboxes[cfg.Name]; ok {
		r.mu.Unlock()
		return "", fmt.Errorf("create sandbox %s: %w", cfg.Name, orchestrate.ErrExists)
	}
	r.sandboxes[cfg.Name] = nil // reserved
	r.mu.Unlock()
	r.sweepOnce.Do(func() { sweepSandboxes(r.sandboxDir) })
	dir := filepath.Join(r.sandboxDir, cfg.Name)
	defer func() {
		if err != nil {
			releaseSandboxDir(dir)
			r.mu.Lock()
			delete(r.sandboxes, cfg.Name)
			r.mu.Unlock()
		}
	}()
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("create sandbox %s: %w", cfg.Name, err)
	}
	if err := os.WriteFile(filepath.Join(dir, ownerFile), []byte(owner.Self()), 0o600); err != nil {
		return "", fmt.Errorf("create sandbox %s: %w", cfg.Name, err)
	}
	netns, err := newSandboxNamespaces(dir, cfg.Hostname)
	if err != nil {
		return "", fmt.Errorf("create sandbox %s: %w", cfg.Name, err)
	}
	sb := &crSandbox{name: cfg.Name, dir: dir, net: netns}
	if r.net != nil {
		if err := r.connect(ctx, sb, cfg); err != nil {
			sb.disconnect()
			netns.Close()
			return "", fmt.Errorf("create sandbox %s: %w", cfg.Name, err)
		}
	}
	r.mu.Lock()
	r.sandboxes[cfg.Name] = sb
	r.mu.Unlock()
	return cfg.Name, nil
}

// connect attaches a new sandbox to r.net, publishes its hostPorts and
// writes its resolv.conf.
func (r *containerRuntime) connect(ctx context.Context, sb *crSandbox, cfg orchestrate.SandboxConfig) error {
	var err error
	if sb.ep, err = r.net.Attach(ctx, sb.net, network.AttachOptions{Name: cfg.Name}); err != nil {
		return err
	}
	var ports []network.PortMapping
	for _, p := range cfg.Ports {
		if p.HostPort == 0 {
			continue
		}
		proto := "tcp"
		if p.Protocol == orchestrate.ProtocolUDP {
			proto = "udp"
		}
		ports = append(ports, network.PortMapping{HostPort: uint16(p.HostPort), ContainerPort: uint16(p.ContainerPort), Protocol: proto})
	}
	if len(ports) > 0 {
		if sb.pub, err = sb.ep.Publish(ctx, ports, nil); err != nil {
			return err
		}
	}
	resolv := "nameserver " + network.ResolverAddr.Addr().String() + "\n"
	if len(cfg.DNSSearch) > 0 {
		resolv += "search " + strings.Join(cfg.DNSSearch, " ") + "\n"
	}
	resolv += "options ndots:5\n"
	return os.WriteFile(filepath.Join(sb.dir, "resolv.conf"), []byte(resolv), 0o644)
}

// disconnect unpublishes a sandbox's ports and detaches it.
func (sb *crSandbox) disconnect() error {
	var errs []error
	if sb.pub != nil {
		errs = append(errs, sb.pub.Close())
		sb.pub = nil
	}
	if sb.ep != nil {
		errs = append(errs, sb.ep.Detach())
		sb.ep = nil
	}
	return errors.Join(errs...)
}

func (r *containerRuntime) SandboxStatus(ctx context.Context, id string) (orchestrate.SandboxInfo, error) {
	sb, err := r.sandbox(id)
	if err != nil {
		return orchestrate.SandboxInfo{}, err
	}
	var info orchestrate.SandboxInfo
	if sb.ep != nil {
		info.IPs = append(info.IPs, sb.ep.IP())
		if sb.ep.IP6().IsValid() {
			info.IPs = append(info.IPs, sb.ep.IP6())
		}
	}
	return info, nil
}

// SetService implements orchestrate.ServiceProxy on the network's
// Manager.
func (r *containerRuntime) SetService(ctx context.Context, svc orchestrate.ProxyService) error {
	if r.net == nil {
		return nil
	}
	cfg := network.ServiceConfig{Name: svc.Name, VIP: svc.ClusterIP, AffinityTimeout: svc.AffinityTimeout}
	if svc.ClientIPAffinity {
		cfg.Affinity = network.AffinityClientIP
	}
	for _, p := range svc.Ports {
		proto := "tcp"
		if p.Protocol == orchestrate.ProtocolUDP {
			proto = "udp"
		}
		cfg.Ports = append(cfg.Ports, network.ServicePort{Name: p.Name, Protocol: proto, Port: p.Port, NodePort: p.NodePort, Backends: p.Backends})
	}
	return r.net.Manager().SetService(ctx, cfg)
}

// RemoveService implements orchestrate.ServiceProxy.
func (r *containerRuntime) RemoveService(ctx context.Context, name string) error {
	if r.net == nil {
		return nil
	}
	if err := r.net.Manager().RemoveService(ctx, name); err != nil && !errors.Is(err, network.ErrNotFound) {
		return err
	}
	return nil
}

// SetDNS implements orchestrate.ServiceProxy.
func (r *containerRuntime) SetDNS(name string, addrs []netip.Addr, cname string) {
	if r.net != nil {
		r.net.Manager().SetDNS(name, network.DNSRecord{Addrs: addrs, CNAME: cname})
	}
}

// PodCIDR implements orchestrate.NodeNetwork: the network's subnet.
func (r *containerRuntime) PodCIDR() netip.Prefix {
	if r.net == nil {
		return netip.Prefix{}
	}
	return r.net.Config().Subnet
}

// SetNodeRoutes implements orchestrate.NodeNetwork with the network's
// overlay (network.Network.SetOverlay, on the default port and VNI):
// each other node is a peer.
func (r *containerRuntime) SetNodeRoutes(ctx context.Context, local netip.Addr, routes []orchestrate.NodeRoute) error {
	if r.net == nil {
		return nil
	}
	cfg := network.OverlayConfig{Local: local}
	for _, rt := range routes {
		cfg.Peers = append(cfg.Peers, network.Peer{Name: rt.Node, Addr: rt.NodeIP, Subnet: rt.PodCIDR})
	}
	return r.net.SetOverlay(ctx, cfg)
}

// newSandboxNamespaces makes new network, IPC and UTS namespaces, with
// the hostname set and lo up in them, persists them at
// dir/{net,ipc,uts}, and returns the network namespace's handle (for
// Dial); the others are closed.
func newSandboxNamespaces(dir, hostname string) (*namespace.Namespace, error) {
	nss, err := namespace.New(func() error {
		if err := unix.Sethostname([]byte(hostname)); err != nil {
			return fmt.Errorf("sethostname: %w", err)
		}
		return namespace.LoopbackUp()
	}, sandboxKinds...)
	if err != nil {
		return nil, err
	}
	var netns *namespace.Namespace
	for i, k := range sandboxKinds {
		if err == nil {
			err = nss[i].Persist(filepath.Join(dir, k.String()))
		}
		if k == namespace.Net && err == nil {
			netns = nss[i]
			continue
		}
		nss[i].Close()
	}
	if err != nil && netns != nil {
		netns.Close()
		netns = nil
	}
	return netns, err
}

// ownerFile, in a sandbox's directory, holds the owner token
// (internal/owner: PID and start time) of the process that made it, so
// that another can remove it once that process is gone.
const ownerFile = "owner"

// sweepSandboxes removes the sandboxes under dir whose owner died
// without removing them (killed with -9, say): their namespace mounts
// would otherwise stay until reboot. A directory without an owner file
// is left alone (another process may be making it).
func sweepSandboxes(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		sb := filepath.Join(dir, e.Name())
		b, err := os.ReadFile(filepath.Join(sb, ownerFile))
		if err != nil || owner.Alive(string(b)) {
			continue
		}
		releaseSandboxDir(sb)
	}
}

// releaseSandboxDir unmounts and removes a sandbox's namespace files
// and its directory.
func releaseSandboxDir(dir string) error {
	var errs []error
	for _, k := range sandboxKinds {
		if err := namespace.Release(filepath.Join(dir, k.String())); err != nil && !errors.Is(err, namespace.ErrNotNamespace) {
			errs = append(errs, err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

func (r *containerRuntime) RemoveSandbox(ctx context.Context, id string) error {
	r.mu.Lock()
	sb := r.sandboxes[id]
	r.mu.Unlock()
	if sb == nil {
		return nil
	}
	if err := sb.disconnect(); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", id, err)
	}
	sb.net.Close()
	if err := releaseSandboxDir(sb.dir); err != nil {
		return fmt.Errorf("remove sandbox %s: %w", id, err)
	}
	r.mu.Lock()
	delete(r.sandboxes, id)
	r.mu.Unlock()
	return nil
}

func (r *containerRuntime) sandbox(id string) (*crSandbox, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	sb := r.sandboxes[id]
	if sb == nil {
		return nil, fmt.Errorf("sandbox %s: %w", id, orchestrate.ErrNotFound)
	}
	return sb, nil
}

func (r *containerRuntime) StartContainer(ctx context.Context, sandboxID string, cfg orchestrate.ContainerConfig) (string, error) {
	sb, err := r.sandbox(sandboxID)
	if err != nil {
		return "", err
	}
	id := sandboxID + "_" + cfg.Name
	if !idPatternOK(id) {
		id = newToken() + "_" + cfg.Name
		if len(id) > 128 {
			id = id[:128]
		}
	}
	spec := &container.Spec{
		Image:      cfg.Image,
		Entrypoint: cfg.Command,
		Process: container.Process{
			Args: cfg.Args,
			Env:  cfg.Env,
			Dir:  cfg.WorkingDir,
			User: cfg.User,
		},
		Resources: cfg.Resources,
		Namespaces: map[namespace.Kind]container.Namespace{
			namespace.Net: {Mode: container.NamespaceJoin, Path: filepath.Join(sb.dir, "net")},
			namespace.IPC: {Mode: container.NamespaceJoin, Path: filepath.Join(sb.dir, "ipc")},
			namespace.UTS: {Mode: container.NamespaceJoin, Path: filepath.Join(sb.dir, "uts")},
		},
		StopTimeout: cfg.StopGrace,
		LogPath:     cfg.LogPath,
	}
	if sb.ep != nil {
		spec.Mounts = append(spec.Mounts, container.Mount{Type: container.Bind, Source: filepath.Join(sb.dir, "resolv.conf"), Target: "/etc/resolv.conf", ReadOnly: true})
	}
	for _, m := range cfg.Mounts {
		spec.Mounts = append(spec.Mounts, container.Mount{Type: container.Bind, Source: m.HostPath, Target: m.ContainerPath, ReadOnly: m.ReadOnly})
	}
	c, err := r.rt.Create(ctx, id, spec)
	if err != nil {
		return "", err
	}
	if err := c.Start(ctx); err != nil {
		c.Delete(context.Background())
		return "", err
	}
	cc := &crContainer{c: c, started: time.Now(), done: make(chan struct{})}
	r.mu.Lock()
	r.containers[id] = cc
	r.mu.Unlock()
	go func() {
		st, err := c.Wait(context.Background())
		if err != nil || st == nil {
			st = &container.ExitStatus{Code: 137, ExitedAt: time.Now()}
		}
		cc.exit = st
		close(cc.done)
		if cfg.OnExit != nil {
			cfg.OnExit()
		}
	}()
	return id, nil
}

func (r *containerRuntime) container(id string) (*crContainer, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	cc := r.containers[id]
	if cc == nil {
		return nil, fmt.Errorf("container %s: %w", id, orchestrate.ErrNotFound)
	}
	return cc, nil
}

func (r *containerRuntime) StopContainer(ctx context.Context, id string, grace time.Duration) error {
	cc, err := r.container(id)
	if err != nil {
		return err
	}
	if err := cc.c.Stop(ctx, grace); err != nil && !errors.Is(err, container.ErrDeleted) {
		return err
	}
	select {
	case <-cc.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *containerRuntime) RemoveContainer(ctx context.Context, id string) error {
	cc, err := r.container(id)
	if errors.Is(err, orchestrate.ErrNotFound) {
		return nil
	}
	if err := cc.c.Delete(ctx); err != nil && !errors.Is(err, container.ErrDeleted) {
		return err
	}
	select { // the exit is recorded (and OnExit called) before it is forgotten
	case <-cc.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	r.mu.Lock()
	delete(r.containers, id)
	r.mu.Unlock()
	return nil
}

func (r *containerRuntime) ContainerStatus(ctx context.Context, id string) (orchestrate.ContainerInfo, error) {
	cc, err := r.container(id)
	if err != nil {
		return orchestrate.ContainerInfo{}, err
	}
	select {
	case <-cc.done:
		return orchestrate.ContainerInfo{
			ExitCode:   cc.exit.Code,
			OOMKilled:  cc.exit.OOMKilled,
			StartedAt:  cc.started,
			FinishedAt: cc.exit.ExitedAt,
		}, nil
	default:
		return orchestrate.ContainerInfo{Running: true, StartedAt: cc.started}, nil
	}
}

// maxExecOutput is how much of an exec's output is kept.
const maxExecOutput = 4096

func (r *containerRuntime) Exec(ctx context.Context, id string, cmd []string) (int, []byte, error) {
	cc, err := r.container(id)
	if err != nil {
		return 0, nil, err
	}
	out := &limitedBuffer{max: maxExecOutput}
	p, err := cc.c.Exec(ctx, container.Process{Args: cmd, Stdout: out, Stderr: out})
	if err != nil {
		return 0, nil, err
	}
	st, err := p.Wait(ctx)
	if err != nil {
		p.Signal(unix.SIGKILL)
		return 0, out.bytes(), fmt.Errorf("exec %s: %w", cmd[0], err)
	}
	return st.Code, out.bytes(), nil
}

func (r *containerRuntime) Dial(ctx context.Context, sandboxID, network, address string) (net.Conn, error) {
	sb, err := r.sandbox(sandboxID)
	if err != nil {
		return nil, err
	}
	// The socket is made inside the namespace; connecting and using it
	// work from any thread.
	var conn net.Conn
	var d net.Dialer
	ctxDial, cancel := context.WithCancel(ctx)
	defer cancel()
	err = namespace.Do(func() error {
		var err error
		conn, err = d.DialContext(ctxDial, network, address)
		return err
	}, sb.net)
	return conn, err
}

// limitedBuffer keeps the first max bytes written to it.
type limitedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

func (b *limitedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if room := b.max - b.buf.Len(); room > 0 {
		b.buf.Write(p[:min(len(p), room)])
	}
	return len(p), nil
}

func (b *limitedBuffer) bytes() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	return bytes.Clone(b.buf.Bytes())
}

// idPatternOK reports whether s is a valid container ID (and sandbox
// directory name): 1 to 128 of [a-zA-Z0-9_.-], starting alphanumeric.
func idPatternOK(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case (c == '_' || c == '.' || c == '-') && i > 0:
		default:
			return false
		}
	}
	return true
}

// newToken returns 8 random bytes in hex.
func newToken() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}
