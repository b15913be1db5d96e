// Package metrics exposes the daemon's Prometheus metrics (per-RPC latency
// and errors, pods and containers by state, monitors) on an optional HTTP
// address (Go's pprof handlers are not here: the daemon serves them only on
// their own debug_address, when asked). It uses github.com/prometheus/client_golang, the reference client, so the
// exposition format and the lint rules are Prometheus's own.
package metrics

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/status"
)

// Metrics is the daemon's registry and the instruments the gRPC edge feeds.
type Metrics struct {
	Registry    *prometheus.Registry
	rpcDuration *prometheus.HistogramVec
	rpcErrors   *prometheus.CounterVec

	cniDuration  *prometheus.HistogramVec
	cniErrors    *prometheus.CounterVec
	pullBytes    prometheus.Counter
	pullDuration prometheus.Histogram
	pullFailures prometheus.Counter
	oomKills     prometheus.Counter

	oomMu   sync.Mutex
	oomSeen map[string]bool // containers already counted
}

// New returns the metrics with Go runtime and process collectors registered.
func New() *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		rpcDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "pod_shim", Name: "cri_request_duration_seconds",
			Help:    "Latency of CRI gRPC requests by method.",
			Buckets: []float64{.001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"method"}),
		rpcErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "pod_shim", Name: "cri_request_errors_total",
			Help: "CRI gRPC requests that failed, by method and gRPC code.",
		}, []string{"method", "code"}),
	}
	m.cniDuration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Namespace: "pod_shim", Name: "cni_operation_duration_seconds",
		Help:    "Latency of CNI ADD and DEL of a pod's network list.",
		Buckets: []float64{.01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
	}, []string{"operation"})
	m.cniErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "pod_shim", Name: "cni_operation_errors_total",
		Help: "CNI ADD and DEL calls that failed.",
	}, []string{"operation"})
	m.pullBytes = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "pod_shim", Name: "image_pull_bytes_total",
		Help: "Bytes received from registries by image pulls.",
	})
	m.pullDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "pod_shim", Name: "image_pull_duration_seconds",
		Help:    "Duration of image pulls, failed ones included.",
		Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300},
	})
	m.pullFailures = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "pod_shim", Name: "image_pull_failures_total",
		Help: "Image pulls that failed.",
	})
	m.oomKills = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "pod_shim", Name: "container_oom_kills_total",
		Help: "Containers whose exit was an OOM kill.",
	})
	m.Registry.MustRegister(m.cniDuration, m.cniErrors, m.pullBytes, m.pullDuration, m.pullFailures, m.oomKills)
	m.Registry.MustRegister(m.rpcDuration, m.rpcErrors,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// ObserveCNI records one CNI ADD or DEL (network.Options.ObserveCNI). A
// nil Metrics records nothing.
func (m *Metrics) ObserveCNI(op string, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.cniDuration.WithLabelValues(op).Observe(d.Seconds())
	if err != nil {
		m.cniErrors.WithLabelValues(op).Inc()
	}
}

// ObservePull records one image pull (image.Options.ObservePull).
func (m *Metrics) ObservePull(bytes int64, d time.Duration, err error) {
	if m == nil {
		return
	}
	m.pullBytes.Add(float64(bytes))
	m.pullDuration.Observe(d.Seconds())
	if err != nil {
		m.pullFailures.Inc()
	}
}

// maxOOMSeen bounds the set that keeps a container from being counted
// twice; past it the set starts over (OOM kills are rare).
const maxOOMSeen = 4096

// OOMKill counts container id as OOM-killed, once
// (container.Options.OnOOMKill).
func (m *Metrics) OOMKill(id string) {
	if m == nil {
		return
	}
	m.oomMu.Lock()
	defer m.oomMu.Unlock()
	if m.oomSeen[id] {
		return
	}
	if m.oomSeen == nil || len(m.oomSeen) >= maxOOMSeen {
		m.oomSeen = map[string]bool{}
	}
	m.oomSeen[id] = true
	m.oomKills.Inc()
}

func method(full string) string { return full[strings.LastIndex(full, "/")+1:] }

func (m *Metrics) observe(full string, start time.Time, err error) {
	name := method(full)
	m.rpcDuration.WithLabelValues(name).Observe(time.Since(start).Seconds())
	if err != nil {
		m.rpcErrors.WithLabelValues(name, status.Code(err).String()).Inc()
	}
}

// UnaryInterceptor times every unary RPC.
func (m *Metrics) UnaryInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := h(ctx, req)
	m.observe(info.FullMethod, start, err)
	return resp, err
}

// StreamInterceptor times every streaming RPC over its whole life.
func (m *Metrics) StreamInterceptor(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, h grpc.StreamHandler) error {
	start := time.Now()
	err := h(srv, ss)
	m.observe(info.FullMethod, start, err)
	return err
}

// Gauge is a set of labelled values computed at scrape time.
type Gauge struct {
	desc *prometheus.Desc
	fn   func() map[string]float64
}

// NewGaugeFunc registers a gauge whose values (one per value of label)
// come from fn on each scrape.
func (m *Metrics) NewGaugeFunc(name, help, label string, fn func() map[string]float64) {
	var labels []string
	if label != "" {
		labels = []string{label}
	}
	m.Registry.MustRegister(&Gauge{desc: prometheus.NewDesc("pod_shim_"+name, help, labels, nil), fn: fn})
}

// Describe implements prometheus.Collector.
func (g *Gauge) Describe(ch chan<- *prometheus.Desc) { ch <- g.desc }

// Collect implements prometheus.Collector.
func (g *Gauge) Collect(ch chan<- prometheus.Metric) {
	for k, v := range g.fn() {
		if k == "" {
			ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v)
		} else {
			ch <- prometheus.MustNewConstMetric(g.desc, prometheus.GaugeValue, v, k)
		}
	}
}

// Server serves /metrics on addr.
type Server struct {
	srv *http.Server
	ln  net.Listener
}

// Serve starts the HTTP server in the background.
func (m *Metrics) Serve(addr string, log *slog.Logger) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(m.Registry, promhttp.HandlerOpts{}))
	s := &Server{srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}, ln: ln}
	go func() {
		if err := s.srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics server stopped", "error", err)
		}
	}()
	return s, nil
}

// Addr is the bound address.
func (s *Server) Addr() string { return s.ln.Addr().String() }

// Close stops the server.
func (s *Server) Close() error { return s.srv.Close() }
