package cri

import (
	"context"

	"github.com/pod-shim/pod-shim/pkg/events"
)

// initNodeServices sets up the parts of the server beyond the lifecycle
// RPCs: stats, streaming, events and metrics. Kept apart from New so those
// parts grow here without touching the core wiring.
func (s *Server) initNodeServices(o Options) {
	if o.Stats != nil {
		// The image store knows where the writable layers are.
		layers := o.LayerRoot
		if o.Images != nil {
			layers = o.Images.WritableLayersRoot()
		}
		s.stats = newStatsSource(o.Stats, layers)
	}
	s.streamer = o.Streamer
	if o.Events != nil {
		s.lifecycle = events.NewPoller(o.Events, eventSource{s}, o.Logger)
	}
}

// RunNodeServices runs the background work of the node services (the
// events poller) until ctx ends.
func (s *Server) RunNodeServices(ctx context.Context) {
	if s.lifecycle != nil {
		s.lifecycle.Run(ctx)
	}
}
