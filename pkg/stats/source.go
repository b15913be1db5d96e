package stats

import (
	"sync"
	"time"

	"github.com/pod-shim/pod-shim/pkg/oci"
)

// Source is what the stats and metrics calls read through: the cgroup
// sampler (with the previous CPU sample of every object) and the
// containers' cgroup paths, which never change and would otherwise cost a
// config.json parse per container per call. Where a container's writable
// layer is, the caller says (the image store knows).
type Source struct {
	Collector *Collector

	mu      sync.Mutex
	cgroups map[string]string
}

// NewSource reads cgroups through c.
func NewSource(c *Collector) *Source {
	return &Source{Collector: c, cgroups: map[string]string{}}
}

// CgroupOf is the cgroup path of container id, from its bundle's OCI spec
// the first time; "" when the spec names none.
func (s *Source) CgroupOf(id, bundle string) (string, error) {
	s.mu.Lock()
	p, ok := s.cgroups[id]
	s.mu.Unlock()
	if ok {
		return p, nil
	}
	spec, err := oci.ReadBundle(bundle)
	if err != nil {
		return "", err
	}
	if spec.Linux != nil {
		p = spec.Linux.CgroupsPath
	}
	s.mu.Lock()
	s.cgroups[id] = p
	s.mu.Unlock()
	return p, nil
}

// Retain drops the cgroup paths of containers not in live.
func (s *Source) Retain(live map[string]bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id := range s.cgroups {
		if !live[id] {
			delete(s.cgroups, id)
		}
	}
}

// Layer is the usage of container id's writable layer dir upper (cached a
// while).
func (s *Source) Layer(id, upper string) FsUsage { return s.Collector.Layer(id, upper) }

// Container samples a running container's cgroup (nil, nil when its spec
// names no cgroup).
func (s *Source) Container(id, bundle string) (*Sample, error) {
	path, err := s.CgroupOf(id, bundle)
	if err != nil || path == "" {
		return nil, err
	}
	return s.Collector.Read(id, path)
}

// Pod samples a pod. Under the kubelet every container's cgroup is a child
// of the pod's cgroup parent, which then holds the pod's total; without a
// parent the pause and app cgroups (paths) are siblings and are added up.
func (s *Source) Pod(id, parent string, paths []string) (*Sample, error) {
	if parent != "" && s.Collector.H.Exists(parent) {
		return s.Collector.Read("pod:"+id, parent)
	}
	return s.Collector.Sum("pod:"+id, paths)
}

// ContainerMetrics adds a running container's cadvisor metrics to m: its
// lifetime, writable layer (upper; "" if unknown), cgroup, processes and
// block devices.
func (s *Source) ContainerMetrics(m *MetricSet, id, bundle, upper string, startedAt, now time.Time) {
	m.Lifetime(startedAt, now)
	if fs, err := Filesystem(upper); upper != "" && err == nil {
		m.Filesystem(fs, s.Collector.Layer(id, upper))
	}
	path, err := s.CgroupOf(id, bundle)
	if err != nil || path == "" {
		return
	}
	if smp, err := s.Collector.Read(id, path); err == nil {
		m.Cgroup(smp.Cgroup)
	}
	e := s.Collector.H.ReadExtra(path)
	m.Extra(e, Procs("/proc", e.Procs), BlockDevice)
}
