// Package failpoint lets crash-safety tests stop the daemon at a named step
// of a multi-step operation, deterministically.
//
// POD_SHIM_FAILPOINTS is a comma-separated list of step names; when the
// daemon reaches one of them it exits at once with status 77, as if killed,
// without running deferred cleanup. Unset (always, in production) the check
// is one map lookup on an empty map.
package failpoint

import (
	"fmt"
	"os"
	"strings"
)

// EnvVar names the steps at which to crash.
const EnvVar = "POD_SHIM_FAILPOINTS"

// ExitCode is the status a failpoint exits with.
const ExitCode = 77

var armed = parse(os.Getenv(EnvVar))

func parse(v string) map[string]bool {
	m := map[string]bool{}
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			m[s] = true
		}
	}
	return m
}

// Hit crashes the process if step is armed.
func Hit(step string) {
	if armed[step] {
		fmt.Fprintf(os.Stderr, "failpoint %s: exiting\n", step)
		os.Exit(ExitCode)
	}
}
