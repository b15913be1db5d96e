package container

import (
	"fmt"
	"regexp"
	"strings"

	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// validate rejects configs that containerd and CRI-O reject at
// CreateContainer, before any rootfs or record is made, so the kubelet sees
// InvalidArgument instead of a container that fails later or silently does
// something else than asked.
func validate(cfg *Config) error {
	if err := validateResources(cfg.Resources); err != nil {
		return err
	}
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

// validateInSandbox rejects what a container may not be in its pod.
func validateInSandbox(cfg *Config, sb *sandbox.Sandbox) error {
	// The pod's own security context is what admission (Pod Security)
	// looked at; a privileged container must not slip into a pod that
	// did not ask for privilege. containerd says the same words.
	if cfg.Security.Privileged && !sb.Config.Privileged {
		return fmt.Errorf("no privileged container allowed in sandbox %s: %w", sb.ID, ErrInvalid)
	}
	return nil
}

// Limits on what a request may name as cgroup files. Keys become file
// names under the container's (or pod's) cgroup dir: a "/" or ".." would
// write anywhere in /sys/fs/cgroup or, through it, the host.
var (
	// controller.file[.more], the shape of every cgroup v2 interface file
	// (memory.max, io.bfq.weight, hugetlb.2MB.rsvd.max).
	unifiedKeyRE = regexp.MustCompile(`^[a-z][a-z0-9_]*(\.[A-Za-z0-9_]+)+$`)
	// The kernel names hugetlb files by page size: 64KB, 2MB, 1GB, 16GB.
	hugepageSizeRE = regexp.MustCompile(`^[1-9][0-9]{0,5}(KB|MB|GB)$`)
)

const (
	maxUnifiedKey   = 64
	maxUnifiedValue = 4096
	maxUnifiedKeys  = 128
	maxHugepages    = 16
)

// The cgroup core files that are not limits: writing them would move,
// freeze or kill processes, or change which controllers the subtree has,
// behind the runtime's back.
var forbiddenUnified = map[string]bool{
	"cgroup.procs": true, "cgroup.threads": true, "cgroup.kill": true, "cgroup.freeze": true,
	"cgroup.subtree_control": true, "cgroup.type": true, "cgroup.events": true,
	"cgroup.controllers": true, "cgroup.stat": true, "cgroup.pressure": true,
}

// validateResources checks every name in r that ends up in a cgroup path,
// before anything is written: a bad one is InvalidArgument, and the
// container's or pod's cgroup is left as it was.
func validateResources(r *Resources) error {
	if r == nil {
		return nil
	}
	if len(r.Unified) > maxUnifiedKeys {
		return fmt.Errorf("unified: %d keys, at most %d: %w", len(r.Unified), maxUnifiedKeys, ErrInvalid)
	}
	for k, v := range r.Unified {
		if err := validUnifiedKey(k); err != nil {
			return err
		}
		if len(v) > maxUnifiedValue || strings.ContainsRune(v, 0) {
			return fmt.Errorf("unified %q: value of %d bytes (at most %d, no NUL): %w", k, len(v), maxUnifiedValue, ErrInvalid)
		}
	}
	if len(r.HugepageLimits) > maxHugepages {
		return fmt.Errorf("hugepage_limits: %d sizes, at most %d: %w", len(r.HugepageLimits), maxHugepages, ErrInvalid)
	}
	for size := range r.HugepageLimits {
		if !hugepageSizeRE.MatchString(size) {
			return fmt.Errorf("hugepage_limits: page size %q is not one the kernel names (like 2MB or 1GB): %w", clip(size), ErrInvalid)
		}
	}
	return nil
}

func validUnifiedKey(k string) error {
	if len(k) > maxUnifiedKey || !unifiedKeyRE.MatchString(k) {
		return fmt.Errorf("unified: key %q is not a cgroup file name (controller.file, no / or ..): %w", clip(k), ErrInvalid)
	}
	if forbiddenUnified[k] {
		return fmt.Errorf("unified: key %q is not a resource limit and may not be set: %w", k, ErrInvalid)
	}
	return nil
}

// clip keeps an attacker's megabyte-long name out of error messages and logs.
func clip(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
