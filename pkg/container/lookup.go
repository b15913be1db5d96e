package container

import (
	"context"
	"errors"
	"fmt"
	"sort"

	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
	"github.com/pod-shim/pod-shim/pkg/store"
)

// The records contract: a change to a container's record is made by one
// holder of the container's lock, which loads the record under the lock,
// decides, saves and unlocks. Lookups read without the lock and never save
// what they read so; an exit they see is recorded by settle, under the lock,
// on a record loaded again.

// resolve finds the one container idOrPrefix names, one still being created
// included (its Create holds the lock, so whoever locks it next waits).
func (m *Manager) resolve(idOrPrefix string) (string, error) {
	id, err := m.db.Resolve(bucket, idOrPrefix)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return "", fmt.Errorf("%q: %w", idOrPrefix, ErrNotFound)
	case errors.Is(err, store.ErrAmbiguous):
		return "", fmt.Errorf("container id %q: %w: %w", idOrPrefix, ErrInvalid, store.ErrAmbiguous)
	case err != nil:
		return "", fmt.Errorf("look up container %q: %w", idOrPrefix, err)
	}
	return id, nil
}

// lockRecord holds the lock of the container idOrPrefix names and loads its
// record under it. A container removed while the caller waited, or whose
// Create failed, is ErrNotFound.
func (m *Manager) lockRecord(ctx context.Context, idOrPrefix string) (*Container, func(), error) {
	id, err := m.resolve(idOrPrefix)
	if err != nil {
		return nil, nil, err
	}
	unlock, err := m.locks.LockContext(ctx, id)
	if err != nil {
		return nil, nil, fmt.Errorf("wait for container %s: %w", id, err)
	}
	c, err := m.load(id)
	if err != nil {
		unlock()
		return nil, nil, err
	}
	return c, unlock, nil
}

// observe folds into c, in memory only, an exit the monitor recorded. It
// reads one small file: status calls never wait on the monitor.
func (m *Manager) observe(c *Container) (exited bool) {
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
	case ex.ExitCode == 0:
		c.Reason = "Completed"
	default:
		c.Reason = "Error"
	}
	return true
}

// settle records an exit the monitor wrote into c, which the caller loaded
// under the container's lock, and tells the metrics and hooks once.
func (m *Manager) settle(ctx context.Context, c *Container) error {
	if !m.observe(c) {
		return nil
	}
	if err := m.save(c); err != nil {
		return err
	}
	if c.Reason == "OOMKilled" && m.opts.OnOOMKill != nil {
		m.opts.OnOOMKill(c.ID)
	}
	if m.opts.Hooks != nil {
		m.opts.Hooks.StopContainer(ctx, c)
	}
	return nil
}

// settleSeen records an exit a lookup saw. If someone holds the lock they
// are acting on the container and settle it themselves: the lookup returns
// what it saw rather than wait (status must not wait out a Stop's grace
// period). A container removed meanwhile is ErrNotFound.
func (m *Manager) settleSeen(seen *Container) (*Container, error) {
	unlock, ok := m.locks.TryLock(seen.ID)
	if !ok {
		return seen, nil
	}
	defer unlock()
	c, err := m.load(seen.ID)
	if err != nil {
		return nil, err
	}
	if err := m.settle(context.Background(), c); err != nil {
		return nil, err
	}
	return c, nil
}

// Get returns a container with its current state.
func (m *Manager) Get(idOrPrefix string) (*Container, error) {
	c, err := m.load(idOrPrefix)
	if err != nil {
		return nil, err
	}
	if m.observe(c) {
		return m.settleSeen(c)
	}
	return c, nil
}

// List returns the containers matching f, oldest first. A filter naming an
// unknown container or pod matches nothing; an ambiguous prefix is
// ErrInvalid.
func (m *Manager) List(f Filter) ([]*Container, error) {
	id, sbID, none, err := m.resolveFilter(f)
	if none || err != nil {
		return nil, err
	}
	all, err := store.List[Container](m.db, bucket)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	out := all[:0]
	for _, c := range all {
		if c.State == StateCreating || (id != "" && c.ID != id) || (sbID != "" && c.SandboxID != sbID) {
			continue
		}
		if m.observe(c) {
			if c, err = m.settleSeen(c); errors.Is(err, ErrNotFound) {
				continue
			} else if err != nil {
				return nil, err
			}
		}
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

// resolveFilter turns the filter's id and pod prefixes into full ids;
// none says a prefix names nothing, so nothing matches.
func (m *Manager) resolveFilter(f Filter) (id, sbID string, none bool, err error) {
	if f.ID != "" {
		id, err = m.resolve(f.ID)
		if errors.Is(err, ErrNotFound) {
			return "", "", true, nil
		}
		if err != nil {
			return "", "", false, err
		}
	}
	if f.SandboxID != "" {
		sb, err := m.sandboxes.Get(f.SandboxID)
		if errors.Is(err, sandbox.ErrNotFound) {
			return "", "", true, nil
		}
		if err != nil {
			return "", "", false, fmt.Errorf("pod of the filter: %w", err)
		}
		sbID = sb.ID
	}
	return id, sbID, false, nil
}
