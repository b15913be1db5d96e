package containers

import (
	"testing"

	"github.com/pod-shim/pod-shim/test/harness"
	"github.com/pod-shim/pod-shim/test/images"
)

func TestMain(m *testing.M) { harness.Main(m) }

// requireHost skips unless the suite's prerequisites are present.
func requireHost(t testing.TB) {
	t.Helper()
	harness.RequireHost(t, harness.CrictlHost)
}

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
func registry(t testing.TB) (*images.Registry, string) { return harness.Registry(t) }
