package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/berthlabs/berth/internal/owner"
	"github.com/berthlabs/berth/namespace"
	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// DefaultCNIPluginDirs are where CNI plugins are looked for when
// CNIOptions names none: Debian's containernetworking-plugins, then the
// upstream default.
var DefaultCNIPluginDirs = []string{"/usr/lib/cni", "/opt/cni/bin"}

// DefaultCNICacheDir is libcni's cache of results (what DEL needs),
// shared with other CNI users of the machine.
const DefaultCNICacheDir = "/var/lib/cni"

// defaultHostLocalDir is where the host-local IPAM plugin keeps its
// leases unless its configuration names a dataDir.
const defaultHostLocalDir = "/var/lib/cni/networks"

// cniIDPrefix starts the CNI container IDs berth uses:
// berth-PID-STARTTIME-N, so that a sweep knows whether the process that
// made an attachment still lives.
const cniIDPrefix = "berth-"

// CNIOptions configure a CNI network.
type CNIOptions struct {
	// PluginDirs are searched for plugin binaries; nil means
	// DefaultCNIPluginDirs.
	PluginDirs []string
	// CacheDir is libcni's cache; empty means DefaultCNICacheDir.
	CacheDir string
}

// A CNI network runs the plugins of a CNI network configuration list
// (a .conflist, as in /etc/cni/net.d) through libcni: ADD on attach
// (its result becomes the container's addresses, routes and DNS), CHECK,
// and DEL on detach. It is safe for concurrent use.
type CNI struct {
	list     *libcni.NetworkConfigList
	cni      *libcni.CNIConfig
	cacheDir string
}

// LoadCNI parses a network configuration list. It fails with
// ErrInvalidConfig for a list libcni cannot parse or that names no
// plugin, and when a plugin binary is missing. The first LoadCNI of a
// process for a cache directory also runs SweepCNI on it.
func LoadCNI(conflist []byte, opts CNIOptions) (*CNI, error) {
	list, err := libcni.ConfListFromBytes(conflist)
	if err != nil {
		return nil, fmt.Errorf("%w: CNI configuration: %v", ErrInvalidConfig, err)
	}
	if len(list.Plugins) == 0 {
		return nil, fmt.Errorf("%w: CNI configuration %s has no plugins", ErrInvalidConfig, list.Name)
	}
	if opts.PluginDirs == nil {
		opts.PluginDirs = DefaultCNIPluginDirs
	}
	if opts.CacheDir == "" {
		opts.CacheDir = DefaultCNICacheDir
	}
	for _, p := range list.Plugins {
		if !pluginExists(opts.PluginDirs, p.Network.Type) {
			return nil, fmt.Errorf("%w: CNI configuration %s: plugin %q not found in %s", ErrInvalidConfig, list.Name, p.Network.Type, strings.Join(opts.PluginDirs, ":"))
		}
	}
	// What berth processes that died left in this cache goes the first
	// time this process uses it.
	if _, loaded := swept.LoadOrStore(opts.CacheDir, true); !loaded {
		SweepCNI(context.Background(), opts.CacheDir, opts.PluginDirs)
	}
	return &CNI{list: list, cni: libcni.NewCNIConfigWithCacheDir(opts.PluginDirs, opts.CacheDir, nil), cacheDir: opts.CacheDir}, nil
}

func pluginExists(dirs []string, name string) bool {
	if strings.ContainsRune(name, '/') {
		return false
	}
	for _, d := range dirs {
		if st, err := os.Stat(filepath.Join(d, name)); err == nil && st.Mode().IsRegular() {
			return true
		}
	}
	return false
}

// Name returns the network's name (the conflist's "name").
func (c *CNI) Name() string { return c.list.Name }

// A CNIAttachment is one namespace's interface on a CNI network.
type CNIAttachment struct {
	c      *CNI
	ns     *namespace.Namespace // a handle of its own: rt.NetNS names its fd
	rt     *libcni.RuntimeConf
	result *types100.Result
	once   sync.Once
	err    error
}

var cniSeq atomic.Uint64

// swept records the cache directories this process has swept.
var swept sync.Map

// ownerAlive reports whether the process that made CNI container ID id
// is alive; ok is false for IDs berth did not make.
func ownerAlive(id string) (alive, ok bool) {
	rest, ok := strings.CutPrefix(id, cniIDPrefix)
	if !ok {
		return false, false
	}
	tok, n, ok := owner.Split(rest)
	if !ok || n == "" {
		return false, false
	}
	return owner.Alive(tok), true
}

// Attach runs ADD for the namespace ns, with ifname its interface there
// ("eth0" when empty). ports, if any, go to the plugins that declare the
// portMappings capability (portmap); it is an error when none does.
// A failure runs DEL, so nothing is left half-made.
func (c *CNI) Attach(ctx context.Context, ns *namespace.Namespace, ifname string, ports []PortMapping) (*CNIAttachment, error) {
	if ifname == "" {
		ifname = "eth0"
	}
	// The plugins enter the namespace by a path: that of a descriptor the
	// attachment keeps open until Detach, so that CHECK and DEL find the
	// same namespace even after the caller's handle is closed and its
	// number reused.
	own, err := namespace.Open(fmt.Sprintf("/proc/self/fd/%d", ns.Fd()))
	if err != nil {
		return nil, fmt.Errorf("CNI network %s: %w", c.list.Name, err)
	}
	att, err := c.attach(ctx, own, ifname, ports)
	if err != nil {
		own.Close()
		return nil, err
	}
	return att, nil
}

func (c *CNI) attach(ctx context.Context, ns *namespace.Namespace, ifname string, ports []PortMapping) (*CNIAttachment, error) {
	rt := &libcni.RuntimeConf{
		ContainerID: cniIDPrefix + owner.Self() + "-" + strconv.FormatUint(cniSeq.Add(1), 10),
		NetNS:       fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), ns.Fd()),
		IfName:      ifname,
	}
	if len(ports) > 0 {
		if !c.hasCapability("portMappings") {
			return nil, fmt.Errorf("%w: CNI network %s: published ports need a plugin with the portMappings capability (portmap)", ErrInvalidPort, c.list.Name)
		}
		var pm []map[string]any
		for _, p := range ports {
			if err := p.Validate(); err != nil {
				return nil, err
			}
			if p.HostPort == 0 || p.HostPortEnd != 0 {
				return nil, fmt.Errorf("%w: CNI network %s: %s: portmap needs a fixed host port", ErrInvalidPort, c.list.Name, p)
			}
			m := map[string]any{"hostPort": p.HostPort, "containerPort": p.ContainerPort, "protocol": p.proto()}
			if p.HostIP.IsValid() {
				m["hostIP"] = p.HostIP.String()
			}
			pm = append(pm, m)
		}
		rt.CapabilityArgs = map[string]any{"portMappings": pm}
	}
	res, err := c.cni.AddNetworkList(ctx, c.list, rt)
	if err != nil {
		derr := c.cni.DelNetworkList(context.WithoutCancel(ctx), c.list, rt)
		if derr != nil {
			err = errors.Join(err, fmt.Errorf("roll back: %w", derr))
		}
		return nil, fmt.Errorf("CNI network %s: ADD: %w", c.list.Name, err)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		c.cni.DelNetworkList(context.WithoutCancel(ctx), c.list, rt)
		return nil, fmt.Errorf("CNI network %s: result: %w", c.list.Name, err)
	}
	return &CNIAttachment{c: c, ns: ns, rt: rt, result: r}, nil
}

func (c *CNI) hasCapability(name string) bool {
	for _, p := range c.list.Plugins {
		if p.Network.Capabilities[name] {
			return true
		}
	}
	return false
}

// ContainerID returns the CNI container ID the attachment was made with.
func (a *CNIAttachment) ContainerID() string { return a.rt.ContainerID }

// IPs returns the addresses the plugins gave, with their prefix lengths.
func (a *CNIAttachment) IPs() []netip.Prefix {
	var out []netip.Prefix
	for _, ip := range a.result.IPs {
		if p, ok := prefixOf(&ip.Address); ok {
			addr, _ := netip.AddrFromSlice(ip.Address.IP)
			out = append(out, netip.PrefixFrom(addr.Unmap(), p.Bits()))
		}
	}
	return out
}

// DNS returns the DNS settings the plugins returned (often none).
func (a *CNIAttachment) DNS() types.DNS { return a.result.DNS }

// Result returns the raw CNI result, as JSON.
func (a *CNIAttachment) Result() []byte {
	b, _ := json.Marshal(a.result)
	return b
}

// Check runs CHECK: each plugin verifies that what it made is still
// there.
func (a *CNIAttachment) Check(ctx context.Context) error {
	if err := a.c.cni.CheckNetworkList(ctx, a.c.list, a.rt); err != nil {
		return fmt.Errorf("CNI network %s: CHECK: %w", a.c.list.Name, err)
	}
	return nil
}

// Detach runs DEL: the plugins remove what they made (the lease, the
// port mappings, the veth). Detaching twice runs DEL once.
func (a *CNIAttachment) Detach(ctx context.Context) error {
	a.once.Do(func() {
		if err := a.c.cni.DelNetworkList(ctx, a.c.list, a.rt); err != nil {
			a.err = fmt.Errorf("CNI network %s: DEL: %w", a.c.list.Name, err)
		}
		a.ns.Close()
	})
	return a.err
}

// SweepCNI cleans up after berth processes that died with CNI
// attachments: for each of libcni's cached attachments in cacheDir
// (DefaultCNICacheDir when empty) that a dead berth process made, it runs
// DEL with the cached configuration (the plugins then release leases and
// port mappings), and it removes the host-local leases of dead berth
// processes that no cache entry covers (a process killed between the
// plugin's ADD and libcni's cache write). Attachments of live processes
// and of other tools are left alone. It returns how many attachments and
// leases it removed.
func SweepCNI(ctx context.Context, cacheDir string, pluginDirs []string) (int, error) {
	if cacheDir == "" {
		cacheDir = DefaultCNICacheDir
	}
	if pluginDirs == nil {
		pluginDirs = DefaultCNIPluginDirs
	}
	cni := libcni.NewCNIConfigWithCacheDir(pluginDirs, cacheDir, nil)
	atts, err := cni.GetCachedAttachments("")
	if err != nil {
		return 0, fmt.Errorf("CNI sweep: %w", err)
	}
	removed := 0
	var errs []error
	dataDirs := map[string]bool{}
	for _, a := range atts {
		alive, ours := ownerAlive(a.ContainerID)
		if !ours || alive {
			continue
		}
		list, err := libcni.ConfListFromBytes(a.Config)
		if err != nil {
			errs = append(errs, fmt.Errorf("CNI sweep: cached configuration of %s: %w", a.ContainerID, err))
			continue
		}
		for d := range hostLocalDirs(list) {
			dataDirs[d] = true
		}
		rt := &libcni.RuntimeConf{ContainerID: a.ContainerID, IfName: a.IfName, Args: a.CniArgs, CapabilityArgs: a.CapabilityArgs}
		if err := cni.DelNetworkList(ctx, list, rt); err != nil {
			errs = append(errs, fmt.Errorf("CNI sweep: DEL %s on %s: %w", a.ContainerID, a.Network, err))
			continue
		}
		removed++
	}
	dataDirs[defaultHostLocalDir] = true
	for d := range dataDirs {
		n, err := sweepLeases(d)
		removed += n
		if err != nil {
			errs = append(errs, err)
		}
	}
	return removed, errors.Join(errs...)
}

// hostLocalDirs returns the lease directories of list's host-local IPAM
// plugins.
func hostLocalDirs(list *libcni.NetworkConfigList) map[string]bool {
	out := map[string]bool{}
	for _, p := range list.Plugins {
		var conf struct {
			IPAM struct {
				Type    string `json:"type"`
				DataDir string `json:"dataDir"`
			} `json:"ipam"`
		}
		if json.Unmarshal(p.Bytes, &conf) != nil || conf.IPAM.Type != "host-local" {
			continue
		}
		d := conf.IPAM.DataDir
		if d == "" {
			d = defaultHostLocalDir
		}
		out[d] = true
	}
	return out
}

// sweepLeases removes, in each network directory under dir, the
// host-local lease files (named for the address, holding the container
// ID and interface) of dead berth processes.
func sweepLeases(dir string) (int, error) {
	nets, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("CNI sweep: %w", err)
	}
	n := 0
	for _, nd := range nets {
		if !nd.IsDir() {
			continue
		}
		leases, err := os.ReadDir(filepath.Join(dir, nd.Name()))
		if err != nil {
			continue
		}
		for _, l := range leases {
			if _, err := netip.ParseAddr(l.Name()); err != nil {
				continue // last_reserved_ip.0, lock
			}
			p := filepath.Join(dir, nd.Name(), l.Name())
			b, err := os.ReadFile(p)
			if err != nil {
				continue
			}
			id, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
			if alive, ours := ownerAlive(strings.TrimSpace(id)); ours && !alive {
				if os.Remove(p) == nil {
					n++
				}
			}
		}
	}
	return n, nil
}
