#!/usr/bin/env bash
# A one-node kubeadm cluster on pod-shim, offline, without systemd or Docker.
#
#   hack/cluster.sh up       # build (cached) and import the images, kubeadm init, kubelet, CNI; wait for Ready + CoreDNS
#   hack/cluster.sh status   # processes, node, pods
#   hack/cluster.sh down     # kubeadm reset, and remove everything up made
#
# Then: export KUBECONFIG=/etc/kubernetes/admin.conf; kubectl get pods -A
# ($CLUSTER_BIN/kubectl, printed by `up`).
#
# What it uses: pod-shim from $POD_SHIM_BIN_DIR (default: ./bin, built by
# hack/build.sh when missing), Kubernetes v1.37.2 binaries from
# hack/build-kube.sh, etcd and CoreDNS from hack/build-etcd.sh and
# hack/build-coredns.sh, runc from PATH (or $(go env GOPATH)/bin), and the
# CNI plugins in /usr/lib/cni (apt: containernetworking-plugins).
#
# Everything the cluster makes on the host is named so `down` can find it:
# the node address 10.243.0.1 on the port-less bridge psc-node0, the bridge psc0,
# pod-shim's dirs /var/lib/pod-shim-cluster and /run/psc, and the KUBE-*
# iptables chains (kube-proxy's and the kubelet's). Other suites that run a
# kubelet (test/kubelet, node e2e) share /var/lib/kubelet, /etc/kubernetes
# and ports 10248/10250: the cluster holds /run/lock/pod-shim-kube.lock from
# up to down, through a small holder process, so none of its children (nor
# any container) inherits the lock's file descriptor.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/.." && pwd)
KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
CACHE=${POD_SHIM_CACHE:-/var/cache/pod-shim-ci}
WORK=/var/lib/pod-shim-cluster      # config, CNI config, pod-shim root, pid files
STATE=/run/psc                      # pod-shim state dir: short, unix socket paths are limited
LOGS=${CLUSTER_LOG_DIR:-/var/log/pod-shim-cluster} # kept after down, for the log checks and for people
SOCK=$STATE/pod-shim.sock
NODE_IP=10.243.0.1                  # on a link of its own: node traffic never leaves the host
NODE_LINK=psc-node0
BRIDGE=psc0
POD_SUBNET=10.244.0.0/16
SERVICE_SUBNET=10.96.0.0/12
# The host's own name: kubeadm's preflight and the kubelet look the node name
# up, and /etc/hosts answers for this one (any other would go to DNS).
NODE_NAME=$(hostname | tr '[:upper:]' '[:lower:]')
CNI_NET=pod-shim-cluster
LOCK=/run/lock/pod-shim-kube.lock
KUBECONFIG=/etc/kubernetes/admin.conf
export KUBECONFIG
WAIT=${CLUSTER_WAIT:-300}           # seconds to wait for Ready + CoreDNS

log() { printf '%s cluster: %s\n' "$(date -u +%T)" "$*" >&2; }
die() { log "$*"; exit 1; }

pidof_file() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null && cat "$1"; }

# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND until it succeeds.
wait_for() {
	local secs=$1 what=$2
	shift 2
	local end=$((SECONDS + secs))
	until "$@" >/dev/null 2>&1; do
		((SECONDS < end)) || { log "timed out after ${secs}s waiting for $what"; return 1; }
		sleep 0.5
	done
}

bins() {
	POD_SHIM_BIN_DIR=${POD_SHIM_BIN_DIR:-$REPO/bin}
	if [[ ! -x $POD_SHIM_BIN_DIR/pod-shim ]]; then
		log "building pod-shim into $POD_SHIM_BIN_DIR"
		OUT=$POD_SHIM_BIN_DIR bash "$REPO/hack/build.sh"
	fi
	KUBE_DIR=$CACHE/kube/$KUBE_VERSION
	local b missing=()
	for b in kubeadm kubectl kubelet kube-apiserver kube-controller-manager kube-scheduler kube-proxy; do
		[[ -x $KUBE_DIR/$b && -f $KUBE_DIR/$b.ok ]] || missing+=("$b")
	done
	# build-kube.sh is flock'ed per cache, and may be busy building something
	# else (e2e_node.test): ask it only for what is missing.
	if ((${#missing[@]})); then
		log "building ${missing[*]} (hack/build-kube.sh)"
		bash "$REPO/hack/build-kube.sh" "${missing[@]}" >/dev/null
	fi
	ETCD_DIR=$(bash "$REPO/hack/build-etcd.sh")
	COREDNS=$(bash "$REPO/hack/build-coredns.sh")
	RUNC=$(command -v runc || echo "$(go env GOPATH)/bin/runc")
	[[ -x $RUNC ]] || die "runc not found (see README: go install runc v1.5)"
	[[ -x /usr/lib/cni/bridge && -x /usr/lib/cni/portmap && -x /usr/lib/cni/host-local ]] ||
		die "CNI plugins missing in /usr/lib/cni (apt-get install containernetworking-plugins)"
}

# images builds the control-plane images once per set of binaries (the
# archive is deterministic, so a cache key of the inputs' hashes is exact).
images() {
	local key
	key=$( (cat "$REPO/test/cluster/images/main.go"; sha256sum "$KUBE_DIR"/kube-{apiserver,controller-manager,scheduler,proxy} \
		"$ETCD_DIR"/etcd "$ETCD_DIR"/etcdctl "$COREDNS" "$POD_SHIM_BIN_DIR/pod-shim-pause" /usr/sbin/xtables-nft-multi) | sha256sum | cut -c1-16)
	ARCHIVE=$CACHE/cluster-images/$key.tar
	if [[ ! -f $ARCHIVE ]]; then
		mkdir -p "$CACHE/cluster-images"
		log "building the control-plane images into $ARCHIVE"
		(cd "$REPO" && go run ./test/cluster/images --kube-dir "$KUBE_DIR" --kube-version "$KUBE_VERSION" \
			--etcd-dir "$ETCD_DIR" --coredns "$COREDNS" --pause "$POD_SHIM_BIN_DIR/pod-shim-pause" \
			--out "$ARCHIVE.tmp") >&2
		mv "$ARCHIVE.tmp" "$ARCHIVE"
	fi
}

write_configs() {
	local STATS_FROM_CRI=true
	[[ ${CLUSTER_STATS_FROM_CRI:-1} != 0 ]] || STATS_FROM_CRI=false
	mkdir -p "$WORK/cni" "$WORK/root" "$LOGS"
	cat >"$WORK/config.toml" <<EOF
listen = '$SOCK'
root = '$WORK/root'
state = '$STATE'
log_level = 'info'
cgroup_driver = 'cgroupfs'
# The pause image kubeadm v1.37 expects (it warns when the runtime's differs);
# imported from the archive, built from pod-shim's own pause binary.
sandbox_image = 'registry.k8s.io/pause:3.10.2'
pause_binary = '$POD_SHIM_BIN_DIR/pod-shim-pause'

[runtime]
path = '$RUNC'

[cni]
conf_dir = '$WORK/cni'
bin_dirs = ['/usr/lib/cni']
EOF
	cat >"$WORK/cni/10-$CNI_NET.conflist" <<EOF
{
  "cniVersion": "1.0.0",
  "name": "$CNI_NET",
  "plugins": [
    {
      "type": "bridge",
      "bridge": "$BRIDGE",
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "ranges": [[{ "subnet": "$POD_SUBNET" }]],
        "routes": [{ "dst": "0.0.0.0/0" }]
      }
    },
    { "type": "portmap", "capabilities": { "portMappings": true } }
  ]
}
EOF
	# Pods with dnsPolicy Default (CoreDNS itself) get this resolv.conf, and
	# CoreDNS forwards non-cluster names to it. The host's resolver is not
	# reachable offline (and tests send traffic only to this host and its
	# pods), so the upstream is the node address, where nothing answers :53:
	# lookups outside cluster.local fail fast instead of leaving the host.
	printf 'nameserver %s\n' "$NODE_IP" >"$WORK/resolv.conf"
	cat >"$WORK/kubeadm.yaml" <<EOF
apiVersion: kubeadm.k8s.io/v1beta4
kind: InitConfiguration
localAPIEndpoint:
  advertiseAddress: $NODE_IP
  bindPort: 6443
nodeRegistration:
  name: $NODE_NAME
  criSocket: unix://$SOCK
  # Every image is preloaded (pod-shim images import): nothing is pulled.
  imagePullPolicy: Never
  kubeletExtraArgs:
  - name: node-ip
    value: $NODE_IP
  ignorePreflightErrors:
$(preflight_ignores)
---
apiVersion: kubeadm.k8s.io/v1beta4
kind: ClusterConfiguration
kubernetesVersion: $KUBE_VERSION
clusterName: pod-shim
networking:
  podSubnet: $POD_SUBNET
  serviceSubnet: $SERVICE_SUBNET
apiServer:
  extraArgs:
  # Only on the node address: nothing of the cluster listens on eth0.
  - name: bind-address
    value: $NODE_IP
---
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
# Kubernetes 1.35+ refuses cgroup v1 unless told otherwise; this host is v1 hybrid.
failCgroupV1: false
failSwapOn: false
address: $NODE_IP
resolvConf: $WORK/resolv.conf
# Small, so the logs -f check sees a rotation within seconds.
containerLogMaxSize: 1Mi
containerLogMaxFiles: 3
# CI machines run with little free disk and memory: evict nothing.
evictionHard:
  memory.available: "1Mi"
  nodefs.available: "1%"
  nodefs.inodesFree: "1%"
  imagefs.available: "1%"
  imagefs.inodesFree: "1%"
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
featureGates:
  # Pod and container stats (the summary API, kubectl top) from the runtime's
  # CRI stats. Without it (beta, off by default in v1.37) the kubelet takes
  # them from cadvisor, which knows only containerd's and CRI-O's containers:
  # on any other runtime pods then have no network stats. On by default
  # here (the summary API is checked from pod-shim's stats);
  # CLUSTER_STATS_FROM_CRI=0 turns it off.
  PodAndContainerStatsFromCRI: $STATS_FROM_CRI
---
apiVersion: kubeproxy.config.k8s.io/v1alpha1
kind: KubeProxyConfiguration
mode: iptables
# NodePorts on the node address only (not on eth0, not on 127.0.0.1, which
# would make kube-proxy set route_localnet host-wide).
nodePortAddresses: ["$NODE_IP/32"]
iptables:
  localhostNodePorts: false
conntrack:
  # Leave the host-wide conntrack table size and timeouts as they are.
  maxPerCore: 0
  tcpEstablishedTimeout: 0s
  tcpCloseWaitTimeout: 0s
EOF
}

# The preflight errors this VM raises, each with the reason it is safe here.
preflight_ignores() {
	cat <<'EOF'
  # SystemVerification errors on a cgroup v1 host ("cgroups v1 support is
  # deprecated"); this VM is cgroup v1 hybrid and kubeadm says to skip the
  # check and set the kubelet's failCgroupV1: false, as done below. Every
  # other check passes here (kernel config, ports, swap, images, ip_forward).
  - SystemVerification
EOF
}

node_net_up() {
	# A port-less bridge, not a dummy link: this kernel has no dummy driver.
	# Its address is local, so the node's traffic stays on this host.
	ip link show "$NODE_LINK" >/dev/null 2>&1 || ip link add "$NODE_LINK" type bridge
	ip addr replace "$NODE_IP/32" dev "$NODE_LINK"
	ip link set "$NODE_LINK" up
	# kubeadm requires forwarding on (pods reach services through the node).
	# The previous value is restored by down.
	[[ -f $WORK/ip_forward.orig ]] || cat /proc/sys/net/ipv4/ip_forward >"$WORK/ip_forward.orig"
	echo 1 >/proc/sys/net/ipv4/ip_forward
	[[ -e /run/xtables.lock ]] || touch "$WORK/xtables.lock.ours"
}

# foreign_kubelet prints the pid of a kubelet this script did not start.
foreign_kubelet() {
	local p exe
	for p in /proc/[0-9]*; do
		exe=$(readlink "$p/exe" 2>/dev/null) || continue
		if [[ ${exe##*/} == kubelet && ${p#/proc/} != "$(cat "$WORK/kubelet.pid" 2>/dev/null)" ]]; then
			echo "${p#/proc/} $exe"
			return 0
		fi
	done
	return 1
}

take_lock() {
	if pidof_file "$WORK/lock.pid" >/dev/null; then
		return
	fi
	mkdir -p "$WORK"
	while :; do
		rm -f "$WORK/lock.pid"
		log "waiting for $LOCK (other suites run kubelets too)"
		# flock -o: the holder keeps the lock, its sleeping child does not
		# inherit the fd, and killing the child (down) releases it.
		setsid flock -o "$LOCK" sh -c "echo \$\$ >'$WORK/lock.pid.tmp' && mv '$WORK/lock.pid.tmp' '$WORK/lock.pid' && exec sleep infinity" \
			</dev/null >/dev/null 2>&1 &
		local holder=$!
		until pidof_file "$WORK/lock.pid" >/dev/null; do
			kill -0 "$holder" 2>/dev/null || die "the lock holder exited"
			sleep 0.2
		done
		# A kubelet that runs without the lock shares /var/lib/kubelet with
		# ours on disk: each removes the other's pod dirs as orphans. Let
		# go of the lock and wait for it to end.
		local other
		other=$(foreign_kubelet) || break
		stop_pid "$WORK/lock.pid"
		log "a kubelet runs without holding the lock (pid $other); waiting for it to exit"
		while foreign_kubelet >/dev/null; do sleep 2; done
	done
	log "holding $LOCK"
}

start_pod_shim() {
	if pidof_file "$WORK/pod-shim.pid" >/dev/null; then return; fi
	PATH=$(dirname "$RUNC"):$PATH setsid "$POD_SHIM_BIN_DIR/pod-shim" serve --config "$WORK/config.toml" \
		</dev/null >>"$LOGS/pod-shim.log" 2>&1 &
	echo $! >"$WORK/pod-shim.pid"
	wait_for 60 "pod-shim's socket" crictl_ version
}

crictl_() { "$CRICTL" --runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" "$@"; }

start_kubelet() {
	if pidof_file "$WORK/kubelet.pid" >/dev/null; then return; fi
	# What kubeadm's systemd drop-in (10-kubeadm.conf) runs, with the flags
	# kubeadm wrote to kubeadm-flags.env.
	local KUBELET_KUBEADM_ARGS=""
	# shellcheck disable=SC1091
	source /var/lib/kubelet/kubeadm-flags.env
	# shellcheck disable=SC2086
	setsid "$KUBE_DIR/kubelet" --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
		--kubeconfig=/etc/kubernetes/kubelet.conf --config=/var/lib/kubelet/config.yaml \
		$KUBELET_KUBEADM_ARGS </dev/null >>"$LOGS/kubelet.log" 2>&1 &
	echo $! >"$WORK/kubelet.pid"
}

coredns_running() {
	local out
	out=$("$KUBE_DIR/kubectl" -n kube-system get pods -l k8s-app=kube-dns \
		-o jsonpath='{range .items[*]}{.status.phase}{" "}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}') || return 1
	[[ -n $out ]] && ! grep -qv '^Running True$' <<<"$out"
}

node_ready() {
	[[ $("$KUBE_DIR/kubectl" get node "$NODE_NAME" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}') == True ]]
}

up() {
	bins
	images
	# kubeadm's preflight runs `kubelet --version` from PATH.
	PATH=$KUBE_DIR:$PATH
	take_lock
	local start=$EPOCHREALTIME
	# A failed up must not keep the kubelet lock (or anything else): it
	# undoes itself unless asked to keep the remains for a post-mortem.
	UP_OK=0
	trap 'if ((!UP_OK)); then log "up failed; logs in $LOGS"; if [[ -n ${CLUSTER_KEEP_ON_FAIL:-} ]]; then log "kept; run: $0 down"; else down; fi; fi' EXIT
	mkdir -p "$WORK" "$LOGS"
	for f in pod-shim kubelet kubeadm; do : >"$LOGS/$f.log"; done
	write_configs
	# Pod log dirs made from here on are the cluster's (down removes them).
	# Static pods keep their UID across clusters, and the kubelet numbers a
	# new container's attempt from the log files it finds (0.log, 1.log...):
	# stale ones would show as restarts.
	touch "$WORK/up.marker"
	node_net_up
	start_pod_shim
	log "importing $(basename "$ARCHIVE")"
	"$POD_SHIM_BIN_DIR/pod-shim" images import --state "$STATE" "$ARCHIVE" >>"$LOGS/kubeadm.log"
	# kubeadm init without systemd: the phases up to kubelet-start write the
	# certificates, kubeconfigs, static pod manifests and the kubelet's
	# config; the kubelet is started here (kubeadm's own attempt through
	# systemctl fails with a warning); then init finishes the other phases.
	local phases=(preflight certs kubeconfig etcd control-plane kubelet-start)
	local p
	for p in "${phases[@]}"; do
		case $p in
		etcd) args=(etcd local) ;;
		control-plane) args=(control-plane all) ;;
		certs | kubeconfig) args=("$p" all) ;;
		*) args=("$p") ;;
		esac
		"$KUBE_DIR/kubeadm" init phase "${args[@]}" --config "$WORK/kubeadm.yaml" >>"$LOGS/kubeadm.log" 2>&1 ||
			{ tail -n 30 "$LOGS/kubeadm.log" >&2; die "kubeadm init phase $p failed"; }
	done
	start_kubelet
	local skip
	skip=$(IFS=,; echo "${phases[*]}")
	"$KUBE_DIR/kubeadm" init --config "$WORK/kubeadm.yaml" --skip-phases "$skip" >>"$LOGS/kubeadm.log" 2>&1 ||
		{ tail -n 30 "$LOGS/kubeadm.log" >&2; die "kubeadm init failed"; }
	"$KUBE_DIR/kubectl" taint nodes --all node-role.kubernetes.io/control-plane- >/dev/null
	wait_for "$WAIT" "node $NODE_NAME Ready" node_ready
	wait_for "$WAIT" "CoreDNS Running and Ready" coredns_running
	local took
	took=$(awk -v a="$start" -v b="$EPOCHREALTIME" 'BEGIN{printf "%.1f", b-a}')
	UP_OK=1
	echo "$took" >"$LOGS/bring-up-seconds"
	log "node Ready with CoreDNS running ${took}s after start (lock wait and builds excluded)"
	log "kubectl: $KUBE_DIR/kubectl (KUBECONFIG=$KUBECONFIG); logs: $LOGS"
}

status() {
	local p
	for p in lock pod-shim kubelet; do
		if pid=$(pidof_file "$WORK/$p.pid"); then echo "$p: running (pid $pid)"; else echo "$p: not running"; fi
	done
	[[ -f $KUBECONFIG ]] || { echo "cluster: not initialised"; return 0; }
	KUBE_DIR=$CACHE/kube/$KUBE_VERSION
	"$KUBE_DIR/kubectl" get nodes -o wide || true
	"$KUBE_DIR/kubectl" get pods -A -o wide || true
}

stop_pid() { # file: SIGTERM, wait up to 30s, then SIGKILL
	local pid
	pid=$(pidof_file "$1") || { rm -f "$1"; return 0; }
	kill -TERM "$pid" 2>/dev/null || true
	local end=$((SECONDS + 30))
	while kill -0 "$pid" 2>/dev/null && ((SECONDS < end)); do sleep 0.2; done
	kill -KILL "$pid" 2>/dev/null || true
	while kill -0 "$pid" 2>/dev/null; do sleep 0.1; done
	rm -f "$1"
}

down() {
	# Best effort to the end: one failed step must not leave the rest (or the lock).
	set +e
	KUBE_DIR=$CACHE/kube/$KUBE_VERSION
	CRICTL=${CRICTL:-$(command -v crictl || echo "$(go env GOPATH)/bin/crictl")}
	stop_pid "$WORK/kubelet.pid"
	if pidof_file "$WORK/pod-shim.pid" >/dev/null; then
		# reset removes every pod through the CRI socket, unmounts the
		# kubelet's volumes and deletes /etc/kubernetes/{manifests,pki,*.conf},
		# /var/lib/kubelet and /var/lib/etcd.
		"$KUBE_DIR/kubeadm" reset --force --cri-socket "unix://$SOCK" >>"$LOGS/kubeadm.log" 2>&1 ||
			log "kubeadm reset failed (see $LOGS/kubeadm.log); cleaning up the rest anyway"
		crictl_ rmp --force --all >/dev/null 2>&1 || true
		local left
		left=$(crictl_ pods -q 2>/dev/null | wc -l)
		((left == 0)) || log "warning: $left pods left in pod-shim after reset"
	elif [[ -d /etc/kubernetes/manifests || -d /var/lib/kubelet ]] && [[ -f $WORK/kubeadm.yaml ]]; then
		"$KUBE_DIR/kubeadm" reset --force --cri-socket "unix://$SOCK" >>"$LOGS/kubeadm.log" 2>&1 || true
	fi
	stop_pid "$WORK/pod-shim.pid"
	# Pod monitors outlive the daemon by design; after every pod is removed
	# none should be left, but a failed up may leave some.
	pkill_ours
	unmount_under /var/lib/kubelet "$STATE" "$WORK/root"
	rm -rf /etc/kubernetes /var/lib/kubelet /var/lib/etcd "$STATE" "$WORK/root" "$WORK/cni" \
		"/var/lib/cni/networks/$CNI_NET" "/var/lib/cni/results/$CNI_NET"-* 2>/dev/null || true
	rm -f /var/lib/cni/results/"$CNI_NET"-* 2>/dev/null || true
	ip link del "$BRIDGE" 2>/dev/null || true
	ip link del "$NODE_LINK" 2>/dev/null || true
	iptables_clean
	remove_cgroups
	if [[ -f $WORK/ip_forward.orig ]]; then
		cat "$WORK/ip_forward.orig" >/proc/sys/net/ipv4/ip_forward
		rm -f "$WORK/ip_forward.orig"
	fi
	if [[ -f $WORK/xtables.lock.ours ]]; then
		rm -f /run/xtables.lock "$WORK/xtables.lock.ours"
	fi
	if [[ -f $WORK/up.marker ]]; then
		find /var/log/pods /var/log/containers -mindepth 1 -maxdepth 1 -newer "$WORK/up.marker" \
			-exec rm -rf {} + 2>/dev/null
	fi
	rm -f "$WORK/config.toml" "$WORK/kubeadm.yaml" "$WORK/resolv.conf" "$WORK/up.marker"
	stop_pid "$WORK/lock.pid"
	rmdir "$WORK" 2>/dev/null || true
	log "down; logs kept in $LOGS"
}

# pkill_ours ends monitors and containers still running from our state dir,
# found by their command line or cwd, never by a broad name.
pkill_ours() {
	local p
	for p in /proc/[0-9]*; do
		if { tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null | grep -q -- "$STATE/"; then
			kill -KILL "${p#/proc/}" 2>/dev/null || true
		fi
	done
}

unmount_under() {
	local d m
	for d in "$@"; do
		# deepest first
		while read -r m; do
			umount -l "$m" 2>/dev/null || true
		done < <(awk -v d="$d" '$5 == d || index($5, d "/") == 1 {print $5}' /proc/self/mountinfo | sort -r)
	done
}

# iptables_clean removes the KUBE-* chains (kube-proxy's, the kubelet's) from
# every table, for IPv4 and IPv6, first the jumps to them from other chains.
# Only the cluster makes KUBE-* chains while it holds the kubelet lock.
iptables_clean() {
	local ipt t dump c
	for ipt in iptables ip6tables; do
		command -v $ipt >/dev/null || continue
		for t in filter nat mangle raw; do
			# Into a variable first: `iptables-save | grep -q` under pipefail
			# fails with SIGPIPE once the table outgrows the pipe buffer.
			dump=$($ipt-save -t $t 2>/dev/null) || continue
			[[ $dump == *KUBE-* ]] || continue
			grep -E '^-A ' <<<"$dump" | grep -E -- '-j KUBE-' | grep -vE '^-A KUBE-' | sed 's/^-A /-D /' |
				while read -r rule; do eval "$ipt -t $t $rule" 2>/dev/null || true; done
			for c in $(sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p' <<<"$dump"); do $ipt -t $t -F "$c" 2>/dev/null || true; done
			for c in $(sed -n 's/^:\(KUBE-[^ ]*\) .*/\1/p' <<<"$dump"); do $ipt -t $t -X "$c" 2>/dev/null || true; done
		done
	done
}

# remove_cgroups removes the kubelet's kubepods hierarchy (cgroupsPerQOS),
# deepest first, in every v1 controller and in v2.
remove_cgroups() {
	local d
	for d in /sys/fs/cgroup/*/kubepods /sys/fs/cgroup/kubepods /sys/fs/cgroup/*/kubepods.slice; do
		[[ -d $d ]] || continue
		find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
	done
}

CRICTL=${CRICTL:-$(command -v crictl || echo "$(go env GOPATH)/bin/crictl")}
case ${1:-} in
up) up ;;
down) down ;;
status) status ;;
*) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
