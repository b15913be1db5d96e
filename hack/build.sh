#!/usr/bin/env bash
# Builds pod-shim and its pause binary into ./bin (or $OUT).
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/bin}
mkdir -p "$OUT"
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OUT/pod-shim" ./cmd/pod-shim
# The per-pod monitor as its own small binary: one runs per pod.
CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$OUT/pod-shim-monitor" ./cmd/pod-shim-monitor
# Static so it runs in an empty rootfs; -Os because one runs per pod.
gcc -Os -static -s -o "$OUT/pod-shim-pause" cmd/pod-shim-pause/pause.c
