package containers

import (
	"os"
	"sort"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// TestCreateStartLatency reports CreateContainer and StartContainer
// latency (p50/p90 over 30 containers in one pod) with a kubelet-like
// config: RuntimeDefault seccomp, limits, a volume. Figures only: nothing
// is asserted on timing. Compare builds with POD_SHIM_BIN_DIR.
func TestCreateStartLatency(t *testing.T) {
	e := newEnv(t)
	var creates, starts []time.Duration
	for range 30 {
		cfg := e.config("sleep 300")
		if os.Getenv("LATENCY_NO_SECCOMP") == "" {
			cfg.Linux.SecurityContext.Seccomp = &cri.SecurityProfile{ProfileType: cri.SecurityProfile_RuntimeDefault}
		}
		cfg.Linux.Resources.MemoryLimitInBytes = 64 << 20
		cfg.Linux.Resources.CpuQuota = 50000
		cfg.Linux.Resources.CpuPeriod = 100000
		cfg.Mounts = []*cri.Mount{{ContainerPath: "/data", HostPath: t.TempDir()}}
		t0 := time.Now()
		resp, err := e.rs.CreateContainer(ctx(t), &cri.CreateContainerRequest{PodSandboxId: e.pod, Config: cfg, SandboxConfig: e.podCfg})
		if err != nil {
			t.Fatal(err)
		}
		t1 := time.Now()
		if _, err := e.rs.StartContainer(ctx(t), &cri.StartContainerRequest{ContainerId: resp.ContainerId}); err != nil {
			t.Fatal(err)
		}
		creates = append(creates, t1.Sub(t0))
		starts = append(starts, time.Since(t1))
		if _, err := e.rs.RemoveContainer(ctx(t), &cri.RemoveContainerRequest{ContainerId: resp.ContainerId}); err != nil {
			t.Fatal(err)
		}
	}
	pct := func(d []time.Duration, p int) time.Duration {
		sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
		return d[(len(d)-1)*p/100]
	}
	t.Logf("CreateContainer p50 %v p90 %v; StartContainer p50 %v p90 %v (n=%d)",
		pct(creates, 50), pct(creates, 90), pct(starts, 50), pct(starts, 90), len(creates))
}
