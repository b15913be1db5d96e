package stats

import (
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"
)

// Collector samples cgroups and keeps the previous CPU sample of each
// object, so usage_nano_cores is the rate since the last call that saw it.
// It also caches writable-layer walks, which cost a directory tree walk.
type Collector struct {
	H *Hierarchy

	mu      sync.Mutex
	prevCPU map[string]cpuSample
	layers  map[string]layerSample
}

type cpuSample struct {
	t     time.Time
	usage uint64
	rate  uint64
	ok    bool
}

type layerSample struct {
	t      time.Time
	usage  FsUsage
	expiry time.Duration
}

// FsUsage is bytes and inodes used under a directory.
type FsUsage struct {
	Bytes, Inodes uint64
}

// minRateWindow keeps two calls made back to back from producing a rate over
// a few microseconds, which is mostly noise: the previous rate is reused.
const minRateWindow = 100 * time.Millisecond

// layerTTL bounds how often one container's writable layer is walked; the
// kubelet asks every 10 s and crictl may ask in a loop.
const layerTTL = 2 * time.Second

// NewCollector returns a Collector over h.
func NewCollector(h *Hierarchy) *Collector {
	return &Collector{H: h, prevCPU: map[string]cpuSample{}, layers: map[string]layerSample{}}
}

// Sample is a cgroup reading with the CPU rate worked out.
type Sample struct {
	*Cgroup
	NanoCores    uint64
	HasNanoCores bool
}

// Read samples the cgroup at path and records it under key for the rate.
func (c *Collector) Read(key, path string) (*Sample, error) {
	cg, err := c.H.Read(path)
	if err != nil {
		return nil, err
	}
	return c.withRate(key, cg), nil
}

// Rate attaches the CPU rate to an already-read (e.g. summed) sample.
func (c *Collector) withRate(key string, cg *Cgroup) *Sample {
	s := &Sample{Cgroup: cg}
	if !cg.HasCPU {
		return s
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	prev, ok := c.prevCPU[key]
	now := cpuSample{t: cg.Time, usage: cg.CPUUsageNanos}
	switch {
	case ok && cg.Time.Sub(prev.t) < minRateWindow:
		// Too close to the last sample: report its rate, keep its baseline.
		s.NanoCores, s.HasNanoCores = prev.rate, prev.ok
		return s
	case ok && cg.CPUUsageNanos >= prev.usage:
		dt := cg.Time.Sub(prev.t)
		now.rate = uint64(float64(cg.CPUUsageNanos-prev.usage) / dt.Seconds())
		now.ok = true
		s.NanoCores, s.HasNanoCores = now.rate, true
	}
	c.prevCPU[key] = now
	return s
}

// Sum reads several cgroups, adds them up, and attaches a rate under key.
// Missing cgroups (a container that just ended) are skipped.
func (c *Collector) Sum(key string, paths []string) (*Sample, error) {
	var total *Cgroup
	var firstErr error
	for _, p := range paths {
		cg, err := c.H.Read(p)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		if total == nil {
			total = cg
		} else {
			total.Add(cg)
		}
	}
	if total == nil {
		return nil, firstErr
	}
	return c.withRate(key, total), nil
}

// Forget drops what is kept for key (a removed container or pod).
func (c *Collector) Forget(key string) {
	c.mu.Lock()
	delete(c.prevCPU, key)
	delete(c.layers, key)
	c.mu.Unlock()
}

// Retain drops everything kept for keys not in live.
func (c *Collector) Retain(live map[string]bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k := range c.prevCPU {
		if !live[k] {
			delete(c.prevCPU, k)
		}
	}
	for k := range c.layers {
		if !live[k] {
			delete(c.layers, k)
		}
	}
}

// Layer returns the usage of a container's writable layer dir, walking it at
// most once per layerTTL. A missing dir is zero usage.
func (c *Collector) Layer(key, dir string) FsUsage {
	c.mu.Lock()
	if l, ok := c.layers[key]; ok && time.Since(l.t) < l.expiry {
		c.mu.Unlock()
		return l.usage
	}
	c.mu.Unlock()
	start := time.Now()
	u := DirUsage(dir)
	// A walk that took long is repeated less often, so a huge layer cannot
	// turn stats calls into a disk scan.
	ttl := max(layerTTL, 20*time.Since(start))
	c.mu.Lock()
	c.layers[key] = layerSample{t: time.Now(), usage: u, expiry: ttl}
	c.mu.Unlock()
	return u
}

// DirUsage counts the bytes (allocated blocks, as du does) and inodes under
// dir, hard links once. It does not cross mount points.
func DirUsage(dir string) FsUsage {
	var u FsUsage
	root, err := os.Lstat(dir)
	if err != nil {
		return u
	}
	rootDev := root.Sys().(*syscall.Stat_t).Dev
	seen := map[uint64]bool{}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return nil
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok {
			return nil
		}
		if st.Dev != rootDev {
			return filepath.SkipDir
		}
		if st.Nlink > 1 && !info.IsDir() {
			if seen[st.Ino] {
				return nil
			}
			seen[st.Ino] = true
		}
		u.Inodes++
		u.Bytes += uint64(st.Blocks) * 512
		return nil
	})
	return u
}
