#!/usr/bin/env bash
# pod-shim against containerd v2.x, side by side on this machine: same runc,
# same CNI plugins (bridge + host-local + portmap), same busybox image, each
# runtime with private dirs and run in its own cgroup so that CPU per pod
# lifecycle counts everything it spawns (daemon, monitor or shim, runc, CNI
# plugins). Rounds alternate between the runtimes so drift in the machine's
# load hits both alike. Each round also runs podbench -mode floor: the same
# pod start and stop done by the host tools alone (netns, libcni, overlay,
# runc), in the same cgroup, so the table shows how far above it each
# runtime's pod-ready is.
#
#   bash test/bench/compare.sh                 # 3 rounds, 1 and 8 clients, 40 pods
#   ROUNDS=5 PODS=60 bash test/bench/compare.sh
#   DENSITY="50 200" bash test/bench/compare.sh   # also density at these N
#   RUNTIMES=pod-shim bash test/bench/compare.sh  # one runtime only
#   FLOOR_FLAGS=-runc-run bash test/bench/compare.sh  # floor with runc run -d, as pod-shim starts containers
#
# Prints one table of medians and ratios (pod-shim / containerd), keeps every
# raw record in $OUT/results.jsonl and draws $OUT/compare.png (pod-ready CDF at
# 1 and 8 clients, and memory per pod against N when density ran).
# Needs root, runc, /usr/lib/cni, iptables; builds containerd v2.4.x with
# hack/build-containerd.sh (cached).
set -euo pipefail
cd "$(dirname "$0")/../.."
SRC=$PWD
[[ $(id -u) == 0 ]] || { echo "compare.sh: run as root" >&2; exit 1; }
export PATH="$PATH:$(go env GOPATH)/bin"

ROUNDS=${ROUNDS:-3}
PODS=${PODS:-40}
CLIENTS=${CLIENTS:-1,8}
DENSITY=${DENSITY:-}
IDLE=${IDLE:-60s}
RUNTIMES=${RUNTIMES:-"pod-shim containerd"}

source test/bench/lib.sh
bench_init p
OUT=${OUT:-$TMP/out}
mkdir -p "$OUT"

cleanup() {
	if bench_cleanup; then
		if [[ $OUT == "$TMP"/* ]]; then
			mkdir -p /tmp/podbench-last && cp -r "$OUT"/. /tmp/podbench-last/ && echo "compare.sh: results kept in /tmp/podbench-last" >&2
		fi
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT

echo "compare.sh: building pod-shim, podbench, containerd" >&2
bench_build
CTRD_DIR=$(bash hack/build-containerd.sh)
IMAGE=$(go run ./test/registry --write-archive "$TMP/images.tar" --pause-binary "$TMP/bin/pod-shim-pause")

start_containerd() {
	local d=$TMP/ctrd
	if [[ ${1:-} != restart ]]; then
		rm -rf "$d"
		mkdir -p "$d"
	fi
	cat >"$d/config.toml" <<TOML
version = 3
root = "$d/root"
state = "$d/state"
[grpc]
  address = "$d/sock"
[ttrpc]
  address = "$d/sock.ttrpc"
[plugins.'io.containerd.cri.v1.images']
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = "localhost/pod-shim-test/pause:3.10"
[plugins.'io.containerd.cri.v1.runtime']
  restrict_oom_score_adj = true
  # netns pinned under the state dir, so a failed run's cleanup finds them there
  netns_mounts_under_state_dir = true
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ["/usr/lib/cni"]
    conf_dir = "$TMP/cni"
  [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
    BinaryName = "$RUNC"
[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
TOML
	PATH=$CTRD_DIR:$PATH start_in_cgroup "$d.log" "$CTRD_DIR/containerd" --config "$d/config.toml"
	wait_socket "$d/sock" || { cat "$d.log" >&2; return 1; }
	SOCK=$d/sock MATCH=$d/sock
	[[ ${1:-} == restart ]] || "$CTRD_DIR/ctr" -a "$d/sock" -n k8s.io images import "$TMP/images.tar" >&2
}

bench() { # runtime mode args...
	local rt=$1 mode=$2
	shift 2
	"start_${rt//-/_}"
	"$TMP/bin/podbench" -endpoint "$SOCK" -image "$IMAGE" -label "$rt" -mode "$mode" \
		-cgroup "$CG" -proc-match "$MATCH" -daemon-pid "$DAEMON_PID" -log-dir "$TMP/logs" \
		-json "$OUT/results.jsonl" "$@"
	stop_daemon
}

# density RUNTIME N: N pods held running, then the daemon is restarted under
# them and timed from exec to serving, then they are removed.
density() {
	local rt=$1 n=$2 t0 t1
	"start_${rt//-/_}"
	"$TMP/bin/podbench" -endpoint "$SOCK" -image "$IMAGE" -label "$rt" -mode density -pods "$n" -keep \
		-idle "$IDLE" -cgroup "$CG" -proc-match "$MATCH" -daemon-pid "$DAEMON_PID" -log-dir "$TMP/logs" \
		-json "$OUT/results.jsonl"
	stop_daemon
	t0=$(date +%s%N)
	"start_${rt//-/_}" restart
	t1=$(date +%s%N)
	awk -v rt="$rt" -v n="$n" -v t0="$t0" -v t1="$t1" \
		'BEGIN {printf "{\"runtime\":\"%s\",\"mode\":\"restart\",\"pods\":%d,\"restart_ms\":%.1f}\n", rt, n, (t1 - t0) / 1e6}' >>"$OUT/results.jsonl"
	"$TMP/bin/podbench" -endpoint "$SOCK" -image "$IMAGE" -mode cleanup >&2
	stop_daemon
}

for round in $(seq "$ROUNDS"); do
	for rt in $RUNTIMES; do
		echo "== round $round: $rt lifecycle" >&2
		bench "$rt" lifecycle -clients "$CLIENTS" -pods "$PODS"
	done
	echo "== round $round: floor (the same steps by the host tools alone)" >&2
	floor -pods "$PODS" -measure-overlap ${FLOOR_FLAGS:-}
done
for n in $DENSITY; do
	for rt in $RUNTIMES; do
		echo "== density N=$n: $rt" >&2
		density "$rt" "$n"
	done
done

(cd test/bench/report && go run . -in "$OUT/results.jsonl" -png "$OUT/compare.png") | tee "$OUT/summary.txt"
echo "compare.sh: results in $OUT" >&2
