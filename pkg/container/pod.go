package container

import (
	"context"
	"errors"
	"fmt"

	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// StopPod kills every container of a pod, then stops the pod itself.
func (m *Manager) StopPod(ctx context.Context, sandboxID string) error {
	return m.podWide(ctx, sandboxID, "stop",
		func(id string) error { return m.Stop(ctx, id, 0) },
		m.opts.Sandboxes.Stop)
}

// RemovePod removes every container of a pod, then the pod.
func (m *Manager) RemovePod(ctx context.Context, sandboxID string) error {
	return m.podWide(ctx, sandboxID, "remove",
		func(id string) error { return m.Remove(ctx, id) },
		m.opts.Sandboxes.Remove)
}

// podWide applies each to every container of a pod, then pod to the pod
// itself; an unknown pod is done already (Stop and Remove are idempotent).
func (m *Manager) podWide(ctx context.Context, sandboxID, verb string, each func(id string) error, pod func(context.Context, string) error) error {
	sb, err := m.sandboxes.Get(sandboxID)
	if errors.Is(err, sandbox.ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	cs, err := m.List(Filter{SandboxID: sb.ID})
	if err != nil {
		return err
	}
	for _, c := range cs {
		if err := each(c.ID); err != nil {
			return fmt.Errorf("%s container %s: %w", verb, c.ID, err)
		}
	}
	return pod(ctx, sb.ID)
}
