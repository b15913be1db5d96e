#!/usr/bin/env bash
# Builds containerd v2.x (the daemon, its runc shim and ctr) from the Go module
# proxy into a cache dir and prints that dir. Users run containerd 2.x, so the
# side-by-side suites (benchmarks, node conformance) compare against it rather
# than Debian's 1.6. -tags no_btrfs: the btrfs snapshotter needs headers this
# host lacks and no suite uses it. Cold: ~3-5 min on 2 cores; warm: instant.
set -euo pipefail

CONTAINERD_VERSION=${CONTAINERD_VERSION:-v2.4.2}
CACHE=${POD_SHIM_CACHE:-/var/cache/pod-shim-ci}
DIR=$CACHE/containerd/$CONTAINERD_VERSION
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9
if [[ ! -f $DIR/.ok ]]; then
	for cmd in containerd containerd-shim-runc-v2 ctr; do
		GOBIN=$DIR CGO_ENABLED=1 go install -tags no_btrfs \
			-ldflags "-X github.com/containerd/containerd/v2/version.Version=$CONTAINERD_VERSION" \
			"github.com/containerd/containerd/v2/cmd/$cmd@$CONTAINERD_VERSION" >&2
	done
	touch "$DIR/.ok"
fi
echo "$DIR"
