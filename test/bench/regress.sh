#!/usr/bin/env bash
# A brief performance regression guard for CI: pod-shim's one-client pod-ready
# p50 and CPU per pod lifecycle, each as a ratio to the floor (podbench -mode
# floor: the same pod start and stop done by the host tools alone) measured in
# the same step, against the ratios recorded in test/bench/regress-baseline.txt
# for this machine class. Exits 1 when either ratio is over LIMIT (1.5) times
# the recorded one; prints the figures either way.
#
#   bash test/bench/regress.sh
#   ROUNDS=7 PODS=30 bash test/bench/regress.sh   # longer, steadier
#
# Absolute times move with the machine and its load; a ratio to tools run
# beside it moves much less. Floor and pod-shim rounds are interleaved and
# the ratios taken from the medians of the rounds, so one round slowed by
# other work moves them little. Needs root, runc, /usr/lib/cni, iptables.
set -euo pipefail
cd "$(dirname "$0")/../.."
[[ $(id -u) == 0 ]] || { echo "regress.sh: run as root" >&2; exit 1; }

ROUNDS=${ROUNDS:-5}
PODS=${PODS:-20}
LIMIT=${LIMIT:-1.5}
BASELINE=${BASELINE:-test/bench/regress-baseline.txt}
began=$(date +%s)

source test/bench/lib.sh
bench_init r
trap 'bench_cleanup && rm -rf "$TMP"' EXIT
OUT=$TMP/out
mkdir -p "$OUT"

bench_build
IMAGE=$(go run ./test/registry --write-archive "$TMP/images.tar" --pause-binary "$TMP/bin/pod-shim-pause")
start_pod_shim
for round in $(seq "$ROUNDS"); do
	echo "== regress round $round/$ROUNDS: floor" >&2
	floor -pods "$PODS" >&2
	echo "== regress round $round/$ROUNDS: pod-shim" >&2
	"$TMP/bin/podbench" -endpoint "$SOCK" -image "$IMAGE" -label pod-shim -mode lifecycle -clients 1 -pods "$PODS" \
		-cgroup "$CG" -proc-match "$MATCH" -daemon-pid "$DAEMON_PID" -log-dir "$TMP/logs" \
		-json "$OUT/results.jsonl" >&2
done
stop_daemon
echo "regress.sh: $ROUNDS rounds of $PODS pods in $(($(date +%s) - began)) s" >&2
"$TMP/bin/podbench" -mode regress -json "$OUT/results.jsonl" -baseline "$BASELINE" -limit "$LIMIT"
