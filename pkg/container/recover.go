package container

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/pod-shim/pod-shim/pkg/runc"
)

// recover settles, at daemon start, a record the previous daemon left
// mid-operation or that the host's restart made stale.
//
// Assumptions: the exit files and runc's state live in the state dir
// (tmpfs); if the pod's dir is gone the host restarted and nothing of the
// pod runs any more. A container caught in StateStarting ran if and only if
// runc knows it.
func (m *Manager) recover(c *Container) error {
	sb, err := m.sandboxes.Get(c.SandboxID)
	if err != nil {
		return nil // an orphan; RemovePodSandbox of its pod is gone too
	}
	if _, err := os.Stat(sb.Dir); os.IsNotExist(err) && (c.State == StateRunning || c.State == StateStarting) {
		c.State = StateExited
		c.ExitCode = 255
		c.FinishedAt = time.Now()
		c.Reason = "Unknown"
		c.Message = "the host restarted while the container was running"
		return m.save(c)
	}
	if c.State != StateStarting {
		return nil
	}
	rt, err := m.runtimeOf(c)
	if err != nil {
		return nil // no runtime to ask: leave the record as it is
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := settledState(ctx, rt, c.ID)
	switch {
	case errors.Is(err, runc.ErrNotFound):
		c.State = StateCreated
	case err != nil:
		return err
	default:
		c.State = StateRunning
		c.Pid = st.Pid
		c.StartedAt = st.Created
		m.refresh(c)
	}
	return m.save(c)
}

// settledState asks runc about a container whose start a crashed daemon left
// in flight. The monitor aborts a create whose caller hung up, so for a
// moment runc may still know a container that is about to be deleted (or be
// half-way through creating it): only the same answer twice, a second
// apart, and not "created", counts. The bound keeps a broken runc from
// holding up the daemon's start.
func settledState(ctx context.Context, rt Runtime, id string) (*runc.State, error) {
	var prevStatus string
	for i := 0; ; i++ {
		st, err := rt.State(ctx, id)
		if err != nil && !errors.Is(err, runc.ErrNotFound) {
			return nil, err
		}
		status := "gone"
		if err == nil {
			status = st.Status
		}
		if (i > 0 && status == prevStatus && status != "created") || i >= 10 {
			return st, err
		}
		prevStatus = status
		select {
		case <-ctx.Done():
			return st, err
		case <-time.After(time.Second):
		}
	}
}
