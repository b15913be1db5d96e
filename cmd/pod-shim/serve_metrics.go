package main

import (
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"google.golang.org/grpc"

	"github.com/pod-shim/pod-shim/pkg/container"
	"github.com/pod-shim/pod-shim/pkg/events"
	"github.com/pod-shim/pod-shim/pkg/metrics"
	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// startMetrics serves /metrics when an address is configured and returns
// the gRPC options that time every RPC (first, so they see final codes),
// and a stop function.
// newMetrics is the daemon's metrics, or nil (which records nothing) when
// no address is configured: its hooks go to the managers as they are made.
func newMetrics(addr string) *metrics.Metrics {
	if addr == "" {
		return nil
	}
	return metrics.New()
}

func startMetrics(m *metrics.Metrics, addr string, sandboxes *sandbox.Manager, containers *container.Manager, ev *events.Broker, log *slog.Logger) ([]grpc.ServerOption, func(), error) {
	if m == nil {
		return nil, func() {}, nil
	}
	m.NewGaugeFunc("pods", "Pod sandboxes by state.", "state", func() map[string]float64 {
		out := map[string]float64{string(sandbox.StateReady): 0, string(sandbox.StateNotReady): 0}
		if sbs, err := sandboxes.List(sandbox.Filter{}); err == nil {
			for _, sb := range sbs {
				out[string(sb.State)]++
			}
		}
		return out
	})
	m.NewGaugeFunc("containers", "Containers by state.", "state", func() map[string]float64 {
		out := map[string]float64{}
		for _, s := range []container.State{container.StateCreated, container.StateRunning, container.StateExited} {
			out[string(s)] = 0
		}
		if cs, err := containers.List(container.Filter{}); err == nil {
			for _, c := range cs {
				out[string(c.State)]++
			}
		}
		return out
	})
	m.NewGaugeFunc("monitors", "Pod monitor processes expected to run (one per ready pod).", "", func() map[string]float64 {
		ready := sandbox.StateReady
		n := 0
		if sbs, err := sandboxes.List(sandbox.Filter{State: &ready}); err == nil {
			n = len(sbs)
		}
		return map[string]float64{"": float64(n)}
	})
	m.NewGaugeFunc("monitors_running", "Pod monitor processes alive (pid file of a ready pod naming a live process).", "", func() map[string]float64 {
		ready := sandbox.StateReady
		n := 0
		if sbs, err := sandboxes.List(sandbox.Filter{State: &ready}); err == nil {
			for _, sb := range sbs {
				if monitorAlive(sb.Dir) {
					n++
				}
			}
		}
		return map[string]float64{"": float64(n)}
	})
	m.NewGaugeFunc("event_subscribers", "Live GetContainerEvents subscribers.", "", func() map[string]float64 {
		return map[string]float64{"": float64(ev.Subscribers())}
	})
	srv, err := m.Serve(addr, log)
	if err != nil {
		return nil, nil, err
	}
	log.Info("metrics listening", "address", srv.Addr())
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(m.UnaryInterceptor),
		grpc.ChainStreamInterceptor(m.StreamInterceptor),
	}
	return opts, func() { srv.Close() }, nil
}

// monitorAlive reads a pod's monitor pid file and checks the process exists.
func monitorAlive(dir string) bool {
	b, err := os.ReadFile(filepath.Join(dir, monitor.PidName))
	if err != nil {
		return false
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}
