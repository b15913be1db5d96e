#!/usr/bin/env bash
# Builds etcd (the server binary, plus etcdctl) from the Go module proxy into a
# cache dir and prints the directory.
#
#   hack/build-etcd.sh            # ETCD_VERSION defaults to what kubeadm v1.37 deploys
#
# `go install go.etcd.io/etcd/server/v3@v3.x` is refused: the server module's
# go.mod replaces its sibling modules (api, client, pkg) with ../ paths. A
# throw-away module that requires it gets those siblings at the versions the
# server module itself requires, which are the same release.
# Cold on 2 cores: ~3-5 min; warm: instant.
set -euo pipefail

# kubeadm v1.37 (cmd/kubeadm/app/constants: DefaultEtcdVersion "3.7.0-0").
ETCD_VERSION=${ETCD_VERSION:-v3.7.0}
CACHE=${POD_SHIM_CACHE:-/var/cache/pod-shim-ci}
DIR=$CACHE/etcd/$ETCD_VERSION
mkdir -p "$DIR"
exec 9>"$DIR/.lock"
flock 9

if [[ -x $DIR/etcd && -f $DIR/.ok ]]; then
	echo "$DIR"
	exit 0
fi

mod=$DIR/module
rm -rf "$mod"
mkdir -p "$mod"
(
	cd "$mod"
	go mod init etcd-build >/dev/null 2>&1
	GOFLAGS=-mod=mod go get "go.etcd.io/etcd/server/v3@$ETCD_VERSION" "go.etcd.io/etcd/etcdctl/v3@$ETCD_VERSION" >&2
	CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$DIR/etcd.tmp" go.etcd.io/etcd/server/v3 >&2
	CGO_ENABLED=0 GOFLAGS=-mod=mod go build -trimpath -ldflags "-s -w" -o "$DIR/etcdctl.tmp" go.etcd.io/etcd/etcdctl/v3 >&2
)
mv "$DIR/etcd.tmp" "$DIR/etcd"
mv "$DIR/etcdctl.tmp" "$DIR/etcdctl"
touch "$DIR/.ok"
echo "$DIR"
