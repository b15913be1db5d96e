package streaming

import (
	"encoding/json"
	"os"

	"github.com/pod-shim/pod-shim/test/harness"
)

type containerStatusJSON = harness.CrictlContainerStatus

// podWith runs a pod and one busybox container in it running sh -c script.
func (d *daemon) podWith(name, script string) (podID, ctrID string) {
	d.T.Helper()
	_, ref := registry(d.T)
	d.Crictl("pull", ref)
	podID, podCfg := d.CrictlRunPod(name)
	ctrID = d.CrictlStartContainer(podID, d.ContainerConfigFile(name, ref, "sh", "-c", script), podCfg)
	return podID, ctrID
}

// bundleCgroup is the container's cgroupsPath from its OCI bundle.
func (d *daemon) bundleCgroup(ctrID string) string {
	d.T.Helper()
	data, err := os.ReadFile(d.State + "/containers/" + ctrID + "/config.json")
	if err != nil {
		d.T.Fatal(err)
	}
	var spec struct {
		Linux struct {
			CgroupsPath string `json:"cgroupsPath"`
		} `json:"linux"`
	}
	if err := json.Unmarshal(data, &spec); err != nil {
		d.T.Fatal(err)
	}
	return spec.Linux.CgroupsPath
}
