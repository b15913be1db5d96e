package container

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/opencontainers/cgroups"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"tags.cncf.io/container-device-interface/pkg/cdi"

	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// imageVolumeID is the rootfs id pkg/image knows the i-th mount's image
// volume by. Derived, not stored, so that undoing a create the daemon
// crashed in releases them too.
func imageVolumeID(containerID string, i int) string { return fmt.Sprintf("%s-iv%d", containerID, i) }

// prepareImageVolumes mounts each image volume's image read-only and
// returns container path → rootfs.
func (m *Manager) prepareImageVolumes(ctx context.Context, c *Container) (map[string]string, error) {
	var out map[string]string
	for i, mnt := range c.Config.Mounts {
		if mnt.Image == "" {
			continue
		}
		img, err := m.images.Get(mnt.Image)
		if err != nil {
			return nil, fmt.Errorf("image volume %s: image %q: %w", mnt.ContainerPath, mnt.Image, err)
		}
		target := filepath.Join(c.Bundle, fmt.Sprintf("iv%d", i))
		if err := os.MkdirAll(target, 0o700); err != nil {
			return nil, err
		}
		root, err := m.images.PrepareRootfs(ctx, img.ID, imageVolumeID(c.ID, i), target, true)
		if err != nil {
			return nil, fmt.Errorf("image volume %s: %w", mnt.ContainerPath, err)
		}
		c.Config.Mounts[i].ImageRef = img.ID
		if out == nil {
			out = map[string]string{}
		}
		out[mnt.ContainerPath] = root
	}
	return out, nil
}

func (m *Manager) releaseImageVolumes(c *Container) error {
	var errs []error
	for i, mnt := range c.Config.Mounts {
		if mnt.Image == "" {
			continue
		}
		if err := m.images.RemoveRootfs(imageVolumeID(c.ID, i), filepath.Join(c.Bundle, fmt.Sprintf("iv%d", i))); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// targetPID is the init pid of the container a TARGET pid namespace joins:
// a running container of the same pod.
func (m *Manager) targetPID(sb *sandbox.Sandbox, target string) (int, error) {
	if target == "" {
		return 0, fmt.Errorf("pid namespace mode TARGET needs target_id: %w", ErrInvalid)
	}
	t, err := m.Get(target)
	if err != nil {
		return 0, fmt.Errorf("pid namespace target %q: %w", target, err)
	}
	if t.SandboxID != sb.ID {
		return 0, fmt.Errorf("pid namespace target %s is in another pod: %w", t.ID, ErrInvalid)
	}
	if t.State != StateRunning || t.Pid <= 0 {
		return 0, fmt.Errorf("pid namespace target %s is %s, not running: %w", t.ID, t.State, ErrInvalid)
	}
	return t.Pid, nil
}

// injectCDI applies the CDI devices the kubelet asked for, by field or by
// the cdi.k8s.io annotations device plugins still use. The registry is
// built on first use and rescanned per request instead of watched: no
// goroutine or inotify per daemon for a feature most nodes never use.
func (m *Manager) injectCDI(s *specs.Spec, c *Config) error {
	devices := append([]string(nil), c.CDIDevices...)
	if _, annotated, err := cdi.ParseAnnotations(c.Annotations); err != nil {
		return fmt.Errorf("CDI annotations: %v: %w", err, ErrInvalid)
	} else {
		devices = append(devices, annotated...)
	}
	if len(devices) == 0 {
		return nil
	}
	reg, err := m.cdiRegistry()
	if err != nil {
		return err
	}
	if err := reg.Refresh(); err != nil {
		// Errors in unrelated spec files must not block this device.
		m.log.Warn("CDI spec refresh", "error", err)
	}
	if unresolved, err := reg.InjectDevices(s, devices...); err != nil {
		if len(unresolved) > 0 {
			return fmt.Errorf("CDI devices %s not found: %v: %w", strings.Join(unresolved, ", "), err, ErrInvalid)
		}
		return fmt.Errorf("inject CDI devices: %w", err)
	}
	return nil
}

func (m *Manager) cdiRegistry() (*cdi.Cache, error) {
	m.cdiOnce.Do(func() {
		opts := []cdi.Option{cdi.WithAutoRefresh(false)}
		if len(m.opts.CDISpecDirs) > 0 {
			opts = append(opts, cdi.WithSpecDirs(m.opts.CDISpecDirs...))
		}
		m.cdi, m.cdiErr = cdi.NewCache(opts...)
	})
	if m.cdiErr != nil {
		return nil, fmt.Errorf("CDI registry: %w", m.cdiErr)
	}
	return m.cdi, nil
}

// swapAccounting says whether the kernel accounts swap per cgroup, where
// swap limits can be set at all.
var swapAccounting = sync.OnceValue(func() bool {
	if !cgroups.IsCgroup2UnifiedMode() {
		_, err := os.Stat("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes")
		return err == nil
	}
	// memory.swap.max exists only in child cgroups, not the root.
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range ents {
		if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", e.Name(), "memory.swap.max")); err == nil {
			return true
		}
	}
	return false
})
