package network

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
)

type procInfo struct {
	pid, ppid int
	state     string
	cmdline   string
}

// procsInPIDNS lists the processes whose pid namespace is ns (an ns link like "pid:[4026532]").
func procsInPIDNS(ns string) []procInfo {
	ents, _ := os.ReadDir("/proc")
	var out []procInfo
	for _, d := range ents {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		if l, _ := os.Readlink(filepath.Join("/proc", d.Name(), "ns", "pid")); l != ns {
			continue
		}
		st, err := os.ReadFile(filepath.Join("/proc", d.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...; comm may contain spaces.
		s := string(st)
		f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
		if len(f) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(f[1])
		cmd, _ := os.ReadFile(filepath.Join("/proc", d.Name(), "cmdline"))
		out = append(out, procInfo{pid: pid, ppid: ppid, state: f[0], cmdline: strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " "))})
	}
	return out
}

// TestSharedPIDNamespaceReapsZombies: in a pod sharing its PID namespace,
// pause is PID 1; a container's double-forked orphan is reparented to it and
// reaped when it exits, so no zombie stays in the pod.
func TestSharedPIDNamespaceReapsZombies(t *testing.T) {
	requireHost(t)
	e := newEnv(t)
	e.WriteNetConf(e.BridgePlugin())
	e.Start()
	ref := e.Pull()
	cfg := e.podConfig("pidns", func(c *cri.PodSandboxConfig) {
		c.Linux.SecurityContext.NamespaceOptions.Pid = cri.NamespaceMode_POD
	})
	id := e.RunPod(cfg)
	pausePID, err := strconv.Atoi(e.PodStatus(id).Info["pid"])
	if err != nil || pausePID <= 0 {
		t.Fatalf("verbose status pid %q: %v", e.PodStatus(id).Info["pid"], err)
	}
	ns, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/pid", pausePID))
	if err != nil {
		t.Fatal(err)
	}
	// The orphan: a subshell starts `sleep 2` in the background and exits,
	// so sleep's parent is gone; when sleep exits it is a zombie unless the
	// namespace's init (pause) reaps it.
	e.startContainer(id, cfg, ref, cri.NamespaceMode_POD, "sh", "-c", "(sleep 2 &) ; exec sleep 3600")

	var orphan procInfo
	harness.Eventually(t, "the orphaned sleep is reparented to pause", 30*time.Second, func() error {
		for _, p := range procsInPIDNS(ns) {
			if p.cmdline == "sleep 2" {
				if p.ppid != pausePID {
					return fmt.Errorf("orphan %d has parent %d, want pause %d", p.pid, p.ppid, pausePID)
				}
				orphan = p
				return nil
			}
		}
		return fmt.Errorf("no 'sleep 2' in pid namespace %s yet: %+v", ns, procsInPIDNS(ns))
	})
	harness.Eventually(t, "the orphan exits and is reaped", 30*time.Second, func() error {
		for _, p := range procsInPIDNS(ns) {
			if p.state == "Z" {
				return fmt.Errorf("zombie in the pod: %+v", p)
			}
			if p.pid == orphan.pid {
				return fmt.Errorf("orphan %d still there (%s)", p.pid, p.state)
			}
		}
		return nil
	})
	// pause is PID 1 of the namespace and still runs.
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pausePID))
	if !strings.Contains(string(status), "NSpid:\t"+strconv.Itoa(pausePID)+"\t1\n") {
		t.Errorf("pause is not PID 1 of the pod's namespace: %s", status)
	}
	if err := e.StopPod(id); err != nil {
		t.Fatal(err)
	}
	if err := e.RemovePod(id); err != nil {
		t.Fatal(err)
	}
	e.NoLeftovers()
}
