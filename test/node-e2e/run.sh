#!/usr/bin/env bash
# Runs upstream's node conformance suite (k8s.io/kubernetes/test/e2e_node,
# the kubelet's own e2e tests) against pod-shim or containerd v2.4.x on this
# machine, offline, and cleans up everything it made, also on failure.
#
#   test/node-e2e/run.sh [--runtime pod-shim|containerd] [--subset ci] [ginkgo flags]
#
# Default selection: --focus='\[NodeConformance\]' --skip='\[Flaky\]|\[Slow\]|\[Serial\]'
# (what containerd's and CRI-O's node e2e CI run in parallel). A --focus or
# --label-filter among the ginkgo flags replaces the default focus; a --skip
# replaces the default skip. `--subset ci` runs the named CI subset
# (ci-subset.txt: one regexp per line, ORed into one focus).
#
# Environment:
#   POD_SHIM_CACHE    build cache (default /var/cache/pod-shim-ci)
#   POD_SHIM_BIN_DIR  pod-shim, pod-shim-monitor, pod-shim-pause from here instead of building
#   NODE_E2E_OUT      directory for reports and logs (default: temp dir, copied to
#                     /tmp/pod-shim-node-e2e-last-<runtime>)
#   NODE_E2E_NODES    ginkgo parallel processes (default 4)
#   NODE_E2E_EXPECT_FAIL  expected-failure list (default test/node-e2e/expected-failures.txt)
#   NODE_E2E_CGROUP_ROOT  where the kubelet puts pod cgroups: "host" (the host's
#                     root, /kubepods, as upstream's specs assume: the QoS,
#                     cgroup-root and PodOverhead specs read /kubepods through a
#                     hostPath) or "run" (a per-run root, so the run can share
#                     the machine with other kubelets). Default: host for a
#                     full run, run for --subset. "host" takes the kube lock.
#
# What a run does:
#  1. builds pod-shim, kubelet + e2e_node.test + ginkgo (hack/build-kube.sh),
#     the real agnhost (build-agnhost.sh), busybox (test/conformance), and
#     for containerd hack/build-containerd.sh; all cached;
#  2. serves every image the specs use from one registry on 127.0.0.1
#     (images/), named through KUBE_TEST_REPO_LIST, with the runtime's mirrors
#     sending registry.k8s.io, docker.io and gcr.io there too;
#  3. starts the runtime with private root/state/socket, runc 1.1.5
#     (/usr/sbin/runc), a unique CNI bridge and subnet, and HTTP(S)_PROXY
#     pointing at a closed loopback port so no pull can leave the machine;
#  4. runs e2e_node.test through ginkgo: it starts etcd, an API server and a
#     namespace controller in-process and the kubelet from the kube cache;
#
# Isolation: the registry, the runtime, the suite and its kubelet all run in
# one private network and mount namespace (a holder process keeps them; every
# daemon enters them with nsenter). There the kubelet's fixed ports (10248,
# 10250, 10255), the API server's, iptables chains, and /var/lib/kubelet and
# /var/log/pods (private bind mounts) are this run's own; the runtime's and
# kubelet's cgroups live under /psne-<bridge>. Pods' cgroups do too with
# NODE_E2E_CGROUP_ROOT=run (the --subset default): then nothing is shared with
# the other kubelet suites, and /run/lock/pod-shim-kube.lock is taken only
# with NODE_E2E_LOCK=1. A full run puts them in the host's /kubepods, where
# upstream's cgroup specs look, and holds the lock.
#  5. writes junit.xml and report.json, prints `passed= failed= skipped=`,
#     and exits non-zero on any failure not in expected-failures.txt.
#
# Host facts handled: cgroup v1 hybrid (failCgroupV1: false), cgroupfs driver,
# no systemd as PID 1 while systemd-run is installed (the suite would start the
# kubelet with systemd-run if it found it in PATH: PATH here hides it), no
# CAP_SYS_RESOURCE (containerd: restrict_oom_score_adj), AppArmor off.
set -euo pipefail

RUNTIME=pod-shim
SUBSET=
GINKGO_ARGS=()
while (($#)); do
	case $1 in
	--runtime) RUNTIME=$2; shift 2 ;;
	--runtime=*) RUNTIME=${1#*=}; shift ;;
	--subset) SUBSET=$2; shift 2 ;;
	--subset=*) SUBSET=${1#*=}; shift ;;
	*) GINKGO_ARGS+=("$1"); shift ;;
	esac
done
case $RUNTIME in pod-shim | containerd) ;; *) echo "run.sh: --runtime pod-shim|containerd" >&2; exit 2 ;; esac

[[ $(id -u) == 0 ]] || { echo "run.sh: needs root" >&2; exit 1; }
for t in /usr/sbin/runc gcc iptables jq ip curl flock; do
	command -v "$t" >/dev/null || { echo "run.sh: missing $t" >&2; exit 1; }
done
for p in bridge host-local portmap loopback; do
	[[ -x /usr/lib/cni/$p ]] || { echo "run.sh: missing /usr/lib/cni/$p" >&2; exit 1; }
done

SRC=$(cd "$(dirname "$0")/../.." && pwd)
HERE=$SRC/test/node-e2e
CACHE=${POD_SHIM_CACHE:-/var/cache/pod-shim-ci}
EXPECT=${NODE_E2E_EXPECT_FAIL:-$HERE/expected-failures.txt}
NODES=${NODE_E2E_NODES:-4}
WORK=$(mktemp -d /tmp/pod-shim-node-e2e.XXXXXX)
OUT=${NODE_E2E_OUT:-$WORK/out}
# Short state dir: unix sockets live below it and sun_path holds 107 bytes.
STATE=$(mktemp -d /run/psne.XXXX)
mkdir -p "$OUT" "$WORK"/{bin,root,cni,ipam,run,path,certs.d}
RAND=$((RANDOM % 200 + 20))
for _ in $(seq 1 50); do
	ip route show | grep -q "^10\.249\.$RAND\." || break
	RAND=$((RANDOM % 200 + 20))
done
SUBNET=10.249.$RAND.0/24
BRIDGE=psne$(printf '%04x' $((RANDOM)))
SOCK=$STATE/cri.sock
RUNTIME_CG=/psne-$BRIDGE/runtime
REG_PID= DAEMON_PID= SUITE_PID=
CRICTL=(crictl)
command -v crictl >/dev/null || CRICTL=(/root/go/bin/crictl)
CRICTL+=(--runtime-endpoint "unix://$SOCK" --image-endpoint "unix://$SOCK" --timeout 60s)

log() { echo "node-e2e: $*" >&2; }

LOCKED=
NS_PID=
# CG_ROOT holds this run's runtime and kubelet cgroups (and, with a per-run
# cgroup root, its pods); PODS_CG_ROOT is the kubelet's cgroupRoot.
CG_ROOT=/psne-$BRIDGE
CGROUP_MODE=${NODE_E2E_CGROUP_ROOT:-}
[[ -n $CGROUP_MODE ]] || { [[ -n $SUBSET ]] && CGROUP_MODE=run || CGROUP_MODE=host; }
case $CGROUP_MODE in
host) PODS_CG_ROOT=/ ;;
run) PODS_CG_ROOT=$CG_ROOT ;;
*) echo "run.sh: NODE_E2E_CGROUP_ROOT=host|run" >&2; exit 2 ;;
esac
KUBEPODS_EXISTED=

mk_cgroup() { # dir under one v1 controller; cpuset needs cpus and mems before use
	local d=$1 p
	[[ -d $d ]] && return
	p=$(dirname "$d")
	[[ -d $p ]] || mk_cgroup "$p"
	mkdir "$d"
	if [[ -f $d/cpuset.cpus ]]; then
		cat "$p/cpuset.cpus" >"$d/cpuset.cpus"
		cat "$p/cpuset.mems" >"$d/cpuset.mems"
	fi
}

rm_cgroup_tree() { # depth-first rmdir of a cgroup dir (cgroupfs: rmdir only)
	find "$1" -depth -type d -exec rmdir {} \; 2>/dev/null || true
}

rm_cgroup_tree_retry() { # rm_cgroup_tree until it is gone: the last tasks may still be exiting
	local d=$1
	for _ in $(seq 1 25); do
		rm_cgroup_tree "$d"
		[[ -d $d ]] || return 0
		sleep 0.2
	done
	log "cgroup $d still busy; leaving it"
}

cleanup() {
	local rc=$?
	set +e
	if [[ -n $SUITE_PID ]] && kill -0 "$SUITE_PID" 2>/dev/null; then
		kill -INT "$SUITE_PID"
		for _ in $(seq 1 300); do kill -0 "$SUITE_PID" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$SUITE_PID" 2>/dev/null
		wait "$SUITE_PID" 2>/dev/null
	fi
	# The kubelet and the in-process API server are the suite's children;
	# whatever is left of them runs from this work dir or the kube cache.
	for pid in $(pgrep -f "^$CACHE/kube/[^ ]*/kubelet .*--container-runtime-endpoint unix://$SOCK" || true); do
		kill -TERM "$pid" 2>/dev/null && log "stopped leftover kubelet $pid"
	done
	if [[ -n $DAEMON_PID ]] && kill -0 "$DAEMON_PID" 2>/dev/null; then
		# Remove every pod through the runtime first, so runc, shims, netns,
		# CNI allocations and portmap rules go the normal way.
		for p in $("${CRICTL[@]}" pods -q 2>/dev/null); do
			"${CRICTL[@]}" stopp "$p" >/dev/null 2>&1
			"${CRICTL[@]}" rmp -f "$p" >/dev/null 2>&1
		done
		kill -TERM "$DAEMON_PID"
		for _ in $(seq 1 50); do kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.2; done
		kill -KILL "$DAEMON_PID" 2>/dev/null
		wait "$DAEMON_PID" 2>/dev/null
	fi
	[[ -n $REG_PID ]] && kill "$REG_PID" 2>/dev/null && wait "$REG_PID" 2>/dev/null
	local left
	for pid in $(grep -l -s -F -e "$WORK" -e "$STATE" /proc/[0-9]*/cmdline | cut -d/ -f3); do
		[[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
		kill -KILL "$pid" 2>/dev/null && left+=" $pid"
	done
	[[ -n ${left:-} ]] && log "killed leftover processes:$left"
	if [[ -d $STATE/runc ]]; then
		for id in $(/usr/sbin/runc --root "$STATE/runc" list -q 2>/dev/null); do
			/usr/sbin/runc --root "$STATE/runc" delete -f "$id" 2>/dev/null
			log "removed leftover runc container $id"
		done
	fi
	# containerd's shim keeps runc state under /run/containerd/runc/<ns> by
	# default; this run points it at its own root (runc_root below).
	if [[ -d $STATE/ctd-runc ]]; then
		for ns in "$STATE"/ctd-runc/*; do
			[[ -d $ns ]] || continue
			for id in $(/usr/sbin/runc --root "$ns" list -q 2>/dev/null); do
				/usr/sbin/runc --root "$ns" delete -f "$id" 2>/dev/null
				log "removed leftover runc container $id"
			done
		done
	fi
	# The namespaces go with their last process: mounts (volumes, rootfs,
	# netns pins), the bridge, iptables chains, the kubelet's ports.
	if [[ -n $NS_PID ]]; then
		kill -KILL "$NS_PID" 2>/dev/null
		wait "$NS_PID" 2>/dev/null
	fi
	for pid in $(grep -l -s -F -e "$WORK" -e "$STATE" /proc/[0-9]*/cmdline | cut -d/ -f3); do
		[[ $pid == "$$" || $pid == "$BASHPID" ]] && continue
		kill -KILL "$pid" 2>/dev/null
	done
	# cgroups: everything of this run is under its own cgroupRoot.
	for d in /sys/fs/cgroup/*"$CG_ROOT"; do
		[[ -d $d ]] && rm_cgroup_tree_retry "$d"
	done
	# With the host's cgroup root the pods' cgroups are /kubepods, which
	# this run made (the kube lock keeps other kubelets off it meanwhile).
	if [[ $CGROUP_MODE == host && -n $LOCKED && -z $KUBEPODS_EXISTED ]]; then
		for d in /sys/fs/cgroup/*/kubepods; do
			[[ -d $d && ! -L ${d%/kubepods} ]] && rm_cgroup_tree_retry "$d"
		done
	fi
	if [[ -z ${NODE_E2E_OUT:-} ]]; then
		rm -rf "/tmp/pod-shim-node-e2e-last-$RUNTIME"
		cp -r "$OUT" "/tmp/pod-shim-node-e2e-last-$RUNTIME" 2>/dev/null || true
		log "reports and logs kept in /tmp/pod-shim-node-e2e-last-$RUNTIME"
	fi
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
# ---- 1. builds (cached) ----
if [[ $RUNTIME == pod-shim ]]; then
	if [[ -n ${POD_SHIM_BIN_DIR:-} ]]; then
		cp "$POD_SHIM_BIN_DIR"/pod-shim* "$WORK/bin/"
	else
		OUT="$WORK/bin" bash "$SRC/hack/build.sh"
	fi
else
	CTD=$(bash "$SRC/hack/build-containerd.sh")
fi
log "kubelet, e2e_node.test, ginkgo (hack/build-kube.sh; waits for a running build)"
mapfile -t kube < <(bash "$SRC/hack/build-kube.sh" kubelet e2e_node.test ginkgo)
# e2e_node.test has no --k8s-bin-dir outside its "remote" mode: it runs the
# kubelet next to itself, which hack/build-kube.sh's one cache dir gives.
[[ $(dirname "${kube[0]}") == $(dirname "${kube[1]}") ]] || { log "kubelet and e2e_node.test must share a dir"; exit 1; }
E2E=${kube[1]} GINKGO=${kube[2]}
AGNHOST=$(bash "$HERE/build-agnhost.sh")
BUSYBOX=$(bash "$SRC/test/conformance/build-busybox.sh")
KUBE_SRC=$(cd "$SRC" && go mod download -json "k8s.io/kubernetes@${KUBE_VERSION:-v1.37.2}" | jq -r .Dir)
(cd "$SRC" && CGO_ENABLED=0 go build -o "$WORK/bin/node-e2e-images" ./test/node-e2e/images)
t_build=$(($(date +%s) - t0))

# ---- 2. namespaces ----
# The node's address: an empty bridge (no dummy module here) with a /24 of 10.243.0.0/16 (the cluster
# suite uses 10.243.0.1 in the host namespace; this one is private anyway).
NODE_IP=10.243.$RAND.1
mkdir -p "$WORK"/{kubelet,podlogs} /var/lib/kubelet /var/log/pods
mkfifo "$WORK/ns.fifo"
unshare --net --mount --propagation private sh -c '
	set -e
	mount --make-rshared /
	mount --bind "$1" /var/lib/kubelet
	mount --bind "$2" /var/log/pods
	ip link set lo up
	ip link add psne0 type bridge
	ip addr add "$3/24" dev psne0
	ip link set psne0 up
	# The API server picks its address from the default route. Nothing
	# leaves through it: the bridge has no ports (and the runtimes pull
	# through a refusing proxy, so a pull of a real host fails at once).
	ip route add default dev psne0
	echo ready >"$4"
	exec sleep infinity' sh "$WORK/kubelet" "$WORK/podlogs" "$NODE_IP" "$WORK/ns.fifo" 2>"$OUT/ns.log" &
NS_PID=$!
exec 4<>"$WORK/ns.fifo" # read-write: opening never blocks, the read times out
read -r -t 30 ns_ready <&4 || true
[[ ${ns_ready:-} == ready ]] || { log "namespaces not set up: $(cat "$OUT/ns.log")"; exit 1; }
NS=(nsenter -t "$NS_PID" -m -n --)
for c in /sys/fs/cgroup/*/; do
	[[ -e $c/cgroup.procs && ! -L ${c%/} ]] || continue
	mk_cgroup "${c%/}$CG_ROOT"
done

# ---- 3. images ----
mkfifo "$WORK/reg.fifo"
"${NS[@]}" "$WORK/bin/node-e2e-images" --src "$SRC" --busybox "$BUSYBOX" --agnhost "$AGNHOST" --kube-src "$KUBE_SRC" \
	>"$WORK/reg.fifo" 2>"$OUT/registry.log" &
REG_PID=$!
exec 3<"$WORK/reg.fifo"
read -r -t 300 REG <&3 || { log "image registry did not start: $(cat "$OUT/registry.log")"; exit 1; }
while read -r -t 300 line <&3; do
	[[ $line == ready ]] && break
	echo "$line" >>"$OUT/images.txt"
done
[[ $line == ready ]] || { log "images not pushed: $(cat "$OUT/registry.log")"; exit 1; }
cat <&3 >/dev/null &
log "image registry at $REG ($(wc -l <"$OUT/images.txt") tags)"
# Registries the specs name that have no image here (invalidRegistry, the
# private one) stay as upstream has them: pulls fail, as the specs expect.
cat >"$WORK/repo-list.yaml" <<EOF
promoterE2eRegistry: $REG/e2e-test-images
gcEtcdRegistry: $REG
gcRegistry: $REG
sigStorageRegistry: $REG/sig-storage
dockerLibraryRegistry: $REG/library
buildImageRegistry: $REG/build-image
cloudProviderGcpRegistry: $REG/cloud-provider-gcp
EOF
PAUSE_IMAGE=$REG/pause:3.10.2

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

# ---- 4. the runtime ----
# Its own cgroup, so the kubelet's --runtime-cgroups (and the Summary API's
# "runtime" system container) has something real to report.
start_in_cgroup() { # the forked shell joins the cgroup, then execs the daemon
	local cg
	for cg in /sys/fs/cgroup/*/; do
		[[ -e $cg/cgroup.procs && ! -L ${cg%/} ]] || continue
		cg=${cg%/}
		mk_cgroup "$cg$RUNTIME_CG" && echo "$BASHPID" >"$cg$RUNTIME_CG/cgroup.procs"
	done
	exec "$@"
}
PROXY_ENV=(HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 NO_PROXY=127.0.0.1,localhost)
if [[ $RUNTIME == pod-shim ]]; then
	cat >"$WORK/config.toml" <<EOF
listen = '$SOCK'
root = '$WORK/root'
state = '$STATE'
log_level = 'info'
cgroup_driver = 'cgroupfs'
pause_binary = '$WORK/bin/pod-shim-pause'

[runtime]
path = '/usr/sbin/runc'

# The RuntimeClass handler the suite's RuntimeClass and PodOverhead specs
# name, as upstream configures it for its node e2e runs.
[runtimes.test-handler]
path = '/usr/sbin/runc'

[cni]
conf_dir = '$WORK/cni'
bin_dirs = ['/usr/lib/cni']

[registry]
insecure = ['$REG']

[registry.mirrors]
'registry.k8s.io' = ['http://$REG']
'gcr.io' = ['http://$REG']
'docker.io' = ['http://$REG']
EOF
	log "starting pod-shim on $SOCK (bridge $BRIDGE, subnet $SUBNET)"
	(start_in_cgroup "${NS[@]}" env "${PROXY_ENV[@]}" "$WORK/bin/pod-shim" serve --config "$WORK/config.toml") >"$OUT/runtime.log" 2>&1 &
	DAEMON_PID=$!
else
	# containerd 2.x, config version 3. hosts.toml sends the upstream hosts to
	# the local registry (the mirror config containerd documents); the
	# registry itself is plain HTTP.
	for h in registry.k8s.io gcr.io docker.io "$REG"; do
		mkdir -p "$WORK/certs.d/$h"
		printf 'server = "http://%s"\n\n[host."http://%s"]\n  capabilities = ["pull", "resolve"]\n  skip_verify = true\n' \
			"$REG" "$REG" >"$WORK/certs.d/$h/hosts.toml"
	done
	cat >"$WORK/containerd.toml" <<EOF
version = 3
root = '$WORK/root'
state = '$STATE/ctd'
disabled_plugins = ['io.containerd.nri.v1.nri', 'io.containerd.snapshotter.v1.zfs', 'io.containerd.snapshotter.v1.devmapper', 'io.containerd.snapshotter.v1.erofs']

[grpc]
  address = '$SOCK'

[plugins.'io.containerd.cri.v1.runtime']
  enable_selinux = false
  restrict_oom_score_adj = true
  disable_apparmor = true
  [plugins.'io.containerd.cri.v1.runtime'.containerd]
    default_runtime_name = 'runc'
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.runc.options]
        BinaryName = '/usr/sbin/runc'
        Root = '$STATE/ctd-runc'
        SystemdCgroup = false
    # The handler the RuntimeClass and PodOverhead specs name (upstream's
    # node e2e containerd config has it too).
    [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.test-handler]
      runtime_type = 'io.containerd.runc.v2'
      [plugins.'io.containerd.cri.v1.runtime'.containerd.runtimes.test-handler.options]
        BinaryName = '/usr/sbin/runc'
        Root = '$STATE/ctd-runc'
        SystemdCgroup = false
  [plugins.'io.containerd.cri.v1.runtime'.cni]
    bin_dirs = ['/usr/lib/cni']
    conf_dir = '$WORK/cni'

[plugins.'io.containerd.cri.v1.images']
  [plugins.'io.containerd.cri.v1.images'.registry]
    config_path = '$WORK/certs.d'
  [plugins.'io.containerd.cri.v1.images'.pinned_images]
    sandbox = '$PAUSE_IMAGE'

[plugins.'io.containerd.grpc.v1.cri']
  stream_server_address = '127.0.0.1'
  stream_server_port = '0'
EOF
	log "starting containerd $(basename "$CTD") on $SOCK (bridge $BRIDGE, subnet $SUBNET)"
	(start_in_cgroup "${NS[@]}" env "${PROXY_ENV[@]}" PATH="$CTD:$PATH" "$CTD/containerd" --config "$WORK/containerd.toml") >"$OUT/runtime.log" 2>&1 &
	DAEMON_PID=$!
fi
for _ in $(seq 1 150); do [[ -S $SOCK ]] && break; kill -0 "$DAEMON_PID" 2>/dev/null || break; sleep 0.2; done
[[ -S $SOCK ]] || { log "runtime did not start: $(tail -20 "$OUT/runtime.log")"; exit 1; }
"${CRICTL[@]}" version >&2
if [[ $RUNTIME == containerd ]]; then
	"${NS[@]}" "${CRICTL[@]}" pull "$PAUSE_IMAGE" >/dev/null
fi

# ---- 5. the suite ----
cat >"$WORK/kubelet-config.yaml" <<EOF
apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
cgroupRoot: $PODS_CG_ROOT
failCgroupV1: false
failSwapOn: false
podCIDR: $SUBNET
volumeStatsAggPeriod: 10s
serializeImagePulls: false
fileCheckFrequency: 10s
evictionPressureTransitionPeriod: 30s
# A shared 2-core VM with a busy disk: evict only when really out of room.
evictionHard:
  memory.available: 100Mi
  nodefs.available: 2%
  nodefs.inodesFree: 2%
  imagefs.available: 2%
evictionMinimumReclaim:
  nodefs.available: 1%
  nodefs.inodesFree: 1%
EOF
# PATH without systemd-run: the suite starts the kubelet with it when it
# finds it, and there is no systemd to talk to.
for f in /usr/bin/*; do
	case ${f##*/} in systemd-run | systemctl) continue ;; esac
	ln -s "$f" "$WORK/path/${f##*/}"
done
SUITE_PATH=$WORK/path:/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin

focus_set= skip_set=
for a in "${GINKGO_ARGS[@]}"; do
	case $a in --focus* | -focus* | --label-filter* | -label-filter*) focus_set=1 ;; --skip* | -skip*) skip_set=1 ;; esac
done
sel=()
if [[ -n $SUBSET ]]; then
	[[ -f $HERE/$SUBSET-subset.txt ]] || { log "no subset $HERE/$SUBSET-subset.txt"; exit 2; }
	sel+=(--focus="$(grep -v '^\s*#' "$HERE/$SUBSET-subset.txt" | grep . | paste -sd'|')")
	[[ -n $focus_set ]] || sel+=(--label-filter=NodeConformance)
elif [[ -z $focus_set ]]; then
	sel+=(--focus='\[NodeConformance\]')
fi
if [[ -z $skip_set ]]; then
	skip='\[Flaky\]|\[Slow\]|\[Serial\]'
	# These read the pods' cgroups at the host's /kubepods through a hostPath,
	# where a per-run cgroup root does not put them.
	[[ $CGROUP_MODE == run ]] && skip+='|Kubelet Cgroup Manager|PodOverhead cgroup accounting'
	sel+=(--skip="$skip")
fi

node_name=$(hostname | tr 'A-Z' 'a-z')
suite_args=(
	--container-runtime-endpoint="unix://$SOCK"
	--kubelet-config-file="$WORK/kubelet-config.yaml"
	--kubelet-flags="--runtime-cgroups=$RUNTIME_CG --system-cgroups= --kubelet-cgroups=$CG_ROOT/kubelet --node-ip=$NODE_IP"
	--node-name="$node_name"
	--report-dir="$OUT"
	--prepull-images=false
	--v=4
)

if [[ ${NODE_E2E_LOCK:-} == 1 || $CGROUP_MODE == host ]]; then
	log "waiting for /run/lock/pod-shim-kube.lock"
	exec 8>/run/lock/pod-shim-kube.lock
	# Short waits in a loop, so INT/TERM end the script while it waits.
	until flock -w 5 8; do :; done
	LOCKED=1
fi
if [[ $CGROUP_MODE == host ]]; then
	# Another kubelet's leftovers would be counted as this run's pods.
	for d in /sys/fs/cgroup/*/kubepods; do
		[[ -d $d ]] || continue
		if find "$d" -mindepth 1 -type d -name 'pod*' | grep -q .; then
			log "$d holds pod cgroups of another kubelet; remove them or use NODE_E2E_CGROUP_ROOT=run"
			exit 1
		fi
		KUBEPODS_EXISTED=1
	done
fi
log "running e2e_node ($RUNTIME, $NODES processes) ${sel[*]} ${GINKGO_ARGS[*]}"
t1=$(date +%s)
set +e
(
	cd "$WORK/run"
	# No proxy variables here: the API server would send its kubelet
	# connections (logs, exec, proxy) to them.
	exec "${NS[@]}" env -u HTTP_PROXY -u HTTPS_PROXY -u http_proxy -u https_proxy PATH="$SUITE_PATH" KUBE_TEST_REPO_LIST="$WORK/repo-list.yaml" \
		"$GINKGO" --nodes="$NODES" --timeout=4h --no-color --output-dir="$OUT" \
		--junit-report=junit.xml --json-report=report.json \
		"${sel[@]}" "${GINKGO_ARGS[@]}" \
		"$E2E" -- "${suite_args[@]}"
) >"$OUT/e2e.log" 2>&1 &
SUITE_PID=$!
wait "$SUITE_PID"
suite_rc=$?
SUITE_PID=
set -e
t_run=$(($(date +%s) - t1))
cp "$WORK/run"/*.log "$OUT/" 2>/dev/null || true

# ---- 6. report ----
if [[ ! -s $OUT/report.json ]]; then
	log "no report written (rc $suite_rc); tail of the output:"
	tail -60 "$OUT/e2e.log"
	exit 1
fi
name='((.ContainerHierarchyTexts // []) + [.LeafNodeText]) | map(select(. != "")) | join(" ")'
# Ginkgo reports the specs the focus left out as "skipped" too, without a
# message; a spec that ran and called Skip carries the reason. Only the
# selected ones are counted.
jq -r "(.[0].SpecReports // [])[] | select(.LeafNodeType==\"It\") | select(.State != \"skipped\" or (.Failure.Message // \"\") != \"\") |
	[.State, ($name), ((.RunTime // 0) / 1e9 | floor | tostring), ((.Failure.Message // \"\") | split(\"\n\")[0])] | @tsv" "$OUT/report.json" | sort -t$'\t' -k2 >"$OUT/specs.tsv"
jq -r "(.[0].SpecReports // [])[] | select(.LeafNodeType==\"It\" and (.State==\"failed\" or .State==\"panicked\" or .State==\"timedout\" or .State==\"interrupted\" or .State==\"aborted\")) |
	\"FAIL: \" + ($name) + \"\n    \" + ((.Failure.Message // \"\") | split(\"\n\")[:8] | join(\"\n    \")) + \"\n    at \" + ((.Failure.Location.FileName // \"?\") | split(\"/\") | last) + \":\" + ((.Failure.Location.LineNumber // 0) | tostring)" \
	"$OUT/report.json" >"$OUT/failures.txt"
passed=$(awk -F'\t' '$1=="passed"' "$OUT/specs.tsv" | wc -l)
failed=$(awk -F'\t' '$1!="passed" && $1!="skipped" && $1!="pending"' "$OUT/specs.tsv" | wc -l)
skipped=$(awk -F'\t' '$1=="skipped" || $1=="pending"' "$OUT/specs.tsv" | wc -l)
cat "$OUT/failures.txt"
summary="node-e2e $RUNTIME: passed=$passed failed=$failed skipped=$skipped wall=${t_run}s builds=${t_build}s"
echo "$summary" | tee "$OUT/summary.txt"

unexpected=$(awk -F'\t' '$1!="passed" && $1!="skipped" && $1!="pending" {print $2}' "$OUT/specs.tsv" |
	grep -vxF -f <(grep -v '^\s*#' "$EXPECT" 2>/dev/null | sed 's/\s*#.*$//' | grep .) || true)
if [[ -n $unexpected ]]; then
	echo "unexpected failures:"
	echo "$unexpected"
	exit 1
fi
if ((suite_rc != 0 && failed == 0)); then
	log "suite exited $suite_rc without failed specs; see $OUT/e2e.log"
	exit 1
fi
exit 0
