package sandbox

import (
	"fmt"
	"os"
	"strings"

	"golang.org/x/sys/unix"
)

// writePodFiles writes the hostname, resolv.conf and a provisional hosts
// file, and mounts the pod's /dev/shm.
func (m *Manager) writePodFiles(sb *Sandbox) error {
	hostname := sb.Config.Hostname
	if sb.HostNetwork() || hostname == "" {
		h, err := os.Hostname()
		if err != nil {
			return err
		}
		// A host-network pod shares the node's UTS namespace, so the
		// kernel says the node's name; the file must not say otherwise.
		if hostname == "" || sb.HostNetwork() {
			hostname = h
		}
	}
	if err := os.WriteFile(sb.HostnamePath(), []byte(hostname+"\n"), 0o644); err != nil {
		return fmt.Errorf("write hostname: %w", err)
	}
	if err := os.WriteFile(sb.ResolvConfPath(), resolvConf(sb.Config.DNS), 0o644); err != nil {
		return fmt.Errorf("write resolv.conf: %w", err)
	}
	if err := m.writeHosts(sb); err != nil {
		return err
	}
	if sb.Config.Namespaces.IPC != ModeNode {
		if err := os.MkdirAll(sb.ShmPath(), 0o755); err != nil {
			return err
		}
		if err := unix.Mount("shm", sb.ShmPath(), "tmpfs", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, "mode=1777,size=65536k"); err != nil {
			return fmt.Errorf("mount pod shm: %w", err)
		}
	}
	return nil
}

func resolvConf(dns *DNS) []byte {
	if dns == nil || (len(dns.Servers) == 0 && len(dns.Searches) == 0 && len(dns.Options) == 0) {
		if data, err := os.ReadFile("/etc/resolv.conf"); err == nil {
			return data
		}
		return nil
	}
	var b strings.Builder
	if len(dns.Searches) > 0 {
		b.WriteString("search " + strings.Join(dns.Searches, " ") + "\n")
	}
	for _, s := range dns.Servers {
		b.WriteString("nameserver " + s + "\n")
	}
	if len(dns.Options) > 0 {
		b.WriteString("options " + strings.Join(dns.Options, " ") + "\n")
	}
	return []byte(b.String())
}

// writeHosts writes /etc/hosts for the pod: the host's for host-network
// pods, else localhost entries plus the pod IP and hostname once known.
func (m *Manager) writeHosts(sb *Sandbox) error {
	var data []byte
	if sb.HostNetwork() {
		d, err := os.ReadFile("/etc/hosts")
		if err != nil {
			return fmt.Errorf("read host /etc/hosts: %w", err)
		}
		data = d
	} else {
		var b strings.Builder
		b.WriteString("127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\nfe00::0\tip6-localnet\nfe00::0\tip6-mcastprefix\nfe00::1\tip6-allnodes\nfe00::2\tip6-allrouters\n")
		if ip := sb.IP(); ip != "" && sb.Config.Hostname != "" {
			names := sb.Config.Hostname
			if short, _, ok := strings.Cut(names, "."); ok {
				names += "\t" + short
			}
			b.WriteString(ip + "\t" + names + "\n")
		}
		data = []byte(b.String())
	}
	tmp := sb.HostsPath() + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		return fmt.Errorf("write hosts: %w", err)
	}
	// Rename would replace the inode containers may have bind-mounted;
	// the pod has no container yet at Run, so it is safe here.
	return os.Rename(tmp, sb.HostsPath())
}
