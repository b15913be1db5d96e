#!/usr/bin/env bash
# The README's test command: go vet and staticcheck, the unit tests, then the
# integration and end-to-end suites that drive the built daemon (those need
# root, runc, the CNI plugins, busybox-static and crictl; .ci/run installs
# them, and they skip with the reason when something is missing). Installs
# nothing; builds only. Every go test runs with -race, and the suites run a
# -race build of the daemon and its monitors (the harness fails a test on
# any race report they write).
#
#   bash hack/test.sh                  # everything
#   POD_SHIM_BENCH=1 bash hack/test.sh # also the pod-ready benchmark
#   E2E_RUN=Restart bash hack/test.sh  # only e2e tests matching a -run pattern
#
# One `step NAME COMMAND...` per check; a suite of the built daemon is
# `step NAME suite TIMEOUT PACKAGES...`. The summary at the end gives each
# step's result and time.
set -uo pipefail
cd "$(dirname "$0")/.."
export PATH="$PATH:$(go env GOPATH)/bin"

failed=()
timings=()
step() {
	local name=$1
	shift
	echo
	echo "=== $name: $*"
	local begin=$SECONDS result=ok
	if ! "$@"; then
		failed+=("$name")
		result=FAILED
	fi
	timings+=("$(printf '%-14s %-6s %5ds' "$name" "$result" $((SECONDS - begin)))")
}

# The race build of pod-shim, pod-shim-monitor and the pause, for the suites.
race_bin=$(mktemp -d /tmp/pod-shim-race-bin.XXXXXX)
trap 'rm -rf "$race_bin"' EXIT

# suite TIMEOUT PACKAGES...: an integration suite against the race build.
suite() {
	local timeout=$1
	shift
	POD_SHIM_BIN_DIR=$race_bin go test -race -count=1 -v -timeout "$timeout" "$@"
}

need_staticcheck() {
	if ! command -v staticcheck >/dev/null; then
		echo "staticcheck not found: go install honnef.co/go/tools/cmd/staticcheck@v0.8.2 (.ci/run does)" >&2
		return 1
	fi
	staticcheck ./...
}

step vet go vet ./...
step staticcheck need_staticcheck
step unit go test -race -short -count=1 ./...
step build bash hack/build.sh
step build-race env OUT="$race_bin" RACE=1 bash hack/build.sh
if [ "$(id -u)" != 0 ]; then
	echo "warning: not root, the end-to-end tests will skip" >&2
fi
# The packages' own integration tests (real runc, CNI, overlayfs, registry on
# 127.0.0.1): -short above skips them, and as root here they run.
step integration go test -race -count=1 -timeout 20m ./pkg/...
step e2e suite 25m -run "${E2E_RUN:-.}" ./test/e2e/...
step network suite 15m ./test/network/...
step containers suite 15m ./test/containers/...
step streaming suite 15m ./test/streaming/...
# Crash at every failpoint, SIGKILL churn, exits while down, reboot.
step crash suite 15m ./test/crash/...
step nri suite 10m ./test/nri/...
# Crafted images and hostile clients through the real daemon: nothing outside
# its dirs may change, sockets stay root-only, bad CRI input changes nothing.
step hostile suite 20m ./test/hostile/...
# Performance regressions, cheaply: pod-ready p50 and CPU per pod of pod-shim
# as multiples of the same steps done by the host tools alone, measured side
# by side; fails past 1.5x the ratios in test/bench/regress-baseline.txt.
step perf-regress bash test/bench/regress.sh
# Each fuzzer for a bounded time on top of its seed corpus (the corpora also
# run in the unit step). -fuzzminimizetime keeps FuzzImport from spending its
# whole budget shrinking one archive.
fuzz() { # NAME PACKAGE
	go test -run '^$' -fuzz "^$1\$" -fuzztime "${FUZZ_TIME:-20s}" -fuzzminimizetime 100x "$2"
}
step fuzz-unpack fuzz FuzzUnpack ./pkg/image/
step fuzz-import fuzz FuzzImport ./pkg/image/
step fuzz-ref fuzz FuzzParseRef ./pkg/image/
step fuzz-monitor fuzz FuzzDecodeRequest ./pkg/monitor/
step fuzz-cri fuzz FuzzCRIRequest ./pkg/cri/
# critest v1.37.0 against the built daemon, offline (builds critest and
# busybox once into ${POD_SHIM_CACHE:-/var/cache/pod-shim-ci}; ~4 min warm).
# Fails on any spec not in expected-failures.txt; needs root.
if [ "$(id -u)" = 0 ]; then
	step conformance env CRITEST_EXPECT_FAIL=test/conformance/expected-failures.txt bash test/conformance/critest.sh
	# The same with runc v1.5 (idmapped mounts: the user-namespace specs run
	# too); hack/build-runc.sh builds it from the module proxy, cached.
	runc15=$(bash hack/build-runc.sh) || runc15=
	if [ -n "$runc15" ]; then
		step conformance-runc1.5 env CRITEST_RUNC="$runc15" CRITEST_EXPECT_FAIL=test/conformance/expected-failures.txt bash test/conformance/critest.sh
	else
		failed+=("build-runc")
	fi
else
	echo "warning: not root, skipping conformance (critest)" >&2
fi
# A real kubelet v1.37 (standalone, static pods) against the daemon.
# build-kubelet.sh caches the binary in $POD_SHIM_CACHE (about 7 min cold).
# The suite holds /run/lock/pod-shim-kube.lock while its kubelet runs, and
# waits for it (up to 40 min) while another kubelet holds it.
kubelet_e2e() {
	local bin
	bin=$(bash test/conformance/build-kubelet.sh) || return 1
	KUBELET_BIN=$bin suite 60m ./test/kubelet/...
}
step kubelet kubelet_e2e
# The kubelet scenarios again on runc v1.5 (the hostUsers: false scenario in
# the step above picks runc v1.5 by itself).
kubelet_e2e_runc15() {
	local bin
	[ -n "${runc15:-}" ] || { echo "no runc v1.5 (hack/build-runc.sh failed)" >&2; return 1; }
	bin=$(bash test/conformance/build-kubelet.sh) || return 1
	PATH="$(dirname "$runc15"):$PATH" KUBELET_BIN=$bin suite 60m -run 'TestKubelet$' ./test/kubelet/...
}
if [ "$(id -u)" = 0 ]; then
	step kubelet-runc1.5 kubelet_e2e_runc15
fi
# Upstream e2e_node [NodeConformance], the CI subset (test/node-e2e/ci-subset.txt:
# 126 specs on init containers, restart policies, sidecars, hooks, probes, pod
# conditions, security context, logs, exec). Its own net and mount namespaces:
# it shares no kubelet port or path. The full run: bash test/node-e2e/run.sh.
if [ "$(id -u)" = 0 ]; then
	step node-e2e env POD_SHIM_BIN_DIR="$PWD/bin" bash test/node-e2e/run.sh --subset ci
fi
# A kubeadm v1.37.2 cluster on pod-shim (hack/cluster.sh up/down inside the
# suite), checked through the API server with kubectl; builds cached.
cluster_e2e() {
	bash hack/build-kube.sh kubeadm kubectl kubelet kube-apiserver kube-controller-manager \
		kube-scheduler kube-proxy >/dev/null && bash hack/build-etcd.sh >/dev/null &&
		bash hack/build-coredns.sh >/dev/null || return 1
	go test -count=1 -v -timeout 20m ./test/cluster/...
}
if [ "$(id -u)" = 0 ]; then
	step cluster cluster_e2e
fi
if [ "${POD_SHIM_BENCH:-}" = 1 ]; then
	# The plain build: the race detector would distort the figures.
	step bench go test -count=1 -run '^$' -bench PodReady -benchtime 1x -timeout 20m ./test/e2e/
fi

echo
echo "step           result   time"
printf '%s\n' "${timings[@]}"
echo "total: ${SECONDS}s"
if [ ${#failed[@]} -gt 0 ]; then
	echo "FAILED: ${failed[*]}"
	exit 1
fi
echo "ALL PASSED"
