package cri

import (
	"context"
	"time"

	"github.com/pod-shim/pod-shim/pkg/container"
)

// podContainers gives the sandbox manager, which runs pod-level Stop and
// Remove, the pod's containers as sandbox.Containers asks for them, until
// the container manager implements that interface itself.
type podContainers struct{ m *container.Manager }

func (p podContainers) InPod(sandboxID string) ([]string, error) {
	cs, err := p.m.List(container.Filter{SandboxID: sandboxID})
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return ids, nil
}

func (p podContainers) Stop(ctx context.Context, id string, timeout time.Duration) error {
	return p.m.Stop(ctx, id, timeout)
}

func (p podContainers) Remove(ctx context.Context, id string) error { return p.m.Remove(ctx, id) }
