package image

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/pod-shim/pod-shim/pkg/store"
)

// usageFile records which layers a container rootfs uses. It is a file in
// the container's dir rather than a DB record because PrepareRootfs is on
// the pod-start path and a bbolt commit costs an fsync; the file is written
// without one. A crash of the daemon keeps it (page cache); a power loss may
// lose it, but then no container is running on these layers either.
type usageFile struct {
	ImageID string   `json:"imageID"`
	Layers  []string `json:"layers"`
	Target  string   `json:"target"`
}

// maxMountData is the kernel's limit on mount(2) option data: one page.
const maxMountData = 4096 - 1

func (s *Store) containerDir(id string) string { return filepath.Join(s.root, "containers", id) }

// WritableLayer is where containerID's writable layer (the overlay upper
// dir) is or will be, for disk usage reporting. A read-only rootfs has
// none: the directory then does not exist.
func (s *Store) WritableLayer(containerID string) (string, error) {
	if err := validContainerID(containerID); err != nil {
		return "", err
	}
	return filepath.Join(s.containerDir(containerID), "upper"), nil
}

// WritableLayersRoot is the directory holding every container's writable
// layer: its file system is the one ImageFsInfo reports for containers.
func (s *Store) WritableLayersRoot() string { return s.path("containers") }

func validContainerID(id string) error {
	if id == "" || len(id) > 128 || strings.ContainsAny(id, "/\x00") || id == "." || id == ".." {
		return fmt.Errorf("invalid container ID %q", id)
	}
	return nil
}

// loadUsage rebuilds the in-memory usage index at New.
func (s *Store) loadUsage() error {
	entries, err := os.ReadDir(s.path("containers"))
	if err != nil {
		return fmt.Errorf("read containers dir: %w", err)
	}
	for _, e := range entries {
		raw, err := os.ReadFile(filepath.Join(s.containerDir(e.Name()), "usage.json"))
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				// Crashed before the record was written: nothing was mounted.
				s.log.Warn("removing container dir without usage record", "container", e.Name())
				_ = os.RemoveAll(s.containerDir(e.Name()))
				continue
			}
			return fmt.Errorf("read usage of %s: %w", e.Name(), err)
		}
		var u usageFile
		if err := json.Unmarshal(raw, &u); err != nil {
			s.log.Warn("unreadable usage record, keeping its layers until RemoveRootfs", "container", e.Name(), "err", err)
		}
		s.usage[e.Name()] = &u
	}
	return nil
}

// PrepareRootfs gives containerID a root filesystem made of imageID's layers.
// Writable: an overlay mounted at target, upper and work dirs under the
// store. Read-only with one layer: that layer's dir itself, no mount (the
// pause container's fast path). Read-only with more: a read-only overlay at
// target. It returns the path to use as the container's root.
func (s *Store) PrepareRootfs(ctx context.Context, imageID, containerID, target string, readOnly bool) (string, error) {
	if err := validContainerID(containerID); err != nil {
		return "", err
	}
	if err := ctx.Err(); err != nil {
		return "", err
	}
	cdir := s.containerDir(containerID)
	u, err := s.recordUsage(imageID, containerID, target)
	if err != nil {
		return "", err
	}
	ok := false
	defer func() {
		if !ok {
			s.dropUsage(containerID, cdir)
		}
	}()
	if len(u.Layers) == 0 {
		return "", fmt.Errorf("image %s has no layers", u.ImageID)
	}
	// overlayfs lists the top layer first and refuses a dir listed twice
	// (ELOOP). A layer repeated higher up re-applies all its content, so
	// keeping only its topmost occurrence gives the same view.
	lower := make([]string, 0, len(u.Layers))
	seen := map[string]bool{}
	for i := len(u.Layers) - 1; i >= 0; i-- {
		if l := u.Layers[i]; !seen[l] {
			seen[l] = true
			lower = append(lower, s.layerDir(strings.TrimPrefix(l, "sha256:")))
		}
	}
	if readOnly && len(lower) == 1 {
		ok = true
		return lower[0], nil
	}
	data := "lowerdir=" + strings.Join(lower, ":")
	if !readOnly {
		upper, work := filepath.Join(cdir, "upper"), filepath.Join(cdir, "work")
		for _, d := range []string{upper, work} {
			if err := os.Mkdir(d, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return "", fmt.Errorf("create %s: %w", d, err)
			}
		}
		data += ",upperdir=" + upper + ",workdir=" + work
	}
	data += s.overlayOpt
	if len(data) > maxMountData {
		// Too long with absolute paths: name each lower dir by an O_PATH
		// descriptor instead ("/proc/self/fd/N", ~17 bytes). The kernel
		// resolves them at mount time; the fds can be closed right after.
		short, closeFDs, err := fdPaths(lower)
		if err != nil {
			return "", err
		}
		defer closeFDs()
		data = strings.Replace(data, "lowerdir="+strings.Join(lower, ":"), "lowerdir="+strings.Join(short, ":"), 1)
	}
	if len(data) > maxMountData {
		return "", fmt.Errorf("image %s has %d layers: overlay mount options would be %d bytes, over the kernel's %d-byte limit", u.ImageID, len(lower), len(data), maxMountData)
	}
	if err := os.MkdirAll(target, 0o755); err != nil {
		return "", fmt.Errorf("create rootfs mount point: %w", err)
	}
	var flags uintptr
	if readOnly {
		flags |= unix.MS_RDONLY
	}
	if err := unix.Mount("overlay", target, "overlay", flags, data); err != nil {
		return "", fmt.Errorf("mount overlay rootfs at %s: %w", target, err)
	}
	ok = true
	return target, nil
}

// recordUsage writes the usage record before anything is mounted, under
// gcMu so a concurrent Remove either sees it or has already taken the image.
func (s *Store) recordUsage(imageID, containerID, target string) (*usageFile, error) {
	s.gcMu.Lock()
	defer s.gcMu.Unlock()
	var rec *imageRecord
	if err := s.db.View(func(tx *store.Tx) error {
		var err error
		rec, err = resolve(tx, imageID)
		return err
	}); err != nil {
		return nil, err
	}
	u := &usageFile{ImageID: rec.ID, Layers: rec.Layers, Target: target}
	raw, err := json.Marshal(u)
	if err != nil {
		return nil, err
	}
	cdir := s.containerDir(containerID)
	if err := os.MkdirAll(cdir, 0o700); err != nil {
		return nil, fmt.Errorf("create container dir: %w", err)
	}
	tmp := filepath.Join(cdir, "usage.json.tmp")
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		return nil, fmt.Errorf("write usage record: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(cdir, "usage.json")); err != nil {
		return nil, fmt.Errorf("write usage record: %w", err)
	}
	s.usage[containerID] = u
	return u, nil
}

func (s *Store) dropUsage(containerID, cdir string) {
	if err := os.RemoveAll(cdir); err != nil {
		s.log.Warn("remove container rootfs dir", "container", containerID, "err", err)
	}
	s.gcMu.Lock()
	delete(s.usage, containerID)
	s.gcMu.Unlock()
}

// RemoveRootfs undoes PrepareRootfs: it unmounts target (detaching it lazily
// if still busy), deletes the writable layer and the usage record, and then
// the layers no image or rootfs uses any more. Removing twice is success.
func (s *Store) RemoveRootfs(containerID, target string) error {
	if err := validContainerID(containerID); err != nil {
		return err
	}
	s.gcMu.Lock()
	u := s.usage[containerID]
	s.gcMu.Unlock()
	if strings.HasPrefix(filepath.Clean(target)+"/", s.path("layers")+"/") {
		// The read-only fast path returned a layer dir: never unmount or
		// remove that, whatever the caller passes back.
		target = ""
	}
	targets := []string{target}
	if u != nil && u.Target != "" && u.Target != target {
		targets = append(targets, u.Target)
	}
	for _, t := range targets {
		if t == "" {
			continue
		}
		if err := unmount(t); err != nil {
			return fmt.Errorf("remove rootfs of %s: %w", containerID, err)
		}
		if err := os.Remove(t); err != nil && !errors.Is(err, os.ErrNotExist) && !errors.Is(err, unix.ENOTEMPTY) && !errors.Is(err, unix.EEXIST) {
			return fmt.Errorf("remove rootfs mount point: %w", err)
		}
	}
	if err := os.RemoveAll(s.containerDir(containerID)); err != nil {
		return fmt.Errorf("remove writable layer of %s: %w", containerID, err)
	}
	s.gcMu.Lock()
	delete(s.usage, containerID)
	s.gcMu.Unlock()
	return s.gc()
}

// unmount unmounts every mount stacked at target. EINVAL means target is not
// a mount point (never mounted, or the read-only fast path); ENOENT that it
// is gone: both are success for an idempotent remove.
func unmount(target string) error {
	for range 16 {
		err := unix.Unmount(target, unix.UMOUNT_NOFOLLOW)
		switch {
		case err == nil:
			continue
		case errors.Is(err, unix.EINVAL), errors.Is(err, unix.ENOENT):
			return nil
		case errors.Is(err, unix.EBUSY):
			if err := unix.Unmount(target, unix.MNT_DETACH|unix.UMOUNT_NOFOLLOW); err != nil && !errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("detach %s: %w", target, err)
			}
		default:
			return fmt.Errorf("unmount %s: %w", target, err)
		}
	}
	return fmt.Errorf("unmount %s: still mounted after 16 unmounts", target)
}

// overlayExtraOptions turns off overlay features that tie a lower dir to
// one overlay mount: with index=on (a module default on some kernels) a
// layer shared by many containers can fail to mount a second time.
func overlayExtraOptions() string {
	var opts string
	for _, p := range []struct{ param, opt string }{
		{"index", ",index=off"},
		{"metacopy", ",metacopy=off"},
	} {
		raw, err := os.ReadFile("/sys/module/overlay/parameters/" + p.param)
		if err == nil && strings.TrimSpace(string(raw)) == "Y" {
			opts += p.opt
		}
	}
	return opts
}

// fdPaths opens dirs with O_PATH and returns their /proc/self/fd names.
func fdPaths(dirs []string) ([]string, func(), error) {
	fds := make([]int, 0, len(dirs))
	closeAll := func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	out := make([]string, 0, len(dirs))
	for _, d := range dirs {
		fd, err := unix.Open(d, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
		if err != nil {
			closeAll()
			return nil, nil, fmt.Errorf("open layer %s: %w", d, err)
		}
		fds = append(fds, fd)
		out = append(out, fmt.Sprintf("/proc/self/fd/%d", fd))
	}
	return out, closeAll, nil
}
