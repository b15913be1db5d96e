package streaming

import (
	"encoding/json"
	"os"
	"strings"
)

type containerStatusJSON struct {
	Status struct {
		ID       string `json:"id"`
		State    string `json:"state"`
		ExitCode int    `json:"exitCode"`
		Reason   string `json:"reason"`
		LogPath  string `json:"logPath"`
	} `json:"status"`
}

func (d *daemon) crictlJSON(v any, args ...string) {
	d.t.Helper()
	out := d.crictl(args...)
	if err := json.Unmarshal([]byte(out), v); err != nil {
		d.t.Fatalf("crictl %s: decode %q: %v", strings.Join(args, " "), out, err)
	}
}

// startContainer creates and starts a container and checks it runs.
func (d *daemon) startContainer(podID, ctrCfg, podCfg string) string {
	d.t.Helper()
	id := strings.TrimSpace(d.crictl("create", podID, ctrCfg, podCfg))
	if len(id) != 64 {
		d.t.Fatalf("crictl create printed %q, want a 64-hex container id", id)
	}
	d.crictl("start", id)
	var cs containerStatusJSON
	d.crictlJSON(&cs, "inspect", "-o", "json", id)
	if cs.Status.State != "CONTAINER_RUNNING" {
		d.t.Fatalf("container %s state %s after start, want CONTAINER_RUNNING (exit %d, %s)", id, cs.Status.State, cs.Status.ExitCode, cs.Status.Reason)
	}
	return id
}

// podWith runs a pod and one busybox container in it running sh -c script.
func (d *daemon) podWith(name, script string) (podID, ctrID string) {
	d.t.Helper()
	_, ref := registry(d.t)
	d.crictl("pull", ref)
	podID, podCfg := d.runPod(name)
	ctrID = d.startContainer(podID, d.containerConfig(name, ref, "sh", "-c", script), podCfg)
	return podID, ctrID
}

// bundleCgroup is the container's cgroupsPath from its OCI bundle.
func (d *daemon) bundleCgroup(ctrID string) string {
	d.t.Helper()
	data, err := os.ReadFile(d.state + "/containers/" + ctrID + "/config.json")
	if err != nil {
		d.t.Fatal(err)
	}
	var spec struct {
		Linux struct {
			CgroupsPath string `json:"cgroupsPath"`
		} `json:"linux"`
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		d.t.Fatal(err)
	}
	return spec.Linux.CgroupsPath
}
