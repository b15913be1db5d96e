package e2e

import (
	"testing"

	"github.com/pod-shim/pod-shim/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// The suite drives the daemon through crictl: harness.CrictlHost.
var requireHost = harness.RequireCrictlHost

// daemon is one pod-shim serve process with private dirs, CNI config and
// bridge, driven mostly through the real crictl.
type daemon struct{ *harness.Daemon }

// startDaemon starts a daemon that answers crictl version; everything is
// undone in t.Cleanup, also when the test fails.
func startDaemon(t testing.TB) *daemon {
	t.Helper()
	return &daemon{harness.Start(t, harness.Options{
		Tag:       "e2e",
		Namespace: "e2e",
		Labels:    map[string]string{"e2e": "pod-shim"},
		Crictl:    true,
	})}
}

// registry returns the shared loopback registry and the busybox reference on it.
var registry = harness.Registry

// leftovers reports everything of the test's pods still on the host once
// what exits asynchronously had its time; the pods' network namespaces must
// have been recorded.
func (d *daemon) leftovers() []string {
	var problems []string
	if d.RecordedNetns() == 0 {
		problems = append(problems, "test bug: no pod network namespace was recorded")
	}
	return append(problems, d.SettledLeftovers()...)
}
