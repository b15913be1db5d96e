package crash

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
)

// TestExitWhileDown: containers that end while the daemon is down (one
// with exit code 7, one killed by the OOM killer) report their real exit
// code, finished_at and reason after the restart.
func TestExitWhileDown(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	e.Start()
	image := e.Pull()
	cfg := e.PodConfig("down")
	podID := e.RunPod(cfg)
	// Both wait for a file the test creates once the daemon is dead, so
	// the exits surely happen while it is down.
	gate := "/tmp/go"
	seven := e.StartContainer(podID, cfg, harness.ContainerConfig("seven", image, "sh", "-c", "until [ -e "+gate+" ]; do sleep 0.1; done; exit 7"))
	oomCfg := harness.ContainerConfig("oom", image, "sh", "-c", "until [ -e "+gate+" ]; do sleep 0.1; done; head -c 300m /dev/zero | tail")
	oomCfg.Linux = &cri.LinuxContainerConfig{Resources: &cri.LinuxContainerResources{MemoryLimitInBytes: 32 << 20}}
	oom := e.StartContainer(podID, cfg, oomCfg)

	e.Kill()
	released := time.Now()
	for _, id := range []string{seven, oom} {
		// The gate inside the container's rootfs, through runc's view.
		rootfs := filepath.Join(e.State, "containers", id, "rootfs")
		if err := os.WriteFile(filepath.Join(rootfs, gate), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Wait (daemon still down) until both exits are recorded by the monitor.
	harness.Eventually(t, "exit records written while the daemon is down", 60*time.Second, func() error {
		for _, id := range []string{seven, oom} {
			if _, err := os.Stat(filepath.Join(e.State, "pods", podID, "exits", id+".json")); err != nil {
				return err
			}
		}
		return nil
	})
	recorded := time.Now()
	// Not a wait for anything: a gap, so that a finished_at wrongly set to
	// the restart time is told apart from the recorded exit time.
	time.Sleep(1500 * time.Millisecond)
	restarted := time.Now()
	e.Start()

	st := e.ContainerStatus(seven)
	if st.State != cri.ContainerState_CONTAINER_EXITED || st.ExitCode != 7 || st.Reason != "Error" {
		t.Errorf("exit-7 container: state %v exit %d reason %q, want EXITED 7 Error", st.State, st.ExitCode, st.Reason)
	}
	fin := time.Unix(0, st.FinishedAt)
	if fin.Before(released) || fin.After(recorded) || !fin.Before(restarted) {
		t.Errorf("exit-7 container finished_at %v, want between %v and %v (daemon restarted at %v)", fin, released, recorded, restarted)
	}
	st = e.ContainerStatus(oom)
	if st.State != cri.ContainerState_CONTAINER_EXITED || st.Reason != "OOMKilled" {
		t.Errorf("OOM container: state %v exit %d reason %q, want EXITED OOMKilled", st.State, st.ExitCode, st.Reason)
	}
	fin = time.Unix(0, st.FinishedAt)
	if fin.Before(released) || fin.After(recorded) {
		t.Errorf("OOM container finished_at %v, want between %v and %v", fin, released, recorded)
	}
	e.checkConsistent()
	e.RemoveAll()
	e.NoLeftovers()
}

// TestLogBurstAcrossKills: the daemon is SIGKILLed twice during a 20 s
// burst of numbered log lines; the CRI log holds every line exactly once.
func TestLogBurstAcrossKills(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	e.Start()
	image := e.Pull()
	cfg := e.PodConfig("burst")
	podID := e.RunPod(cfg)
	// Batches of 100 lines between clock reads and short sleeps: thousands
	// of lines a second, without a fork per line or a log of gigabytes.
	script := `i=0; end=$(( $(date +%s) + 20 )); while [ $(date +%s) -lt $end ]; do j=0; while [ $j -lt 100 ]; do echo "line $i"; i=$((i+1)); j=$((j+1)); done; sleep 0.01; done; echo "done $i"`
	id := e.StartContainer(podID, cfg, harness.ContainerConfig("burst", image, "sh", "-c", script))
	// The monitor writes the log whether the daemon is up or not: its
	// growth says where the burst is. Each kill lands once lines have
	// flowed since the last start, and the daemon stays down until more
	// have been written meanwhile (unless the burst has ended).
	logPath := e.ContainerStatus(id).LogPath
	grown := func(what string, by int64) {
		from := int64(0)
		if fi, err := os.Stat(logPath); err == nil {
			from = fi.Size()
		}
		harness.Eventually(t, what, 60*time.Second, func() error {
			b, err := os.ReadFile(logPath)
			if err != nil {
				return err
			}
			if int64(len(b)) >= from+by || strings.Contains(string(b), " F done ") {
				return nil
			}
			return fmt.Errorf("log at %d bytes, waiting for %d: %w", len(b), from+by, harness.ErrNotYet)
		})
	}
	// About 6 MiB in all here: the kills land a fifth and half-way in.
	for _, before := range []int64{1 << 20, 2 << 20} {
		grown("burst lines flow to the log before the kill", before)
		e.Kill()
		grown("burst lines flow to the log while the daemon is down", 512<<10)
		e.Start()
	}
	harness.Eventually(t, "burst container exits", 90*time.Second, func() error {
		if st := e.ContainerStatus(id); st.State != cri.ContainerState_CONTAINER_EXITED {
			return harness.ErrNotYet
		}
		return nil
	})
	st := e.ContainerStatus(id)
	if st.ExitCode != 0 {
		t.Errorf("burst container exit %d", st.ExitCode)
	}
	lines := readCRILog(t, st.LogPath)
	if len(lines) == 0 || !strings.HasPrefix(lines[len(lines)-1], "done ") {
		t.Fatalf("log does not end with the done line (%d lines)", len(lines))
	}
	n, _ := strconv.Atoi(strings.TrimPrefix(lines[len(lines)-1], "done "))
	t.Logf("%d numbered lines written during the burst", n)
	if n < 1000 {
		t.Errorf("only %d lines in 20 s: the burst is not a burst", n)
	}
	if len(lines) != n+1 {
		t.Errorf("log holds %d lines, want %d numbered + done", len(lines), n)
	}
	for i := 0; i < n && i < len(lines); i++ {
		if want := fmt.Sprintf("line %d", i); lines[i] != want {
			t.Fatalf("log line %d is %q, want %q (lost or duplicated lines)", i, lines[i], want)
		}
	}
	e.RemoveAll()
	e.NoLeftovers()
}

// readCRILog returns the content of each full line of a CRI log, joining
// partial (P) lines.
func readCRILog(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	var partial strings.Builder
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		f := strings.SplitN(sc.Text(), " ", 4)
		if len(f) < 3 {
			t.Fatalf("malformed CRI log line %q", sc.Text())
		}
		content := ""
		if len(f) == 4 {
			content = f[3]
		}
		partial.WriteString(content)
		if f[2] == "F" {
			out = append(out, partial.String())
			partial.Reset()
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return out
}

// slowPlugin passes ADD through after 5 s; DEL at once.
const slowPlugin = `#!/bin/sh
conf=$(cat)
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.3.0","0.3.1","0.4.0","1.0.0"]}'; exit 0;;
ADD) sleep 5; printf '%s' "$conf" | jq -c '.prevResult + {cniVersion: .cniVersion}'; exit 0;;
esac
exit 0
`

// TestRunRetryAfterClientGaveUp: the client gives up on RunPodSandbox after
// 1 s while CNI takes 5 s; its retry with the same metadata gets the same
// sandbox, and only one IP is allocated.
func TestRunRetryAfterClientGaveUp(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	e.FakePlugin("slow", slowPlugin)
	e.WriteNetConf(e.BridgePlugin(), map[string]any{"type": "slow"})
	e.Start()
	cfg := e.PodConfig("slow")

	c1, cancel := context.WithTimeout(context.Background(), time.Second)
	_, err := e.RS.RunPodSandbox(c1, &cri.RunPodSandboxRequest{Config: cfg})
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("first RunPodSandbox: %v, want DeadlineExceeded after 1 s", err)
	}
	// The kubelet retries with the same metadata; its first retries may
	// give up too while CNI still works.
	var first string
	for attempt := 0; ; attempt++ {
		c2, cancel := context.WithTimeout(context.Background(), time.Second)
		r, err := e.RS.RunPodSandbox(c2, &cri.RunPodSandboxRequest{Config: cfg})
		cancel()
		if err == nil {
			first = r.PodSandboxId
			t.Logf("retry %d got sandbox %s", attempt, first)
			break
		}
		if status.Code(err) != codes.DeadlineExceeded || attempt > 30 {
			t.Fatalf("retry %d: %v", attempt, err)
		}
	}
	pods, err := e.RS.ListPodSandbox(ctx(t), &cri.ListPodSandboxRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(pods.Items) != 1 || pods.Items[0].Id != first {
		t.Errorf("listed pods %v, want only %s", pods.Items, first)
	}
	if a := e.IPAMAllocations(); len(a) != 1 {
		t.Errorf("IPs allocated: %v, want exactly one", a)
	}
	if s := e.PodState(first); s != cri.PodSandboxState_SANDBOX_READY {
		t.Errorf("pod is %v", s)
	}
	e.checkConsistent()
	e.RemoveAll()
	e.NoLeftovers()
}
