package sandbox

import (
	"context"

	"github.com/pod-shim/pod-shim/pkg/store"
)

// Recover runs once at daemon start, before the CRI socket opens.
//
// Assumptions: the store is the truth about which sandboxes exist; a record
// still in StateCreating belongs to a Run that the previous daemon did not
// finish, and its client has long given up, so it is undone (CNI DEL from
// the record, netns and pod dir removed, monitor stopped). Ready sandboxes
// keep running under their monitors and are re-attached lazily on first use.
func (m *Manager) Recover(ctx context.Context) error {
	all, err := store.List[Sandbox](m.opts.DB, bucket)
	if err != nil {
		return err
	}
	for _, sb := range all {
		if sb.State != StateCreating {
			continue
		}
		m.log.Info("undoing interrupted sandbox creation", "sandbox", sb.ID)
		if err := m.undo(ctx, sb); err != nil {
			m.log.Error("undo interrupted sandbox", "sandbox", sb.ID, "error", err)
		}
	}
	return nil
}
