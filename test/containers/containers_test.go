package containers

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
)

// env is one daemon, one pod and the busybox image, shared by a test's
// subtests to keep the suite's run time down.
type env struct {
	t      *testing.T
	d      *harness.Daemon
	rs     cri.RuntimeServiceClient
	pod    string
	podCfg *cri.PodSandboxConfig
	image  string
	logDir string
}

func newEnv(t *testing.T) *env {
	return newEnvWith(t, "", "")
}

// newEnvWith is newEnv with a daemon config file (see startDaemonWith) and
// the pod run with RuntimeClass handler.
func newEnvWith(t *testing.T, configTOML, handler string) *env {
	requireHost(t)
	d := startDaemonWith(t, configTOML)
	_, ref := registry(t)
	d.Crictl("pull", ref)
	rs, _ := d.Client()
	e := &env{t: t, d: d, rs: rs, image: ref, logDir: filepath.Join(d.LogDir, "ctr")}
	e.podCfg = &cri.PodSandboxConfig{
		Metadata:     &cri.PodSandboxMetadata{Name: "ctr", Namespace: "containers", Uid: harness.RandHex(16)},
		Hostname:     "ctr",
		LogDirectory: e.logDir,
		// Some subtests run privileged containers, which only a
		// privileged pod may hold (as in containerd and Kubernetes).
		Linux: &cri.LinuxPodSandboxConfig{SecurityContext: &cri.LinuxSandboxSecurityContext{Privileged: true}},
	}
	resp, err := rs.RunPodSandbox(ctx(t), &cri.RunPodSandboxRequest{Config: e.podCfg, RuntimeHandler: handler})
	if err != nil {
		t.Fatal(err)
	}
	e.pod = resp.PodSandboxId
	d.RecordPod(e.pod)
	return e
}

func ctx(t testing.TB) context.Context { return harness.Ctx(t) }

var seq struct {
	sync.Mutex
	n int
}

// config is a container running sh -c script, logging to its own file.
func (e *env) config(script string) *cri.ContainerConfig {
	seq.Lock()
	seq.n++
	n := seq.n
	seq.Unlock()
	name := fmt.Sprintf("c%d", n)
	return &cri.ContainerConfig{
		Metadata: &cri.ContainerMetadata{Name: name},
		Image:    &cri.ImageSpec{Image: e.image},
		Command:  []string{"sh", "-c", script},
		LogPath:  name + ".log",
		Linux:    &cri.LinuxContainerConfig{SecurityContext: &cri.LinuxContainerSecurityContext{}, Resources: &cri.LinuxContainerResources{}},
	}
}

// create creates (and starts, with start) a container; errors are returned.
func (e *env) create(cfg *cri.ContainerConfig, start bool) (string, error) {
	t := e.t
	resp, err := e.rs.CreateContainer(ctx(t), &cri.CreateContainerRequest{PodSandboxId: e.pod, Config: cfg, SandboxConfig: e.podCfg})
	if err != nil {
		return "", err
	}
	id := resp.ContainerId
	t.Cleanup(func() {
		c, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		e.rs.RemoveContainer(c, &cri.RemoveContainerRequest{ContainerId: id})
	})
	if start {
		_, err = e.rs.StartContainer(ctx(t), &cri.StartContainerRequest{ContainerId: id})
	}
	return id, err
}

// run runs a container to its end and returns its status and log text
// (stdout and stderr lines' content, in order).
func (e *env) run(t *testing.T, cfg *cri.ContainerConfig) (*cri.ContainerStatus, string) {
	t.Helper()
	id, err := e.create(cfg, true)
	if err != nil {
		t.Fatalf("create/start: %v", err)
	}
	st := e.waitExit(t, id)
	return st, e.logText(t, cfg)
}

func (e *env) status(t testing.TB, id string) *cri.ContainerStatus {
	t.Helper()
	resp, err := e.rs.ContainerStatus(ctx(t), &cri.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	return resp.Status
}

func (e *env) waitExit(t testing.TB, id string) *cri.ContainerStatus {
	t.Helper()
	var st *cri.ContainerStatus
	harness.Eventually(t, "container "+id+" exits", 90*time.Second, func() error {
		st = e.status(t, id)
		if st.State != cri.ContainerState_CONTAINER_EXITED {
			return fmt.Errorf("state %v", st.State)
		}
		return nil
	})
	return st
}

func (e *env) logPath(cfg *cri.ContainerConfig) string { return filepath.Join(e.logDir, cfg.LogPath) }

func (e *env) logText(t testing.TB, cfg *cri.ContainerConfig) string {
	t.Helper()
	data, err := os.ReadFile(e.logPath(cfg))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, rec := range parseLog(t, data) {
		out.WriteString(rec.text)
		if rec.full {
			out.WriteByte('\n')
		}
	}
	return out.String()
}

type logRecord struct {
	stream, text string
	full         bool
}

func parseLog(t testing.TB, data []byte) []logRecord {
	t.Helper()
	var out []logRecord
	sc := bufio.NewScanner(strings.NewReader(string(data)))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		parts := strings.SplitN(sc.Text(), " ", 4)
		if len(parts) < 3 {
			t.Fatalf("malformed CRI log line %q", sc.Text())
		}
		text := ""
		if len(parts) == 4 {
			text = parts[3]
		}
		out = append(out, logRecord{stream: parts[1], text: text, full: parts[2] == "F"})
	}
	return out
}

func (e *env) pid(t testing.TB, id string) int {
	t.Helper()
	resp, err := e.rs.ContainerStatus(ctx(t), &cri.ContainerStatusRequest{ContainerId: id, Verbose: true})
	if err != nil {
		t.Fatal(err)
	}
	var info struct {
		Pid int `json:"pid"`
	}
	if err := json.Unmarshal([]byte(resp.Info["info"]), &info); err != nil || info.Pid == 0 {
		t.Fatalf("no pid in verbose status %v: %v", resp.Info, err)
	}
	return info.Pid
}

// cgroupFile reads a v1 controller file of the process's cgroup.
func cgroupFile(t testing.TB, pid int, controller, file string) string {
	t.Helper()
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/cgroup", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		parts := strings.SplitN(line, ":", 3)
		if len(parts) == 3 && slices.Contains(strings.Split(parts[1], ","), controller) {
			b, err := os.ReadFile(filepath.Join("/sys/fs/cgroup", controller, parts[2], file))
			if err != nil {
				t.Fatal(err)
			}
			return strings.TrimSpace(string(b))
		}
	}
	t.Fatalf("no %s cgroup for pid %d in %s", controller, pid, data)
	return ""
}

// capMask is the CapEff mask of a list of capabilities.
func capMask(names []string) uint64 {
	bits := map[string]uint{"CAP_CHOWN": 0, "CAP_DAC_OVERRIDE": 1, "CAP_FOWNER": 3, "CAP_FSETID": 4, "CAP_KILL": 5,
		"CAP_SETGID": 6, "CAP_SETUID": 7, "CAP_SETPCAP": 8, "CAP_NET_BIND_SERVICE": 10, "CAP_NET_RAW": 13,
		"CAP_SYS_CHROOT": 18, "CAP_MKNOD": 27, "CAP_AUDIT_WRITE": 29, "CAP_SETFCAP": 31}
	var m uint64
	for _, n := range names {
		m |= 1 << bits[n]
	}
	return m
}

func capEff(t testing.TB, out string) uint64 {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatalf("no CapEff in %q", out)
	return 0
}
