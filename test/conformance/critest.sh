#!/usr/bin/env bash
# Runs critest (cri-tools v1.37.0, the CRI validation suite) against a freshly
# built pod-shim, offline, and cleans up everything it made, also on failure.
#
#   test/conformance/critest.sh              # validation suite
#   test/conformance/critest.sh -benchmark   # critest -benchmark instead
#
# Needs root, runc, /usr/lib/cni (bridge, host-local, portmap), busybox-static,
# gcc, iptables, jq, util-linux (ipcmk, used by critest itself).
#
# Environment:
#   POD_SHIM_CACHE   cache for critest and busybox builds (default /var/cache/pod-shim-ci)
#   POD_SHIM_BIN_DIR use pod-shim and pod-shim-pause from here instead of building
#   CRITEST_FOCUS    extra -ginkgo.focus regexp
#   CRITEST_SKIP     extra -ginkgo.skip regexp (added to the host skips below)
#   CRITEST_OUT      directory for reports and logs (default: kept temp dir, printed)
#   CRITEST_RUNC     the OCI runtime binary of the default handler ([runtime] path;
#                    default: runc in PATH). runc >= 1.2 (hack/build-runc.sh) runs
#                    the user-namespace specs; Debian's runc 1.1.5 skips them.
#   CRITEST_EXPECT_FAIL  file of spec names (one per line, "Hierarchy / Leaf") that
#                    may fail; the script exits 0 only if every other spec passed.
#
# What the run does:
#  1. builds pod-shim (into the work dir, not ./bin), critest and busybox
#     (both cached, see build-critest.sh and build-busybox.sh);
#  2. starts test/conformance/images: stand-ins for every image critest pulls,
#     on one registry at 127.0.0.1:PORT;
#  3. writes a pod-shim config whose [registry.mirrors] send registry.k8s.io,
#     k8s.gcr.io, gcr.io, public.ecr.aws and docker.io to that registry, and a
#     CNI bridge conflist with a unique bridge and subnet 10.249.R.0/24;
#  4. runs the daemon with HTTP(S)_PROXY pointing at a closed loopback port, so
#     a pull that falls back from the mirror to the real host (the one digest
#     spec) fails at once instead of leaving this machine;
#  5. runs critest with JUnit and JSON reports, prints a summary, cleans up.
#
# Host skips: none are forced with -ginkgo.skip. critest skips by itself what
# this host cannot do: AppArmor (disabled on this kernel), and user namespaces
# when the handler's runc reports no idmapped mounts (runc 1.1.5; runc >= 1.2
# as CRITEST_RUNC runs them). Image-volume and
# SupplementalGroupsPolicy specs skip themselves when the runtime says it lacks
# the feature.
set -euo pipefail

MODE=validate
[[ ${1:-} == -benchmark ]] && MODE=benchmark

[[ $(id -u) == 0 ]] || { echo "critest.sh: needs root" >&2; exit 1; }
RUNC=${CRITEST_RUNC:-runc}
for t in "$RUNC" gcc iptables jq ipcmk ip curl; do
	command -v "$t" >/dev/null || { echo "critest.sh: missing $t" >&2; exit 1; }
done
for p in bridge host-local portmap loopback; do
	[[ -x /usr/lib/cni/$p ]] || { echo "critest.sh: missing /usr/lib/cni/$p" >&2; exit 1; }
done
for p in 12000 12001 12002 12003; do
	if ss -Hltn "sport = :$p" | grep -q .; then
		echo "critest.sh: host port $p is in use; critest needs 12000-12003 free" >&2
		exit 1
	fi
done

SRC=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/pod-shim-critest.XXXXXX)
OUT=${CRITEST_OUT:-$WORK/out}
# The state dir is short and separate: pod-shim puts unix sockets under
# <state>/pods/<64-hex id>/, and sun_path holds only 107 bytes.
STATE=$(mktemp -d /run/psct.XXXX)
# As the daemon's own default state dir: a user-namespaced pod's root, an
# unprivileged host uid, must be able to reach its rootfs below it.
chmod 711 "$STATE"
mkdir -p "$OUT" "$WORK"/{bin,root,cni,ipam}
RAND=$((RANDOM % 200 + 20))
for _ in $(seq 1 50); do
	ip route show | grep -q "^10\.249\.$RAND\." || break
	RAND=$((RANDOM % 200 + 20))
done
SUBNET=10.249.$RAND.0/24
BRIDGE=psct$(printf '%04x' $((RANDOM)))
SOCK=$WORK/pod-shim.sock
REG_PID= DAEMON_PID= CRITEST_PID=

log() { echo "critest.sh: $*" >&2; }

# nat chains portmap may create; removed at the end only when this run made
# them and they are empty again.
PORTMAP_CHAINS="CNI-HOSTPORT-DNAT CNI-HOSTPORT-SNAT CNI-HOSTPORT-MASQ CNI-HOSTPORT-SETMARK"
chains_before=$(iptables -t nat -S 2>/dev/null | awk '$1=="-N"{print $2}' | sort)
STAMP=$WORK/.start
touch "$STAMP"
shm_before=$(awk 'NR>1{print $2}' /proc/sysvipc/shm | sort)

cleanup() {
	local rc=$?
	set +e
	[[ -n $CRITEST_PID ]] && kill "$CRITEST_PID" 2>/dev/null && wait "$CRITEST_PID" 2>/dev/null
	if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		# Remove every pod through the daemon first, so runc, monitors, netns,
		# CNI allocations and portmap rules go the normal way.
		local c=(/root/go/bin/crictl --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" --timeout 60s)
		command -v crictl >/dev/null && c[0]=crictl
		for p in $("${c[@]}" pods -q 2>/dev/null); do
			"${c[@]}" stopp "$p" >/dev/null 2>&1
			"${c[@]}" rmp -f "$p" >/dev/null 2>&1
		done
		kill -TERM "$DAEMON_PID"
		for _ in $(seq 1 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$DAEMON_PID" 2>/dev/null
		wait "$DAEMON_PID" 2>/dev/null
	fi
	[[ -n $REG_PID ]] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null
	# Anything still running from this run's state dir (monitors, runc'd
	# processes whose pods could not be removed) is ended by pid.
	local left
	for pid in $(grep -l -s -F -e "$WORK" -e "$STATE" /proc/[0-9]*/cmdline | cut -d/ -f3); do
		[[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
		kill -KILL "$pid" 2>/dev/null && left+=" $pid"
	done
	[[ -n ${left:-} ]] && log "killed leftover processes:$left"
	if [[ -d $STATE/runc ]]; then
		for id in $("$RUNC" --root "$STATE/runc" list -q 2>/dev/null); do
			"$RUNC" --root "$STATE/runc" delete -f "$id" 2>/dev/null
			log "removed leftover runc container $id"
		done
	fi
	# Mounts under the work dir (rootfs overlays, shm, netns pins), deepest first.
	awk -v w="$WORK" -v s="$STATE" 'index($2, w)==1 || index($2, s)==1 {print $2}' /proc/self/mounts | sort -r | while read -r m; do
		umount -l "$m" 2>/dev/null && log "unmounted leftover $m"
	done
	# Network namespaces this run pinned outside the work dir: none expected;
	# the bridge and portmap chains it made.
	ip link del "$BRIDGE" 2>/dev/null
	for ch in $(iptables -t nat -S 2>/dev/null | awk '$1=="-N" && $2 ~ /^CNI-DN-/{print $2}'); do
		if iptables -t nat -S "$ch" | grep -q "10\.249\.$RAND\."; then
			iptables -t nat -S CNI-HOSTPORT-DNAT 2>/dev/null | grep -- "-j $ch\$" | sed 's/^-A/-D/' |
				while read -r r; do eval iptables -t nat "$r"; done
			iptables -t nat -F "$ch"; iptables -t nat -X "$ch"
			log "removed leftover portmap chain $ch"
		fi
	done
	for ch in $PORTMAP_CHAINS; do
		grep -qx "$ch" <<<"$chains_before" && continue
		iptables -t nat -S "$ch" >/dev/null 2>&1 || continue
		[[ $(iptables -t nat -S "$ch" | wc -l) == 1 ]] || continue
		for b in PREROUTING OUTPUT POSTROUTING; do
			iptables -t nat -S "$b" | grep -- "-j $ch\( \|\$\)" | sed 's/^-A/-D/' |
				while read -r r; do eval iptables -t nat "$r"; done
		done
		iptables -t nat -X "$ch" 2>/dev/null
	done
	# Shared memory segments critest's HostIpc specs make on the host with ipcmk.
	for id in $(comm -13 <(echo "$shm_before") <(awk 'NR>1 && $7==0{print $2}' /proc/sysvipc/shm | sort)); do
		ipcrm -m "$id" 2>/dev/null
	done
	# critest's own temp dirs (host paths for volume and propagation specs).
	# A failed propagation spec can leave bind mounts in them, even of /etc
	# (its container mounts /etc there and, with rshared, the host sees it):
	# unmount everything below first, and never remove across a mount.
	find /tmp -maxdepth 1 -newer "$STAMP" -regextype posix-extended \
		-regex '/tmp/(test[0-9a-f]{64}[0-9]*|podLogTest[0-9]*|seccomp-tests[0-9]*|apparmor[0-9]*)' |
		while read -r d; do
			cut -d' ' -f2 /proc/self/mounts | grep -F "$d/" | sort -r |
				while read -r m; do umount -l "$m" 2>/dev/null && log "unmounted leftover $m"; done
			if cut -d' ' -f2 /proc/self/mounts | grep -qF "$d/"; then
				log "mounts still under $d; leaving it"
			else
				rm -rf --one-file-system "$d"
			fi
		done
	if [[ -z ${CRITEST_OUT:-} ]]; then
		cp -r "$OUT" "/tmp/pod-shim-critest-last" 2>/dev/null || true
	fi
	if awk -v w="$WORK" -v s="$STATE" 'index($2, w)==1 || index($2, s)==1' /proc/self/mounts | grep -q .; then
		log "mounts still under $WORK or $STATE; leaving them"
	else
		rm -rf "$WORK" "$STATE"
	fi
	[[ -z ${CRITEST_OUT:-} ]] && log "reports and logs kept in /tmp/pod-shim-critest-last"
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
log "building critest (cached)"
CRITEST=$(bash "$SRC/test/conformance/build-critest.sh")
log "building busybox from Debian's source package (cached)"
if BUSYBOX=$(bash "$SRC/test/conformance/build-busybox.sh"); then
	:
else
	# Offline without apt: the host's busybox-static plus Go stand-ins for
	# ipcs and pgrep. Expect the MaskedPaths spec to fail then (see build-busybox.sh).
	BUSYBOX=/bin/busybox
	log "WARNING: busybox build failed; using $BUSYBOX (MaskedPaths will fail)"
fi
log "building the stand-in images"
(cd "$SRC" && CGO_ENABLED=0 go build -o "$WORK/bin/conformance-images" ./test/conformance/images)
t_build=$(($(date +%s) - t0))

mkfifo "$WORK/reg.fifo"
"$WORK/bin/conformance-images" --src "$SRC" --busybox "$BUSYBOX" >"$WORK/reg.fifo" 2>"$OUT/registry.log" &
REG_PID=$!
exec 3<"$WORK/reg.fifo"
read -r -t 300 REG <&3 || { log "image registry did not start: $(cat "$OUT/registry.log")"; exit 1; }
while read -r -t 300 line <&3; do
	[[ $line == ready ]] && break
	echo "$line" >>"$OUT/images.txt"
done
[[ $line == ready ]] || { log "images not pushed: $(cat "$OUT/registry.log")"; exit 1; }
cat <&3 >/dev/null & # keep the pipe drained
log "stand-in registry at $REG ($(wc -l <"$OUT/images.txt") tags)"

# NRI: pod-shim hosts plugins on this socket and critest's NRI specs connect their
# stub plugin to it (CRITEST_NRI_SOCKET= runs without NRI, and those specs skip).
# The request timeout covers the specs that hold a plugin's Synchronize for 2 s.
NRI_SOCK=${CRITEST_NRI_SOCKET-$WORK/nri.sock}
cat >"$WORK/config.toml" <<EOF
listen = '$SOCK'
root = '$WORK/root'
state = '$STATE'
log_level = 'debug'
cgroup_driver = 'cgroupfs'
pause_binary = '$WORK/bin/pod-shim-pause'

[runtime]
path = '$RUNC'

[cni]
conf_dir = '$WORK/cni'
bin_dirs = ['/usr/lib/cni']

[registry]
insecure = ['$REG']

[registry.mirrors]
'registry.k8s.io' = ['http://$REG']
'k8s.gcr.io' = ['http://$REG']
'gcr.io' = ['http://$REG']
'public.ecr.aws' = ['http://$REG']
'docker.io' = ['http://$REG']

[nri]
enable = $([[ -n $NRI_SOCK ]] && echo true || echo false)
socket_path = '${NRI_SOCK:-/var/run/nri/nri.sock}'
plugin_path = '$WORK/nri/plugins'
plugin_config_path = '$WORK/nri/conf.d'
EOF

cat >"$WORK/cni/10-$BRIDGE.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$BRIDGE",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": false,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{"subnet": "$SUBNET"}]],
        "routes": [{"dst": "0.0.0.0/0"}],
        "dataDir": "$WORK/ipam"
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}},
    {"type": "loopback"}
  ]
}
EOF

log "starting pod-shim on $SOCK (bridge $BRIDGE, subnet $SUBNET, $("$RUNC" --version | head -1))"
HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost \
	"$WORK/bin/pod-shim" serve --config "$WORK/config.toml" >"$OUT/pod-shim.log" 2>&1 &
DAEMON_PID=$!
for _ in $(seq 1 100); do [[ -S $SOCK ]] && break; sleep 0.1; done
[[ -S $SOCK ]] || { log "daemon did not start: $(tail -20 "$OUT/pod-shim.log")"; exit 1; }

args=(-runtime-endpoint "unix://$SOCK" -image-endpoint "unix://$SOCK"
	-ginkgo.no-color -ginkgo.timeout=40m
	-ginkgo.junit-report="$OUT/junit.xml" -ginkgo.json-report="$OUT/report.json")
[[ -n $NRI_SOCK ]] && args+=(-nri-socket "$NRI_SOCK")
[[ -n ${CRITEST_FOCUS:-} ]] && args+=(-ginkgo.focus="$CRITEST_FOCUS")
[[ -n ${CRITEST_SKIP:-} ]] && args+=(-ginkgo.skip="$CRITEST_SKIP")
# -benchmark sets ginkgo's verbosity itself and refuses a second setting.
[[ $MODE == validate ]] && args+=(-ginkgo.v)
if [[ $MODE == benchmark ]]; then
	mkdir -p "$OUT/benchmark"
	# Without a params file critest skips every benchmark but one.
	params=${CRITEST_BENCH_PARAMS:-$WORK/benchmark.yaml}
	[[ -n ${CRITEST_BENCH_PARAMS:-} ]] || cat >"$params" <<-EOF
		containersNumber: 50
		containersNumberParallel: 2
		containerBenchmarkTimeoutSeconds: 120
		podsNumber: 50
		podsNumberParallel: 2
		podBenchmarkTimeoutSeconds: 120
		imagesNumber: 20
		imagesNumberParallel: 2
		imageBenchmarkTimeoutSeconds: 60
		podContainerStartBenchmarkTimeoutSeconds: 60
	EOF
	args+=(-benchmark -benchmarking-output-dir "$OUT/benchmark" -benchmarking-params-file "$params")
fi

log "running critest ($MODE); output in $OUT/critest.log"
t1=$(date +%s)
set +e
# critest writes a crictl-style config lookup warning to stderr; run from the
# work dir so its "program's directory" fallback finds nothing of the host's.
(cd "$WORK" && exec "$CRITEST" "${args[@]}") >"$OUT/critest.log" 2>&1 &
CRITEST_PID=$!
wait "$CRITEST_PID"
critest_rc=$?
CRITEST_PID=
set -e
t_run=$(($(date +%s) - t1))

# Summary from the JSON report: one line per spec state, then each failure.
if [[ -s $OUT/report.json ]]; then
	jq -r '.[0].SpecReports[] | select(.LeafNodeType=="It") | .State' "$OUT/report.json" | sort | uniq -c >"$OUT/summary.txt"
	jq -r '.[0].SpecReports[] | select(.LeafNodeType=="It" and (.State=="failed" or .State=="panicked" or .State=="timedout" or .State=="interrupted")) |
		"FAIL: " + ((.ContainerHierarchyTexts|join(" / ")) + " / " + .LeafNodeText) + "\n    " +
		((.Failure.Message // "") | split("\n") | map(select(test("^\\s*[{}]|^\\s*(NoUnkeyed|DoNotC|atomic)|^\\s*(s|state|sizeCache|unknownFields|Code|Details|Message):|^\\s*<\\*status")|not)) | join("\n    ")) + "\n    at " + (.Failure.Location.FileName|split("/")|last) + ":" + (.Failure.Location.LineNumber|tostring)' \
		"$OUT/report.json" >"$OUT/failures.txt"
	jq -r '.[0].SpecReports[] | select(.LeafNodeType=="It" and .State=="skipped") |
		"SKIP: " + ((.ContainerHierarchyTexts|join(" / ")) + " / " + .LeafNodeText) + ": " + ((.Failure.Message // "") | split("\n")[0])' \
		"$OUT/report.json" >"$OUT/skips.txt"
	echo "== critest $MODE: ${t_run}s (builds ${t_build}s) =="
	cat "$OUT/summary.txt"
	[[ $MODE == validate ]] && cat "$OUT/skips.txt"
	cat "$OUT/failures.txt"
else
	log "no report written; tail of critest output:"
	tail -40 "$OUT/critest.log"
fi
if [[ $MODE == benchmark ]]; then
	grep -E '^\[k8s.io\]|^\s+[A-Za-z].*\|' "$OUT/critest.log" | head -100 || true
	# Per-operation latency from critest's data files (ms): n, p50, p90, p99, max.
	for f in "$OUT"/benchmark/*.json; do
		[[ -s $f ]] || continue
		echo "-- $(basename "$f" .json) (parallel $(jq .numParallel "$f"))"
		jq -r '.operationsNames as $ops | [.datapoints[].operationsDurationsNs] as $d |
			range(0; $ops|length) as $i | ([$d[][$i]] | sort) as $v | ($v|length) as $n |
			def q(p): $v[((($n - 1) * p) | floor)] / 1e6 * 100 | round / 100;
			"\($ops[$i]): n=\($n) p50=\(q(0.5))ms p90=\(q(0.9))ms p99=\(q(0.99))ms max=\(q(1))ms"' "$f"
	done | tee "$OUT/benchmark-summary.txt"
fi

# Exit status: with an expected-failure list, fail only on unexpected failures.
if [[ -n ${CRITEST_EXPECT_FAIL:-} && -s $OUT/report.json ]]; then
	unexpected=$(grep '^FAIL: ' "$OUT/failures.txt" | sed 's/^FAIL: //' | grep -vxF -f "$CRITEST_EXPECT_FAIL" || true)
	if [[ -n $unexpected ]]; then
		echo "unexpected failures:"; echo "$unexpected"
		exit 1
	fi
	exit 0
fi
exit "$critest_rc"
