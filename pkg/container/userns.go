package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/moby/sys/mountinfo"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/pod-shim/pod-shim/pkg/oci"
	"github.com/pod-shim/pod-shim/pkg/runc"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// applyUserNS puts a container of a pod with its own user namespace into
// that namespace (held by pause) and idmaps the mounts the runtime makes
// for it with the pod's mappings, so that files owned by root on the host
// are owned by the container's root inside, and what it writes there is
// owned on the host by the ids it has inside. CRI mounts are idmapped when
// they carry mappings (the kubelet sets them on every volume of a
// hostUsers: false pod), whatever the pod: that is the CRI's contract.
func applyUserNS(s *specs.Spec, c *Config, sb *sandbox.Sandbox, imageVolumes map[string]string) {
	byDest := map[string]Mount{}
	for _, m := range c.Mounts {
		byDest[filepath.Clean(m.ContainerPath)] = m
	}
	podUserNS := sb.Config.PodUserNS()
	runtimeMade := func(m specs.Mount) bool {
		switch m.Source {
		case sb.HostnamePath(), sb.HostsPath(), sb.ResolvConfPath(), sb.ShmPath():
			return true
		}
		for _, src := range imageVolumes {
			if m.Source == src || strings.HasPrefix(m.Source, src+"/") {
				return true
			}
		}
		return false
	}
	for i := range s.Mounts {
		m := &s.Mounts[i]
		if m.Type != "bind" {
			continue
		}
		if cm, ok := byDest[filepath.Clean(m.Destination)]; ok && cm.Image == "" {
			if len(cm.UIDMappings) > 0 || len(cm.GIDMappings) > 0 {
				m.UIDMappings, m.GIDMappings = cm.UIDMappings, cm.GIDMappings
			}
			continue
		}
		if podUserNS && runtimeMade(*m) {
			m.UIDMappings = append([]specs.LinuxIDMapping(nil), sb.Config.UserNS.UIDs...)
			m.GIDMappings = append([]specs.LinuxIDMapping(nil), sb.Config.UserNS.GIDs...)
		}
	}
	if !podUserNS {
		return
	}
	oci.SetNamespace(s, specs.UserNamespace, fmt.Sprintf("/proc/%d/ns/user", sb.PausePID))
	s.Linux.UIDMappings = append([]specs.LinuxIDMapping(nil), sb.Config.UserNS.UIDs...)
	s.Linux.GIDMappings = append([]specs.LinuxIDMapping(nil), sb.Config.UserNS.GIDs...)
}

// requireFeatures refuses a container asking for what its pod's handler's
// runtime does not report (recursive read-only mounts), naming both.
func (m *Manager) requireFeatures(ctx context.Context, c *Container, sb *sandbox.Sandbox) error {
	need := runc.Features{}
	for _, mnt := range c.Config.Mounts {
		need.RecursiveReadOnlyMounts = need.RecursiveReadOnlyMounts || mnt.RecursiveReadonly
	}
	if need == (runc.Features{}) {
		return nil
	}
	h := m.opts.Handlers
	if h == nil {
		if m.opts.Runtime == nil {
			return fmt.Errorf("no runtime to ask for recursive read-only mounts: %w", ErrInvalid)
		}
		h = runc.NewHandlers(runc.Handler{Binary: m.opts.Runtime.Binary()}, nil)
	}
	if err := h.Require(ctx, sb.Config.RuntimeHandler, need); err != nil {
		return fmt.Errorf("%w: %w", err, ErrInvalid)
	}
	return nil
}

// idmapRootfs remounts the container's overlay rootfs over idmapped copies
// of its layers, mapped by the pod's user namespace: the image's
// root-owned files are then the container's root's, and what it writes
// lands in its writable layer with the ids it has inside, with no chown of
// any layer. overlayfs itself cannot be idmapped, but its layers can be
// (kernel >= 5.19); containerd builds its userns rootfs the same way. The
// idmapped layer mounts are needed only while the overlay is mounted (it
// keeps private clones), so none is left behind. A kernel or filesystem
// that cannot idmap fails the container: running it with the image owned
// by nobody would break it in ways far harder to trace.
func idmapRootfs(rootfs string, sb *sandbox.Sandbox) error {
	if !sb.Config.PodUserNS() {
		return nil
	}
	userns, err := os.Open(fmt.Sprintf("/proc/%d/ns/user", sb.PausePID))
	if err != nil {
		return fmt.Errorf("the pod's user namespace: %w", err)
	}
	defer userns.Close()
	lower, upper, work, extra, err := overlayLayers(rootfs)
	if err != nil {
		return err
	}
	// Each layer is idmapped as a detached mount, named to overlayfs by
	// its descriptor: nothing is mounted anywhere a crash could leave it
	// (and a removal of the bundle recurse into a layer).
	var lowers []string
	var trees []int
	for _, l := range lower {
		fd, err := idmapTree(l, int(userns.Fd()))
		if err != nil {
			return fmt.Errorf("idmap the rootfs for the pod's user namespace (overlayfs on idmapped layers needs kernel >= 5.19): %w", err)
		}
		defer unix.Close(fd)
		trees = append(trees, fd)
		lowers = append(lowers, fmt.Sprintf("/proc/self/fd/%d", fd))
	}
	// The writable layer stays as it is: overlayfs works in it with the
	// daemon's credentials, which an idmapping of the pod's range cannot
	// map. Its root, new and empty, belongs to the pod's root, so that the
	// container's root owns its /; what the container writes is stored
	// with its host ids, and copy-up keeps them consistent with the
	// idmapped layers below.
	rootUID, rootGID := hostID(sb.Config.UserNS.UIDs, 0), hostID(sb.Config.UserNS.GIDs, 0)
	if err := os.Lchown(upper, int(rootUID), int(rootGID)); err != nil {
		return fmt.Errorf("give the writable layer to the pod's root: %w", err)
	}
	data := "lowerdir=" + strings.Join(lowers, ":") + ",upperdir=" + upper + ",workdir=" + work + extra
	if err := unix.Unmount(rootfs, 0); err != nil {
		return fmt.Errorf("unmount the rootfs to idmap it: %w", err)
	}
	err = unix.Mount("overlay", rootfs, "overlay", 0, data)
	if errors.Is(err, unix.EINVAL) {
		// Kernels before 6.15 take no detached mount as a layer: attach
		// them for the time of the mount, outside any bundle.
		err = withAttached(filepath.Join(filepath.Dir(filepath.Dir(filepath.Dir(rootfs))), "idmap", filepath.Base(filepath.Dir(rootfs))), trees,
			func(paths []string) error {
				data := "lowerdir=" + strings.Join(paths, ":") + ",upperdir=" + upper + ",workdir=" + work + extra
				return unix.Mount("overlay", rootfs, "overlay", 0, data)
			})
	}
	if err != nil {
		return fmt.Errorf("mount the rootfs on idmapped layers (overlayfs on idmapped layers needs kernel >= 5.19): %w", err)
	}
	// runc sets up the rootfs as the pod's root, an unprivileged id on
	// the host, which must be able to reach it (containerd gives its
	// bundles the same access): the bundle and the state dir's containers
	// dir, both the daemon's own, become traversable (their names are 64
	// random hex digits). The rootfs itself is the image's / and keeps
	// its mode.
	bundle := filepath.Dir(rootfs)
	for _, dir := range []string{filepath.Dir(bundle), bundle} {
		if err := os.Chmod(dir, 0o711); err != nil {
			return err
		}
	}
	return nil
}

// hostID is the host id container id maps to.
func hostID(m []specs.LinuxIDMapping, id uint32) uint32 {
	for _, x := range m {
		if id >= x.ContainerID && uint64(id) < uint64(x.ContainerID)+uint64(x.Size) {
			return x.HostID + (id - x.ContainerID)
		}
	}
	return 65534
}

// overlayLayers reads the layers of the overlay mounted at target from
// mountinfo, with the options that must carry over to its remount.
func overlayLayers(target string) (lower []string, upper, work, extra string, err error) {
	mounts, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(target))
	if err != nil {
		return nil, "", "", "", fmt.Errorf("read mountinfo: %w", err)
	}
	if len(mounts) == 0 || mounts[len(mounts)-1].FSType != "overlay" {
		return nil, "", "", "", fmt.Errorf("rootfs %s is not an overlay mount", target)
	}
	for _, o := range strings.Split(mounts[len(mounts)-1].VFSOptions, ",") {
		k, v, _ := strings.Cut(o, "=")
		switch k {
		case "lowerdir":
			lower = strings.Split(v, ":")
		case "upperdir":
			upper = v
		case "workdir":
			work = v
		case "index", "metacopy", "redirect_dir", "xino":
			extra += "," + o
		}
	}
	switch {
	case len(lower) == 0 || upper == "" || work == "":
		return nil, "", "", "", fmt.Errorf("rootfs %s: overlay without lower, upper and work dirs", target)
	case filepath.Dir(upper) != filepath.Dir(work):
		return nil, "", "", "", fmt.Errorf("rootfs %s: upper and work dirs in different places", target)
	}
	for _, l := range lower {
		if strings.HasPrefix(l, "/proc/") {
			return nil, "", "", "", fmt.Errorf("rootfs %s: an image with this many layers cannot be idmapped (its overlay names layers by file descriptor)", target)
		}
	}
	return lower, upper, work, extra, nil
}

// withAttached mounts each detached tree at dir/<i>, runs f with those
// paths, and unmounts and removes them again.
func withAttached(dir string, trees []int, f func([]string) error) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	var paths []string
	defer func() {
		// Never RemoveAll here: a path still mounted is a layer.
		for _, p := range paths {
			if unix.Unmount(p, unix.MNT_DETACH) == nil {
				_ = os.Remove(p)
			}
		}
		_ = os.Remove(dir)
	}()
	for i, fd := range trees {
		p := filepath.Join(dir, fmt.Sprint(i))
		if err := os.Mkdir(p, 0o700); err != nil {
			return err
		}
		if err := unix.MoveMount(fd, "", unix.AT_FDCWD, p, unix.MOVE_MOUNT_F_EMPTY_PATH); err != nil {
			_ = os.Remove(p)
			return fmt.Errorf("move_mount %s: %w", p, err)
		}
		paths = append(paths, p)
	}
	return f(paths)
}

// idmapTree returns a detached, idmapped bind mount of path; closing the
// descriptor lets the kernel free it once nothing else holds it.
func idmapTree(path string, usernsFd int) (int, error) {
	tree, err := unix.OpenTree(unix.AT_FDCWD, path, unix.OPEN_TREE_CLONE|unix.OPEN_TREE_CLOEXEC)
	if err != nil {
		return -1, fmt.Errorf("open_tree %s: %w", path, err)
	}
	attr := unix.MountAttr{Attr_set: unix.MOUNT_ATTR_IDMAP, Userns_fd: uint64(usernsFd)}
	if err := unix.MountSetattr(tree, "", unix.AT_EMPTY_PATH, &attr); err != nil {
		unix.Close(tree)
		return -1, fmt.Errorf("mount_setattr idmap %s: %w", path, err)
	}
	return tree, nil
}
