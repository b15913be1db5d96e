// Command pod-shim is a Kubernetes container runtime: a CRI v1 server that
// runs pods with runc and CNI. This file only wires things together.
package main

import (
	"fmt"
	"os"

	"github.com/pod-shim/pod-shim/pkg/cri"
	"github.com/pod-shim/pod-shim/pkg/monitor"
)

const usage = `pod-shim: a Kubernetes CRI runtime

Usage:
  pod-shim serve [flags]               run the CRI server (pod-shim serve -h for flags)
  pod-shim version                     print the version
  pod-shim config default              print the default config file
  pod-shim images import [--state DIR] FILE|-
                                       load a docker-save or OCI-layout archive
                                       into the running daemon
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		os.Exit(serve(os.Args[2:]))
	case "version", "--version", "-v":
		fmt.Printf("pod-shim %s (CRI %s)\n", cri.RuntimeVersion, cri.APIVersion)
	case "config":
		os.Exit(configCmd(os.Args[2:]))
	case "images":
		os.Exit(imagesCmd(os.Args[2:]))
	case "monitor":
		// Hidden: the per-pod monitor, re-executed by the daemon.
		os.Exit(monitor.Main(os.Args[2:]))
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
}
