#!/usr/bin/env bash
# Builds kubelet from the Go module proxy into a cache dir and prints its path.
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every staging
# module (k8s.io/api, k8s.io/client-go, ...) with ./staging/src/..., and replace
# directives of a dependency are ignored. So a throw-away module requires it and
# replaces each staging module with the published v0.<minor>.<patch> instead.
# Cold: ~12 min on 2 cores; warm (binary cached): instant.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
CACHE=${POD_SHIM_CACHE:-/var/cache/pod-shim-ci}
OUT=$CACHE/kubelet/$KUBE_VERSION/kubelet

if [[ -x $OUT ]] && [[ $("$OUT" --version 2>/dev/null) == "Kubernetes $KUBE_VERSION" ]]; then
	echo "$OUT"
	exit 0
fi
mkdir -p "$(dirname "$OUT")"

staging=v0.${KUBE_VERSION#v1.}
work=$(mktemp -d "${TMPDIR:-/tmp}/kubelet-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

go mod init kubelet-build >/dev/null 2>&1
# Find the staging modules from the upstream go.mod itself (never a hand list that goes stale).
modjson=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION")
gomod=$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' <<<"$modjson")
mapfile -t mods < <(awk '/=> \.\/staging\/src\//{print $1}' "$gomod" | sort -u)
if (( ${#mods[@]} == 0 )); then
	echo "no staging replaces found in $gomod" >&2
	exit 1
fi
{
	echo "require k8s.io/kubernetes $KUBE_VERSION"
	for m in "${mods[@]}"; do
		echo "replace $m => $m $staging"
	done
} >>go.mod
cat >tools.go <<'GO'
//go:build tools

package tools

import _ "k8s.io/kubernetes/cmd/kubelet"
GO
# go mod tidy would also resolve test deps of everything; `go get` the main
# package's imports only.
GOFLAGS=-mod=mod go get "k8s.io/kubernetes/cmd/kubelet@$KUBE_VERSION" >&2
# The version the kubelet reports (and logs) comes from ldflags, as in
# kubernetes' hack/lib/version.sh; without them it says v0.0.0-master.
minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
v=k8s.io/component-base/version
ldflags="-s -w -X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"
CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$OUT.tmp" k8s.io/kubernetes/cmd/kubelet >&2
mv "$OUT.tmp" "$OUT"
echo "$OUT"
