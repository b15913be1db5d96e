// Package nri hosts NRI plugins (github.com/containerd/nri, the Node Resource
// Interface containerd and CRI-O host): plugins connect over a unix socket or
// are started from a directory, are told of every pod and container event,
// may adjust a container's OCI spec as it is created, update resources and
// evict containers. The domain packages only see the small Hooks interfaces
// of pkg/sandbox and pkg/container, which *NRI implements.
package nri

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/containerd/nri/pkg/adaptation"
	"github.com/containerd/nri/pkg/api"
	"github.com/containerd/nri/pkg/runtime-tools/generate"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/pod-shim/pod-shim/pkg/container"
	"github.com/pod-shim/pod-shim/pkg/oci"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// Options configure New; zero durations mean NRI's defaults.
type Options struct {
	RuntimeName, RuntimeVersion string
	SocketPath                  string
	PluginPath                  string
	PluginConfigPath            string
	RegistrationTimeout         time.Duration
	RequestTimeout              time.Duration
	DisableConnections          bool
	Logger                      *slog.Logger
}

// NRI is the node's NRI host. Its hooks are safe to call before Start: they
// reach no plugin until then.
type NRI struct {
	a   *adaptation.Adaptation
	log *slog.Logger

	sandboxes  Sandboxes
	containers Containers

	mu      sync.Mutex
	stopped map[string]bool // containers whose StopContainer plugins were told of
}

var (
	_ sandbox.Hooks   = (*NRI)(nil)
	_ container.Hooks = (*NRI)(nil)
)

// Sandboxes is what the host asks of the pods (*sandbox.Manager).
type Sandboxes interface {
	Get(idOrPrefix string) (*sandbox.Sandbox, error)
	List(f sandbox.Filter) ([]*sandbox.Sandbox, error)
}

// Containers is what the host asks of the containers (*container.Manager):
// the state a registering plugin is synchronized with, and the updates and
// evictions plugins ask for.
type Containers interface {
	Get(idOrPrefix string) (*container.Container, error)
	List(f container.Filter) ([]*container.Container, error)
	UpdateResources(ctx context.Context, idOrPrefix string, r *container.Resources) error
	Stop(ctx context.Context, idOrPrefix string, timeout time.Duration) error
}

// New makes the NRI host; Start starts it once the managers exist.
func New(o Options) (*NRI, error) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	n := &NRI{log: o.Logger.With("component", "nri"), stopped: map[string]bool{}}
	if o.RegistrationTimeout > 0 {
		adaptation.SetPluginRegistrationTimeout(o.RegistrationTimeout)
	}
	if o.RequestTimeout > 0 {
		adaptation.SetPluginRequestTimeout(o.RequestTimeout)
	}
	opts := []adaptation.Option{
		adaptation.WithSocketPath(o.SocketPath),
		adaptation.WithPluginPath(o.PluginPath),
		adaptation.WithPluginConfigPath(o.PluginConfigPath),
	}
	if o.DisableConnections {
		opts = append(opts, adaptation.WithDisabledExternalConnections())
	}
	a, err := adaptation.New(o.RuntimeName, o.RuntimeVersion, n.synchronize, n.updateFromPlugin, opts...)
	if err != nil {
		return nil, fmt.Errorf("nri: %w", err)
	}
	n.a = a
	return n, nil
}

// Start connects the host to the managers, starts the plugins in the plugin
// dir and listens for external ones.
func (n *NRI) Start(sandboxes Sandboxes, containers Containers) error {
	n.sandboxes, n.containers = sandboxes, containers
	if err := n.a.Start(); err != nil {
		return fmt.Errorf("start nri: %w", err)
	}
	return nil
}

// Stop stops the plugins pod-shim started and closes every connection.
func (n *NRI) Stop() { n.a.Stop() }

// internalKey marks an update that plugins asked for, so it is not sent
// back to them as an UpdateContainer event.
type internalKey struct{}

// ---- pods ----

func (n *NRI) BeginRun() func() { return n.a.BlockPluginSync().Unblock }

func (n *NRI) RunPodSandbox(ctx context.Context, sb *sandbox.Sandbox) error {
	pod := podOf(sb)
	if err := n.a.RunPodSandbox(ctx, &api.RunPodSandboxRequest{Pod: pod}); err != nil {
		// Plugins that saw the pod release what they hold for it.
		if rerr := n.a.RemovePodSandbox(context.WithoutCancel(ctx), &api.RemovePodSandboxRequest{Pod: pod}); rerr != nil {
			n.log.Warn("RemovePodSandbox after a failed RunPodSandbox", "sandbox", sb.ID, "error", rerr)
		}
		return fmt.Errorf("nri RunPodSandbox: %w", err)
	}
	return nil
}

func (n *NRI) StopPodSandbox(ctx context.Context, sb *sandbox.Sandbox) error {
	if err := n.a.StopPodSandbox(ctx, &api.StopPodSandboxRequest{Pod: podOf(sb)}); err != nil {
		return fmt.Errorf("nri StopPodSandbox: %w", err)
	}
	return nil
}

func (n *NRI) RemovePodSandbox(ctx context.Context, sb *sandbox.Sandbox) error {
	if err := n.a.RemovePodSandbox(ctx, &api.RemovePodSandboxRequest{Pod: podOf(sb)}); err != nil {
		return fmt.Errorf("nri RemovePodSandbox: %w", err)
	}
	return nil
}

// ---- containers ----

func (n *NRI) BeginCreate() func() { return n.a.BlockPluginSync().Unblock }

func (n *NRI) CreateContainer(ctx context.Context, c *container.Container, spec *specs.Spec) error {
	req := &api.CreateContainerRequest{Pod: n.podByID(c.SandboxID), Container: containerOf(c, spec)}
	resp, err := n.a.CreateContainer(ctx, req)
	if err != nil {
		return fmt.Errorf("nri CreateContainer: %w", err)
	}
	if adj := resp.GetAdjust(); adj != nil {
		g := generate.SpecGenerator(specGen{spec})
		if err := g.Adjust(adj); err != nil {
			return fmt.Errorf("nri adjustment: %w", err)
		}
	}
	n.applyLater(resp.GetUpdate(), nil)
	return nil
}

func (n *NRI) PostCreateContainer(ctx context.Context, c *container.Container) {
	if err := n.a.PostCreateContainer(ctx, &api.PostCreateContainerRequest{Pod: n.podByID(c.SandboxID), Container: containerOf(c, nil)}); err != nil {
		n.log.Warn("PostCreateContainer", "container", c.ID, "error", err)
	}
}

func (n *NRI) StartContainer(ctx context.Context, c *container.Container) error {
	if err := n.a.StartContainer(ctx, &api.StartContainerRequest{Pod: n.podByID(c.SandboxID), Container: containerOf(c, nil)}); err != nil {
		return fmt.Errorf("nri StartContainer: %w", err)
	}
	return nil
}

func (n *NRI) PostStartContainer(ctx context.Context, c *container.Container) {
	if err := n.a.PostStartContainer(ctx, &api.PostStartContainerRequest{Pod: n.podByID(c.SandboxID), Container: containerOf(c, nil)}); err != nil {
		n.log.Warn("PostStartContainer", "container", c.ID, "error", err)
	}
}

func (n *NRI) UpdateContainer(ctx context.Context, c *container.Container, r *container.Resources) (*container.Resources, error) {
	if ctx.Value(internalKey{}) != nil {
		return r, nil
	}
	resp, err := n.a.UpdateContainer(ctx, &api.UpdateContainerRequest{
		Pod: n.podByID(c.SandboxID), Container: containerOf(c, nil), LinuxResources: resourcesToNRI(r),
	})
	if err != nil {
		return nil, fmt.Errorf("nri UpdateContainer: %w", err)
	}
	out := r
	var others []*api.ContainerUpdate
	for _, u := range resp.GetUpdate() {
		if u.GetContainerId() == c.ID {
			out = resourcesFromNRI(u.GetLinux().GetResources(), r)
			continue
		}
		others = append(others, u)
	}
	n.applyLater(others, resp.GetEvict())
	return out, nil
}

func (n *NRI) PostUpdateContainer(ctx context.Context, c *container.Container) {
	if ctx.Value(internalKey{}) != nil {
		return
	}
	if err := n.a.PostUpdateContainer(ctx, &api.PostUpdateContainerRequest{Pod: n.podByID(c.SandboxID), Container: containerOf(c, nil)}); err != nil {
		n.log.Warn("PostUpdateContainer", "container", c.ID, "error", err)
	}
}

// StopContainer tells plugins once per container, however many lookups
// fold its exit in.
func (n *NRI) StopContainer(ctx context.Context, c *container.Container) {
	n.mu.Lock()
	seen := n.stopped[c.ID]
	n.stopped[c.ID] = true
	n.mu.Unlock()
	if seen {
		return
	}
	resp, err := n.a.StopContainer(ctx, &api.StopContainerRequest{Pod: n.podByID(c.SandboxID), Container: containerOf(c, nil)})
	if err != nil {
		n.log.Warn("StopContainer", "container", c.ID, "error", err)
		return
	}
	n.applyLater(resp.GetUpdate(), nil)
}

// RemoveContainer tells plugins of a container's stop first if they were
// not told yet (one removed while created, or whose Create failed).
func (n *NRI) RemoveContainer(ctx context.Context, c *container.Container) {
	if c.State != container.StateExited {
		c2 := *c
		c2.State = container.StateExited
		n.StopContainer(ctx, &c2)
	}
	n.StopContainer(ctx, c)
	if err := n.a.RemoveContainer(ctx, &api.RemoveContainerRequest{Pod: n.podByID(c.SandboxID), Container: containerOf(c, nil)}); err != nil {
		n.log.Warn("RemoveContainer", "container", c.ID, "error", err)
	}
	n.mu.Lock()
	delete(n.stopped, c.ID)
	n.mu.Unlock()
}

// ---- plugin-initiated ----

// synchronize hands a registering plugin every pod and container. Runs and
// Creates in progress hold it off (BeginRun, BeginCreate), so what they make
// reaches the plugin either here or as an event once it is registered, and
// only one of the two: a Create holds the block from before its record
// exists until its hooks have run, List leaves out records still being
// created, and Creates that begin during the synchronization wait for its
// end, when the plugin is registered and gets their CreateContainer.
//
// The NRI library bounds a plugin's Synchronize by the request timeout
// (plugin_request_timeout): a plugin slower than that is disconnected and
// learns of nothing after, so the timeout must cover the plugin's whole
// handshake, not just one event.
func (n *NRI) synchronize(ctx context.Context, cb adaptation.SyncCB) error {
	if n.sandboxes == nil || n.containers == nil {
		return errors.New("nri: not started")
	}
	sbs, err := n.sandboxes.List(sandbox.Filter{})
	if err != nil {
		return err
	}
	pods := make([]*api.PodSandbox, 0, len(sbs))
	for _, sb := range sbs {
		pods = append(pods, podOf(sb))
	}
	cs, err := n.containers.List(container.Filter{})
	if err != nil {
		return err
	}
	ctrs := make([]*api.Container, 0, len(cs))
	for _, c := range cs {
		spec, _ := oci.ReadBundle(c.Bundle)
		ctrs = append(ctrs, containerOf(c, spec))
	}
	updates, err := cb(ctx, pods, ctrs)
	if err != nil {
		return err
	}
	n.applyLater(updates, nil)
	return nil
}

// updateFromPlugin applies updates a plugin asked for on its own.
func (n *NRI) updateFromPlugin(ctx context.Context, updates []*api.ContainerUpdate) ([]*api.ContainerUpdate, error) {
	return n.apply(ctx, updates), nil
}

// applyLater applies updates and evictions out of the current request: they
// concern other containers, whose locks the request may be holding.
func (n *NRI) applyLater(updates []*api.ContainerUpdate, evict []*api.ContainerEviction) {
	if len(updates) == 0 && len(evict) == 0 {
		return
	}
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		n.apply(ctx, updates)
		for _, e := range evict {
			n.log.Info("evicting container at a plugin's request", "container", e.GetContainerId(), "reason", e.GetReason())
			if err := n.containers.Stop(ctx, e.GetContainerId(), 0); err != nil {
				n.log.Warn("evict container", "container", e.GetContainerId(), "error", err)
			}
		}
	}()
}

// apply applies updates and returns the ones that failed.
func (n *NRI) apply(ctx context.Context, updates []*api.ContainerUpdate) []*api.ContainerUpdate {
	var failed []*api.ContainerUpdate
	ctx = context.WithValue(ctx, internalKey{}, true)
	for _, u := range updates {
		c, err := n.containers.Get(u.GetContainerId())
		if err == nil {
			err = n.containers.UpdateResources(ctx, c.ID, resourcesFromNRI(u.GetLinux().GetResources(), c.Resources))
		}
		if err != nil {
			if !u.GetIgnoreFailure() {
				n.log.Warn("plugin's container update failed", "container", u.GetContainerId(), "error", err)
				failed = append(failed, u)
			}
		}
	}
	return failed
}

func (n *NRI) podByID(id string) *api.PodSandbox {
	if n.sandboxes != nil {
		if sb, err := n.sandboxes.Get(id); err == nil {
			return podOf(sb)
		}
	}
	return &api.PodSandbox{Id: id}
}
