package container

import "fmt"

// validate rejects configs that containerd and CRI-O reject at
// CreateContainer, before any rootfs or record is made, so the kubelet sees
// InvalidArgument instead of a container that fails later or silently does
// something else than asked.
func validate(cfg *Config) error {
	sec := cfg.Security
	// A group alone would have to be paired with the image's user, which
	// the pod spec never asked for: containerd refuses it, and so do we.
	// run_as_username with run_as_group is fine.
	if sec.RunAsGroup != nil && sec.RunAsUser == nil && sec.RunAsUsername == "" {
		return fmt.Errorf("user group %d is specified without user: %w", *sec.RunAsGroup, ErrInvalid)
	}
	for _, m := range cfg.Mounts {
		// An image volume is always mounted read-only (KEP-4639); asking
		// for a writable one is refused rather than silently ignored.
		if m.Image != "" && !m.Readonly {
			return fmt.Errorf("mount %s: image volume %s must be read-only: %w", m.ContainerPath, m.Image, ErrInvalid)
		}
		if !m.RecursiveReadonly {
			continue
		}
		// A recursive read-only mount of a writable volume is a
		// contradiction, and propagation would let new, writable
		// submounts appear under it.
		if !m.Readonly {
			return fmt.Errorf("mount %s: recursive read-only mount conflicts with a read-write mount: %w", m.ContainerPath, ErrInvalid)
		}
		if m.Propagation != PropagationPrivate {
			return fmt.Errorf("mount %s: recursive read-only mount needs private propagation: %w", m.ContainerPath, ErrInvalid)
		}
	}
	return nil
}
