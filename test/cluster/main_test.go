// Package cluster checks a whole kubeadm cluster on pod-shim (issue 13): the
// control plane runs as static pods on the runtime, and the checks go
// through the real API server with kubectl, so exec, attach, logs,
// port-forward and cp travel API server -> kubelet -> pod-shim's streaming
// server, Services go through kube-proxy's iptables rules and CoreDNS.
//
//	go test -count=1 -v -timeout 20m ./test/cluster/
//
// brings the cluster up with hack/cluster.sh up, runs the checks and takes
// it down again (hack/cluster.sh down), also on failure. With
// CLUSTER_EXISTING=1 it uses a cluster that is already up and leaves it.
// Needs root and the builds hack/cluster.sh makes (cached); -short skips it.
package cluster

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
)

var (
	repo     string
	kubectlB string
	skipWhy  string
)

const (
	nodeName   = "pod-shim-node"
	nodeIP     = "10.243.0.1"
	kubeconfig = "/etc/kubernetes/admin.conf"
	kubeletLog = "/var/log/pod-shim-cluster/kubelet.log"
	stateDir   = "/run/psc"
)

func TestMain(m *testing.M) {
	flag.Parse()
	set := false
	flag.Visit(func(f *flag.Flag) { set = set || f.Name == "test.parallel" })
	if !set {
		// The checks mostly wait on the cluster: let them overlap.
		flag.Set("test.parallel", "12")
	}
	_, file, _, _ := runtime.Caller(0)
	repo = filepath.Clean(filepath.Join(filepath.Dir(file), "../.."))
	cache := os.Getenv("POD_SHIM_CACHE")
	if cache == "" {
		cache = "/var/cache/pod-shim-ci"
	}
	kubectlB = filepath.Join(cache, "kube/v1.37.2/kubectl")
	switch {
	case testing.Short():
		skipWhy = "-short: the cluster suite needs builds and minutes"
	case os.Geteuid() != 0:
		skipWhy = "needs root (kubeadm, kubelet, pods)"
	}
	if skipWhy != "" {
		os.Exit(m.Run())
	}
	os.Setenv("KUBECONFIG", kubeconfig)
	existing := os.Getenv("CLUSTER_EXISTING") != ""
	if !existing {
		cmd := exec.Command("bash", filepath.Join(repo, "hack/cluster.sh"), "up")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "cluster: hack/cluster.sh up failed:", err)
			os.Exit(1)
		}
	}
	code := m.Run()
	if !existing {
		cmd := exec.Command("bash", filepath.Join(repo, "hack/cluster.sh"), "down")
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "cluster: hack/cluster.sh down failed:", err)
			code = 1
		}
		if leaks := leftovers(); len(leaks) > 0 {
			fmt.Fprintf(os.Stderr, "cluster: down left these behind:\n  %s\n", strings.Join(leaks, "\n  "))
			code = 1
		}
	}
	os.Exit(code)
}

func needCluster(t *testing.T) {
	t.Helper()
	if skipWhy != "" {
		t.Skip(skipWhy)
	}
}
