package sandbox

import "context"

// Hooks are told of each pod's lifecycle, for NRI plugins (pkg/nri
// implements them). Options.Hooks nil means none, at the cost of one nil
// check per call; the package knows nothing of NRI.
type Hooks interface {
	// BeginRun is called as a Run starts; the function it returns when
	// the Run has ended either way. NRI holds plugin registration in
	// between, so a plugin registering meanwhile learns of the pod in its
	// Synchronize or by an event, never neither.
	BeginRun() (end func())
	// RunPodSandbox is called once the pod is made but before it is Ready
	// and visible; an error fails the Run, which undoes the pod.
	RunPodSandbox(ctx context.Context, sb *Sandbox) error
	// StopPodSandbox is called once per pod, when a Stop first finds it
	// Ready: its containers are stopped, its pause still runs.
	StopPodSandbox(ctx context.Context, sb *Sandbox) error
	// RemovePodSandbox is called when a pod's resources are released,
	// before its record goes.
	RemovePodSandbox(ctx context.Context, sb *Sandbox) error
}
