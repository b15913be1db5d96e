// Package crash holds issue 6's crash-safety acceptance tests: the built
// daemon is crashed at every failpoint of its multi-step operations, killed
// with SIGKILL at random under load, and restarted after a simulated host
// reboot, and each time the tests check that every pod, container and image
// is either complete or absent and that nothing leaks on the host.
//
// They need root, runc, the CNI plugins and busybox-static, and skip with the
// reason otherwise (and in -short mode).
package crash
