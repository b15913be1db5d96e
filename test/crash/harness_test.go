package crash

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/pod-shim/pod-shim/test/harness"
)

// failpointExit is pkg/failpoint's exit status.
const failpointExit = 77

func TestMain(m *testing.M) { harness.Main(m) }

// requireHost skips unless the prerequisites of these tests are present.
func requireHost(t testing.TB) {
	t.Helper()
	harness.RequireHost(t, harness.Host{
		Suite:   "crash integration test",
		Bins:    []string{"runc", "ip", "gcc"},
		Plugins: []string{"bridge", "host-local"},
	})
}

// env is one pod-shim daemon with private dirs, its own bridge (without
// portmap), subnet, host-local store and a bin dir for fake plugins searched
// before the real ones. Tests start it (with failpoints), SIGKILL it and
// start it again on the same dirs.
type env struct{ *harness.Daemon }

// newEnv prepares dirs, names and a bridge network config; Start runs the daemon.
func newEnv(t testing.TB) *env {
	t.Helper()
	return &env{harness.New(t, harness.Options{
		Tag:         "crash",
		Subnet16:    "10.249",
		Namespace:   "crashtest",
		Labels:      map[string]string{"test": "crash"},
		ExtraArgs:   []string{"--insecure-registry", "127.0.0.1"},
		NetConf:     func(d *harness.Daemon) []map[string]any { return []map[string]any{d.BridgePlugin()} },
		FakePlugins: true,
		// CRASH_LOG_DIR keeps each test's whole daemon log, pass or fail.
		LogCopyDir: os.Getenv("CRASH_LOG_DIR"),
	})}
}

// waitCrash waits for the daemon to exit at a failpoint and checks the status.
func (e *env) waitCrash(step string) {
	e.T.Helper()
	if code := e.WaitExit(2*time.Minute, "at failpoint "+step); code != failpointExit {
		e.T.Fatalf("daemon exited with %d, want %d at failpoint %s; log:\n%s", code, failpointExit, step, e.LogTail())
	}
}

func ctx(t testing.TB) context.Context { return harness.Ctx(t) }
