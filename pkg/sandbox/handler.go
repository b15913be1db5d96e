package sandbox

import (
	"github.com/pod-shim/pod-shim/pkg/runc"
)

// Runtime is the OCI runtime of the pod's RuntimeClass handler, recorded in
// its Config: the binary and --root its pause and every one of its
// containers run under, and that Stop, Remove, a restarted daemon and the
// container manager use for it. It is the only way from a pod to a runtime,
// so a pod cannot span two runc roots.
func (m *Manager) Runtime(sb *Sandbox) (*runc.Runtime, error) {
	return m.opts.Handlers.Runtime(sb.Config.RuntimeHandler)
}

// Handlers are the node's RuntimeClass handlers. A nil Manager (a CRI
// server without one) knows only the default handler.
func (m *Manager) Handlers() *runc.Handlers {
	if m == nil {
		return nil
	}
	return m.opts.Handlers
}

// directOf is the runtime that deletes the pod's pause (and containers)
// without the pod's monitor; nil when the manager may not drive a runtime
// directly.
func (m *Manager) directOf(sb *Sandbox) Runtime {
	if m.opts.Direct == nil {
		return nil
	}
	rt, err := m.Runtime(sb)
	if err != nil {
		// Recorded by a daemon whose config had this handler: the default
		// runtime is the best left to try.
		m.log.Warn("pod's runtime handler is gone; deleting through the default runtime", "sandbox", sb.ID, "handler", sb.Config.RuntimeHandler, "error", err)
		return m.opts.Direct
	}
	return rt
}
