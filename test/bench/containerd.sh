#!/usr/bin/env bash
# Pod-ready latency of pod-shim and of containerd side by side (issue 2,
# item 6), offline, as root: starts a private containerd (Debian's 1.6, or
# whatever `containerd` is on PATH) with its own root, state, socket, CNI bridge
# and restrict_oom_score_adj, loads the same busybox image (and a pause image
# made from pod-shim's pause binary) into it with ctr, then runs
# BenchmarkPodReady, whose "pod-shim" and "endpoint" runs then use the same
# image, CNI plugins and runc.
#
#   bash test/bench/containerd.sh [extra go test flags]
set -euo pipefail
cd "$(dirname "$0")/../.."
[ "$(id -u)" = 0 ] || { echo "run as root" >&2; exit 1; }
for b in containerd ctr runc go; do command -v $b >/dev/null || { echo "needs $b (apt-get install containerd runc)" >&2; exit 1; }; done
export PATH="$PATH:$(go env GOPATH)/bin"

TMP=$(mktemp -d /tmp/psbench.XXXXXX)
SOCK=$TMP/containerd.sock
BRIDGE=psbench$((RANDOM % 100))
for _ in $(seq 50); do
	X=$((RANDOM % 254 + 1))
	ip -4 route show | grep -q "10\.250\.$X\." || break
done
CTRD_PID=

cleanup() {
	set +e
	if [ -n "$CTRD_PID" ]; then
		kill -TERM "$CTRD_PID"
		for _ in $(seq 100); do kill -0 "$CTRD_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$CTRD_PID" 2>/dev/null
		wait "$CTRD_PID" 2>/dev/null
	fi
	# Shims of pods a failed run left: found by this run's private socket path, killed by pid.
	for pid in $(pgrep -f -- "-address $SOCK"); do kill -KILL "$pid"; done
	awk -v d="$TMP" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
	ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
	if awk -v d="$TMP" 'index($5, d) == 1 {f=1} END {exit !f}' /proc/self/mountinfo; then
		echo "mounts remain under $TMP; not deleting it" >&2
	else
		rm -rf "$TMP"
	fi
}
trap cleanup EXIT

mkdir -p "$TMP/cni" "$TMP/ipam" "$TMP/bin"
cat >"$TMP/cni/10-bench.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "psbench-$$", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.250.$X.0/24"}]], "dataDir": "$TMP/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
cat >"$TMP/config.toml" <<TOML
version = 2
root = "$TMP/root"
state = "$TMP/state"
[grpc]
  address = "$SOCK"
[ttrpc]
  address = "$SOCK.ttrpc"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "localhost/pod-shim-test/pause:3.10"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "$TMP/cni"
TOML

OUT=$TMP/bin bash hack/build.sh
containerd --config "$TMP/config.toml" >"$TMP/containerd.log" 2>&1 &
CTRD_PID=$!
for i in $(seq 100); do
	ctr -a "$SOCK" version >/dev/null 2>&1 && break
	[ "$i" = 100 ] && { cat "$TMP/containerd.log"; exit 1; }
	sleep 0.1
done
IMAGE=$(go run ./test/registry --write-archive "$TMP/images.tar" --pause-binary "$TMP/bin/pod-shim-pause")
ctr -a "$SOCK" -n k8s.io images import "$TMP/images.tar"

POD_SHIM_BENCH_ENDPOINT=$SOCK POD_SHIM_BENCH_IMAGE=$IMAGE \
	go test -count=1 -run '^$' -bench PodReady -benchtime 1x -timeout 20m "$@" ./test/e2e/
