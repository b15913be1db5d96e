// Package network holds integration tests of pod networking (issue 4): they
// build pod-shim, start it with a private CNI bridge config and drive it over
// CRI with real CNI plugins, plus fake ones written as shell scripts into a
// bin dir searched before the real plugins. They need root and skip otherwise.
package network
