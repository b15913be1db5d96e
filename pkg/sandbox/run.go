package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/pod-shim/pod-shim/pkg/failpoint"
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
	if err := m.undoPause(ctx, sb); err != nil {
		errs = append(errs, err)
	}
	if err := m.undoNetwork(ctx, sb); err != nil {
		errs = append(errs, err)
	}
	if err := m.removePodDir(sb); err != nil {
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

// undoPause deletes the pause container and ends the pod's monitor.
func (m *Manager) undoPause(ctx context.Context, sb *Sandbox) error {
	defer m.dropMonitor(sb.ID)
	c, err := m.podMonitor(ctx, sb)
	if err != nil {
		return m.deleteWithoutMonitor(ctx, sb)
	}
	// After a crash the monitor may still be running the pause container's
	// creation the dead daemon asked for, and refuses to delete it until
	// that ends: wait for it, or the pause would be created after the undo
	// and outlive it.
	err = retryFor(ctx, undoMonitorWait, func() error { return c.Delete(ctx, sb.ID) })
	if err == nil {
		err = c.Shutdown(ctx)
	}
	if err != nil {
		// Never leave a monitor behind a removed pod dir: kill it.
		m.log.Warn("monitor did not delete pause; killing it", "sandbox", sb.ID, "error", err)
		return m.deleteWithoutMonitor(ctx, sb)
	}
	return nil
}

// undoNetwork detaches the pod and unpins its netns. The netns path is a
// function of the id, so a crash right after pinning it, before any record
// of it, still finds it; and DEL runs even without a result, as the plugin
// may have allocated before failing or before the daemon died.
func (m *Manager) undoNetwork(ctx context.Context, sb *Sandbox) error {
	if sb.HostNetwork() {
		return nil
	}
	if sb.NetNSPath == "" {
		sb.NetNSPath = m.netnsPath(sb.ID)
	}
	return errors.Join(
		m.opts.Network.Teardown(ctx, m.podNetwork(sb), sb.Network),
		m.opts.Network.RemoveNetNS(sb.NetNSPath))
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
