package e2e

import (
	"testing"

	"github.com/pod-shim/pod-shim/test/harness"
	"github.com/pod-shim/pod-shim/test/images"
)

func TestMain(m *testing.M) { harness.Main(m) }

// requireHost skips unless the e2e prerequisites are present.
func requireHost(t testing.TB) {
	t.Helper()
	harness.RequireHost(t, harness.CrictlHost)
}

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
func registry(t testing.TB) (*images.Registry, string) { return harness.Registry(t) }

// leftovers reports everything of the test's pods still on the host (issue 2,
// item 2); the pods' network namespaces must have been recorded.
func (d *daemon) leftovers() []string {
	var problems []string
	if d.RecordedNetns() == 0 {
		problems = append(problems, "test bug: no pod network namespace was recorded")
	}
	return append(problems, d.Leftovers()...)
}
