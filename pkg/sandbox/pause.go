package sandbox

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"github.com/pod-shim/pod-shim/pkg/image"
	"github.com/pod-shim/pod-shim/pkg/monitor"
	"github.com/pod-shim/pod-shim/pkg/oci"
)

func (m *Manager) startPause(ctx context.Context, sb *Sandbox) error {
	if err := m.writePodFiles(sb); err != nil {
		return err
	}
	if err := m.applyPodResources(sb); err != nil {
		return err
	}
	rootfs, args, err := m.pauseRootfs(ctx, sb)
	if err != nil {
		return err
	}
	spec := m.pauseSpec(sb, rootfs, args)
	bundle := filepath.Join(sb.Dir, "pause")
	if err := oci.WriteBundle(bundle, spec); err != nil {
		return fmt.Errorf("write pause bundle: %w", err)
	}
	rt, err := m.Runtime(sb)
	if err != nil {
		return err
	}
	c, err := m.opts.Monitors.Start(ctx, monitor.StartOptions{
		SandboxID:     sb.ID,
		Dir:           sb.Dir,
		Runtime:       rt.Binary(),
		RuntimeRoot:   rt.Root(),
		SystemdCgroup: rt.SystemdCgroup(),
		Executable:    m.opts.Executable,
		MaxLogLine:    m.opts.MaxLogLine,
		Logger:        m.log,
	})
	if err != nil {
		return fmt.Errorf("start pod monitor: %w", err)
	}
	m.mu.Lock()
	m.monitors[sb.ID] = c
	m.mu.Unlock()
	pid, err := c.Create(ctx, monitor.CreateRequest{ID: sb.ID, Bundle: bundle, Start: true})
	if err != nil {
		return fmt.Errorf("start pause container: %w", err)
	}
	sb.PausePID = pid
	return nil
}

// pauseRootfs is the sandbox image's read-only rootfs when the store has it,
// else the built-in pause: nodes are often offline, and a pod must never
// wait on a pull of pause.
func (m *Manager) pauseRootfs(ctx context.Context, sb *Sandbox) (string, []string, error) {
	if m.opts.SandboxImage != "" && m.opts.Images != nil {
		img, err := m.opts.Images.Get(m.opts.SandboxImage)
		if err == nil {
			target := filepath.Join(sb.Dir, "pause", "rootfs")
			root, err := m.opts.Images.PrepareRootfs(ctx, img.ID, sb.ID, target, true)
			if err != nil {
				return "", nil, fmt.Errorf("pause rootfs: %w", err)
			}
			sb.PauseImage = img.ID
			args := append(append([]string{}, img.Config.Entrypoint...), img.Config.Cmd...)
			if len(args) == 0 {
				args = []string{"/pause"}
			}
			return root, args, nil
		}
		if !errors.Is(err, image.ErrNotFound) {
			return "", nil, err
		}
	}
	root, err := m.builtinPause()
	return root, []string{"/pause"}, err
}

// builtinPause prepares, once per daemon, a read-only rootfs holding only
// the pause binary; every pod's pause runs from it with no mount at all.
func (m *Manager) builtinPause() (string, error) {
	m.pauseOnce.Do(func() {
		src := m.opts.PauseBinary
		if src == "" {
			exe, err := os.Executable()
			if err != nil {
				m.pauseErr = err
				return
			}
			src = filepath.Join(filepath.Dir(exe), "pod-shim-pause")
		}
		data, err := os.ReadFile(src)
		if err != nil {
			m.pauseErr = fmt.Errorf("built-in pause binary (build it with hack/build.sh or set pause_binary): %w", err)
			return
		}
		root := filepath.Join(m.opts.StateDir, "pause-rootfs")
		for _, d := range []string{"proc", "dev", "sys", "etc"} {
			if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
				m.pauseErr = err
				return
			}
		}
		tmp := filepath.Join(root, ".pause.tmp")
		if err := os.WriteFile(tmp, data, 0o755); err != nil {
			m.pauseErr = err
			return
		}
		if err := os.Rename(tmp, filepath.Join(root, "pause")); err != nil {
			m.pauseErr = err
			return
		}
		m.builtinRoot = root
	})
	return m.builtinRoot, m.pauseErr
}

func (m *Manager) pauseSpec(sb *Sandbox, rootfs string, args []string) *specs.Spec {
	s := oci.DefaultSpec(sb.ID)
	s.Root = &specs.Root{Path: rootfs, Readonly: true}
	s.Process.Args = args
	s.Process.Cwd = "/"
	// pause needs no privileges at all.
	s.Process.Capabilities = &specs.LinuxCapabilities{}
	s.Process.NoNewPrivileges = true
	s.Process.User = specs.User{UID: 65535, GID: 65535}
	// Set, never inherited: the daemon's own score (-999) is not pause's.
	adj := pauseOOMScore(ownOOMScoreAdj())
	s.Process.OOMScoreAdj = &adj
	s.Hostname = sb.Config.Hostname
	// The pause process needs no /dev/pts, /dev/mqueue or cgroupfs: fewer
	// mounts make runc faster on every pod start.
	s.Mounts = []specs.Mount{
		{Destination: "/proc", Type: "proc", Source: "proc", Options: []string{"nosuid", "noexec", "nodev"}},
		{Destination: "/dev", Type: "tmpfs", Source: "tmpfs", Options: []string{"nosuid", "strictatime", "mode=755", "size=65536k"}},
		{Destination: "/sys", Type: "sysfs", Source: "sysfs", Options: []string{"nosuid", "noexec", "nodev", "ro"}},
	}
	if sb.HostNetwork() {
		oci.RemoveNamespace(s, specs.NetworkNamespace)
		oci.RemoveNamespace(s, specs.UTSNamespace)
		s.Hostname = ""
	} else {
		oci.SetNamespace(s, specs.NetworkNamespace, sb.NetNSPath)
	}
	if sb.Config.Namespaces.PID == ModeNode {
		oci.RemoveNamespace(s, specs.PIDNamespace)
	}
	if sb.Config.Namespaces.IPC == ModeNode {
		oci.RemoveNamespace(s, specs.IPCNamespace)
	}
	s.Linux.CgroupsPath = sb.CgroupPath
	if len(sb.Config.Sysctls) > 0 {
		s.Linux.Sysctl = sb.Config.Sysctls
	}
	userNSPauseSpec(s, sb)
	return s
}
