package streaming

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil/promlint"

	"github.com/pod-shim/pod-shim/test/harness"
)

// metricValue is the value of the sample named exactly name (with its
// labels as exposed) in a /metrics body, or -1.
func metricValue(body, name string) float64 {
	for _, l := range strings.Split(body, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == name {
			v, err := strconv.ParseFloat(f[1], 64)
			if err == nil {
				return v
			}
		}
	}
	return -1
}

// TestNodeMetrics: a pull, a pod's CNI ADD and DEL and an OOM-killed
// container show up in /metrics, with the live monitor counted.
func TestNodeMetrics(t *testing.T) {
	requireHost(t)
	d := startDaemonWith(t, func(d *daemon) { d.withMetrics(t) })
	metrics := d.ExtraArgs[len(d.ExtraArgs)-1]
	get := func() string { return httpGet(t, "http://"+metrics+"/metrics") }

	if _, err := d.CrictlErr("pull", "127.0.0.1:1/nothing:here"); err == nil {
		t.Fatal("pull from a closed port succeeded")
	}
	_, ref := registry(t)
	d.Crictl("pull", ref)
	pod, podCfg := d.CrictlRunPod("mx")
	file := filepath.Join(d.Base, "ctr-oom-"+harness.RandHex(3)+".json")
	harness.WriteJSON(t, file, map[string]any{
		"metadata": map[string]any{"name": "oom", "attempt": 0},
		"image":    map[string]string{"image": ref},
		// Doubles a shell variable until the 32 MiB limit kills it.
		"command":  []string{"sh", "-c", "x=aaaaaaaa; while :; do x=$x$x; done"},
		"log_path": "oom.log",
		"linux":    map[string]any{"resources": map[string]any{"memory_limit_in_bytes": 32 << 20}},
	})
	ctr := strings.TrimSpace(d.Crictl("create", pod, file, podCfg))
	d.Crictl("start", ctr)
	harness.Eventually(t, "container OOM-killed", 60*time.Second, func() error {
		var cs containerStatusJSON
		d.CrictlJSON(&cs, "inspect", "-o", "json", ctr)
		if cs.Status.State != "CONTAINER_EXITED" || cs.Status.Reason != "OOMKilled" {
			return fmt.Errorf("state %s reason %q", cs.Status.State, cs.Status.Reason)
		}
		return nil
	})
	d.Crictl("inspect", ctr) // a second look must not count it twice
	body := get()
	for name, want := range map[string]float64{
		"pod_shim_image_pull_failures_total":                             1,
		"pod_shim_image_pull_duration_seconds_count":                     2,
		`pod_shim_cni_operation_duration_seconds_count{operation="add"}`: 1,
		"pod_shim_container_oom_kills_total":                             1,
		"pod_shim_monitors_running":                                      1,
	} {
		if got := metricValue(body, name); got != want {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if got := metricValue(body, "pod_shim_image_pull_bytes_total"); got < 100_000 {
		t.Errorf("pod_shim_image_pull_bytes_total = %v, want the image's size (over 100 kB)", got)
	}
	d.Crictl("stopp", pod)
	d.Crictl("rmp", pod)
	body = get()
	if got := metricValue(body, `pod_shim_cni_operation_duration_seconds_count{operation="del"}`); got < 1 {
		t.Errorf("CNI DEL count %v after the pod's stop", got)
	}
	if got := metricValue(body, "pod_shim_monitors_running"); got != 0 {
		t.Errorf("monitors_running %v after the pod's removal", got)
	}
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("promlint: %s: %s", p.Metric, p.Text)
	}
}
