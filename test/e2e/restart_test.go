package e2e

import (
	"slices"
	"strings"
	"testing"

	"github.com/pod-shim/pod-shim/test/harness"
)

// TestDaemonRestart is issue 2's acceptance item 3: SIGTERM the daemon while a
// pod runs, start it again on the same dirs, and find the same pod and
// container in the same states; then stop and remove them cleanly.
func TestDaemonRestart(t *testing.T) {
	requireHost(t)
	_, ref := registry(t)
	d := startDaemon(t)
	d.Crictl("pull", ref)

	podID, podCfg := d.CrictlRunPod("restart-" + harness.RandHex(3))
	d.podIP(podID)
	ctrID := d.CrictlStartContainer(podID, d.ContainerConfigFile("sleeper", ref, "sleep", "3600"), podCfg)
	d.RecordNetns(ctrID)
	// A second, exited container: states other than running must survive too.
	doneID := d.CrictlStartContainer(podID, d.ContainerConfigFile("done", ref, "sh", "-c", "sleep 3600"), podCfg)
	d.Crictl("stop", "--timeout", "0", doneID)
	before := d.snapshot()
	if want := []string{"pod " + podID + "=SANDBOX_READY", "container " + ctrID + " in " + podID + "=CONTAINER_RUNNING", "container " + doneID + " in " + podID + "=CONTAINER_EXITED"}; !sameSet(before, want) {
		t.Fatalf("before restart crictl lists %v, want %v", before, want)
	}
	runcBefore, err := d.RuncList()
	if err != nil {
		t.Fatal(err)
	}
	monitorsBefore := d.Monitors()

	if err := d.Stop(); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
	// The pod outlives the daemon: its runc containers and its monitor keep running.
	runcDown, err := d.RuncList()
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(runcStates(runcBefore), runcStates(runcDown)) {
		t.Errorf("runc containers changed when the daemon stopped: before %v, after %v", runcStates(runcBefore), runcStates(runcDown))
	}
	if len(d.Monitors()) != len(monitorsBefore) || len(monitorsBefore) == 0 {
		t.Errorf("pod monitors: %d before SIGTERM, %d after, want the same (and ≥1)", len(monitorsBefore), len(d.Monitors()))
	}

	d.Start()
	after := d.snapshot()
	if !slices.Equal(before, after) {
		t.Errorf("after restart crictl lists\n  %v\nwant the same as before\n  %v", after, before)
	}
	// The running container is still reachable through its monitor.
	if out := d.Crictl("exec", "-s", ctrID, "echo", "still-here"); strings.TrimRight(out, "\n") != "still-here" {
		t.Errorf("exec after restart = %q, want %q", out, "still-here\n")
	}
	d.Crictl("stopp", podID)
	d.Crictl("rmp", podID)
	if s := d.snapshot(); len(s) != 0 {
		t.Errorf("after removal crictl still lists %v", s)
	}
	for _, p := range d.leftovers() {
		t.Error(p)
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}

// runcStates lists the live runc containers (created, running, paused) as
// id=status. Stopped ones are left out: the monitor deletes an exited
// container from runc after StopContainer has returned (StopContainer waits
// for the exit, not for that tidying), so one may vanish at any moment.
func runcStates(list []harness.RuncContainer) []string {
	var out []string
	for _, c := range list {
		if c.Status == "stopped" {
			continue
		}
		out = append(out, c.ID+"="+c.Status)
	}
	slices.Sort(out)
	return slices.Compact(out)
}
