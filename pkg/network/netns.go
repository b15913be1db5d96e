package network

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// NewNetNS creates a fresh network namespace and pins it by bind mount at
// dir/name, so it outlives every process (the pause container joins it by
// path and the daemon may restart in between). No process is spawned: a
// locked OS thread unshares its network namespace and the thread is then
// thrown away. The namespace's loopback is up on return, so CNI configs
// without a loopback plugin work and no loopback plugin needs spawning.
func NewNetNS(dir, name string) (path string, err error) {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return "", fmt.Errorf("invalid netns name %q", name)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create netns dir: %w", err)
	}
	path = filepath.Join(dir, name)
	// The bind mount needs an existing target; O_EXCL keeps us from pinning
	// over a namespace somebody else holds.
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return "", fmt.Errorf("create netns file: %w", err)
	}
	f.Close()

	errc := make(chan error, 1)
	go func() {
		// Never unlocked on purpose: the thread ends up in the new
		// namespace, and a goroutine that exits while locked makes the Go
		// runtime terminate its thread instead of reusing it elsewhere.
		runtime.LockOSThread()
		if unix.Gettid() != unix.Getpid() {
			errc <- pinNewNetNS(path)
			return
		}
		// On the main thread Go wedges rather than ends a thread that
		// exits locked: the namespace would live as long as the daemon
		// (with the veth in it) and /proc/self/net would point into it.
		// Holding the main thread here forces the worker onto another.
		inner := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			inner <- pinNewNetNS(path)
		}()
		errc <- <-inner
		runtime.UnlockOSThread()
	}()
	if err := <-errc; err != nil {
		_ = os.Remove(path)
		return "", err
	}
	return path, nil
}

// pinNewNetNS must run on a locked OS thread that is discarded afterwards.
func pinNewNetNS(path string) error {
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return fmt.Errorf("unshare netns: %w", err)
	}
	// Done before the bind mount so a failure leaves no mount to undo;
	// we are inside the new namespace already, so no setns is needed.
	if err := loopbackUp(); err != nil {
		return fmt.Errorf("bring up lo in new netns: %w", err)
	}
	src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
	if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
		return fmt.Errorf("pin netns at %s: %w", path, err)
	}
	return nil
}

// loopbackUp sets IFF_UP on lo of the calling thread's network namespace
// with two ioctls, which is cheaper than a netlink handle per family.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("get lo flags: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}

// RemoveNetNS unpins a namespace made by NewNetNS and deletes its file.
// The kernel frees the namespace once no process is left in it. A path
// that is already gone, or no longer mounted, is not an error, so removal
// can be retried after a crash.
func RemoveNetNS(path string) error {
	// MNT_DETACH so a process still holding the mount can't make us fail.
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil &&
		!errors.Is(err, unix.ENOENT) && !errors.Is(err, unix.EINVAL) {
		return fmt.Errorf("unmount netns %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	return nil
}

// isNetNS tells whether path is a pinned network namespace. Plugins are
// given an empty netns on DEL otherwise, as the CNI spec allows, since
// they fail on a path that exists but no longer holds a namespace.
func isNetNS(path string) bool {
	if path == "" {
		return false
	}
	var st unix.Statfs_t
	if err := unix.Statfs(path, &st); err != nil {
		return false
	}
	return st.Type == unix.NSFS_MAGIC
}

// CreateNetNS is NewNetNS, as a method so the sandbox manager can take the
// network as one interface (and tests can replace it without root).
func (m *Manager) CreateNetNS(dir, name string) (string, error) { return NewNetNS(dir, name) }

// RemoveNetNS is the package's RemoveNetNS, as a method for the same reason.
func (m *Manager) RemoveNetNS(path string) error { return RemoveNetNS(path) }
