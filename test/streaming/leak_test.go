package streaming

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
)

func (d *daemon) withMetrics(t *testing.T) string {
	addr := "127.0.0.1:" + strconv.Itoa(freePort(t, 0))
	d.ExtraArgs = append(d.ExtraArgs, "--metrics-address", addr)
	return addr
}

// withDebug serves pprof (which counts reads) on its own address; call it
// before withMetrics, whose address the tests take from the last argument.
func (d *daemon) withDebug(t *testing.T) {
	d.ExtraArgs = append(d.ExtraArgs, "--debug-address", "127.0.0.1:"+strconv.Itoa(freePort(t, 0)))
}

func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

type counts struct{ fds, goroutines, children int }

func (d *daemon) counts(t *testing.T, metrics string) counts {
	pid := d.Pid()
	fds, _ := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	debug := ""
	for i, a := range d.ExtraArgs[:len(d.ExtraArgs)-1] {
		if a == "--debug-address" {
			debug = d.ExtraArgs[i+1]
		}
	}
	g := httpGet(t, "http://"+debug+"/debug/pprof/goroutine?debug=1")
	first, _, _ := strings.Cut(g, "\n")
	n, _ := strconv.Atoi(strings.TrimPrefix(first, "goroutine profile: total "))
	kids := 0
	for _, p := range harness.Processes() {
		if data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid)); err == nil {
			f := strings.Fields(string(data[strings.LastIndexByte(string(data), ')')+1:]))
			if len(f) > 1 && f[1] == strconv.Itoa(pid) {
				kids++
			}
		}
	}
	return counts{fds: len(fds), goroutines: n, children: kids}
}

// TestExecNoLeaks: 200 exec sessions, half aborted mid-stream; the daemon's
// fds, goroutines and children and the container's processes return to
// their starting counts.
func TestExecNoLeaks(t *testing.T) {
	requireHost(t)
	d := startDaemonWith(t, func(d *daemon) { d.withDebug(t); d.withMetrics(t) })
	metrics := d.ExtraArgs[len(d.ExtraArgs)-1]
	_, ctr := d.podWith("leak", "sleep 100000")
	pids := filepath.Join("/sys/fs/cgroup/pids", d.bundleCgroup(ctr), "pids.current")

	d.Crictl("exec", ctr, "true") // warm up connections and caches
	d.counts(t, metrics)          // the scrape's own keep-alive connection is part of the baseline
	// The warm-up session winds down after crictl returns: the baseline is
	// taken once two reads in a row agree.
	var base counts
	harness.Eventually(t, "daemon counts settle after the warm-up exec", 30*time.Second, func() error {
		a, b := d.counts(t, metrics), d.counts(t, metrics)
		if a != b {
			return fmt.Errorf("%+v then %+v: %w", a, b, harness.ErrNotYet)
		}
		base = b
		return nil
	})
	basePids, _ := os.ReadFile(pids)

	const sessions, parallel = 200, 8
	start := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, parallel)
	for i := range sessions {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			args := []string{"--config", d.CrictlYAML, "--runtime-endpoint", "unix://" + d.Sock, "exec"}
			if i%2 == 0 {
				// Bounded, so a session that never ends fails here and
				// says so instead of holding the suite until its timeout.
				ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
				defer cancel()
				out, err := exec.CommandContext(ctx, harness.CrictlPath(), append(args, ctr, "echo", "done")...).Output()
				if ctx.Err() != nil {
					t.Errorf("session %d: crictl exec did not end within 2m (output %q)", i, out)
				} else if err != nil || !strings.Contains(string(out), "done") {
					t.Errorf("session %d: %q %v", i, out, err)
				}
				return
			}
			// Aborted mid-stream: the client dies while output flows.
			ctx, cancel := context.WithTimeout(context.Background(), 700*time.Millisecond)
			defer cancel()
			exec.CommandContext(ctx, harness.CrictlPath(), append(args, ctr, "sh", "-c", "while :; do echo tick; sleep 0.05; done")...).Run()
		}()
	}
	wg.Wait()
	t.Logf("%d exec sessions (%d parallel) took %v", sessions, parallel, time.Since(start))
	harness.Eventually(t, "daemon back to its starting fds, goroutines and children", 60*time.Second, func() error {
		if c := d.counts(t, metrics); c.fds > base.fds || c.goroutines > base.goroutines || c.children > base.children {
			return fmt.Errorf("now %+v, at start %+v", c, base)
		}
		return nil
	})
	harness.Eventually(t, "container back to its starting processes", 60*time.Second, func() error {
		if now, _ := os.ReadFile(pids); string(now) != string(basePids) {
			return fmt.Errorf("pids.current %q, at start %q", now, basePids)
		}
		return nil
	})
}

// TestMetrics: /metrics passes promlint and the RPC histogram counts
// exactly the calls made.
func TestMetrics(t *testing.T) {
	requireHost(t)
	d := startDaemonWith(t, func(d *daemon) { d.withMetrics(t) })
	metrics := d.ExtraArgs[len(d.ExtraArgs)-1]
	rs, _ := d.Client()
	count := func() int {
		for _, l := range strings.Split(httpGet(t, "http://"+metrics+"/metrics"), "\n") {
			if strings.HasPrefix(l, `pod_shim_cri_request_duration_seconds_count{method="Version"}`) {
				n, _ := strconv.Atoi(strings.Fields(l)[1])
				return n
			}
		}
		return 0
	}
	before := count()
	for range 7 {
		if _, err := rs.Version(context.Background(), &cri.VersionRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	if got := count() - before; got != 7 {
		t.Errorf("Version histogram count grew by %d, want 7", got)
	}
	rs.ContainerStatus(context.Background(), &cri.ContainerStatusRequest{ContainerId: "nope"})
	body := httpGet(t, "http://"+metrics+"/metrics")
	if !strings.Contains(body, `pod_shim_cri_request_errors_total{code="NotFound",method="ContainerStatus"} 1`) {
		t.Errorf("no NotFound error counted for ContainerStatus")
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
