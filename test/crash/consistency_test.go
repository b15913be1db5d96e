package crash

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// runcStatus is runc's status of a container ("running", "stopped", …), or
// "" when runc does not know it.
func (e *env) runcStatus(id string) string {
	out, err := exec.Command("runc", "--root", filepath.Join(e.State, "runc"), "state", id).Output()
	if err != nil {
		return ""
	}
	var st struct{ Status string }
	if json.Unmarshal(out, &st) != nil {
		return ""
	}
	return st.Status
}

// inconsistencies checks what the daemon lists against the host: a Ready
// pod has a running pause, a running container runs, a created one has its
// bundle and rootfs.
func (e *env) inconsistencies() []string {
	e.T.Helper()
	var problems []string
	pods, err := e.RS.ListPodSandbox(ctx(e.T), &cri.ListPodSandboxRequest{})
	if err != nil {
		return []string{fmt.Sprintf("ListPodSandbox: %v", err)}
	}
	for _, p := range pods.Items {
		if p.State == cri.PodSandboxState_SANDBOX_READY {
			if st := e.runcStatus(p.Id); st != "running" {
				problems = append(problems, fmt.Sprintf("pod %s is READY but runc says its pause is %q", p.Id, st))
			}
			if _, err := os.Stat(filepath.Join(e.State, "netns", p.Id)); err != nil {
				problems = append(problems, fmt.Sprintf("pod %s is READY but has no netns: %v", p.Id, err))
			}
		}
	}
	cs, err := e.RS.ListContainers(ctx(e.T), &cri.ListContainersRequest{})
	if err != nil {
		return append(problems, fmt.Sprintf("ListContainers: %v", err))
	}
	for _, c := range cs.Containers {
		switch c.State {
		case cri.ContainerState_CONTAINER_RUNNING:
			if st := e.runcStatus(c.Id); st != "running" {
				problems = append(problems, fmt.Sprintf("container %s is RUNNING but runc says %q", c.Id, st))
			}
		case cri.ContainerState_CONTAINER_CREATED:
			if _, err := os.Stat(filepath.Join(e.State, "containers", c.Id, "config.json")); err != nil {
				problems = append(problems, fmt.Sprintf("container %s is CREATED but has no bundle: %v", c.Id, err))
			}
		}
	}
	return problems
}

func (e *env) checkConsistent() {
	e.T.Helper()
	for _, p := range e.inconsistencies() {
		e.T.Error(p)
	}
}
