#!/usr/bin/env bash
# Smoke test with a real kubelet: runs a standalone kubelet (no API server, no
# kubeconfig) from test/conformance/build-kubelet.sh against a freshly built
# pod-shim, with deploy/kubelet-config.yaml adjusted to temp dirs, and one
# static busybox pod. Reports the pod's phase from the read-only port
# (127.0.0.1:10255/pods), crictl's view, and every kubelet log line that
# mentions the runtime or an error. Cleans up everything it made.
#
#   test/conformance/kubelet.sh            # exit 0 when the pod ran and printed its line
#   KUBELET_KEEP_SECONDS=60 test/conformance/kubelet.sh   # watch it longer
#   KUBELET_EXTRA_CONFIG='...' appends KubeletConfiguration lines (feature gates, ...)
#
# Needs root, the same host tools as critest.sh, and host ports 10248, 10250,
# 10255 free on 127.0.0.1.
set -euo pipefail

[[ $(id -u) == 0 ]] || { echo "kubelet.sh: needs root" >&2; exit 1; }
for p in 10248 10250 10255; do
	if ss -Hltn "sport = :$p" | grep -q .; then
		echo "kubelet.sh: port $p is in use" >&2
		exit 1
	fi
done

SRC=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/pod-shim-kubelet.XXXXXX)
STATE=$(mktemp -d /run/pskl.XXXX)
OUT=${KUBELET_OUT:-$WORK/out}
mkdir -p "$OUT" "$WORK"/{bin,root,cni,ipam,manifests,kubelet,podlogs}
RAND=$((RANDOM % 200 + 20))
for _ in $(seq 1 50); do
	ip route show | grep -q "^10\.249\.$RAND\." || break
	RAND=$((RANDOM % 200 + 20))
done
SUBNET=10.249.$RAND.0/24
BRIDGE=pskl$(printf '%04x' $((RANDOM)))
SOCK=$WORK/pod-shim.sock
REG_PID= DAEMON_PID= KUBELET_PID=
CRICTL=(crictl)
command -v crictl >/dev/null || CRICTL=(/root/go/bin/crictl)
CRICTL+=(--runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" --timeout 60s)

log() { echo "kubelet.sh: $*" >&2; }

# Host state the kubelet creates outside our dirs: cgroups (kubepods*) under
# cgroupRoot and iptables chains. Remember what existed before.
cg_before=$(ls -d /sys/fs/cgroup/*/kubepods* 2>/dev/null | sort || true)
chains_before=$(for t in filter nat mangle; do iptables -t $t -S 2>/dev/null | awk -v t=$t '$1=="-N"{print t, $2}'; done | sort)

cleanup() {
	local rc=$?
	set +e
	if [[ -n $KUBELET_PID ]] && kill -0 "$KUBELET_PID" 2>/dev/null; then
		# Deleting the manifest makes the kubelet stop the pod (StopPodSandbox);
		# its garbage collector removes the sandbox later, which is not awaited.
		rm -f "$WORK"/manifests/*.yaml
		local t=0
		while ((t < 30)) && [[ $("${CRICTL[@]}" pods -o json 2>/dev/null | jq '[.items[] | select(.state == "SANDBOX_READY")] | length') != 0 ]]; do
			sleep 1; t=$((t + 1))
		done
		if ((t < 30)); then
			echo "== manifest deleted: the kubelet stopped the pod within ${t}s"
			# NotReady shows before StopPodSandbox returns (CNI DEL follows):
			# give the call time to finish before the kubelet is stopped.
			sleep 5
		else
			echo "== manifest deleted: the pod was still Ready after 30s"
		fi
		kill -TERM "$KUBELET_PID"; wait "$KUBELET_PID" 2>/dev/null
	fi
	if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		for p in $("${CRICTL[@]}" pods -q 2>/dev/null); do
			log "pod $p left by the kubelet; removing it"
			"${CRICTL[@]}" stopp "$p" >/dev/null 2>&1
			"${CRICTL[@]}" rmp -f "$p" >/dev/null 2>&1
		done
		kill -TERM "$DAEMON_PID"
		for _ in $(seq 1 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$DAEMON_PID" 2>/dev/null; wait "$DAEMON_PID" 2>/dev/null
	fi
	[[ -n $REG_PID ]] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null
	for pid in $(grep -l -s -F -e "$WORK" -e "$STATE" /proc/[0-9]*/cmdline | cut -d/ -f3); do
		[[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
		kill -KILL "$pid" 2>/dev/null && log "killed leftover process $pid"
	done
	if [[ -d $STATE/runc ]]; then
		for id in $(runc --root "$STATE/runc" list -q 2>/dev/null); do
			runc --root "$STATE/runc" delete -f "$id" 2>/dev/null && log "removed leftover runc container $id"
		done
	fi
	awk -v w="$WORK" -v s="$STATE" 'index($2, w)==1 || index($2, s)==1 {print $2}' /proc/self/mounts | sort -r |
		while read -r m; do umount -l "$m" 2>/dev/null; done
	ip link del "$BRIDGE" 2>/dev/null
	# kubepods cgroups the kubelet made (deepest first; only empty ones go).
	for d in $(comm -13 <(echo "$cg_before") <(ls -d /sys/fs/cgroup/*/kubepods* 2>/dev/null | sort)); do
		find "$d" -depth -type d -exec rmdir {} \; 2>/dev/null
	done
	# iptables chains the kubelet made.
	comm -13 <(echo "$chains_before") <(for t in filter nat mangle; do iptables -t $t -S 2>/dev/null | awk -v t=$t '$1=="-N"{print t, $2}'; done | sort) |
		while read -r t ch; do
			[[ $ch == KUBE-* ]] || continue
			for b in INPUT OUTPUT FORWARD PREROUTING POSTROUTING; do
				iptables -t "$t" -S "$b" 2>/dev/null | grep -- "-j $ch\( \|\$\)" | sed 's/^-A/-D/' |
					while read -r r; do eval iptables -t "$t" "$r"; done
			done
			iptables -t "$t" -F "$ch"; iptables -t "$t" -X "$ch" && log "removed iptables chain $t/$ch"
		done
	[[ -z ${KUBELET_OUT:-} ]] && { rm -rf /tmp/pod-shim-kubelet-last; cp -r "$OUT" /tmp/pod-shim-kubelet-last; log "logs kept in /tmp/pod-shim-kubelet-last"; }
	if awk -v w="$WORK" -v s="$STATE" 'index($2, w)==1 || index($2, s)==1' /proc/self/mounts | grep -q .; then
		log "mounts still under $WORK or $STATE; leaving them"
	else
		rm -rf "$WORK" "$STATE"
	fi
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

t0=$(date +%s)
if [[ -n ${POD_SHIM_BIN_DIR:-} ]]; then
	cp "$POD_SHIM_BIN_DIR"/pod-shim* "$WORK/bin/"
else
	OUT="$WORK/bin" bash "$SRC/hack/build.sh"
fi
KUBELET=$(bash "$SRC/test/conformance/build-kubelet.sh")
BUSYBOX=$(bash "$SRC/test/conformance/build-busybox.sh" 2>/dev/null) || BUSYBOX=/bin/busybox
(cd "$SRC" && CGO_ENABLED=0 go build -o "$WORK/bin/conformance-images" ./test/conformance/images)
log "builds took $(($(date +%s) - t0))s"

mkfifo "$WORK/reg.fifo"
"$WORK/bin/conformance-images" --src "$SRC" --busybox "$BUSYBOX" >"$WORK/reg.fifo" 2>"$OUT/registry.log" &
REG_PID=$!
exec 3<"$WORK/reg.fifo"
read -r -t 300 REG <&3 || { log "registry did not start"; exit 1; }
while read -r -t 300 line <&3; do [[ $line == ready ]] && break; done
cat <&3 >/dev/null &

cat >"$WORK/config.toml" <<EOF
listen = '$SOCK'
root = '$WORK/root'
state = '$STATE'
log_level = 'debug'
cgroup_driver = 'cgroupfs'
pause_binary = '$WORK/bin/pod-shim-pause'
[cni]
conf_dir = '$WORK/cni'
bin_dirs = ['/usr/lib/cni']
[registry]
insecure = ['$REG']
[registry.mirrors]
'registry.k8s.io' = ['http://$REG']
EOF
cat >"$WORK/cni/10-$BRIDGE.conflist" <<EOF
{"cniVersion": "1.0.0", "name": "$BRIDGE", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false, "hairpinMode": true,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "$SUBNET"}]], "routes": [{"dst": "0.0.0.0/0"}], "dataDir": "$WORK/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
EOF
HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost \
	"$WORK/bin/pod-shim" serve --config "$WORK/config.toml" >"$OUT/pod-shim.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 1 100); do [[ -S $SOCK ]] && break; sleep 0.1; done
[[ -S $SOCK ]] || { log "daemon did not start"; exit 1; }

# deploy/kubelet-config.yaml with this run's socket and dirs.
sed -e "s|unix:///run/pod-shim/pod-shim.sock|unix://$SOCK|" \
	-e "s|^staticPodPath: .*|staticPodPath: $WORK/manifests|" \
	"$SRC/deploy/kubelet-config.yaml" >"$WORK/kubelet-config.yaml"
echo "podLogsRootDirectory: $WORK/podlogs" >>"$WORK/kubelet-config.yaml"
# e.g. KUBELET_EXTRA_CONFIG=$'featureGates:\n  PodAndContainerStatsFromCRI: true'
[[ -n ${KUBELET_EXTRA_CONFIG:-} ]] && echo "$KUBELET_EXTRA_CONFIG" >>"$WORK/kubelet-config.yaml"

cat >"$WORK/manifests/busybox.yaml" <<'EOF'
apiVersion: v1
kind: Pod
metadata:
  name: smoke
  namespace: default
spec:
  restartPolicy: Always
  containers:
  - name: busybox
    image: registry.k8s.io/e2e-test-images/busybox:1.29-2
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo hello from a static pod; while true; do sleep 5; done"]
EOF

log "starting kubelet $("$KUBELET" --version 2>&1)"
t1=$(date +%s)
"$KUBELET" --config "$WORK/kubelet-config.yaml" --root-dir "$WORK/kubelet" \
	--hostname-override pod-shim-smoke --v=2 >"$OUT/kubelet.log" 2>&1 &
KUBELET_PID=$!

phase= ok=0
for _ in $(seq 1 120); do
	kill -0 "$KUBELET_PID" 2>/dev/null || { log "kubelet exited"; break; }
	phase=$(curl -fsS http://127.0.0.1:10255/pods 2>/dev/null | jq -r '.items[]? | select(.metadata.name|startswith("smoke")) | .status.phase + " " + ((.status.containerStatuses // []) | map(.name + ":" + (.state|keys[0]) + ":restarts=" + (.restartCount|tostring)) | join(","))' || true)
	if [[ $phase == Running*running* ]]; then ok=1; break; fi
	sleep 1
done
t_run=$(($(date +%s) - t1))
echo "== kubelet smoke: pod phase after ${t_run}s: ${phase:-<not reported>}"
sleep "${KUBELET_KEEP_SECONDS:-5}"
"${CRICTL[@]}" pods 2>&1 || true
"${CRICTL[@]}" ps -a 2>&1 || true
cid=$("${CRICTL[@]}" ps -q --name busybox 2>/dev/null | head -1)
[[ -n $cid ]] && { echo "-- container log:"; "${CRICTL[@]}" logs "$cid" 2>&1 | head -5; }
curl -fsS http://127.0.0.1:10255/pods >"$OUT/pods.json" 2>/dev/null || true
echo "-- kubelet log lines about the runtime or errors (first 60):"
grep -E '^E[0-9]{4}|rpc error|Unimplemented|remote_runtime|remote_image|CRI|runtime' "$OUT/kubelet.log" |
	grep -v '^I.*"Using' | head -60
if [[ $ok == 1 ]] && "${CRICTL[@]}" logs "$cid" 2>&1 | grep -q 'hello from a static pod'; then
	exit 0
fi
exit 1
