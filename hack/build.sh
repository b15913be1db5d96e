#!/usr/bin/env bash
# Builds pod-shim and its pause binary into ./bin (or $OUT).
# RACE=1 builds the Go binaries with the race detector (cgo), as hack/test.sh
# does for the integration suites.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/bin}
mkdir -p "$OUT"
goflags=(-trimpath -ldflags "-s -w")
cgo=0
if [ "${RACE:-}" = 1 ]; then
	goflags=(-race -trimpath)
	cgo=1
fi
CGO_ENABLED=$cgo go build "${goflags[@]}" -o "$OUT/pod-shim" ./cmd/pod-shim
# The per-pod monitor as its own small binary: one runs per pod.
CGO_ENABLED=$cgo go build "${goflags[@]}" -o "$OUT/pod-shim-monitor" ./cmd/pod-shim-monitor
# Static so it runs in an empty rootfs; -Os because one runs per pod.
gcc -Os -static -s -o "$OUT/pod-shim-pause" cmd/pod-shim-pause/pause.c
