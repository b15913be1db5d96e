#!/usr/bin/env bash
# Builds CoreDNS from the Go module proxy into a cache dir and prints the
# binary's path.
#
#   hack/build-coredns.sh         # COREDNS_VERSION defaults to what kubeadm v1.37 deploys
#
# github.com/coredns/coredns has no replace directives, so a plain `go install`
# works; GOBIN puts the binary in the cache. The plugin set is the upstream
# default (plugin.cfg as released), the one registry.k8s.io/coredns/coredns has.
# Cold on 2 cores: ~3-6 min; warm: instant.
set -euo pipefail

# kubeadm v1.37 (cmd/kubeadm/app/constants: CoreDNSVersion "v1.14.6").
COREDNS_VERSION=${COREDNS_VERSION:-v1.14.6}
CACHE=${POD_SHIM_CACHE:-/var/cache/pod-shim-ci}
DIR=$CACHE/coredns/$COREDNS_VERSION
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9

if [[ ! ( -x $DIR/coredns && -f $DIR/.ok ) ]]; then
	rm -rf "$DIR/bin.tmp"
	CGO_ENABLED=0 GOBIN=$DIR/bin.tmp go install -trimpath -ldflags "-s -w" \
		"github.com/coredns/coredns@$COREDNS_VERSION" >&2
	mv "$DIR/bin.tmp/coredns" "$DIR/coredns"
	rm -rf "$DIR/bin.tmp"
	touch "$DIR/.ok"
fi
echo "$DIR/coredns"
