package container

import (
	"context"
	"errors"
)

// Remove stops the container if needed and deletes it. Removing an unknown
// container succeeds; one still being created is waited for.
func (m *Manager) Remove(ctx context.Context, idOrPrefix string) error {
	c, unlock, err := m.lockRecord(ctx, idOrPrefix)
	if errors.Is(err, ErrNotFound) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unlock()
	if err := m.stop(ctx, c, 0); err != nil {
		return err
	}
	if err := m.discard(ctx, c); err != nil {
		return err
	}
	if m.opts.Hooks != nil {
		m.opts.Hooks.RemoveContainer(ctx, c)
	}
	if sb, err := m.sandboxes.Get(c.SandboxID); err == nil {
		m.unreserve(reservedName(&c.Config, sb), c.ID)
	} else {
		m.mu.Lock()
		for k, v := range m.names {
			if v == c.ID {
				delete(m.names, k)
			}
		}
		m.mu.Unlock()
	}
	return nil
}
