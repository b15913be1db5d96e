#!/usr/bin/env bash
# Builds Kubernetes binaries from the Go module proxy into a cache dir and
# prints one path per line, in the order asked.
#
#   hack/build-kube.sh kubelet kubeadm kubectl kube-apiserver \
#       kube-controller-manager kube-scheduler kube-proxy e2e_node.test ginkgo
#
# k8s.io/kubernetes cannot be `go install`ed: its go.mod replaces every staging
# module (k8s.io/api, k8s.io/client-go, ...) with ./staging/src/..., and replace
# directives of a dependency are ignored. So one throw-away module requires it
# and replaces each staging module with the published v0.<minor>.<patch>. Every
# binary comes from that one module, so they share one dependency graph and one
# Go build cache: the second binary costs a fraction of the first.
#
# Names: any k8s.io/kubernetes/cmd/<name>; "e2e_node.test" (go test -c of
# k8s.io/kubernetes/test/e2e_node); "ginkgo" (the ginkgo v2 CLI at the version
# kubernetes requires).
# Cold on 2 cores: kubelet ~7-12 min, each further binary 1-4 min; warm: instant.
set -euo pipefail

KUBE_VERSION=${KUBE_VERSION:-v1.37.2}
CACHE=${POD_SHIM_CACHE:-/var/cache/pod-shim-ci}
DIR=$CACHE/kube/$KUBE_VERSION
(($#)) || { echo "usage: $0 NAME..." >&2; exit 2; }
mkdir -p "$DIR"

# One build at a time per cache: two suites asking at once would otherwise
# race on the module dir and the outputs.
exec 9>"$DIR/.lock"
flock 9

staging=v0.${KUBE_VERSION#v1.}
minor=${KUBE_VERSION#v1.}; minor=${minor%%.*}
v=k8s.io/component-base/version
# The version the binaries report comes from ldflags, as in kubernetes'
# hack/lib/version.sh; without them they say v0.0.0-master.
ldflags="-s -w -X $v.gitVersion=$KUBE_VERSION -X $v.gitMajor=1 -X $v.gitMinor=$minor -X $v.gitTreeState=clean -X $v.buildDate=1970-01-01T00:00:00Z"

mod=$DIR/module
if [[ ! -f $mod/.ready ]]; then
	rm -rf "$mod"
	mkdir -p "$mod"
	(
		cd "$mod"
		go mod init kube-build >/dev/null 2>&1
		# The staging modules come from the upstream go.mod itself (never a hand list that goes stale).
		modjson=$(go mod download -json "k8s.io/kubernetes@$KUBE_VERSION")
		gomod=$(sed -n 's/.*"GoMod": "\(.*\)".*/\1/p' <<<"$modjson")
		mapfile -t mods < <(awk '/=> \.\/staging\/src\//{print $1}' "$gomod" | sort -u)
		if ((${#mods[@]} == 0)); then
			echo "no staging replaces found in $gomod" >&2
			exit 1
		fi
		{
			echo "require k8s.io/kubernetes $KUBE_VERSION"
			for m in "${mods[@]}"; do
				echo "replace $m => $m $staging"
			done
		} >>go.mod
		touch .ready
	)
fi

built() { # name path: is a cached binary usable?
	[[ -x $2 && -f $2.ok ]]
}

for name in "$@"; do
	out=$DIR/$name
	if built "$name" "$out"; then
		continue
	fi
	(
		cd "$mod"
		case $name in
		e2e_node.test)
			GOFLAGS=-mod=mod go get k8s.io/kubernetes/test/e2e_node@"$KUBE_VERSION" >&2
			CGO_ENABLED=0 GOFLAGS=-mod=mod go test -c -trimpath -ldflags "$ldflags" \
				-o "$out.tmp" k8s.io/kubernetes/test/e2e_node >&2
			;;
		ginkgo)
			gv=$(go list -m -f '{{.Version}}' github.com/onsi/ginkgo/v2 2>/dev/null || true)
			if [[ -z $gv ]]; then
				GOFLAGS=-mod=mod go get k8s.io/kubernetes/test/e2e_node@"$KUBE_VERSION" >&2
				gv=$(go list -m -f '{{.Version}}' github.com/onsi/ginkgo/v2)
			fi
			GOFLAGS=-mod=mod go get "github.com/onsi/ginkgo/v2/ginkgo@$gv" >&2
			CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -o "$out.tmp" github.com/onsi/ginkgo/v2/ginkgo >&2
			;;
		*)
			[[ $name =~ ^[a-z0-9-]+$ ]] || { echo "bad name: $name" >&2; exit 2; }
			# go get the main package's imports only (go mod tidy would resolve test deps of everything).
			GOFLAGS=-mod=mod go get "k8s.io/kubernetes/cmd/$name@$KUBE_VERSION" >&2
			CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" \
				-o "$out.tmp" "k8s.io/kubernetes/cmd/$name" >&2
			;;
		esac
	)
	mv "$out.tmp" "$out"
	touch "$out.ok"
done

for name in "$@"; do
	echo "$DIR/$name"
done
