package sandbox

import (
	"context"
	"syscall"

	"github.com/pod-shim/pod-shim/pkg/image"
	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/network"
)

// The manager's dependencies are narrow interfaces, so that Run, Stop,
// Remove and Recover (and their interleavings) can be tested without root,
// runc, CNI plugins or monitor processes. The daemon passes the real
// types; tests pass fakes.

// Network attaches pods to the node's network; *network.Manager is one.
type Network interface {
	Setup(ctx context.Context, pod network.Pod) (*network.Result, error)
	Teardown(ctx context.Context, pod network.Pod, prev *network.Result) error
	// CreateNetNS pins a new network namespace at dir/name.
	CreateNetNS(dir, name string) (path string, err error)
	// RemoveNetNS unpins it; a path already gone is not an error.
	RemoveNetNS(path string) error
}

// PodMonitor is what the manager asks of one pod's monitor process;
// *monitor.Client is one.
type PodMonitor interface {
	Pid() int
	Create(ctx context.Context, req monitor.CreateRequest) (pid int, err error)
	Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error
	Wait(ctx context.Context, id string) (*monitor.Exit, error)
	Delete(ctx context.Context, id string) error
	Shutdown(ctx context.Context) error
	Close() error
}

// Monitors start a pod's monitor or reconnect to one a previous daemon
// started.
type Monitors interface {
	Start(ctx context.Context, opts monitor.StartOptions) (PodMonitor, error)
	Connect(ctx context.Context, dir string) (PodMonitor, error)
}

// Images are the image store as far as pause needs it; *image.Store is one.
type Images interface {
	Get(ref string) (*image.Image, error)
	PrepareRootfs(ctx context.Context, imageID, containerID, target string, readonly bool) (string, error)
	RemoveRootfs(containerID, target string) error
}

// Runtime is the OCI runtime driven directly, without the pod's monitor,
// for a pod whose monitor is dead; *runc.Runtime is one.
type Runtime interface {
	Delete(ctx context.Context, id string, force bool) error
}

// processMonitors are the real monitor processes of pkg/monitor.
type processMonitors struct{}

func (processMonitors) Start(ctx context.Context, opts monitor.StartOptions) (PodMonitor, error) {
	c, err := monitor.Start(ctx, opts)
	if err != nil {
		return nil, err
	}
	return c, nil
}

func (processMonitors) Connect(ctx context.Context, dir string) (PodMonitor, error) {
	c, err := monitor.Connect(ctx, dir)
	if err != nil {
		return nil, err
	}
	return c, nil
}
