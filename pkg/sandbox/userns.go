package sandbox

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/pod-shim/pod-shim/pkg/oci"
	"github.com/pod-shim/pod-shim/pkg/runc"
)

// UserNS is the pod's user namespace as the kubelet asks for it
// (hostUsers: false gives POD with one mapping per kind).
type UserNS struct {
	Mode NamespaceMode
	UIDs []specs.LinuxIDMapping `json:",omitempty"`
	GIDs []specs.LinuxIDMapping `json:",omitempty"`
}

// PodUserNS says whether the pod runs in its own user namespace.
func (c *Config) PodUserNS() bool { return c.UserNS != nil && c.UserNS.Mode == ModePod }

// pauseNobody is the uid and gid pause runs as.
const pauseNobody = 65535

// validateUserNS admits NODE (the host's user namespace, as without any
// option) and POD with one uid and one gid mapping that maps the
// container's root, as containerd and CRI-O do. CONTAINER and TARGET would
// leave the pod's containers in different user namespaces, which the
// shared network, IPC and UTS namespaces of a pod cannot follow.
func validateUserNS(c Config) error {
	u := c.UserNS
	if u == nil {
		return nil
	}
	switch u.Mode {
	case ModeNode:
		if len(u.UIDs) > 0 || len(u.GIDs) > 0 {
			return fmt.Errorf("user namespace mode NODE takes no id mappings")
		}
		return nil
	case ModePod:
	case ModeContainer:
		return fmt.Errorf("user namespace mode CONTAINER is not supported: a pod's containers share one user namespace (use POD)")
	case ModeTarget:
		return fmt.Errorf("user namespace mode TARGET is not supported: a pod's containers share one user namespace (use POD)")
	default:
		return fmt.Errorf("unknown user namespace mode %d", u.Mode)
	}
	if c.Namespaces.Network == ModeNode || c.Namespaces.PID == ModeNode || c.Namespaces.IPC == ModeNode {
		return fmt.Errorf("a pod with its own user namespace cannot share the node's network, PID or IPC namespace")
	}
	if err := validateMappings("uid", u.UIDs); err != nil {
		return err
	}
	return validateMappings("gid", u.GIDs)
}

func validateMappings(kind string, m []specs.LinuxIDMapping) error {
	switch {
	case len(m) == 0:
		return fmt.Errorf("user namespace mode POD needs a %s mapping", kind)
	case len(m) > 1:
		return fmt.Errorf("user namespace mode POD takes exactly one %s mapping, got %d", kind, len(m))
	}
	x := m[0]
	switch {
	case x.ContainerID != 0:
		return fmt.Errorf("the %s mapping must map container id 0 (root), it starts at %d", kind, x.ContainerID)
	case x.Size == 0:
		return fmt.Errorf("the %s mapping has length 0", kind)
	case uint64(x.HostID)+uint64(x.Size) > 1<<32-1:
		return fmt.Errorf("the %s mapping %d+%d overflows the id range", kind, x.HostID, x.Size)
	}
	return nil
}

// requireFeatures refuses a pod whose handler's runtime cannot do what it
// asks for, naming both, before anything touches the host.
func (m *Manager) requireFeatures(ctx context.Context, c Config) error {
	if !c.PodUserNS() {
		return nil
	}
	h := m.opts.Handlers
	if h == nil {
		h = runc.NewHandlers(runc.Handler{Binary: m.opts.Runtime, Root: m.opts.RuntimeRoot}, nil)
	}
	if err := h.Require(ctx, c.RuntimeHandler, runc.Features{UserNamespaces: true}); err != nil {
		return fmt.Errorf("%w: %w", err, ErrInvalid)
	}
	return nil
}

// userNSPauseSpec puts pause in the pod's new user namespace and lets runc
// make the network namespace inside it: a netns must be owned by the pod's
// user namespace for the pod's root to configure it (sysctls, ping
// sockets), and one created by the daemon belongs to the host's. This is
// containerd's order (it pins the netns from the sandbox's pid after
// start); CRI-O gets the same ownership by making both in pinns.
func userNSPauseSpec(s *specs.Spec, sb *Sandbox) {
	if !sb.Config.PodUserNS() {
		return
	}
	u := sb.Config.UserNS
	oci.SetNamespace(s, specs.UserNamespace, "")
	oci.SetNamespace(s, specs.NetworkNamespace, "")
	s.Linux.UIDMappings = append([]specs.LinuxIDMapping(nil), u.UIDs...)
	s.Linux.GIDMappings = append([]specs.LinuxIDMapping(nil), u.GIDs...)
	if !mapped(u.UIDs, pauseNobody) || !mapped(u.GIDs, pauseNobody) {
		// A short mapping has no 65535: pause is then the namespace's
		// root, which is an unprivileged id on the host all the same.
		s.Process.User = specs.User{}
	}
}

func mapped(m []specs.LinuxIDMapping, id uint32) bool {
	for _, x := range m {
		if id >= x.ContainerID && uint64(id) < uint64(x.ContainerID)+uint64(x.Size) {
			return true
		}
	}
	return false
}

// createInUserNS is create for a pod with its own user namespace: pause
// first (runc makes the user and network namespaces), then the netns is
// pinned at the path every other step uses, then CNI ADD. CNI cannot run
// alongside pause here since the netns does not exist before it.
func (m *Manager) createInUserNS(ctx context.Context, sb *Sandbox) error {
	if err := os.MkdirAll(sb.Dir, 0o711); err != nil {
		return fmt.Errorf("create pod dir: %w", err)
	}
	if err := m.startPause(ctx, sb); err != nil {
		return err
	}
	path := m.netnsPath(sb.ID)
	if err := pinNetNSOf(sb.PausePID, path); err != nil {
		return err
	}
	sb.NetNSPath = path
	res, err := m.opts.Network.Setup(ctx, m.podNetwork(sb))
	if err != nil {
		return fmt.Errorf("set up pod network: %w", err)
	}
	sb.Network = res
	return m.writeHosts(sb)
}

// pinNetNSOf bind-mounts the network namespace of pid at path, where undo,
// Remove and recovery find every pod's netns, and brings its loopback up
// (runc only does so when it configures networks itself).
func pinNetNSOf(pid int, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create netns dir: %w", err)
	}
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create netns file: %w", err)
	}
	f.Close()
	src := fmt.Sprintf("/proc/%d/ns/net", pid)
	if err := unix.Mount(src, path, "none", unix.MS_BIND, ""); err != nil {
		_ = os.Remove(path)
		return fmt.Errorf("pin netns of pause (pid %d) at %s: %w", pid, path, err)
	}
	if err := inNetNS(path, loopbackUp); err != nil {
		return fmt.Errorf("bring up lo in the pod's netns: %w", err)
	}
	return nil
}

// inNetNS runs f on a locked thread moved into the netns at path; the
// thread is thrown away afterwards (the goroutine exits locked), so no
// other goroutine ever runs in that namespace.
func inNetNS(path string, f func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(fd)
		if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns: %w", err)
			return
		}
		errc <- f()
	}()
	return <-errc
}

// loopbackUp sets IFF_UP on lo of the calling thread's network namespace.
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
	if ifr.Uint16()&unix.IFF_UP != 0 {
		return nil
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("set lo up: %w", err)
	}
	return nil
}
