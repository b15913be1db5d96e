package container

import (
	"context"
	"sort"

	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
	"github.com/pod-shim/pod-shim/pkg/store"
)

// refresh folds an exit the monitor recorded into the container's record.
// It reads one small file: status calls never wait on the monitor.
func (m *Manager) refresh(c *Container) (changed bool) {
	if c.State != StateRunning {
		return false
	}
	sb, err := m.sandboxes.Get(c.SandboxID)
	if err != nil {
		return false
	}
	ex, err := monitor.ReadExit(sb.Dir, c.ID)
	if err != nil {
		return false
	}
	c.State = StateExited
	c.ExitCode = int32(ex.ExitCode)
	c.FinishedAt = ex.ExitedAt
	switch {
	case ex.OOMKilled:
		c.Reason = "OOMKilled"
		if m.opts.OnOOMKill != nil {
			m.opts.OnOOMKill(c.ID)
		}
	case ex.ExitCode == 0:
		c.Reason = "Completed"
	default:
		c.Reason = "Error"
	}
	if m.opts.Hooks != nil {
		m.opts.Hooks.StopContainer(context.Background(), c)
	}
	return true
}

// Get returns a container with its current state.
func (m *Manager) Get(idOrPrefix string) (*Container, error) {
	c, err := m.load(idOrPrefix)
	if err != nil {
		return nil, err
	}
	if m.refresh(c) {
		unlock := m.locks.Lock(c.ID)
		err := m.save(c)
		unlock()
		if err != nil {
			return nil, err
		}
	}
	return c, nil
}

// List returns the containers matching f, oldest first.
func (m *Manager) List(f Filter) ([]*Container, error) {
	all, err := store.List[Container](m.db, bucket)
	if err != nil {
		return nil, err
	}
	var id string
	if f.ID != "" {
		if id, err = m.db.Resolve(bucket, f.ID); err != nil {
			return nil, nil
		}
	}
	var sbID string
	if f.SandboxID != "" {
		sb, err := m.sandboxes.Get(f.SandboxID)
		if err != nil {
			return nil, nil
		}
		sbID = sb.ID
	}
	out := all[:0]
	for _, c := range all {
		if c.State == StateCreating || (id != "" && c.ID != id) || (sbID != "" && c.SandboxID != sbID) {
			continue
		}
		m.refresh(c)
		if f.State != nil && c.State != *f.State && !(c.State == StateStarting && *f.State == StateCreated) {
			continue
		}
		if !sandbox.MatchLabels(c.Config.Labels, f.Labels) {
			continue
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].CreatedAt.Before(out[j].CreatedAt) })
	return out, nil
}
