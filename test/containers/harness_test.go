package containers

import (
	"testing"

	"github.com/pod-shim/pod-shim/test/harness"
)

func TestMain(m *testing.M) { harness.Main(m) }

// The suite drives the daemon through crictl: harness.CrictlHost.
var requireHost = harness.RequireCrictlHost

// startDaemonWith starts a daemon (POD_SHIM_BIN_DIR's build if set) with a
// config file: configTOML is passed with --config; "" runs on the defaults.
func startDaemonWith(t testing.TB, configTOML string) *harness.Daemon {
	t.Helper()
	return harness.Start(t, harness.Options{
		Tag:       "ctr",
		Namespace: "e2e",
		Labels:    map[string]string{"e2e": "pod-shim"},
		Config:    configTOML,
		Crictl:    true,
	})
}

// registry returns the shared loopback registry and the busybox reference on it.
var registry = harness.Registry
