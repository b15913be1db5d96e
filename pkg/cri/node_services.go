package cri

// initNodeServices sets up the parts of the server beyond the lifecycle
// RPCs: stats, streaming, events and metrics. Kept apart from New so those
// parts grow here without touching the core wiring.
func (s *Server) initNodeServices(o Options) {
	if o.Stats != nil {
		s.stats = newStatsSource(o.Stats, o.LayerRoot)
	}
}
