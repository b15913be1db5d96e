package container

// InPod lists the ids of a pod's containers, for the sandbox manager's pod
// Stop and Remove (sandbox.Containers, with Stop and Remove), which take
// them down under the pod's lock before the pause.
func (m *Manager) InPod(sandboxID string) ([]string, error) {
	cs, err := m.List(Filter{SandboxID: sandboxID})
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(cs))
	for i, c := range cs {
		ids[i] = c.ID
	}
	return ids, nil
}
