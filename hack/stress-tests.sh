#!/usr/bin/env bash
# Runs the README's test command (bash hack/test.sh) N times in a row while a
# CPU-heavy job runs beside it: a loop building the whole project at nice 10
# with a fresh GOCACHE each round (so it compiles everything, every round).
# A flaky test shows up here; the load stops when this script ends, however
# it ends. Exits non-zero if any run failed.
#
#   bash hack/stress-tests.sh      # three runs
#   bash hack/stress-tests.sh 1    # one run
#
# Each run's output goes to $STRESS_LOG_DIR (default a new /tmp dir).
set -uo pipefail
cd "$(dirname "$0")/.."

runs=${1:-3}
if ! [[ $runs =~ ^[1-9][0-9]*$ ]]; then
	echo "usage: $0 [RUNS]" >&2
	exit 2
fi
logs=${STRESS_LOG_DIR:-$(mktemp -d /tmp/pod-shim-stress.XXXXXX)}
mkdir -p "$logs"
gocache=$(mktemp -d /tmp/pod-shim-stress-gocache.XXXXXX)

# The load runs in its own session (so its process group holds the loop and
# every compiler it starts) and is killed as a group on the way out.
setsid bash -c '
	cache=$1
	round=0
	while :; do
		round=$((round + 1))
		rm -rf "$cache" && mkdir -p "$cache"
		GOCACHE=$cache nice -n 10 go build ./... >/dev/null 2>&1
		echo "$(date -u +%T) load round $round done" >>"$2"
	done
' load "$gocache" "$logs/load.log" &
load_pid=$!
stop_load() {
	kill -TERM -- -"$load_pid" 2>/dev/null
	wait "$load_pid" 2>/dev/null
	rm -rf "$gocache"
}
trap stop_load EXIT
trap 'exit 130' INT TERM
echo "load: go build loop at nice 10 (process group $load_pid), logs in $logs"

results=()
failed=0
for i in $(seq 1 "$runs"); do
	echo "=== run $i of $runs ($(date -u +%T))"
	begin=$SECONDS
	if bash hack/test.sh >"$logs/run-$i.log" 2>&1; then
		result=passed
	else
		result=FAILED
		failed=$((failed + 1))
	fi
	took=$((SECONDS - begin))
	summary=$(grep '^FAILED:' "$logs/run-$i.log" || true)
	results+=("run $i: $result in ${took}s ${summary:+($summary)}")
	echo "${results[-1]}; log: $logs/run-$i.log"
	# The run's per-step table.
	sed -n '/^step  *result  *time$/,$p' "$logs/run-$i.log"
done

echo
rounds=0
[ -f "$logs/load.log" ] && rounds=$(wc -l <"$logs/load.log")
echo "load rounds completed meanwhile: $rounds"
printf '%s\n' "${results[@]}"
if [ "$failed" -gt 0 ]; then
	echo "$failed of $runs runs failed"
	exit 1
fi
echo "all $runs runs passed"
