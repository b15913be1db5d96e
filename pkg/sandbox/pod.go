package sandbox

import (
	"context"
	"fmt"
	"time"
)

// Containers are a pod's app containers as pod-level Stop and Remove need
// them; the container manager implements it (it imports this package, so
// the dependency points this way). Stop and Remove call it with the pod's
// lock held, so that no container is created into a pod that is going
// away: its methods must not take the pod's lock.
type Containers interface {
	// InPod lists the ids of the pod's containers.
	InPod(sandboxID string) ([]string, error)
	// Stop stops one container: its stop signal, then SIGKILL after
	// timeout. Stopping a stopped or unknown container succeeds.
	Stop(ctx context.Context, id string, timeout time.Duration) error
	// Remove stops and deletes one container. Removing an unknown
	// container succeeds.
	Remove(ctx context.Context, id string) error
}

// SetContainers gives the manager the pod's containers, which Stop and
// Remove take down before the pause. It is set once, at wiring, after the
// container manager (built on this one) exists; until then Stop and Remove
// act on the pause, network and pod dir only.
func (m *Manager) SetContainers(c Containers) {
	m.mu.Lock()
	m.containers = c
	m.mu.Unlock()
}

func (m *Manager) podContainers() Containers {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.containers
}

// stopContainers kills every container of the pod at once: the kubelet
// has run their stop signals and grace periods before it stops the pod.
func (m *Manager) stopContainers(ctx context.Context, sb *Sandbox) error {
	return m.eachContainer(sb, "stop", func(cs Containers, id string) error { return cs.Stop(ctx, id, 0) })
}

// removeContainers removes every container of the pod.
func (m *Manager) removeContainers(ctx context.Context, sb *Sandbox) error {
	return m.eachContainer(sb, "remove", func(cs Containers, id string) error { return cs.Remove(ctx, id) })
}

func (m *Manager) eachContainer(sb *Sandbox, verb string, do func(Containers, string) error) error {
	cs := m.podContainers()
	if cs == nil {
		return nil
	}
	ids, err := cs.InPod(sb.ID)
	if err != nil {
		return fmt.Errorf("list containers of sandbox %s: %w", sb.ID, err)
	}
	for _, id := range ids {
		if err := do(cs, id); err != nil {
			return fmt.Errorf("%s container %s: %w", verb, id, err)
		}
	}
	return nil
}
