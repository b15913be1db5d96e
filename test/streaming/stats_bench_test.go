package streaming

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// BenchmarkListContainerStats: the latency of one ListContainerStats (no
// filter, as the kubelet calls it) with 20 and 50 running containers, over
// the daemon's socket. Writable-layer walks are cached (2 s), so most calls
// read only cgroup files; the calls that re-walk are part of the average.
//
//	go test -run '^$' -bench ListContainerStats -benchtime 200x ./test/streaming/
func BenchmarkListContainerStats(b *testing.B) {
	requireHost(b)
	for _, n := range []int{20, 50} {
		b.Run(fmt.Sprintf("N=%d", n), func(b *testing.B) {
			d := startDaemon(b)
			_, ref := registry(b)
			d.Crictl("pull", ref)
			// Two pods, so no one monitor holds all of them.
			var wg sync.WaitGroup
			for p := range 2 {
				pod, podCfg := d.CrictlRunPod(fmt.Sprintf("bench%d", p))
				for i := p; i < n; i += 2 {
					wg.Add(1)
					go func() {
						defer wg.Done()
						cfg := d.ContainerConfigFile(fmt.Sprintf("c%d", i), ref, "sleep", "100000")
						id, err := d.CrictlErr("create", pod, cfg, podCfg)
						if err == nil {
							_, err = d.CrictlErr("start", strings.TrimSpace(id))
						}
						if err != nil {
							b.Error(err)
						}
					}()
				}
			}
			wg.Wait()
			if b.Failed() {
				b.FailNow()
			}
			rs, _ := d.Client()
			ctx := context.Background()
			r, err := rs.ListContainerStats(ctx, &cri.ListContainerStatsRequest{})
			if err != nil {
				b.Fatal(err)
			}
			if len(r.Stats) != n {
				b.Fatalf("%d stats, want %d", len(r.Stats), n)
			}
			for b.Loop() {
				if _, err := rs.ListContainerStats(ctx, &cri.ListContainerStatsRequest{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
