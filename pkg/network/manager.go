package network

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/version"
)

// DefaultTimeout bounds one CNI ADD or DEL when Options.Timeout is unset;
// it is kubelet's runtime request timeout, the longest a caller waits.
const DefaultTimeout = 2 * time.Minute

// ifName is the pod's interface, as every Kubernetes runtime names it.
const ifName = "eth0"

// ErrNotReady is returned by Setup when no usable network config is loaded.
var ErrNotReady = errors.New("network plugin not ready")

// Options configure a Manager.
type Options struct {
	ConfDir  string        // e.g. /etc/cni/net.d
	BinDirs  []string      // e.g. /opt/cni/bin, /usr/lib/cni
	CacheDir string        // libcni cache dir (results cached for DEL), e.g. /var/lib/pod-shim/cni
	Timeout  time.Duration // per ADD/DEL call; DefaultTimeout when zero
	Logger   *slog.Logger
	// ObserveCNI, when set, is told each ADD and DEL ("add", "del") with
	// its duration and error, for the daemon's metrics.
	ObserveCNI func(op string, d time.Duration, err error)
}

// PortMapping is a host port forwarded to the pod.
type PortMapping struct {
	HostPort, ContainerPort int32
	Protocol                string // "tcp", "udp" or "sctp"; "" means tcp
	HostIP                  string
}

// Pod is what the network needs to know about a pod sandbox.
type Pod struct {
	ID, Name, Namespace, UID string            // sandbox id and Kubernetes metadata, passed as CNI_ARGS
	NetNS                    string            // path of the pinned netns; may no longer exist at Teardown
	PortMappings             []PortMapping     // capability "portMappings"
	Annotations              map[string]string // capabilities "bandwidth" and "io.kubernetes.cri.pod-annotations"
	CgroupParent             string            // capability "cgroupPath"
	DNS                      *DNS              // capability "dns"; nil when the pod has no DNS config
}

// DNS is the pod's resolver config, for plugins that set up DNS themselves
// (the "dns" capability of the CNI conventions).
type DNS struct {
	Servers  []string `json:"servers,omitempty"`
	Searches []string `json:"searches,omitempty"`
	Options  []string `json:"options,omitempty"`
}

// Result is the outcome of Setup, to be stored durably by the caller.
type Result struct {
	IPs       []string        // primary first (IPv4 first when dual-stack), no prefix length
	Interface string          // "eth0"
	Network   string          // name of the network config used
	Raw       json.RawMessage // the CNI result as the plugins returned it
}

// Manager attaches pods to the default CNI network. It is safe for
// concurrent use: pods are set up in parallel, and only the config reload
// and the per-pod lock table are shared.
type Manager struct {
	opts Options
	log  *slog.Logger
	cni  *libcni.CNIConfig

	confMu    sync.Mutex
	conf      *confSet
	checkedAt time.Time
	podCIDRs  []string // from UpdateRuntimeConfig, for configs that ask for it

	health pluginHealth // STATUS of CNI 1.1 plugins, for Status

	pods podLocks
}

// New makes a Manager. A missing or empty conf dir is not an error: Status
// reports it and a config dropped in later is picked up.
func New(opts Options) (*Manager, error) {
	if opts.ConfDir == "" {
		return nil, errors.New("network: ConfDir is required")
	}
	if len(opts.BinDirs) == 0 {
		return nil, errors.New("network: BinDirs is required")
	}
	if opts.CacheDir == "" {
		// libcni would fall back to /var/lib/cni, shared with other runtimes.
		return nil, errors.New("network: CacheDir is required")
	}
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultTimeout
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Manager{
		opts: opts,
		log:  log.With("component", "network"),
	}
	// An explicit exec: with nil, libcni fills it in lazily on each call,
	// a data race when pods are set up concurrently.
	m.cni = libcni.NewCNIConfigWithCacheDir(opts.BinDirs, opts.CacheDir, &invoke.DefaultExec{
		RawExec:       &invoke.RawExec{Stderr: pluginStderr{m.log}},
		PluginDecoder: version.PluginDecoder{},
	})
	m.config()
	return m, nil
}

// config returns the current conf set, reloading it when the conf dir
// changed. At most one look at the dir per confRecheck, so Status and the
// Setup hot path stay cheap.
func (m *Manager) config() *confSet {
	m.confMu.Lock()
	defer m.confMu.Unlock()
	now := time.Now()
	if m.conf != nil && now.Sub(m.checkedAt) < confRecheck {
		return m.conf
	}
	m.checkedAt = now
	stamp, err := confStamp(m.opts.ConfDir)
	if err != nil {
		m.conf = &confSet{problem: err.Error(), networks: map[string]*libcni.NetworkConfigList{}}
		return m.conf
	}
	// The pod CIDR is part of what a config means, so a new one reloads.
	stamp += "cidr:" + strings.Join(m.podCIDRs, ",")
	if m.conf != nil && m.conf.stamp == stamp {
		return m.conf
	}
	m.conf = loadConfDir(m.opts.ConfDir, stamp, m.podCIDRs)
	if m.conf.def != nil {
		m.log.Info("loaded network config", "network", m.conf.def.Name, "file", m.conf.defFile)
	} else {
		m.log.Warn("no usable network config", "reason", m.conf.problem)
	}
	return m.conf
}

// SetPodCIDR records the node's pod CIDRs (the kubelet's UpdateRuntimeConfig)
// for network configs that name the usePodCidr placeholder. It reports
// whether the default network uses them, so the caller can say when the
// CIDR changes nothing; the CNI config decides pod IPs either way.
func (m *Manager) SetPodCIDR(cidrs []string) (used bool) {
	m.confMu.Lock()
	m.podCIDRs = slices.Clone(cidrs)
	m.conf = nil // reload now: the CIDR may make a waiting config usable
	m.confMu.Unlock()
	cs := m.config()
	if cs.def == nil {
		return false
	}
	b := cs.rawDef
	return bytes.Contains(b, []byte(podCIDRPlaceholder)) || bytes.Contains(b, []byte(podCIDRv6Placeholder))
}

// Setup attaches the pod to the default network (CNI ADD). On failure,
// including ctx expiring, it runs DEL before returning so no address or
// interface is left allocated.
func (m *Manager) Setup(ctx context.Context, pod Pod) (*Result, error) {
	if pod.ID == "" || pod.NetNS == "" {
		return nil, fmt.Errorf("%w: pod id and netns are required", ErrInvalidPod)
	}
	caps, err := capabilityArgs(pod)
	if err != nil {
		return nil, err
	}
	cs := m.config()
	if cs.def == nil {
		return nil, fmt.Errorf("%w: %s", ErrNotReady, cs.problem)
	}
	list := cs.def
	rt := m.runtimeConf(pod, pod.NetNS, caps)
	log := m.log.With("pod", pod.Namespace+"/"+pod.Name, "sandbox", pod.ID, "network", list.Name)

	unlock := m.pods.lock(pod.ID)
	defer unlock()

	start := time.Now()
	addCtx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	res, err := m.cni.AddNetworkList(addCtx, list, rt)
	m.observe("add", start, err)
	if err != nil && addCtx.Err() != nil {
		// libcni reports only "signal: killed"; say why, and let callers
		// map it to DeadlineExceeded or Canceled.
		err = fmt.Errorf("%w (cni timeout %v): %w", context.Cause(addCtx), m.opts.Timeout, err)
	}
	cancel()
	if err != nil {
		// The caller's ctx may be what failed, so DEL gets its own.
		delCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.opts.Timeout)
		defer cancel()
		if derr := m.del(delCtx, list, rt); derr != nil {
			log.Error("cleanup after failed CNI ADD", "error", derr)
		}
		return nil, fmt.Errorf("cni add to network %q: %w", list.Name, err)
	}
	out, err := newResult(list.Name, res)
	if err != nil {
		delCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), m.opts.Timeout)
		defer cancel()
		if derr := m.del(delCtx, list, rt); derr != nil {
			log.Error("cleanup after unusable CNI result", "error", derr)
		}
		return nil, fmt.Errorf("cni add to network %q: %w", list.Name, err)
	}
	log.Info("pod network set up", "ips", out.IPs, "duration", time.Since(start))
	return out, nil
}

// Teardown detaches the pod (CNI DEL) with the network and arguments ADD
// used. It works when the netns is gone, after a daemon restart (from
// prev), and when repeated.
func (m *Manager) Teardown(ctx context.Context, pod Pod, prev *Result) error {
	if pod.ID == "" {
		return fmt.Errorf("%w: pod id is required", ErrInvalidPod)
	}
	caps, err := capabilityArgs(pod)
	if err != nil {
		// The pod was admitted with these values, so this can only be a
		// caller bug; tearing down without them still frees the address.
		m.log.Warn("ignoring capability args on teardown", "sandbox", pod.ID, "error", err)
		caps = nil
	}
	cs := m.config()
	list := cs.def
	if prev != nil && prev.Network != "" {
		if l, ok := cs.networks[prev.Network]; ok {
			list = l
		} else if l := m.cachedConfig(prev.Network, pod.ID); l != nil {
			// The config was removed since ADD; libcni kept the one used.
			list = l
		}
	}
	if list == nil {
		return fmt.Errorf("%w: %s", ErrNotReady, cs.problem)
	}
	netns := pod.NetNS
	if !isNetNS(netns) {
		netns = ""
	}
	rt := m.runtimeConf(pod, netns, caps)

	unlock := m.pods.lock(pod.ID)
	defer unlock()

	if prev != nil && len(prev.Raw) > 0 {
		if err := m.seedCache(list, rt, prev.Raw); err != nil {
			m.log.Warn("cannot restore cni cache for DEL", "sandbox", pod.ID, "error", err)
		}
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	defer cancel()
	if err := m.del(ctx, list, rt); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (cni timeout %v): %w", context.Cause(ctx), m.opts.Timeout, err)
		}
		return fmt.Errorf("cni del from network %q: %w", list.Name, err)
	}
	m.log.Info("pod network torn down", "sandbox", pod.ID, "network", list.Name, "netns", netns, "duration", time.Since(start))
	return nil
}

// Check asks the plugins whether the pod's attachment is still what ADD
// made (CNI CHECK): the interface, its addresses and routes, the plugins'
// own host state. It checks against the config ADD used, as libcni cached
// it, or the stored result's network. A config older than CNI 0.4.0 or one
// that sets disableCheck has no CHECK, and passes.
func (m *Manager) Check(ctx context.Context, pod Pod, prev *Result) error {
	if pod.ID == "" || pod.NetNS == "" {
		return fmt.Errorf("%w: pod id and netns are required", ErrInvalidPod)
	}
	if !isNetNS(pod.NetNS) {
		return fmt.Errorf("cni check: network namespace %s is gone", pod.NetNS)
	}
	caps, err := capabilityArgs(pod)
	if err != nil {
		return err
	}
	var list *libcni.NetworkConfigList
	if prev != nil && prev.Network != "" {
		list = m.cachedConfig(prev.Network, pod.ID)
		if list == nil {
			list = m.config().networks[prev.Network]
		}
	}
	if list == nil {
		if list = m.config().def; list == nil {
			return fmt.Errorf("%w: no network config to check against", ErrNotReady)
		}
	}
	rt := m.runtimeConf(pod, pod.NetNS, caps)

	unlock := m.pods.lock(pod.ID)
	defer unlock()

	if prev != nil && len(prev.Raw) > 0 {
		// CHECK hands plugins prevResult from libcni's cache, which a
		// lost cache dir would otherwise turn into a failure.
		if err := m.seedCache(list, rt, prev.Raw); err != nil {
			m.log.Warn("cannot restore cni cache for CHECK", "sandbox", pod.ID, "error", err)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, m.opts.Timeout)
	defer cancel()
	err = m.cni.CheckNetworkList(ctx, list, rt)
	if errors.Is(err, libcni.ErrorCheckNotSupp) {
		return nil
	}
	if err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (cni timeout %v): %w", context.Cause(ctx), m.opts.Timeout, err)
		}
		return fmt.Errorf("cni check of network %q: %w", list.Name, err)
	}
	return nil
}

// del runs DEL over the whole list. If a plugin binary has gone missing,
// DEL of the list stops there and every plugin before it in the chain
// (bridge, IPAM) would leak, so the plugins still present are run anyway;
// the error is still returned so the caller retries.
func (m *Manager) del(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (err error) {
	start := time.Now()
	defer func() { m.observe("del", start, err) }()
	err = m.cni.DelNetworkList(ctx, list, rt)
	if err == nil {
		return nil
	}
	present := *list
	present.Plugins = nil
	for _, p := range list.Plugins {
		if _, ferr := invoke.FindInPath(p.Network.Type, m.opts.BinDirs); ferr == nil {
			present.Plugins = append(present.Plugins, p)
		}
	}
	if len(present.Plugins) == 0 || len(present.Plugins) == len(list.Plugins) {
		return err
	}
	if perr := m.cni.DelNetworkList(ctx, &present, rt); perr != nil {
		return errors.Join(err, perr)
	}
	return err
}

func (m *Manager) observe(op string, start time.Time, err error) {
	if m.opts.ObserveCNI != nil {
		m.opts.ObserveCNI(op, time.Since(start), err)
	}
}

func (m *Manager) runtimeConf(pod Pod, netns string, caps map[string]any) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{
		ContainerID:    pod.ID,
		NetNS:          netns,
		IfName:         ifName,
		Args:           cniArgs(pod),
		CapabilityArgs: caps,
	}
}

// cachedConfig returns the network config libcni cached at ADD, if any.
func (m *Manager) cachedConfig(network, id string) *libcni.NetworkConfigList {
	probe := &libcni.NetworkConfigList{Name: network}
	b, _, err := m.cni.GetNetworkListCachedConfig(probe, &libcni.RuntimeConf{ContainerID: id, IfName: ifName})
	if err != nil || len(b) == 0 {
		return nil
	}
	list, err := libcni.ConfListFromBytes(b)
	if err != nil || len(list.Plugins) == 0 {
		return nil
	}
	return list
}

// cacheEntry mirrors libcni's on-disk cache record (kind cniCacheV1), so a
// result kept by the caller can stand in for a cache that was lost.
type cacheEntry struct {
	Kind           string          `json:"kind"`
	ContainerID    string          `json:"containerId"`
	Config         []byte          `json:"config"`
	IfName         string          `json:"ifName"`
	NetworkName    string          `json:"networkName"`
	NetNS          string          `json:"netns,omitempty"`
	CniArgs        [][2]string     `json:"cniArgs,omitempty"`
	CapabilityArgs map[string]any  `json:"capabilityArgs,omitempty"`
	Result         json.RawMessage `json:"result,omitempty"`
}

// seedCache writes libcni's cache record from the caller's copy of the
// result when libcni's own is missing, so DEL hands plugins prevResult
// just as it would have before a restart or a lost cache dir.
func (m *Manager) seedCache(list *libcni.NetworkConfigList, rt *libcni.RuntimeConf, raw json.RawMessage) error {
	file := filepath.Join(m.opts.CacheDir, "results", fmt.Sprintf("%s-%s-%s", list.Name, rt.ContainerID, rt.IfName))
	if _, err := os.Stat(file); err == nil || !errors.Is(err, os.ErrNotExist) {
		return err
	}
	b, err := json.Marshal(cacheEntry{
		Kind: libcni.CNICacheV1, ContainerID: rt.ContainerID, Config: list.Bytes, IfName: rt.IfName,
		NetworkName: list.Name, NetNS: rt.NetNS, CniArgs: rt.Args, CapabilityArgs: rt.CapabilityArgs, Result: raw,
	})
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		return err
	}
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return err
	}
	return os.Rename(tmp, file)
}

// pluginStderr puts what a successful plugin wrote to stderr in the log
// rather than on the daemon's stderr; a failing plugin's stderr is part of
// the returned error already.
type pluginStderr struct{ log *slog.Logger }

func (w pluginStderr) Write(p []byte) (int, error) {
	w.log.Warn("cni plugin stderr", "output", strings.TrimSpace(string(p)))
	return len(p), nil
}

// podLocks serialises work on one pod (a Setup's cleanup against a racing
// Teardown) without making different pods wait on each other.
type podLocks struct {
	mu    sync.Mutex
	locks map[string]*podLock
}

type podLock struct {
	mu   sync.Mutex
	refs int
}

func (p *podLocks) lock(id string) (unlock func()) {
	p.mu.Lock()
	if p.locks == nil {
		p.locks = map[string]*podLock{}
	}
	l := p.locks[id]
	if l == nil {
		l = &podLock{}
		p.locks[id] = l
	}
	l.refs++
	p.mu.Unlock()
	l.mu.Lock()
	return func() {
		l.mu.Unlock()
		p.mu.Lock()
		if l.refs--; l.refs == 0 {
			delete(p.locks, id)
		}
		p.mu.Unlock()
	}
}
