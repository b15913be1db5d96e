package container

import (
	"context"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Hooks are told of each container's lifecycle and may adjust it, for NRI
// plugins (pkg/nri implements them). Options.Hooks nil means none, at the
// cost of one nil check per call; the package knows nothing of NRI.
type Hooks interface {
	// BeginCreate is called as a Create starts; the function it returns
	// when the Create has ended either way (NRI holds plugin registration
	// in between, so no plugin misses the container).
	BeginCreate() (end func())
	// CreateContainer may adjust the spec of a container not yet visible,
	// before it is written; an error fails the Create.
	CreateContainer(ctx context.Context, c *Container, spec *specs.Spec) error
	// PostCreateContainer is told of a container recorded as created.
	PostCreateContainer(ctx context.Context, c *Container)
	// StartContainer is called before the container's process runs; an
	// error fails the Start.
	StartContainer(ctx context.Context, c *Container) error
	// PostStartContainer is told of a container recorded as running.
	PostStartContainer(ctx context.Context, c *Container)
	// UpdateContainer may change the resources of an update before they
	// are applied; PostUpdateContainer is told once they are.
	UpdateContainer(ctx context.Context, c *Container, r *Resources) (*Resources, error)
	PostUpdateContainer(ctx context.Context, c *Container)
	// StopContainer is told of a container found exited (stopped or on its
	// own). It may be told more than once of one container.
	StopContainer(ctx context.Context, c *Container)
	// RemoveContainer is told of a container removed, also of one whose
	// Create failed after CreateContainer.
	RemoveContainer(ctx context.Context, c *Container)
}
