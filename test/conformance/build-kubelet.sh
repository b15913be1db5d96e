#!/usr/bin/env bash
# Builds the kubelet from the Go module proxy into the cache and prints its
# path; hack/build-kube.sh does the work (one module and one cache for every
# Kubernetes binary the suites use). Cold: ~7-12 min on 2 cores; warm: instant.
set -euo pipefail
exec bash "$(dirname "$0")/../../hack/build-kube.sh" kubelet
