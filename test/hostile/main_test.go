// Package hostile attacks the built daemon as an untrusted image author or
// an untrusted local client would, through test/harness, and checks that
// nothing escapes onto the host. Needs root, runc and the CNI plugins; it
// skips with the reason otherwise.
package hostile

import (
	"os"
	"testing"

	"github.com/pod-shim/pod-shim/test/harness"
)

// TestMain is shared by every file of the suite: the test binary doubles as
// an unprivileged client (see sockets_test.go) when asked to.
func TestMain(m *testing.M) {
	if os.Getenv(childEnv) != "" {
		os.Exit(childMain())
	}
	harness.Main(m)
}
