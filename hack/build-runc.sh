#!/usr/bin/env bash
# Builds runc v1.5.x from the Go module proxy into a cache dir and prints the
# binary's path. Debian 12's runc 1.1.5 has no idmapped mounts, so pods with
# user namespaces (hostUsers: false) need this one; Debian's stays at
# /usr/sbin/runc and stays usable. Needs libseccomp-dev and pkg-config (apt).
# Cold: ~10-60 s on 2 cores; warm: instant.
set -euo pipefail

RUNC_VERSION=${RUNC_VERSION:-v1.5.3}
CACHE=${POD_SHIM_CACHE:-/var/cache/pod-shim-ci}
DIR=$CACHE/runc/$RUNC_VERSION
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9
if [[ ! -x $DIR/runc || ! -f $DIR/.ok ]]; then
	rm -f "$DIR/.ok"
	# -tags seccomp: without it runc ignores seccomp profiles.
	GOBIN=$DIR CGO_ENABLED=1 go install -tags seccomp \
		"github.com/opencontainers/runc@$RUNC_VERSION" >&2
	"$DIR/runc" features >/dev/null
	touch "$DIR/.ok"
fi
echo "$DIR/runc"
