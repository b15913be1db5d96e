package cri

import (
	"context"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/pkg/container"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// CreateContainer prepares a container in a pod; StartContainer runs it.
func (s *Server) CreateContainer(ctx context.Context, r *runtimeapi.CreateContainerRequest) (*runtimeapi.CreateContainerResponse, error) {
	cfg := r.GetConfig()
	if cfg == nil || cfg.GetMetadata() == nil {
		return nil, invalid("container config must include metadata")
	}
	if cfg.GetImage().GetImage() == "" {
		return nil, invalid("container config must include an image")
	}
	if r.GetPodSandboxId() == "" {
		return nil, invalid("pod_sandbox_id is empty")
	}
	c, err := s.containers.Create(ctx, r.GetPodSandboxId(), containerConfig(cfg))
	if err != nil {
		return nil, err
	}
	return &runtimeapi.CreateContainerResponse{ContainerId: c.ID}, nil
}

func containerConfig(c *runtimeapi.ContainerConfig) container.Config {
	out := container.Config{
		Name:               c.GetMetadata().GetName(),
		Attempt:            c.GetMetadata().GetAttempt(),
		Image:              c.GetImage().GetImage(),
		UserSpecifiedImage: c.GetImage().GetUserSpecifiedImage(),
		Command:            c.GetCommand(),
		Args:               c.GetArgs(),
		WorkingDir:         c.GetWorkingDir(),
		Labels:             c.GetLabels(),
		Annotations:        c.GetAnnotations(),
		LogPath:            c.GetLogPath(),
		Stdin:              c.GetStdin(),
		StdinOnce:          c.GetStdinOnce(),
		Tty:                c.GetTty(),
	}
	if sig := c.GetStopSignal(); sig != runtimeapi.Signal_SIGNAL_RUNTIME_DEFAULT {
		// The enum names are SIGNAL_SIGTERM and so on.
		out.StopSignal = strings.TrimPrefix(sig.String(), "SIGNAL_")
	}
	for _, kv := range c.GetEnvs() {
		out.Envs = append(out.Envs, container.KeyValue{Key: kv.GetKey(), Value: string(kv.GetValue())})
	}
	for _, m := range c.GetMounts() {
		out.Mounts = append(out.Mounts, container.Mount{
			ContainerPath:     m.GetContainerPath(),
			HostPath:          m.GetHostPath(),
			Readonly:          m.GetReadonly(),
			RecursiveReadonly: m.GetRecursiveReadOnly(),
			SelinuxRelabel:    m.GetSelinuxRelabel(),
			Propagation:       container.Propagation(m.GetPropagation()),
			Image:             m.GetImage().GetImage(),
			ImageSubPath:      m.GetImageSubPath(),
			UIDMappings:       idMappings(m.GetUidMappings()),
			GIDMappings:       idMappings(m.GetGidMappings()),
		})
	}
	for _, d := range c.GetCDIDevices() {
		out.CDIDevices = append(out.CDIDevices, d.GetName())
	}
	for _, d := range c.GetDevices() {
		out.Devices = append(out.Devices, container.Device{ContainerPath: d.GetContainerPath(), HostPath: d.GetHostPath(), Permissions: d.GetPermissions()})
	}
	if res := c.GetLinux().GetResources(); res != nil {
		out.Resources = resources(res)
	}
	if sc := c.GetLinux().GetSecurityContext(); sc != nil {
		sec := container.Security{
			Privileged:         sc.GetPrivileged(),
			RunAsUsername:      sc.GetRunAsUsername(),
			SupplementalGroups: sc.GetSupplementalGroups(),
			ReadonlyRootfs:     sc.GetReadonlyRootfs(),
			NoNewPrivs:         sc.GetNoNewPrivs(),
			MaskedPaths:        sc.GetMaskedPaths(),
			ReadonlyPaths:      sc.GetReadonlyPaths(),
			GroupsPolicy:       container.SupplementalGroupsPolicy(sc.GetSupplementalGroupsPolicy()),
			Seccomp:            profile(sc.GetSeccomp()),
			Apparmor:           profile(sc.GetApparmor()),
		}
		if o := sc.GetSelinuxOptions(); o != nil {
			sec.SELinux = &container.SELinux{User: o.GetUser(), Role: o.GetRole(), Type: o.GetType(), Level: o.GetLevel()}
		}
		if v := sc.GetRunAsUser(); v != nil {
			u := v.GetValue()
			sec.RunAsUser = &u
		}
		if v := sc.GetRunAsGroup(); v != nil {
			g := v.GetValue()
			sec.RunAsGroup = &g
		}
		if caps := sc.GetCapabilities(); caps != nil {
			sec.Capabilities = &container.Capabilities{
				Add: caps.GetAddCapabilities(), Drop: caps.GetDropCapabilities(), AddAmbient: caps.GetAddAmbientCapabilities(),
			}
		}
		if ns := sc.GetNamespaceOptions(); ns != nil {
			sec.PIDMode = sandbox.NamespaceMode(ns.GetPid())
			sec.IPCMode = sandbox.NamespaceMode(ns.GetIpc())
			sec.NetworkMode = sandbox.NamespaceMode(ns.GetNetwork())
			sec.TargetID = ns.GetTargetId()
		}
		out.Security = sec
	}
	return out
}

func resources(r *runtimeapi.LinuxContainerResources) *container.Resources {
	out := &container.Resources{
		CPUPeriod:       r.GetCpuPeriod(),
		CPUQuota:        r.GetCpuQuota(),
		CPUShares:       r.GetCpuShares(),
		MemoryLimit:     r.GetMemoryLimitInBytes(),
		OOMScoreAdj:     r.GetOomScoreAdj(),
		CpusetCPUs:      r.GetCpusetCpus(),
		CpusetMems:      r.GetCpusetMems(),
		MemorySwapLimit: r.GetMemorySwapLimitInBytes(),
		Unified:         r.GetUnified(),
	}
	for _, h := range r.GetHugepageLimits() {
		if out.HugepageLimits == nil {
			out.HugepageLimits = map[string]uint64{}
		}
		out.HugepageLimits[h.GetPageSize()] = h.GetLimit()
	}
	return out
}

func profile(p *runtimeapi.SecurityProfile) *container.Profile {
	if p == nil {
		return nil
	}
	return &container.Profile{Type: container.ProfileType(p.GetProfileType()), LocalhostRef: p.GetLocalhostRef()}
}
