package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/pod-shim/pod-shim/pkg/failpoint"
	"github.com/pod-shim/pod-shim/pkg/image"
	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/network"
	"github.com/pod-shim/pod-shim/pkg/oci"
	"github.com/pod-shim/pod-shim/pkg/store"
)

// Run creates a sandbox and returns it ready. On any failure everything it
// made is undone before it returns, so no half-made pod is left behind.
//
// The hot path: pin the netns (a syscall, no process), then CNI ADD and
// monitor start + pause start run side by side, since pause needs only the
// netns path, not the IP.
func (m *Manager) Run(ctx context.Context, cfg Config) (*Sandbox, error) {
	if err := validate(cfg); err != nil {
		return nil, err
	}
	if err := m.requireFeatures(ctx, cfg); err != nil {
		return nil, err
	}
	name := reservedName(cfg)
	sb := &Sandbox{
		ID:        store.NewID(),
		Config:    cfg,
		CreatedAt: time.Now(),
		State:     StateCreating,
	}
	sb.Dir = filepath.Join(m.opts.StateDir, "pods", sb.ID)
	sb.CgroupPath = oci.CgroupsPath(m.opts.CgroupDriver, cfg.CgroupParent, sb.ID)
	sb.CreatedCgroups = m.podCgroupDirs(cfg)

	m.mu.Lock()
	if other, ok := m.names[name]; ok {
		p := m.pending[name]
		m.mu.Unlock()
		if p != nil {
			// A retry of a Run whose client gave up: answer with that
			// Run's outcome instead of "name is reserved" (the kubelet
			// retries with the same metadata after its deadline).
			return m.collect(ctx, name, p)
		}
		return nil, fmt.Errorf("name %q is reserved by sandbox %s: %w", name, other, ErrAlreadyExists)
	}
	m.names[name] = sb.ID
	p := &pendingRun{done: make(chan struct{})}
	m.pending[name] = p
	m.mu.Unlock()

	// The work goes on after the client's deadline, so that a slow CNI
	// plugin does not turn every retry into a new pod and a leaked IP.
	go func() {
		p.sb, p.err = m.run(context.WithoutCancel(ctx), sb, name)
		close(p.done)
		// If the client gave up, keep the outcome for its retry for a
		// while, then forget it.
		time.AfterFunc(pendingKeep, func() {
			m.mu.Lock()
			if m.pending[name] == p {
				delete(m.pending, name)
			}
			m.mu.Unlock()
		})
	}()
	return m.collect(ctx, name, p)
}

// collect waits for a pending Run. Whoever receives its outcome retires it,
// so only a Run whose client gave up answers a later call with that name.
func (m *Manager) collect(ctx context.Context, name string, p *pendingRun) (*Sandbox, error) {
	sb, err := p.wait(ctx)
	if ctx.Err() == nil {
		m.mu.Lock()
		if m.pending[name] == p {
			delete(m.pending, name)
		}
		m.mu.Unlock()
	}
	return sb, err
}

// pendingKeep is how long the outcome of a Run stays available to a retry.
const pendingKeep = 5 * time.Minute

// runTimeout bounds a Run that continues after its client gave up.
const runTimeout = 4 * time.Minute

// pendingRun is a Run in progress or recently finished.
type pendingRun struct {
	done chan struct{}
	sb   *Sandbox
	err  error
}

func (p *pendingRun) wait(ctx context.Context) (*Sandbox, error) {
	select {
	case <-p.done:
		return p.sb, p.err
	case <-ctx.Done():
		return nil, fmt.Errorf("sandbox creation continues in the background; retry with the same metadata for its result: %w", ctx.Err())
	}
}

func (m *Manager) run(ctx context.Context, sb *Sandbox, name string) (*Sandbox, error) {
	ctx, cancel := context.WithTimeout(ctx, runTimeout)
	defer cancel()
	unlock := m.locks.Lock(sb.ID)
	defer unlock()
	if m.opts.Hooks != nil {
		defer m.opts.Hooks.BeginRun()()
	}

	// The intent record goes first, so a crash from here on leaves
	// something recovery can see and undo.
	if err := m.save(sb); err != nil {
		m.unreserve(name, sb.ID)
		return nil, fmt.Errorf("record sandbox: %w", err)
	}
	failpoint.Hit("sandbox-run-after-intent")
	err := m.create(ctx, sb)
	if err == nil && m.opts.Hooks != nil {
		err = m.opts.Hooks.RunPodSandbox(ctx, sb)
	}
	if err != nil {
		// Undo with a fresh context: the request's may be what expired.
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Minute)
		defer cancel()
		if cerr := m.undo(cctx, sb); cerr != nil {
			m.log.Error("undo failed sandbox", "sandbox", sb.ID, "error", cerr)
		}
		return nil, err
	}
	failpoint.Hit("sandbox-run-before-ready")
	sb.State = StateReady
	if err := m.save(sb); err != nil {
		return nil, fmt.Errorf("record sandbox: %w", err)
	}
	m.log.Info("sandbox ready", "sandbox", sb.ID, "pod", sb.Config.Namespace+"/"+sb.Config.Name, "ip", sb.IP())
	return sb, nil
}

func (m *Manager) unreserve(name, id string) {
	m.mu.Lock()
	if m.names[name] == id {
		delete(m.names, name)
	}
	m.mu.Unlock()
}

// undo removes every trace of a sandbox whose Run failed or was interrupted.
func (m *Manager) undo(ctx context.Context, sb *Sandbox) error {
	var errs []error
	if c, err := m.podMonitor(ctx, sb); err == nil {
		// After a crash the monitor may still be running the pause
		// container's creation the dead daemon asked for, and refuses to
		// delete it until that ends: wait for it, or the pause would be
		// created after the undo and outlive it.
		err := retryFor(ctx, undoMonitorWait, func() error { return c.Delete(ctx, sb.ID) })
		if err == nil {
			err = c.Shutdown(ctx)
		}
		if err != nil {
			// Never leave a monitor behind a removed pod dir: kill it.
			m.log.Warn("monitor did not delete pause; killing it", "sandbox", sb.ID, "error", err)
			if err := m.deleteWithoutMonitor(ctx, sb); err != nil {
				errs = append(errs, err)
			}
		}
	} else if err := m.deleteWithoutMonitor(ctx, sb); err != nil {
		errs = append(errs, err)
	}
	m.dropMonitor(sb.ID)
	if !sb.HostNetwork() {
		// The netns path is a function of the id, so a crash right after
		// pinning it, before any record of it, still finds it; and DEL runs
		// even without a result, as the plugin may have allocated before
		// failing or before the daemon died.
		if sb.NetNSPath == "" {
			sb.NetNSPath = m.netnsPath(sb.ID)
		}
		if err := m.opts.Network.Teardown(ctx, m.podNetwork(sb), sb.Network); err != nil {
			errs = append(errs, err)
		}
		if err := m.opts.Network.RemoveNetNS(sb.NetNSPath); err != nil {
			errs = append(errs, err)
		}
	}
	if sb.PauseImage != "" && m.opts.Images != nil {
		if err := m.opts.Images.RemoveRootfs(sb.ID, filepath.Join(sb.Dir, "pause", "rootfs")); err != nil {
			errs = append(errs, err)
		}
	}
	if err := unmount(sb.ShmPath()); err != nil {
		errs = append(errs, err)
	}
	if err := os.RemoveAll(sb.Dir); err != nil {
		errs = append(errs, err)
	}
	m.removePodCgroups(sb)
	if len(errs) == 0 {
		if err := m.opts.DB.Delete(bucket, sb.ID); err != nil {
			errs = append(errs, err)
		}
		m.unreserve(reservedName(sb.Config), sb.ID)
	}
	return errors.Join(errs...)
}

// undoMonitorWait bounds how long an undo waits for a monitor busy with the
// pause creation of a crashed daemon; runc needs well under a second.
const undoMonitorWait = 30 * time.Second

// retryFor calls f until it succeeds, ctx ends or d has passed.
func retryFor(ctx context.Context, d time.Duration, f func() error) error {
	deadline := time.Now().Add(d)
	for {
		err := f()
		if err == nil || ctx.Err() != nil || time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (m *Manager) create(ctx context.Context, sb *Sandbox) error {
	if sb.Config.PodUserNS() {
		return m.createInUserNS(ctx, sb)
	}
	if err := os.MkdirAll(sb.Dir, 0o711); err != nil {
		return fmt.Errorf("create pod dir: %w", err)
	}
	if !sb.HostNetwork() {
		// No record update here: undo and recovery derive the path from
		// the id, which saves a store commit (an fsync) per pod start.
		path, err := m.opts.Network.CreateNetNS(filepath.Dir(m.netnsPath(sb.ID)), sb.ID)
		if err != nil {
			return fmt.Errorf("create network namespace: %w", err)
		}
		sb.NetNSPath = path
		failpoint.Hit("sandbox-run-after-netns")
	}

	// The CNI ADD hands its result over the channel and never touches sb:
	// the pause path reads sb (the IP for the provisional /etc/hosts)
	// meanwhile, and the result joins the record only once both are done.
	type setup struct {
		res *network.Result
		err error
	}
	netDone := make(chan setup, 1)
	if sb.HostNetwork() {
		netDone <- setup{}
	} else {
		pod := m.podNetwork(sb)
		go func() {
			res, err := m.opts.Network.Setup(ctx, pod)
			if err == nil {
				failpoint.Hit("sandbox-run-after-cni")
			}
			netDone <- setup{res, err}
		}()
	}
	pauseErr := m.startPause(ctx, sb)
	if pauseErr == nil {
		failpoint.Hit("sandbox-run-after-pause")
	}
	net := <-netDone
	if net.err != nil {
		return fmt.Errorf("set up pod network: %w", net.err)
	}
	sb.Network = net.res
	if pauseErr != nil {
		return pauseErr
	}
	return m.writeHosts(sb)
}

func (m *Manager) startPause(ctx context.Context, sb *Sandbox) error {
	if err := m.writePodFiles(sb); err != nil {
		return err
	}
	if err := m.applyPodResources(sb); err != nil {
		return err
	}
	rootfs, args, err := m.pauseRootfs(ctx, sb)
	if err != nil {
		return err
	}
	spec := m.pauseSpec(sb, rootfs, args)
	bundle := filepath.Join(sb.Dir, "pause")
	if err := oci.WriteBundle(bundle, spec); err != nil {
		return fmt.Errorf("write pause bundle: %w", err)
	}
	rt, err := m.Runtime(sb)
	if err != nil {
		return err
	}
	c, err := m.opts.Monitors.Start(ctx, monitor.StartOptions{
		SandboxID:     sb.ID,
		Dir:           sb.Dir,
		Runtime:       rt.Binary(),
		RuntimeRoot:   rt.Root(),
		SystemdCgroup: rt.SystemdCgroup(),
		Executable:    m.opts.Executable,
		MaxLogLine:    m.opts.MaxLogLine,
		Logger:        m.log,
	})
	if err != nil {
		return fmt.Errorf("start pod monitor: %w", err)
	}
	m.mu.Lock()
	m.monitors[sb.ID] = c
	m.mu.Unlock()
	pid, err := c.Create(ctx, monitor.CreateRequest{ID: sb.ID, Bundle: bundle, Start: true})
	if err != nil {
		return fmt.Errorf("start pause container: %w", err)
	}
	sb.PausePID = pid
	return nil
}

// pauseRootfs is the sandbox image's read-only rootfs when the store has it,
// else the built-in pause: nodes are often offline, and a pod must never
// wait on a pull of pause.
func (m *Manager) pauseRootfs(ctx context.Context, sb *Sandbox) (string, []string, error) {
	if m.opts.SandboxImage != "" && m.opts.Images != nil {
		img, err := m.opts.Images.Get(m.opts.SandboxImage)
		if err == nil {
			target := filepath.Join(sb.Dir, "pause", "rootfs")
			root, err := m.opts.Images.PrepareRootfs(ctx, img.ID, sb.ID, target, true)
			if err != nil {
				return "", nil, fmt.Errorf("pause rootfs: %w", err)
			}
			sb.PauseImage = img.ID
			args := append(append([]string{}, img.Config.Entrypoint...), img.Config.Cmd...)
			if len(args) == 0 {
				args = []string{"/pause"}
			}
			return root, args, nil
		}
		if !errors.Is(err, image.ErrNotFound) {
			return "", nil, err
		}
	}
	root, err := m.builtinPause()
	return root, []string{"/pause"}, err
}

// builtinPause prepares, once per daemon, a read-only rootfs holding only
// the pause binary; every pod's pause runs from it with no mount at all.
func (m *Manager) builtinPause() (string, error) {
	m.pauseOnce.Do(func() {
		src := m.opts.PauseBinary
		if src == "" {
			exe, err := os.Executable()
			if err != nil {
				m.pauseErr = err
				return
			}
			src = filepath.Join(filepath.Dir(exe), "pod-shim-pause")
		}
		data, err := os.ReadFile(src)
		if err != nil {
			m.pauseErr = fmt.Errorf("built-in pause binary (build it with hack/build.sh or set pause_binary): %w", err)
			return
		}
		root := filepath.Join(m.opts.StateDir, "pause-rootfs")
		for _, d := range []string{"proc", "dev", "sys", "etc"} {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				m.pauseErr = err
				return
			}
		}
		tmp := filepath.Join(root, ".pause.tmp")
		if err := os.WriteFile(tmp, data, 0o755); err != nil {
			m.pauseErr = err
			return
		}
		if err := os.Rename(tmp, filepath.Join(root, "pause")); err != nil {
			m.pauseErr = err
			return
		}
		m.builtinRoot = root
	})
	return m.builtinRoot, m.pauseErr
}

func (m *Manager) pauseSpec(sb *Sandbox, rootfs string, args []string) *specs.Spec {
	s := oci.DefaultSpec(sb.ID)
	s.Root = &specs.Root{Path: rootfs, Readonly: true}
	s.Process.Args = args
	s.Process.Cwd = "/"
	// pause needs no privileges at all.
	s.Process.Capabilities = &specs.LinuxCapabilities{}
	s.Process.NoNewPrivileges = true
	s.Process.User = specs.User{UID: 65535, GID: 65535}
	// Set, never inherited: the daemon's own score (-999) is not pause's.
	adj := pauseOOMScore(ownOOMScoreAdj())
	s.Process.OOMScoreAdj = &adj
	s.Hostname = sb.Config.Hostname
	// The pause process needs no /dev/pts, /dev/mqueue or cgroupfs: fewer
	// mounts make runc faster on every pod start.
	s.Mounts = []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
	}
	if sb.HostNetwork() {
		oci.RemoveNamespace(s, specs.NetworkNamespace)
		oci.RemoveNamespace(s, specs.UTSNamespace)
		s.Hostname = ""
	} else {
		oci.SetNamespace(s, specs.NetworkNamespace, sb.NetNSPath)
	}
	if sb.Config.Namespaces.PID == ModeNode {
		oci.RemoveNamespace(s, specs.PIDNamespace)
	}
	if sb.Config.Namespaces.IPC == ModeNode {
		oci.RemoveNamespace(s, specs.IPCNamespace)
	}
	s.Linux.CgroupsPath = sb.CgroupPath
	if len(sb.Config.Sysctls) > 0 {
		s.Linux.Sysctl = sb.Config.Sysctls
	}
	userNSPauseSpec(s, sb)
	return s
}

// writePodFiles writes the hostname, resolv.conf and a provisional hosts
// file, and mounts the pod's /dev/shm.
func (m *Manager) writePodFiles(sb *Sandbox) error {
	hostname := sb.Config.Hostname
	if sb.HostNetwork() || hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return err
		}
		// A host-network pod shares the node's UTS namespace, so the
		// kernel says the node's name; the file must not say otherwise.
		if hostname == "" || sb.HostNetwork() {
			hostname = h
		}
	}
	if err := os.WriteFile(sb.HostnamePath(), []byte(hostname+"\n"), 0o644); err != nil {
		return fmt.Errorf("write hostname: %w", err)
	}
	if err := os.WriteFile(sb.ResolvConfPath(), resolvConf(sb.Config.DNS), 0o644); err != nil {
		return fmt.Errorf("write resolv.conf: %w", err)
	}
	if err := m.writeHosts(sb); err != nil {
		return err
	}
	if sb.Config.Namespaces.IPC != ModeNode {
		if err := os.MkdirAll(sb.ShmPath(), 0o755); err != nil {
			return err
		}
		if err := unix.Mount("shm", sb.ShmPath(), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
			return fmt.Errorf("mount pod shm: %w", err)
		}
	}
	return nil
}

func resolvConf(dns *DNS) []byte {
	if dns == nil || (len(dns.Servers) == 0 && len(dns.Searches) == 0 && len(dns.Options) == 0) {
		if data, err := os.ReadFile("/etc/resolv.conf"); err == nil {
			return data
		}
		return nil
	}
	var b strings.Builder
	if len(dns.Searches) > 0 {
		b.WriteString("search " + strings.Join(dns.Searches, " ") + "\n")
	}
	for _, s := range dns.Servers {
		b.WriteString("nameserver " + s + "\n")
	}
	if len(dns.Options) > 0 {
		b.WriteString("options " + strings.Join(dns.Options, " ") + "\n")
	}
	return []byte(b.String())
}

// writeHosts writes /etc/hosts for the pod: the host's for host-network
// pods, else localhost entries plus the pod IP and hostname once known.
func (m *Manager) writeHosts(sb *Sandbox) error {
	var data []byte
	if sb.HostNetwork() {
		d, err := os.ReadFile("/etc/hosts")
		if err != nil {
			return fmt.Errorf("read host /etc/hosts: %w", err)
		}
		data = d
	} else {
		var b strings.Builder
		b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
		if ip := sb.IP(); ip != "" && sb.Config.Hostname != "" {
			names := sb.Config.Hostname
			if short, _, ok := strings.Cut(names, "."); ok {
				names += "\t" + short
			}
			b.WriteString(ip + "\t" + names + "\n")
		}
		data = []byte(b.String())
	}
	tmp := sb.HostsPath() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write hosts: %w", err)
	}
	// Rename would replace the inode containers may have bind-mounted;
	// the pod has no container yet at Run, so it is safe here.
	return os.Rename(tmp, sb.HostsPath())
}

func validate(c Config) error {
	if c.Name == "" {
		return fmt.Errorf("metadata.name is empty: %w", ErrInvalid)
	}
	if c.Namespace == "" {
		return fmt.Errorf("metadata.namespace is empty: %w", ErrInvalid)
	}
	if strings.ContainsAny(c.Name+c.Namespace+c.UID, "/\x00") {
		return fmt.Errorf("metadata contains '/' or NUL: %w", ErrInvalid)
	}
	if err := validateUserNS(c); err != nil {
		return fmt.Errorf("%w: %w", err, ErrInvalid)
	}
	for k, v := range c.Sysctls {
		if err := validateSysctl(k, v, c.Namespaces); err != nil {
			return fmt.Errorf("%w: %w", err, ErrInvalid)
		}
	}
	return nil
}

// validateSysctl admits only sysctls a pod's own namespaces scope, as the
// kubelet and runc do: any other would change the node for every pod.
func validateSysctl(key, value string, ns Namespaces) error {
	if key == "" || strings.ContainsAny(key, "/ \x00") || strings.Contains(key, "..") ||
		strings.HasPrefix(key, ".") || strings.HasSuffix(key, ".") {
		return fmt.Errorf("sysctl %q: not a sysctl name (use dots, e.g. net.ipv4.ip_forward)", key)
	}
	if strings.ContainsAny(value, "\x00\n") {
		return fmt.Errorf("sysctl %s: value %q contains NUL or newline", key, value)
	}
	switch {
	case key == "kernel.sem" || strings.HasPrefix(key, "kernel.shm") ||
		strings.HasPrefix(key, "kernel.msg") || strings.HasPrefix(key, "fs.mqueue."):
		if ns.IPC == ModeNode {
			return fmt.Errorf("sysctl %s is not allowed in a pod that uses the host's IPC namespace", key)
		}
	case strings.HasPrefix(key, "net."):
		if ns.Network == ModeNode {
			return fmt.Errorf("sysctl %s is not allowed in a pod that uses the host's network", key)
		}
	case key == "kernel.domainname":
		// UTS is the pod's own unless it is on the host network.
		if ns.Network == ModeNode {
			return fmt.Errorf("sysctl %s is not allowed in a pod that uses the host's network (and UTS namespace)", key)
		}
	default:
		return fmt.Errorf("sysctl %s is not namespaced: setting it in a pod would change the node", key)
	}
	return nil
}

// netnsPath is where a sandbox's network namespace is pinned.
func (m *Manager) netnsPath(id string) string {
	return filepath.Join(m.opts.StateDir, "netns", id)
}
