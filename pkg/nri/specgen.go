package nri

import (
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// specGen is the part of runtime-tools' generate.Generator that NRI's
// adjustment helpers (pkg/runtime-tools/generate) drive, over a plain
// runtime-spec Spec: it saves the runtime-tools module and its own spec
// defaults, which pod-shim does not use.
type specGen struct{ s *specs.Spec }

func (g specGen) Spec() *specs.Spec { return g.s }

func (g specGen) linux() *specs.Linux {
	if g.s.Linux == nil {
		g.s.Linux = &specs.Linux{}
	}
	return g.s.Linux
}

func (g specGen) res() *specs.LinuxResources {
	l := g.linux()
	if l.Resources == nil {
		l.Resources = &specs.LinuxResources{}
	}
	return l.Resources
}

func (g specGen) cpu() *specs.LinuxCPU {
	r := g.res()
	if r.CPU == nil {
		r.CPU = &specs.LinuxCPU{}
	}
	return r.CPU
}

func (g specGen) mem() *specs.LinuxMemory {
	r := g.res()
	if r.Memory == nil {
		r.Memory = &specs.LinuxMemory{}
	}
	return r.Memory
}

func (g specGen) proc() *specs.Process {
	if g.s.Process == nil {
		g.s.Process = &specs.Process{}
	}
	return g.s.Process
}

func (g specGen) hooks() *specs.Hooks {
	if g.s.Hooks == nil {
		g.s.Hooks = &specs.Hooks{}
	}
	return g.s.Hooks
}

func (g specGen) AddAnnotation(key, value string) {
	if g.s.Annotations == nil {
		g.s.Annotations = map[string]string{}
	}
	g.s.Annotations[key] = value
}

func (g specGen) RemoveAnnotation(key string) { delete(g.s.Annotations, key) }

func (g specGen) AddDevice(d specs.LinuxDevice) {
	l := g.linux()
	for i := range l.Devices {
		if l.Devices[i].Path == d.Path {
			l.Devices[i] = d
			return
		}
	}
	l.Devices = append(l.Devices, d)
}

func (g specGen) RemoveDevice(path string) {
	l := g.linux()
	out := l.Devices[:0]
	for _, d := range l.Devices {
		if d.Path != path {
			out = append(out, d)
		}
	}
	l.Devices = out
}

func (g specGen) AddOrReplaceLinuxNamespace(ns, path string) error {
	l := g.linux()
	t := specs.LinuxNamespaceType(ns)
	for i := range l.Namespaces {
		if l.Namespaces[i].Type == t {
			l.Namespaces[i].Path = path
			return nil
		}
	}
	l.Namespaces = append(l.Namespaces, specs.LinuxNamespace{Type: t, Path: path})
	return nil
}

func (g specGen) RemoveLinuxNamespace(ns string) error {
	l := g.linux()
	out := l.Namespaces[:0]
	for _, n := range l.Namespaces {
		if n.Type != specs.LinuxNamespaceType(ns) {
			out = append(out, n)
		}
	}
	l.Namespaces = out
	return nil
}

// AddPreStartHook keeps the deprecated prestart hooks: NRI plugins still
// ask for them and runc still runs them.
func (g specGen) AddPreStartHook(h specs.Hook) {
	//lint:ignore SA1019 NRI's adjustment API sets prestart hooks
	g.hooks().Prestart = append(g.hooks().Prestart, h)
}

func (g specGen) AddPostStartHook(h specs.Hook) { g.hooks().Poststart = append(g.hooks().Poststart, h) }
func (g specGen) AddPostStopHook(h specs.Hook)  { g.hooks().Poststop = append(g.hooks().Poststop, h) }

func (g specGen) AddProcessEnv(name, value string) {
	p := g.proc()
	kv := name + "=" + value
	for i, e := range p.Env {
		if k, _, _ := strings.Cut(e, "="); k == name {
			p.Env[i] = kv
			return
		}
	}
	p.Env = append(p.Env, kv)
}

func (g specGen) ClearProcessEnv()             { g.proc().Env = nil }
func (g specGen) SetProcessArgs(args []string) { g.proc().Args = args }
func (g specGen) SetProcessOOMScoreAdj(adj int) {
	g.proc().OOMScoreAdj = &adj
}

func (g specGen) AddLinuxResourcesDevice(allow bool, devType string, major, minor *int64, access string) {
	r := g.res()
	r.Devices = append(r.Devices, specs.LinuxDeviceCgroup{Allow: allow, Type: devType, Major: major, Minor: minor, Access: access})
}

func (g specGen) AddLinuxResourcesHugepageLimit(pageSize string, limit uint64) {
	r := g.res()
	for i := range r.HugepageLimits {
		if r.HugepageLimits[i].Pagesize == pageSize {
			r.HugepageLimits[i].Limit = limit
			return
		}
	}
	r.HugepageLimits = append(r.HugepageLimits, specs.LinuxHugepageLimit{Pagesize: pageSize, Limit: limit})
}

func (g specGen) AddLinuxResourcesUnified(key, val string) {
	r := g.res()
	if r.Unified == nil {
		r.Unified = map[string]string{}
	}
	r.Unified[key] = val
}

func (g specGen) AddMount(m specs.Mount) { g.s.Mounts = append(g.s.Mounts, m) }
func (g specGen) ClearMounts()           { g.s.Mounts = nil }
func (g specGen) Mounts() []specs.Mount  { return g.s.Mounts }
func (g specGen) RemoveMount(dest string) {
	out := g.s.Mounts[:0]
	for _, m := range g.s.Mounts {
		if m.Destination != dest {
			out = append(out, m)
		}
	}
	g.s.Mounts = out
}

func (g specGen) AddLinuxSysctl(key, value string) {
	l := g.linux()
	if l.Sysctl == nil {
		l.Sysctl = map[string]string{}
	}
	l.Sysctl[key] = value
}

func (g specGen) RemoveLinuxSysctl(key string) { delete(g.linux().Sysctl, key) }

func (g specGen) SetLinuxCgroupsPath(path string) { g.linux().CgroupsPath = path }

func (g specGen) SetLinuxRootPropagation(rp string) error {
	g.linux().RootfsPropagation = rp
	return nil
}

func (g specGen) SetLinuxResourcesCPUCpus(cpus string)        { g.cpu().Cpus = cpus }
func (g specGen) SetLinuxResourcesCPUMems(mems string)        { g.cpu().Mems = mems }
func (g specGen) SetLinuxResourcesCPUPeriod(period uint64)    { g.cpu().Period = &period }
func (g specGen) SetLinuxResourcesCPUQuota(quota int64)       { g.cpu().Quota = &quota }
func (g specGen) SetLinuxResourcesCPUShares(shares uint64)    { g.cpu().Shares = &shares }
func (g specGen) SetLinuxResourcesCPURealtimePeriod(p uint64) { g.cpu().RealtimePeriod = &p }
func (g specGen) SetLinuxResourcesCPURealtimeRuntime(t int64) { g.cpu().RealtimeRuntime = &t }
func (g specGen) SetLinuxResourcesMemoryLimit(limit int64)    { g.mem().Limit = &limit }
func (g specGen) SetLinuxResourcesMemorySwap(swap int64)      { g.mem().Swap = &swap }
