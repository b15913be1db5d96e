#!/usr/bin/env bash
# The README's first command: pod-shim end to end, offline, on a fresh Debian 12
# machine as root with Go. It installs runc, the CNI plugins and busybox-static
# from apt and crictl from the Go module proxy, builds pod-shim, starts the
# daemon with private dirs and a private CNI bridge, loads a busybox image built
# here from the host's busybox-static (no registry, no network), runs a pod
# serving a page with crictl, shows its IP, the page and the container's logs,
# and removes everything again on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if [ "$(id -u)" != 0 ]; then
	echo "hack/demo.sh: run as root (it creates network namespaces and a bridge)" >&2
	exit 1
fi
command -v go >/dev/null || { echo "hack/demo.sh: Go is required on PATH" >&2; exit 1; }

# --- install (skipped for what is there already) ---------------------------
pkgs=(runc containernetworking-plugins busybox-static gcc libc6-dev curl iproute2)
missing=()
for p in "${pkgs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	say "Installing ${missing[*]} (apt)"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
export PATH="$PATH:$(go env GOPATH)/bin"
if ! command -v crictl >/dev/null; then
	say "Installing crictl v1.37.0 (go install)"
	go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0
fi

say "Building pod-shim (hack/build.sh)"
bash hack/build.sh
BIN=$PWD/bin

# --- private dirs, CNI network, cleanup -------------------------------------
# Short paths: each pod's monitor socket lives under the state dir, and unix
# socket paths are limited to 107 bytes.
DEMO=$(mktemp -d /run/psdemo.XXXXXX)
ROOT=$DEMO/root STATE=$DEMO/s SOCK=$DEMO/pod-shim.sock
BRIDGE=psdemo$((RANDOM % 1000))
NET=pod-shim-demo-$$
for _ in $(seq 50); do # a 10.250.X.0/24 this host does not route yet
	X=$((RANDOM % 254 + 1))
	ip -4 route show | grep -q "10\.250\.$X\." || break
done
SUBNET=10.250.$X.0/24
mkdir -p "$DEMO/cni" "$DEMO/ipam" "$DEMO/logs"
DAEMON_PID=

cri() { crictl --config "$DEMO/crictl.yaml" "$@"; }

cleanup() {
	local rc=$?
	set +e
	say "Cleaning up"
	if [ -n "$DAEMON_PID" ] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		for pod in $(cri pods -q 2>/dev/null); do
			cri stopp "$pod" >/dev/null
			cri rmp "$pod" >/dev/null
		done
		kill -TERM "$DAEMON_PID"
		for _ in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$DAEMON_PID" 2>/dev/null
		wait "$DAEMON_PID" 2>/dev/null
	fi
	# Whatever a failure left behind: containers, monitors, mounts, the bridge.
	for c in $(runc --root "$STATE/runc" list -q 2>/dev/null); do runc --root "$STATE/runc" delete -f "$c"; done
	for pid in $(pgrep -f "pod-shim monitor.*$DEMO" 2>/dev/null); do kill -KILL "$pid"; done
	awk -v d="$DEMO" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
	ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
	if awk -v d="$DEMO" 'index($5, d) == 1 {found=1} END {exit !found}' /proc/self/mountinfo; then
		echo "mounts remain under $DEMO; not deleting it" >&2
	else
		rm -rf "$DEMO"
	fi
	[ $rc = 0 ] && say "Done: everything removed." || echo "demo failed (exit $rc)" >&2
}
trap cleanup EXIT

cat >"$DEMO/cni/10-demo.conflist" <<JSON
{
  "cniVersion": "1.0.0",
  "name": "$NET",
  "plugins": [
    {
      "type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
      "ipam": {"type": "host-local", "ranges": [[{"subnet": "$SUBNET"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$DEMO/ipam"}
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
JSON
cat >"$DEMO/crictl.yaml" <<YAML
runtime-endpoint: unix://$SOCK
image-endpoint: unix://$SOCK
timeout: 30
YAML

say "Starting pod-shim serve (log: $DEMO/daemon.log)"
"$BIN/pod-shim" serve --listen "$SOCK" --root "$ROOT" --state "$STATE" \
	--cni-conf-dir "$DEMO/cni" --cni-bin-dir /usr/lib/cni:/opt/cni/bin \
	--pause-binary "$BIN/pod-shim-pause" >"$DEMO/daemon.log" 2>&1 &
DAEMON_PID=$!
for i in $(seq 300); do
	cri version >/dev/null 2>&1 && break
	kill -0 "$DAEMON_PID" 2>/dev/null || { cat "$DEMO/daemon.log"; exit 1; }
	[ "$i" = 300 ] && { echo "pod-shim did not come up in 30s" >&2; cat "$DEMO/daemon.log"; exit 1; }
	sleep 0.1
done
cri version

say "Loading a busybox image built from this host's busybox-static (no network)"
IMAGE=$(go run ./test/registry --write-archive "$DEMO/busybox.tar")
"$BIN/pod-shim" images import --state "$STATE" "$DEMO/busybox.tar"
cri images

say "Running a pod"
cat >"$DEMO/pod.json" <<JSON
{"metadata": {"name": "demo", "namespace": "default", "uid": "demo-$$"},
 "hostname": "demo", "log_directory": "$DEMO/logs", "linux": {}}
JSON
cat >"$DEMO/web.json" <<JSON
{"metadata": {"name": "web"}, "image": {"image": "$IMAGE"}, "log_path": "web.log", "linux": {},
 "command": ["sh", "-c", "mkdir -p /tmp/www && echo \"Hello from pod \$(hostname), served by busybox httpd under pod-shim\" > /tmp/www/index.html && echo web: serving on port 8080 && exec httpd -f -v -p 8080 -h /tmp/www"]}
JSON
POD=$(cri runp "$DEMO/pod.json")
CTR=$(cri create "$POD" "$DEMO/web.json" "$DEMO/pod.json")
cri start "$CTR" >/dev/null
cri pods
cri ps
IP=$(cri inspectp -o go-template --template '{{.status.network.ip}}' "$POD")
say "Pod IP: $IP"

say "curl http://$IP:8080/"
for i in $(seq 50); do
	curl -sS --noproxy '*' --max-time 2 "http://$IP:8080/" && break
	[ "$i" = 50 ] && exit 1
	sleep 0.1
done

say "Container logs (crictl logs)"
cri logs "$CTR"

say "crictl exec -s: uname -a inside the pod"
cri exec -s "$CTR" uname -a
