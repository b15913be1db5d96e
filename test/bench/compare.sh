#!/usr/bin/env bash
# pod-shim against containerd v2.x, side by side on this machine: same runc,
# same CNI plugins (bridge + host-local + portmap), same busybox image, each
# runtime with private dirs and run in its own cgroup so that CPU per pod
# lifecycle counts everything it spawns (daemon, monitor or shim, runc, CNI
# plugins). Rounds alternate between the runtimes so drift in the machine's
# load hits both alike.
#
#   bash test/bench/compare.sh                 # 3 rounds, 1 and 8 clients, 40 pods
#   ROUNDS=5 PODS=60 bash test/bench/compare.sh
#   DENSITY="50 200" bash test/bench/compare.sh   # also density at these N
#   RUNTIMES=pod-shim bash test/bench/compare.sh  # one runtime only
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
RUNC=${RUNC:-$(command -v runc)}

# Short paths: pod-shim puts unix sockets under <state>/pods/<64-hex>/.
TMP=$(mktemp -d /run/p.XXXX)
OUT=${OUT:-$TMP/out}
mkdir -p "$OUT" "$TMP/bin" "$TMP/cni" "$TMP/logs"
BRIDGE=psb$(printf '%04x' $((RANDOM)))
for _ in $(seq 50); do
	X=$((RANDOM % 254 + 1))
	ip -4 route show | grep -q "10\.248\.$X\." || break
done
CG_NAME=podbench-$$
DAEMON_PID=

cgroup_dirs() {
	if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
		echo /sys/fs/cgroup/$CG_NAME
	elif [[ -f /sys/fs/cgroup/cpuacct/cpuacct.usage ]]; then
		echo /sys/fs/cgroup/cpuacct/$CG_NAME
	else
		echo /sys/fs/cgroup/cpu,cpuacct/$CG_NAME
	fi
}
CG=$(cgroup_dirs)

stop_daemon() {
	[[ -n $DAEMON_PID ]] || return 0
	kill -TERM "$DAEMON_PID" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$DAEMON_PID" 2>/dev/null || true
	wait "$DAEMON_PID" 2>/dev/null || true
	DAEMON_PID=
}

cleanup() {
	set +e
	stop_daemon
	# Whatever a failed run left: per-pod processes found by this run's dir.
	for pid in $(pgrep -f -- "$TMP"); do kill -KILL "$pid" 2>/dev/null; done
	for r in "$TMP"/ps/state/runc "$TMP"/ctrd/state/runc/k8s.io; do
		[[ -d $r ]] || continue
		for c in $("$RUNC" --root "$r" list -q 2>/dev/null); do "$RUNC" --root "$r" delete -f "$c"; done
	done
	awk -v d="$TMP" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
	ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
	[[ -d $CG ]] && rmdir "$CG" 2>/dev/null
	if awk -v d="$TMP" 'index($5, d) == 1 {f=1} END {exit !f}' /proc/self/mountinfo; then
		echo "compare.sh: mounts remain under $TMP; not deleting it" >&2
	elif [[ $OUT == "$TMP"/* ]]; then
		mkdir -p /tmp/podbench-last && cp -r "$OUT"/. /tmp/podbench-last/ && echo "compare.sh: results kept in /tmp/podbench-last" >&2
		rm -rf "$TMP"
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT

cat >"$TMP/cni/10-bench.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "psb-$$", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.248.$X.0/24"}]], "dataDir": "$TMP/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON

echo "compare.sh: building pod-shim, podbench, containerd" >&2
OUT=$TMP/bin bash hack/build.sh >&2
go build -o "$TMP/bin/podbench" ./test/bench/podbench
CTRD_DIR=$(bash hack/build-containerd.sh)
IMAGE=$(go run ./test/registry --write-archive "$TMP/images.tar" --pause-binary "$TMP/bin/pod-shim-pause")

mkdir -p "$CG"
# start_in_cgroup LOG CMD...: runs CMD as a child placed in $CG before it
# execs, so every process it spawns is accounted there.
start_in_cgroup() {
	local log=$1
	shift
	bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG" "$@" >"$log" 2>&1 &
	DAEMON_PID=$!
}

wait_socket() { # sock
	"$TMP/bin/podbench" -probe "$1" -wait 60s
}

# start_<runtime> [restart]: a fresh runtime with the images loaded, or with
# "restart" the same dirs again (pods still running), timed to serving only.
start_pod_shim() {
	local d=$TMP/ps
	if [[ ${1:-} != restart ]]; then
		rm -rf "$d"
		mkdir -p "$d"
	fi
	start_in_cgroup "$d.log" "$TMP/bin/pod-shim" serve --listen "$d/sock" --root "$d/root" --state "$d/state" \
		--cni-conf-dir "$TMP/cni" --cni-bin-dir /usr/lib/cni --runtime "$RUNC" \
		--pause-binary "$TMP/bin/pod-shim-pause"
	wait_socket "$d/sock" || { cat "$d.log" >&2; return 1; }
	SOCK=$d/sock MATCH=$d/state
	[[ ${1:-} == restart ]] || "$TMP/bin/pod-shim" images import --state "$d/state" "$TMP/images.tar" >&2
}

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
done
for n in $DENSITY; do
	for rt in $RUNTIMES; do
		echo "== density N=$n: $rt" >&2
		density "$rt" "$n"
	done
done

(cd test/bench/report && go run . -in "$OUT/results.jsonl" -png "$OUT/compare.png") | tee "$OUT/summary.txt"
echo "compare.sh: results in $OUT" >&2
