package nri

import (
	"github.com/containerd/nri/pkg/api"
	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/pod-shim/pod-shim/pkg/container"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

func podOf(sb *sandbox.Sandbox) *api.PodSandbox {
	p := &api.PodSandbox{
		Id: sb.ID, Name: sb.Config.Name, Uid: sb.Config.UID, Namespace: sb.Config.Namespace,
		Labels: sb.Config.Labels, Annotations: sb.Config.Annotations,
		RuntimeHandler: sb.Config.RuntimeHandler, Pid: uint32(sb.PausePID),
		Linux: &api.LinuxPodSandbox{CgroupParent: sb.Config.CgroupParent, CgroupsPath: sb.CgroupPath},
	}
	if sb.Network != nil {
		p.Ips = sb.Network.IPs
	}
	if sb.NetNSPath != "" {
		p.Linux.Namespaces = []*api.LinuxNamespace{{Type: string(specs.NetworkNamespace), Path: sb.NetNSPath}}
	}
	if r := sb.Config.Resources; r != nil {
		p.Linux.PodResources = resourcesToNRI(&container.Resources{
			CPUPeriod: r.CPUPeriod, CPUQuota: r.CPUQuota, CPUShares: r.CPUShares, MemoryLimit: r.MemoryLimit,
		})
	}
	return p
}

func stateOf(s container.State) api.ContainerState {
	switch s {
	case container.StateCreated, container.StateStarting:
		return api.ContainerState_CONTAINER_CREATED
	case container.StateRunning:
		return api.ContainerState_CONTAINER_RUNNING
	case container.StateExited:
		return api.ContainerState_CONTAINER_STOPPED
	}
	return api.ContainerState_CONTAINER_UNKNOWN
}

// containerOf describes a container to plugins; spec, when known, gives
// what it will run with (args, env, mounts, resources, …).
func containerOf(c *container.Container, spec *specs.Spec) *api.Container {
	x := &api.Container{
		Id: c.ID, PodSandboxId: c.SandboxID, Name: c.Config.Name, State: stateOf(c.State),
		Labels: c.Config.Labels, Annotations: c.Config.Annotations,
		Pid: uint32(c.Pid), ExitCode: c.ExitCode, StatusReason: c.Reason, StatusMessage: c.Message,
	}
	if !c.CreatedAt.IsZero() {
		x.CreatedAt = c.CreatedAt.UnixNano()
	}
	if !c.StartedAt.IsZero() {
		x.StartedAt = c.StartedAt.UnixNano()
	}
	if !c.FinishedAt.IsZero() {
		x.FinishedAt = c.FinishedAt.UnixNano()
	}
	if spec == nil {
		x.Args = append(append([]string{}, c.Config.Command...), c.Config.Args...)
		for _, e := range c.Config.Envs {
			x.Env = append(x.Env, e.Key+"="+e.Value)
		}
		return x
	}
	if spec.Process != nil {
		x.Args = spec.Process.Args
		x.Env = spec.Process.Env
		x.Rlimits = rlimitsOf(spec.Process.Rlimits)
	}
	if spec.Annotations != nil {
		x.Annotations = spec.Annotations
	}
	x.Mounts = api.FromOCIMounts(spec.Mounts)
	x.Hooks = api.FromOCIHooks(spec.Hooks)
	if l := spec.Linux; l != nil {
		x.Linux = &api.LinuxContainer{
			Namespaces:  api.FromOCILinuxNamespaces(l.Namespaces),
			Devices:     api.FromOCILinuxDevices(l.Devices),
			Resources:   api.FromOCILinuxResources(l.Resources, spec.Annotations),
			CgroupsPath: l.CgroupsPath,
			Sysctl:      l.Sysctl,
		}
		if spec.Process != nil && spec.Process.OOMScoreAdj != nil {
			x.Linux.OomScoreAdj = api.Int(*spec.Process.OOMScoreAdj)
		}
	}
	return x
}

func rlimitsOf(rs []specs.POSIXRlimit) []*api.POSIXRlimit {
	var out []*api.POSIXRlimit
	for _, r := range rs {
		out = append(out, &api.POSIXRlimit{Type: r.Type, Hard: r.Hard, Soft: r.Soft})
	}
	return out
}

func resourcesToNRI(r *container.Resources) *api.LinuxResources {
	if r == nil {
		return nil
	}
	spec := &specs.LinuxResources{
		CPU:    &specs.LinuxCPU{Cpus: r.CpusetCPUs, Mems: r.CpusetMems},
		Memory: &specs.LinuxMemory{},
	}
	if r.CPUShares != 0 {
		v := uint64(r.CPUShares)
		spec.CPU.Shares = &v
	}
	if r.CPUQuota != 0 {
		spec.CPU.Quota = &r.CPUQuota
	}
	if r.CPUPeriod != 0 {
		v := uint64(r.CPUPeriod)
		spec.CPU.Period = &v
	}
	if r.MemoryLimit != 0 {
		spec.Memory.Limit = &r.MemoryLimit
	}
	if r.MemorySwapLimit != 0 {
		spec.Memory.Swap = &r.MemorySwapLimit
	}
	for size, limit := range r.HugepageLimits {
		spec.HugepageLimits = append(spec.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: size, Limit: limit})
	}
	spec.Unified = r.Unified
	return api.FromOCILinuxResources(spec, nil)
}

// resourcesFromNRI is base with what x sets.
func resourcesFromNRI(x *api.LinuxResources, base *container.Resources) *container.Resources {
	r := &container.Resources{}
	if base != nil {
		*r = *base
	}
	if x == nil {
		return r
	}
	if c := x.GetCpu(); c != nil {
		if v := c.GetShares(); v != nil {
			r.CPUShares = int64(v.GetValue())
		}
		if v := c.GetQuota(); v != nil {
			r.CPUQuota = v.GetValue()
		}
		if v := c.GetPeriod(); v != nil {
			r.CPUPeriod = int64(v.GetValue())
		}
		if c.GetCpus() != "" {
			r.CpusetCPUs = c.GetCpus()
		}
		if c.GetMems() != "" {
			r.CpusetMems = c.GetMems()
		}
	}
	if m := x.GetMemory(); m != nil {
		if v := m.GetLimit(); v != nil {
			r.MemoryLimit = v.GetValue()
		}
		if v := m.GetSwap(); v != nil {
			r.MemorySwapLimit = v.GetValue()
		}
	}
	if hp := x.GetHugepageLimits(); len(hp) > 0 {
		r.HugepageLimits = map[string]uint64{}
		for _, h := range hp {
			r.HugepageLimits[h.GetPageSize()] = h.GetLimit()
		}
	}
	if u := x.GetUnified(); len(u) > 0 {
		r.Unified = u
	}
	return r
}
