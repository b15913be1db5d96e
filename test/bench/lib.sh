# Shared by compare.sh and regress.sh (sourced, from the repo root): one
# run's private dirs, CNI network and cgroup, starting pod-shim in that
# cgroup, and the cleanup of everything a run (or a failed one) made.
#
#   source test/bench/lib.sh
#   bench_init p                      # TMP=/run/p.XXXX, BRIDGE, NET, CG, the CNI conflist
#   trap 'bench_cleanup && rm -rf "$TMP"' EXIT
#
# Callers set RUNC (default: runc on PATH) and have built $TMP/bin/{pod-shim,
# pod-shim-monitor,pod-shim-pause,podbench}.

# bench_init PREFIX: a run dir under /run with a short path (pod-shim puts
# unix sockets under <state>/pods/<64-hex>/ and refuses a longer state
# dir), a bridge name and a 10.248.X.0/24 subnet no route uses yet, and
# the cgroup the runtime and the floor run in.
bench_init() {
	RUNC=${RUNC:-$(command -v runc)}
	TMP=$(mktemp -d "/run/$1.XXXX")
	mkdir -p "$TMP/bin" "$TMP/cni" "$TMP/logs" "$TMP/fl"
	BRIDGE=psb$(printf '%04x' $((RANDOM)))
	NET=psb-$$
	for _ in $(seq 50); do
		X=$((RANDOM % 254 + 1))
		ip -4 route show | grep -q "10\.248\.$X\." || break
	done
	CG_NAME=podbench-$$
	CG=$(cgroup_dirs)
	DAEMON_PID=
	cat >"$TMP/cni/10-bench.conflist" <<JSON
{"cniVersion": "1.0.0", "name": "$NET", "plugins": [
  {"type": "bridge", "bridge": "$BRIDGE", "isGateway": true, "ipMasq": false,
   "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.248.$X.0/24"}]], "dataDir": "$TMP/ipam"}},
  {"type": "portmap", "capabilities": {"portMappings": true}}]}
JSON
}

cgroup_dirs() {
	if [[ -f /sys/fs/cgroup/cgroup.controllers ]]; then
		echo "/sys/fs/cgroup/$CG_NAME"
	elif [[ -f /sys/fs/cgroup/cpuacct/cpuacct.usage ]]; then
		echo "/sys/fs/cgroup/cpuacct/$CG_NAME"
	else
		echo "/sys/fs/cgroup/cpu,cpuacct/$CG_NAME"
	fi
}

# bench_build: pod-shim, its monitor and pause, and podbench into $TMP/bin.
bench_build() {
	OUT=$TMP/bin bash hack/build.sh >&2
	go build -o "$TMP/bin/podbench" ./test/bench/podbench
}

stop_daemon() {
	[[ -n $DAEMON_PID ]] || return 0
	kill -TERM "$DAEMON_PID" 2>/dev/null || true
	for _ in $(seq 100); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.1; done
	kill -KILL "$DAEMON_PID" 2>/dev/null || true
	wait "$DAEMON_PID" 2>/dev/null || true
	DAEMON_PID=
}

# start_in_cgroup LOG CMD...: runs CMD as a child placed in $CG before it
# execs, so every process it spawns is accounted there.
start_in_cgroup() {
	local log=$1
	shift
	mkdir -p "$CG"
	bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG" "$@" >"$log" 2>&1 &
	DAEMON_PID=$!
}

# in_cgroup CMD...: runs CMD in the foreground, placed in $CG before it execs.
in_cgroup() {
	mkdir -p "$CG"
	bash -c 'echo $$ >"$0/cgroup.procs" && exec "$@"' "$CG" "$@"
}

wait_socket() { # sock
	"$TMP/bin/podbench" -probe "$1" -wait 60s
}

# start_pod_shim [restart]: a fresh pod-shim with the images loaded, or with
# "restart" the same dirs again (pods still running), timed to serving only.
# Sets SOCK and MATCH (podbench's -proc-match).
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

# floor [podbench flags...]: podbench -mode floor in $CG, on the run's CNI
# network and runc, appending to $OUT/results.jsonl.
floor() {
	in_cgroup "$TMP/bin/podbench" -mode floor -runc "$RUNC" -pause "$TMP/bin/pod-shim-pause" \
		-cni-conf-dir "$TMP/cni" -run-dir "$TMP/fl" -cgroup "$CG" -json "$OUT/results.jsonl" "$@"
}

# portmap_cleanup: portmap's per-pod DNAT/SNAT chains and the rules jumping
# to them, found by this run's network name in their comments.
portmap_cleanup() {
	command -v iptables >/dev/null || return 0
	local chain n target
	for chain in CNI-HOSTPORT-DNAT CNI-HOSTPORT-MASQ POSTROUTING; do
		iptables -w -t nat -L "$chain" -n --line-numbers 2>/dev/null |
			awk -v net="name: \"$NET\"" 'index($0, net) {print $1, $2}' | sort -rn |
			while read -r n target; do
				iptables -w -t nat -D "$chain" "$n"
				if [[ $target == CNI-DN-* || $target == CNI-SN-* ]]; then
					iptables -w -t nat -F "$target" && iptables -w -t nat -X "$target"
				fi
			done
	done
}

# bench_cleanup: stops the daemon and removes what this run made, by its
# private paths and names: leftover pod processes and containers, mounts,
# the bridge, portmap's rules, the cgroups. Fails (so the caller keeps
# $TMP) when a mount under $TMP could not be removed.
bench_cleanup() {
	set +e
	stop_daemon
	# Whatever a failed run left: per-pod processes found by this run's dir.
	for pid in $(pgrep -f -- "$TMP"); do kill -KILL "$pid" 2>/dev/null; done
	for r in "$TMP"/ps/state/runc "$TMP"/ctrd/state/runc/k8s.io "$TMP"/fl/pf.*/runc; do
		[[ -d $r ]] || continue
		for c in $("$RUNC" --root "$r" list -q 2>/dev/null); do "$RUNC" --root "$r" delete -f "$c"; done
	done
	awk -v d="$TMP" 'index($5, d) == 1 {print $5}' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m"; done
	ip link show "$BRIDGE" >/dev/null 2>&1 && ip link del "$BRIDGE"
	portmap_cleanup
	[[ -d $CG ]] && rmdir "$CG" 2>/dev/null
	# The floor's containers' parent cgroup, if no other run still uses it.
	rmdir /sys/fs/cgroup/*/podbench-floor /sys/fs/cgroup/podbench-floor 2>/dev/null
	if awk -v d="$TMP" 'index($5, d) == 1 {f=1} END {exit !f}' /proc/self/mountinfo; then
		echo "mounts remain under $TMP; not deleting it" >&2
		return 1
	fi
	return 0
}
