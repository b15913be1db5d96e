package sandbox

import (
	"os"
	"strconv"
	"strings"
	"sync"
)

// pauseOOMScoreAdj is what containerd and CRI-O give pause: the pod's
// namespaces die with it, so the kernel should pick it almost last.
const pauseOOMScoreAdj = -998

// ownOOMScoreAdj is the daemon's oom_score_adj, read once. Without
// CAP_SYS_RESOURCE a process may not go below it, and runc then fails
// with an unhelpful EOF: pause is clamped to it.
var ownOOMScoreAdj = sync.OnceValue(func() int {
	b, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return 0
	}
	v, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0
	}
	return v
})

// pauseOOMScore clamps pauseOOMScoreAdj to what a child of a daemon at own
// may set.
func pauseOOMScore(own int) int { return min(max(pauseOOMScoreAdj, own), 1000) }
