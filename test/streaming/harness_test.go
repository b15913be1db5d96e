package streaming

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
	return startDaemonWith(t, nil)
}

// startDaemonWith is startDaemon with a hook that may add serve flags
// (d.ExtraArgs) before the daemon starts.
func startDaemonWith(t testing.TB, setup func(*daemon)) *daemon {
	t.Helper()
	d := &daemon{harness.New(t, harness.Options{
		Tag:       "stream",
		Namespace: "streaming",
		Labels:    map[string]string{"e2e": "pod-shim"},
		Crictl:    true,
	})}
	if setup != nil {
		setup(d)
	}
	d.Start()
	return d
}

// registry returns the shared loopback registry and the busybox reference on it.
var registry = harness.Registry
