// Command pod-shim-monitor is the per-pod monitor (see pkg/monitor) as a
// binary of its own. One runs per pod, so its memory is paid a hundred times
// on a full node: linked alone it carries none of the daemon's gRPC, CRI and
// registry packages, whose init alone costs each monitor about 2 MiB.
package main

import (
	"os"

	"github.com/pod-shim/pod-shim/pkg/monitor"
)

func main() {
	args := os.Args[1:]
	// Accept the daemon's `<exe> monitor ...` form too.
	if len(args) > 0 && args[0] == "monitor" {
		args = args[1:]
	}
	os.Exit(monitor.Main(args))
}
