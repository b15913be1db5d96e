package container

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	securejoin "github.com/cyphar/filepath-securejoin"
	"github.com/moby/sys/mountinfo"
	"github.com/moby/sys/user"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/pod-shim/pod-shim/pkg/image"
	"github.com/pod-shim/pod-shim/pkg/oci"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// specInput is everything a container's OCI spec is built from.
type specInput struct {
	ID           string
	Config       *Config
	Sandbox      *sandbox.Sandbox
	Image        *image.Image
	Rootfs       string // the container's rootfs on the host (for /etc/passwd)
	CgroupDriver string
	// MinOOMScoreAdj is the lowest oom_score_adj the daemon may give, its
	// own: the kernel refuses lower without CAP_SYS_RESOURCE, and runc then
	// fails with an unhelpful EOF.
	MinOOMScoreAdj int
	// ImageVolumes maps a mount's container path to the read-only rootfs
	// of its image, for mounts with Image set.
	ImageVolumes map[string]string
	// TargetPID is the init pid of the container whose pid namespace a
	// TARGET pid mode joins.
	TargetPID        int
	NoSwapAccounting bool
	// NoHugetlb: the host has no hugetlb controller (hugetlbAvailable).
	NoHugetlb bool
	Log       *slog.Logger // nil discards
	// MountInfo is the daemon's /proc/self/mountinfo, to check that the
	// sources of rslave and rshared mounts propagate; "" skips the check.
	MountInfo []*mountinfo.Info
}

// buildSpec turns a container config into an OCI spec joined to its pod.
func buildSpec(in specInput) (*specs.Spec, error) {
	c := in.Config
	sb := in.Sandbox
	s := oci.DefaultSpec(in.ID)
	s.Root = &specs.Root{Path: in.Rootfs, Readonly: c.Security.ReadonlyRootfs}

	args := commandLine(c, in.Image)
	if len(args) == 0 {
		return nil, fmt.Errorf("no command specified and the image has no entrypoint or cmd: %w", ErrInvalid)
	}
	s.Process.Args = args
	s.Process.Env = environment(c, in.Image, sb.Config.Hostname)
	s.Process.Cwd = c.WorkingDir
	if s.Process.Cwd == "" {
		s.Process.Cwd = in.Image.Config.WorkingDir
	}
	if s.Process.Cwd == "" {
		s.Process.Cwd = "/"
	}
	s.Process.Terminal = c.Tty
	s.Process.NoNewPrivileges = c.Security.NoNewPrivs

	u, err := resolveUser(in.Rootfs, c.Security, in.Image.Config.User)
	if err != nil {
		return nil, err
	}
	s.Process.User = u

	if err := applyCapabilities(s, c.Security); err != nil {
		return nil, err
	}
	if c.Security.Privileged {
		applyPrivileged(s)
	} else {
		if len(c.Security.MaskedPaths) > 0 {
			s.Linux.MaskedPaths = c.Security.MaskedPaths
		}
		if len(c.Security.ReadonlyPaths) > 0 {
			s.Linux.ReadonlyPaths = c.Security.ReadonlyPaths
		}
	}

	if err := applyDevices(s, c.Devices); err != nil {
		return nil, err
	}
	if err := applySeccomp(s, c.Security); err != nil {
		return nil, err
	}
	if err := applyLSM(s, c.Security, in.Log); err != nil {
		return nil, err
	}

	mounts, err := podMounts(c, sb, in.ImageVolumes)
	if err != nil {
		return nil, err
	}
	s.Mounts = append(s.Mounts, mounts...)
	if err := applyPropagation(s, c.Mounts, in.MountInfo); err != nil {
		return nil, err
	}
	joinPod(s, c.Security, sb)
	applyUserNS(s, c, sb, in.ImageVolumes)
	if c.Security.PIDMode == sandbox.ModeTarget {
		if in.TargetPID <= 0 {
			return nil, fmt.Errorf("pid namespace target %q is not a running container: %w", c.Security.TargetID, ErrInvalid)
		}
		oci.SetNamespace(s, specs.PIDNamespace, fmt.Sprintf("/proc/%d/ns/pid", in.TargetPID))
	}
	s.Linux.CgroupsPath = oci.CgroupsPath(in.CgroupDriver, sb.Config.CgroupParent, in.ID)
	applyResources(s, c.Resources, in.MinOOMScoreAdj)
	if s.Process.OOMScoreAdj == nil { // nothing asked: 0, never the daemon's own
		adj := max(0, in.MinOOMScoreAdj)
		s.Process.OOMScoreAdj = &adj
	}
	if in.NoSwapAccounting && s.Linux.Resources.Memory != nil {
		// The kubelet sets swap = limit even where the kernel accounts no
		// swap; runc would fail on the missing memsw file (containerd drops it too).
		s.Linux.Resources.Memory.Swap = nil
	}
	if in.NoHugetlb {
		s.Linux.Resources.HugepageLimits = nil
	}
	if len(c.Security.Sysctls) > 0 {
		s.Linux.Sysctl = c.Security.Sysctls
	}
	return s, nil
}

// commandLine follows the kubelet's rules: command replaces the image's
// entrypoint (and drops its cmd), args replace the image's cmd.
func commandLine(c *Config, img *image.Image) []string {
	if len(c.Command) > 0 {
		return append(append([]string{}, c.Command...), c.Args...)
	}
	args := append([]string{}, img.Config.Entrypoint...)
	if len(c.Args) > 0 {
		return append(args, c.Args...)
	}
	return append(args, img.Config.Cmd...)
}

// environment is the image's env with the container's over it, by key.
func environment(c *Config, img *image.Image, hostname string) []string {
	var keys []string
	vals := map[string]string{}
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			keys = append(keys, k)
		}
		vals[k] = v
	}
	for _, kv := range img.Config.Env {
		k, v, _ := strings.Cut(kv, "=")
		set(k, v)
	}
	if _, ok := vals["PATH"]; !ok {
		set("PATH", strings.TrimPrefix(oci.DefaultPath, "PATH="))
	}
	if hostname != "" {
		set("HOSTNAME", hostname)
	}
	for _, kv := range c.Envs {
		set(kv.Key, kv.Value)
	}
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k+"="+vals[k])
	}
	return out
}

// resolveUser picks uid/gid/groups as containerd does: run_as_user or
// run_as_username, else the image's USER, looked up in the container's own
// /etc/passwd and /etc/group; run_as_group replaces the group. The primary
// gid comes first in the additional gids; under the Merge policy (the
// default) the user's /etc/group memberships follow, even when the group was
// given explicitly; then the pod's supplemental groups.
func resolveUser(rootfs string, sec Security, imageUser string) (specs.User, error) {
	userPart, groupPart, _ := strings.Cut(imageUser, ":")
	switch {
	case sec.RunAsUser != nil:
		userPart, groupPart = strconv.FormatInt(*sec.RunAsUser, 10), ""
	case sec.RunAsUsername != "":
		userPart, groupPart = sec.RunAsUsername, ""
	}
	if sec.RunAsGroup != nil {
		groupPart = strconv.FormatInt(*sec.RunAsGroup, 10)
	}
	if userPart == "" {
		userPart = "0"
	}
	spec := userPart
	if groupPart != "" {
		spec += ":" + groupPart
	}
	passwd, err := readUserDB(rootfs, "passwd")
	if err != nil {
		return specs.User{}, err
	}
	group, err := readUserDB(rootfs, "group")
	if err != nil {
		return specs.User{}, err
	}
	// user.GetExecUser takes a nil reader as "no such file".
	readers := func() (io.Reader, io.Reader) {
		var p, g io.Reader
		if passwd != nil {
			p = bytes.NewReader(passwd)
		}
		if group != nil {
			g = bytes.NewReader(group)
		}
		return p, g
	}
	defaults := &user.ExecUser{Uid: 0, Gid: 0, Home: "/"}
	p, g := readers()
	eu, err := user.GetExecUser(spec, defaults, p, g)
	if err != nil {
		if sec.RunAsUsername != "" {
			return specs.User{}, fmt.Errorf("user %q not found in the image: %w", sec.RunAsUsername, ErrInvalid)
		}
		return specs.User{}, fmt.Errorf("resolve user %q: %w", spec, err)
	}
	u := specs.User{UID: uint32(eu.Uid), GID: uint32(eu.Gid)}
	seen := map[uint32]bool{}
	add := func(g uint32) {
		if !seen[g] {
			seen[g] = true
			u.AdditionalGids = append(u.AdditionalGids, g)
		}
	}
	add(u.GID)
	if sec.GroupsPolicy != GroupsStrict {
		sgids := eu.Sgids
		if groupPart != "" {
			// An explicit group makes GetExecUserPath skip /etc/group:
			// look the user's memberships up on their own.
			p, g := readers()
			if byUser, err := user.GetExecUser(userPart, defaults, p, g); err == nil {
				sgids = byUser.Sgids
			}
		}
		for _, g := range sgids {
			add(uint32(g))
		}
	}
	for _, g := range sec.SupplementalGroups {
		add(uint32(g))
	}
	return u, nil
}

func applyCapabilities(s *specs.Spec, sec Security) error {
	if sec.Privileged {
		all := allCapabilities()
		s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: all, Effective: all, Permitted: all}
		return nil
	}
	caps := map[string]bool{}
	for _, c := range oci.DefaultCapabilities {
		caps[c] = true
	}
	norm := func(c string) string {
		c = strings.ToUpper(c)
		if !strings.HasPrefix(c, "CAP_") {
			c = "CAP_" + c
		}
		return c
	}
	if sec.Capabilities != nil {
		for _, c := range sec.Capabilities.Add {
			if strings.EqualFold(c, "ALL") {
				for _, a := range allCapabilities() {
					caps[a] = true
				}
				continue
			}
			caps[norm(c)] = true
		}
		for _, c := range sec.Capabilities.Drop {
			if strings.EqualFold(c, "ALL") {
				caps = map[string]bool{}
				// Adds win over drop ALL, as in containerd.
				for _, a := range sec.Capabilities.Add {
					if !strings.EqualFold(a, "ALL") {
						caps[norm(a)] = true
					}
				}
				continue
			}
			delete(caps, norm(c))
		}
	}
	list := make([]string, 0, len(caps))
	for c := range caps {
		list = append(list, c)
	}
	sort.Strings(list)
	s.Process.Capabilities = &specs.LinuxCapabilities{Bounding: list, Effective: list, Permitted: list}
	if sec.Capabilities != nil && len(sec.Capabilities.AddAmbient) > 0 {
		for _, c := range sec.Capabilities.AddAmbient {
			c = norm(c)
			s.Process.Capabilities.Ambient = append(s.Process.Capabilities.Ambient, c)
			s.Process.Capabilities.Inheritable = append(s.Process.Capabilities.Inheritable, c)
		}
	}
	return nil
}

// allCapabilities lists every capability the running kernel knows.
func allCapabilities() []string {
	names := []string{"CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF", "CHECKPOINT_RESTORE"}
	last := len(names) - 1
	if data, err := os.ReadFile("/proc/sys/kernel/cap_last_cap"); err == nil {
		if n, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil && n < last {
			last = n
		}
	}
	// Only what the daemon itself holds can be given (as containerd's
	// cap.Current): on a host that withholds e.g. CAP_SYS_RESOURCE runc
	// would otherwise fail with "unable to apply caps".
	bnd := ^uint64(0)
	if data, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, line := range strings.Split(string(data), "\n") {
			if v, ok := strings.CutPrefix(line, "CapBnd:"); ok {
				if n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64); err == nil {
					bnd = n
				}
			}
		}
	}
	out := make([]string, 0, last+1)
	for i, n := range names[:last+1] {
		if bnd&(1<<uint(i)) != 0 {
			out = append(out, "CAP_"+n)
		}
	}
	return out
}

// podMounts are the container's own mounts plus the pod files it shares,
// unless the kubelet already mounts something at those paths.
func podMounts(c *Config, sb *sandbox.Sandbox, imageVolumes map[string]string) ([]specs.Mount, error) {
	var out []specs.Mount
	taken := map[string]bool{}
	for _, m := range c.Mounts {
		if m.ContainerPath == "" || !filepath.IsAbs(m.ContainerPath) {
			return nil, fmt.Errorf("mount container_path %q must be absolute: %w", m.ContainerPath, ErrInvalid)
		}
		if m.Image != "" {
			src, ok := imageVolumes[m.ContainerPath]
			if !ok {
				return nil, fmt.Errorf("image volume %s (%s) was not prepared: %w", m.ContainerPath, m.Image, ErrInvalid)
			}
			if m.ImageSubPath != "" {
				p, err := securejoin.SecureJoin(src, m.ImageSubPath)
				if err != nil {
					return nil, fmt.Errorf("image volume sub path %q: %w", m.ImageSubPath, err)
				}
				if _, err := os.Stat(p); err != nil {
					return nil, fmt.Errorf("image volume sub path %q: %w", m.ImageSubPath, ErrInvalid)
				}
				src = p
			}
			taken[filepath.Clean(m.ContainerPath)] = true
			// An image volume is always read-only, as the KEP says.
			out = append(out, specs.Mount{Destination: m.ContainerPath, Type: "bind", Source: src,
				Options: []string{"rbind", "rprivate", "ro", "nosuid", "nodev"}})
			continue
		}
		if m.HostPath == "" {
			return nil, fmt.Errorf("mount %s has no host_path: %w", m.ContainerPath, ErrInvalid)
		}
		// Like containerd: a missing host path becomes an empty dir, which
		// is what the kubelet's emptyDir and hostPath DirectoryOrCreate want.
		if _, err := os.Stat(m.HostPath); os.IsNotExist(err) {
			if err := os.MkdirAll(m.HostPath, 0o755); err != nil {
				return nil, fmt.Errorf("create mount source %s: %w", m.HostPath, err)
			}
		}
		opts := []string{"rbind"}
		switch m.Propagation {
		case PropagationHostToContainer:
			opts = append(opts, "rslave")
		case PropagationBidirectional:
			opts = append(opts, "rshared")
		default:
			opts = append(opts, "rprivate")
		}
		if m.Readonly {
			opts = append(opts, "ro")
		} else {
			opts = append(opts, "rw")
		}
		if m.RecursiveReadonly {
			opts = append(opts, "rro")
		}
		taken[filepath.Clean(m.ContainerPath)] = true
		out = append(out, specs.Mount{Destination: m.ContainerPath, Type: "bind", Source: m.HostPath, Options: opts})
	}
	ro := c.Security.ReadonlyRootfs
	podFile := func(dst, src string) {
		if taken[dst] {
			return
		}
		opts := []string{"rbind", "rprivate"}
		if ro {
			opts = append(opts, "ro")
		}
		out = append(out, specs.Mount{Destination: dst, Type: "bind", Source: src, Options: opts})
	}
	podFile("/etc/hostname", sb.HostnamePath())
	podFile("/etc/hosts", sb.HostsPath())
	podFile("/etc/resolv.conf", sb.ResolvConfPath())
	if !taken["/dev/shm"] {
		src := sb.ShmPath()
		if sb.Config.Namespaces.IPC == sandbox.ModeNode {
			src = "/dev/shm"
		}
		out = append(out, specs.Mount{Destination: "/dev/shm", Type: "bind", Source: src, Options: []string{"rbind", "rprivate", "rw"}})
	}
	// Parents before children, so a mount is never hidden by its parent's.
	sort.SliceStable(out, func(i, j int) bool {
		return strings.Count(filepath.Clean(out[i].Destination), "/") < strings.Count(filepath.Clean(out[j].Destination), "/")
	})
	return out, nil
}

// joinPod puts the container in its pod's namespaces, held by pause.
func joinPod(s *specs.Spec, sec Security, sb *sandbox.Sandbox) {
	pause := func(ns string) string { return fmt.Sprintf("/proc/%d/ns/%s", sb.PausePID, ns) }
	if sb.HostNetwork() {
		oci.RemoveNamespace(s, specs.NetworkNamespace)
		oci.RemoveNamespace(s, specs.UTSNamespace)
	} else {
		oci.SetNamespace(s, specs.NetworkNamespace, sb.NetNSPath)
		oci.SetNamespace(s, specs.UTSNamespace, pause("uts"))
	}
	switch {
	case sec.IPCMode == sandbox.ModeNode || sb.Config.Namespaces.IPC == sandbox.ModeNode:
		oci.RemoveNamespace(s, specs.IPCNamespace)
	default:
		oci.SetNamespace(s, specs.IPCNamespace, pause("ipc"))
	}
	switch sec.PIDMode {
	case sandbox.ModeNode:
		oci.RemoveNamespace(s, specs.PIDNamespace)
	case sandbox.ModeContainer, sandbox.ModeTarget:
		oci.SetNamespace(s, specs.PIDNamespace, "")
	default:
		if sb.Config.Namespaces.PID == sandbox.ModeNode {
			oci.RemoveNamespace(s, specs.PIDNamespace)
		} else {
			oci.SetNamespace(s, specs.PIDNamespace, pause("pid"))
		}
	}
}

func applyResources(s *specs.Spec, r *Resources, minOOM int) {
	if r == nil {
		return
	}
	lr := s.Linux.Resources
	cpu := &specs.LinuxCPU{}
	set := false
	if r.CPUShares > 0 {
		v := uint64(r.CPUShares)
		cpu.Shares = &v
		set = true
	}
	if r.CPUQuota != 0 {
		v := r.CPUQuota
		cpu.Quota = &v
		set = true
	}
	if r.CPUPeriod > 0 {
		v := uint64(r.CPUPeriod)
		cpu.Period = &v
		set = true
	}
	if r.CpusetCPUs != "" {
		cpu.Cpus = r.CpusetCPUs
		set = true
	}
	if r.CpusetMems != "" {
		cpu.Mems = r.CpusetMems
		set = true
	}
	if set {
		lr.CPU = cpu
	}
	if r.MemoryLimit > 0 {
		v := r.MemoryLimit
		lr.Memory = &specs.LinuxMemory{Limit: &v}
		if r.MemorySwapLimit > 0 {
			sw := r.MemorySwapLimit
			lr.Memory.Swap = &sw
		}
	}
	if len(r.Unified) > 0 {
		lr.Unified = r.Unified
	}
	for _, h := range r.Hugepages() {
		lr.HugepageLimits = append(lr.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: h.PageSize, Limit: h.Limit})
	}
	// Always set, 0 included: left out, runc would pass on the daemon's
	// own score (-999 under its unit) and the container would be the
	// last thing the kernel kills. 1000 is the kernel's maximum.
	adj := min(max(int(r.OOMScoreAdj), minOOM), 1000)
	s.Process.OOMScoreAdj = &adj
}

func securejoinPath(root, p string) (string, error) { return securejoin.SecureJoin(root, p) }
