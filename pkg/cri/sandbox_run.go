package cri

import (
	"context"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/pkg/network"
	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// RunPodSandbox creates and starts a pod sandbox.
func (s *Server) RunPodSandbox(ctx context.Context, r *runtimeapi.RunPodSandboxRequest) (*runtimeapi.RunPodSandboxResponse, error) {
	cfg := r.GetConfig()
	if cfg == nil || cfg.GetMetadata() == nil {
		return nil, invalid("sandbox config must include metadata")
	}
	if _, ok := s.sandboxes.Handlers().Get(r.GetRuntimeHandler()); !ok {
		return nil, invalid("unknown runtime handler %q", r.GetRuntimeHandler())
	}
	sb, err := s.sandboxes.Run(ctx, sandboxConfig(cfg, r.GetRuntimeHandler()))
	if err != nil {
		return nil, err
	}
	return &runtimeapi.RunPodSandboxResponse{PodSandboxId: sb.ID}, nil
}

func sandboxConfig(c *runtimeapi.PodSandboxConfig, handler string) sandbox.Config {
	md := c.GetMetadata()
	out := sandbox.Config{
		Name:           md.GetName(),
		UID:            md.GetUid(),
		Namespace:      md.GetNamespace(),
		Attempt:        md.GetAttempt(),
		Hostname:       c.GetHostname(),
		LogDirectory:   c.GetLogDirectory(),
		Labels:         c.GetLabels(),
		Annotations:    c.GetAnnotations(),
		CgroupParent:   c.GetLinux().GetCgroupParent(),
		Sysctls:        c.GetLinux().GetSysctls(),
		Privileged:     c.GetLinux().GetSecurityContext().GetPrivileged(),
		RuntimeHandler: handler,
	}
	out.Resources = podResources(c.GetLinux().GetResources())
	out.Overhead = podResources(c.GetLinux().GetOverhead())
	if d := c.GetDnsConfig(); d != nil {
		out.DNS = &sandbox.DNS{Servers: d.GetServers(), Searches: d.GetSearches(), Options: d.GetOptions()}
	}
	if ns := c.GetLinux().GetSecurityContext().GetNamespaceOptions(); ns != nil {
		out.Namespaces = sandbox.Namespaces{
			Network: sandbox.NamespaceMode(ns.GetNetwork()),
			PID:     sandbox.NamespaceMode(ns.GetPid()),
			IPC:     sandbox.NamespaceMode(ns.GetIpc()),
		}
		out.UserNS = userNS(ns.GetUsernsOptions())
	}
	for _, pm := range c.GetPortMappings() {
		out.PortMappings = append(out.PortMappings, network.PortMapping{
			HostPort:      pm.GetHostPort(),
			ContainerPort: pm.GetContainerPort(),
			Protocol:      strings.ToLower(pm.GetProtocol().String()),
			HostIP:        pm.GetHostIp(),
		})
	}
	return out
}

func podResources(r *runtimeapi.LinuxContainerResources) *sandbox.Resources {
	if r == nil {
		return nil
	}
	return &sandbox.Resources{
		CPUPeriod: r.GetCpuPeriod(), CPUQuota: r.GetCpuQuota(),
		CPUShares: r.GetCpuShares(), MemoryLimit: r.GetMemoryLimitInBytes(),
	}
}
