package container

// Recovery of containers at daemon start, after sandbox.Recover.
//
// Assumptions:
//   - The store is the truth about which containers exist; the host is
//     brought in line with it, never the other way round.
//   - A record left in StateCreating is a Create the previous daemon did not
//     finish: nobody was told of the container, so it is undone.
//   - The exit files and runc's state live in the state dir (tmpfs): if a
//     pod's dir is gone the host restarted and nothing of the pod runs.
//   - A container caught in StateStarting ran if and only if runc knows it
//     (settledState) or its exit file exists: the monitor deletes a
//     container from runc as soon as it has recorded its exit.
//   - Nothing else touches containers yet: Recover runs before the CRI
//     server serves, but still takes each container's lock, so a late call
//     cannot interleave with it.

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/runc"
	"github.com/pod-shim/pod-shim/pkg/store"
)

// Recover settles every record the previous daemon left mid-operation or
// that the host's restart made stale. It stops early when ctx ends (the
// daemon is told to quit while it recovers); a container it fails to
// settle is logged and left as it is.
func (m *Manager) Recover(ctx context.Context) error {
	all, err := store.List[Container](m.db, bucket)
	if err != nil {
		return fmt.Errorf("load containers: %w", err)
	}
	for _, c := range all {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := m.recoverOne(ctx, c.ID); err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			m.log.Error("recover container", "container", c.ID, "error", err)
		}
	}
	return nil
}

func (m *Manager) recoverOne(ctx context.Context, id string) error {
	unlock, err := m.locks.LockContext(ctx, id)
	if err != nil {
		return err
	}
	defer unlock()
	var c Container
	if err := m.db.Get(bucket, id, &c); errors.Is(err, store.ErrNotFound) {
		return nil
	} else if err != nil {
		return err
	}
	if c.State == StateCreating {
		m.log.Info("undoing interrupted container creation", "container", c.ID)
		return m.discard(ctx, &c)
	}
	return m.recover(ctx, &c)
}

// recover settles one record (see the assumptions above).
func (m *Manager) recover(ctx context.Context, c *Container) error {
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
		return m.settle(ctx, c)
	}
	rt, err := m.runtimeOf(c)
	if err != nil {
		return nil // no runtime to ask: leave the record as it is
	}
	rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	st, err := settledState(rctx, rt, c.ID)
	switch {
	case errors.Is(err, runc.ErrNotFound):
		if _, xerr := monitor.ReadExit(sb.Dir, c.ID); xerr == nil {
			// It ran and exited, and the monitor deleted it from runc
			// when it reaped the exit: the exit file is the record.
			c.State = StateRunning
			return m.settle(ctx, c)
		}
		c.State = StateCreated
	case err != nil:
		return err
	default:
		c.State = StateRunning
		c.Pid = st.Pid
		c.StartedAt = st.Created
		if err := m.save(c); err != nil {
			return err
		}
		return m.settle(ctx, c)
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
