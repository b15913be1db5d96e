#!/usr/bin/env bash
# Builds the real agnhost (k8s.io/kubernetes/test/images/agnhost at the
# Kubernetes version of hack/build-kube.sh) into the cache and prints its path.
#
# Its own throw-away module, seeded with the require and staging replaces of
# hack/build-kube.sh's module (so the dependency graph, and most of the Go build
# cache, is the same), but outside that module's lock: agnhost does not wait
# for the long kubelet/e2e_node builds and never edits their go.mod.
# Cold: ~3-6 min on 2 cores; warm: instant.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
CACHE=${POD_SHIM_CACHE:-/var/cache/pod-shim-ci}
DIR=$CACHE/node-e2e/$KUBE_VERSION
OUT=$DIR/agnhost
if [[ -x $OUT && -f $OUT.ok ]]; then
	echo "$OUT"
	exit 0
fi
mkdir -p "$DIR"
exec 9>"$DIR/.agnhost.lock"
flock 9
if [[ -x $OUT && -f $OUT.ok ]]; then
	echo "$OUT"
	exit 0
fi
mod=$DIR/agnhost-module
rm -rf "$mod"
mkdir -p "$mod"
cd "$mod"
go mod init agnhost-build >/dev/null 2>&1
modjson=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION")
gomod=$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' <<<"$modjson")
staging=v0.${KUBE_VERSION#v1.}
{
	echo "require k8s.io/kubernetes $KUBE_VERSION"
	awk '/=> \.\/staging\/src\//{print $1}' "$gomod" | sort -u | while read -r m; do
		echo "replace $m => $m $staging"
	done
} >>go.mod
GOFLAGS=-mod=mod go get "k8s.io/kubernetes/test/images/agnhost@$KUBE_VERSION" >&2
# Static, as upstream's image (which is built FROM a distroless-ish base with CGO off).
CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w -buildid=" \
	-o "$OUT.tmp" k8s.io/kubernetes/test/images/agnhost >&2
mv "$OUT.tmp" "$OUT"
touch "$OUT.ok"
echo "$OUT"
