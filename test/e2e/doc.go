// Package e2e drives the built pod-shim daemon end to end, as a user would:
// through the real crictl binary and a CRI gRPC client over its unix socket,
// with real runc, real CNI plugins on a bridge each test makes, and images
// served from a registry on 127.0.0.1 that the harness builds offline.
//
// The tests need root and skip (with the reason) without it, and in -short
// mode. Run them with hack/test.sh, or:
//
//	go test -count=1 -v -timeout 20m ./test/e2e/...
//	go test -count=1 -run '^$' -bench PodReady -benchtime 1x ./test/e2e/
package e2e
