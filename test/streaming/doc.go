// Package streaming drives the built pod-shim daemon through the node-level
// RPCs of issue 5: exec/attach/port-forward over the streaming server, stats,
// events and metrics, with the real crictl and a CRI gRPC client, real runc
// and CNI plugins on a bridge each test makes, and images from a registry on
// 127.0.0.1 built offline.
//
// The tests need root and skip (with the reason) without it, and in -short
// mode:
//
//	go test -count=1 -v -timeout 20m ./test/streaming/...
package streaming
