package sandbox

import (
	"fmt"

	"github.com/pod-shim/pod-shim/pkg/runc"
)

// runtimeOf is the OCI runtime of the pod's RuntimeClass handler, recorded
// in its Config so that a restarted daemon, Stop and Remove use the runtime
// (and --root) the pod was created with. "" and "runc", or no handler
// table, are the daemon's default runtime.
func (m *Manager) runtimeOf(sb *Sandbox) (*runc.Runtime, error) {
	name := sb.Config.RuntimeHandler
	if m.opts.Handlers != nil && name != "" && name != "runc" {
		h, ok := m.opts.Handlers.Get(name)
		if !ok {
			return nil, fmt.Errorf("unknown runtime handler %q", name)
		}
		return runc.FromHandler(h), nil
	}
	return runc.New(m.opts.Runtime, m.opts.RuntimeRoot), nil
}

// directOf is the Direct runtime for the pod's handler: nil when Direct is
// (tests), the handler's runtime when the pod has its own.
func (m *Manager) directOf(sb *Sandbox) *runc.Runtime {
	if m.opts.Direct == nil {
		return nil
	}
	name := sb.Config.RuntimeHandler
	if name == "" || name == "runc" || m.opts.Handlers == nil {
		return m.opts.Direct
	}
	rt, err := m.runtimeOf(sb)
	if err != nil {
		return m.opts.Direct
	}
	return rt
}
