package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/bench/procmem"
	"github.com/pod-shim/pod-shim/test/harness"
)

// benchPods is how many pods one BenchmarkPodReady run starts, one after another.
const benchPods = 20

// BenchmarkPodReady measures pod-ready latency (issue 2, item 6): the time of
// RunPodSandbox + CreateContainer + StartContainer of busybox `sleep 3600`,
// for benchPods pods (or b.N, if larger) in sequence, reported as p50/p99.
//
//	go test -count=1 -run '^$' -bench PodReady -benchtime 1x ./test/e2e/
//
// The "endpoint" variant runs the same against any CRI socket, e.g. containerd
// for a ratio: POD_SHIM_BENCH_ENDPOINT=/run/containerd/containerd.sock, with
// POD_SHIM_BENCH_IMAGE naming an image that runtime can pull or already has
// (default: the busybox image on this run's 127.0.0.1 registry, which the
// runtime must be willing to pull over plain HTTP).
func BenchmarkPodReady(b *testing.B) {
	b.Run("pod-shim", func(b *testing.B) {
		requireHost(b)
		_, ref := registry(b)
		d := startDaemon(b)
		rs, is := d.Client()
		benchPodReady(b, rs, is, ref, d.LogDir, d.State)
	})
	b.Run("endpoint", func(b *testing.B) {
		sock := os.Getenv("POD_SHIM_BENCH_ENDPOINT")
		if sock == "" {
			b.Skip("set POD_SHIM_BENCH_ENDPOINT to a CRI socket (e.g. containerd's) to compare")
		}
		requireHost(b)
		image := os.Getenv("POD_SHIM_BENCH_IMAGE")
		if image == "" {
			_, image = registry(b)
		}
		logDir, err := os.MkdirTemp("", "pod-shim-bench-logs-")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { os.RemoveAll(logDir) })
		rs, is := harness.DialCRI(b, sock)
		// The per-pod processes of that runtime are found by this string in
		// their command line (containerd's shims name the socket).
		benchPodReady(b, rs, is, image, logDir, sock)
	})
}

func benchPodReady(b *testing.B, rs cri.RuntimeServiceClient, is cri.ImageServiceClient, image, logDir, procMatch string) {
	ctx := context.Background()
	pull, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	// Pull only when absent: another runtime may hold an imported image it cannot pull offline.
	st, err := is.ImageStatus(pull, &cri.ImageStatusRequest{Image: &cri.ImageSpec{Image: image}})
	if err != nil {
		b.Fatalf("ImageStatus %s: %v", image, err)
	}
	if st.Image == nil {
		if _, err := is.PullImage(pull, &cri.PullImageRequest{Image: &cri.ImageSpec{Image: image}}); err != nil {
			b.Fatalf("PullImage %s: %v", image, err)
		}
	}
	run := harness.RandHex(3)
	var pods []string
	b.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		for _, id := range pods {
			if _, err := rs.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: id}); err != nil {
				b.Errorf("StopPodSandbox %s: %v", id, err)
			}
			if _, err := rs.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: id}); err != nil {
				b.Errorf("RemovePodSandbox %s: %v", id, err)
			}
		}
	})

	n := max(b.N, benchPods)
	lat := make([]time.Duration, 0, n)
	b.ResetTimer()
	for i := range n {
		name := fmt.Sprintf("bench-%s-%d", run, i)
		podCfg := &cri.PodSandboxConfig{
			Metadata:     &cri.PodSandboxMetadata{Name: name, Namespace: "bench", Uid: harness.RandHex(16)},
			Hostname:     name,
			LogDirectory: filepath.Join(logDir, name),
			Linux:        &cri.LinuxPodSandboxConfig{},
		}
		ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
		start := time.Now()
		pod, err := rs.RunPodSandbox(ctx, &cri.RunPodSandboxRequest{Config: podCfg})
		if err != nil {
			cancel()
			b.Fatalf("RunPodSandbox %d: %v", i, err)
		}
		pods = append(pods, pod.PodSandboxId)
		ctr, err := rs.CreateContainer(ctx, &cri.CreateContainerRequest{
			PodSandboxId: pod.PodSandboxId,
			Config: &cri.ContainerConfig{
				Metadata: &cri.ContainerMetadata{Name: "sleep"},
				Image:    &cri.ImageSpec{Image: image},
				Command:  []string{"sleep", "3600"},
				LogPath:  "sleep.log",
				Linux:    &cri.LinuxContainerConfig{},
			},
			SandboxConfig: podCfg,
		})
		if err != nil {
			cancel()
			b.Fatalf("CreateContainer %d: %v", i, err)
		}
		if _, err := rs.StartContainer(ctx, &cri.StartContainerRequest{ContainerId: ctr.ContainerId}); err != nil {
			cancel()
			b.Fatalf("StartContainer %d: %v", i, err)
		}
		lat = append(lat, time.Since(start))
		cancel()
	}
	b.StopTimer()
	// Memory each pod costs the node beyond its own containers: the pod's
	// monitor/shim and its pause, as proportional set size (shared pages
	// split among the processes sharing them).
	if kib, procs := procmem.PerPod(procMatch); procs > 0 {
		b.ReportMetric(float64(kib)/1024/float64(len(lat)), "overhead-MiB/pod")
		b.Logf("per-pod runtime processes: %d (shim/monitor + pause), PSS %.1f MiB in all, %.2f MiB per pod", procs, float64(kib)/1024, float64(kib)/1024/float64(len(lat)))
	}

	slices.Sort(lat)
	var total time.Duration
	for _, l := range lat {
		total += l
	}
	p50, p99 := percentile(lat, 50), percentile(lat, 99)
	b.ReportMetric(float64(total.Nanoseconds())/float64(len(lat)), "ns/op") // one op is one pod made ready
	b.ReportMetric(float64(p50.Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(p99.Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(total.Microseconds())/1000/float64(len(lat)), "mean-ms")
	b.ReportMetric(float64(len(lat)), "pods")
	b.Logf("pod-ready latency over %d pods: p50 %v, p99 %v, min %v, max %v", len(lat), p50, p99, lat[0], lat[len(lat)-1])
}

// percentile is the nearest-rank percentile of sorted durations.
func percentile(sorted []time.Duration, p int) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	rank := (p*len(sorted) + 99) / 100 // ceil(p/100 * n)
	return sorted[max(rank, 1)-1]
}
