// Package network attaches pod sandboxes to the node's network with CNI.
//
// It owns two things a pod's network needs from the host: the pod's network
// namespace, created without spawning a process and pinned by a bind mount
// under the state dir so it outlives the daemon (NewNetNS, RemoveNetNS), and
// the CNI calls on it through libcni (Manager.Setup is ADD, Teardown is DEL,
// Status and CHECK report whether a usable config is loaded). Setup returns
// the pod's addresses as a Result, which the sandbox manager records so that
// a DEL after a daemon restart can hand the plugins what ADD gave; libcni's
// cache covers a crash before that record was written.
//
// Configs are read from the CNI conf dir as the kubelet's conventions say
// (the first file by name wins) and re-read when it changes, so a node whose
// network plugin installs its config late becomes ready without a restart;
// until then Setup fails with ErrNotReady. Requests the plugins would choke
// on (a bad port mapping, a bandwidth annotation that is no quantity) fail with
// ErrInvalidPod before any plugin runs. The package knows nothing of CRI or
// gRPC: pkg/cri maps its errors.
package network
