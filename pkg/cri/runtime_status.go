package cri

import (
	"context"
	"os/exec"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/pkg/network"
)

// Version reports the runtime's name and versions.
func (s *Server) Version(ctx context.Context, r *runtimeapi.VersionRequest) (*runtimeapi.VersionResponse, error) {
	return &runtimeapi.VersionResponse{
		Version:           kubeAPIVersion,
		RuntimeName:       RuntimeName,
		RuntimeVersion:    RuntimeVersion,
		RuntimeApiVersion: APIVersion,
	}, nil
}

// Status reports whether the runtime and the pod network are ready; the
// kubelet starts no pod until both are.
func (s *Server) Status(ctx context.Context, r *runtimeapi.StatusRequest) (*runtimeapi.StatusResponse, error) {
	runtimeReady := &runtimeapi.RuntimeCondition{Type: runtimeapi.RuntimeReady, Status: true}
	if _, err := exec.LookPath(s.runtimeBinary()); err != nil {
		runtimeReady.Status = false
		runtimeReady.Reason = "RuntimeBinaryMissing"
		runtimeReady.Message = err.Error()
	}
	ready, reason, msg := s.network.Status()
	netReady := &runtimeapi.RuntimeCondition{Type: runtimeapi.NetworkReady, Status: ready}
	if !ready {
		netReady.Reason = reason
		netReady.Message = msg
	}
	resp := &runtimeapi.StatusResponse{
		Status:   &runtimeapi.RuntimeStatus{Conditions: []*runtimeapi.RuntimeCondition{runtimeReady, netReady}},
		Features: &runtimeapi.RuntimeFeatures{SupplementalGroupsPolicy: true},
	}
	handlers := s.containers.Handlers()
	for _, name := range handlers.Names() {
		f := handlers.Features(ctx, name)
		resp.RuntimeHandlers = append(resp.RuntimeHandlers, &runtimeapi.RuntimeHandler{
			Name:     name,
			Features: &runtimeapi.RuntimeHandlerFeatures{RecursiveReadOnlyMounts: f.RecursiveReadOnlyMounts, UserNamespaces: f.UserNamespaces},
		})
	}
	if r.GetVerbose() {
		resp.Info = map[string]string{"cgroupDriver": s.cgroup}
	}
	return resp, nil
}

func (s *Server) runtimeBinary() string {
	if s.RuntimePath != "" {
		return s.RuntimePath
	}
	return "runc"
}

// RuntimeConfig tells the kubelet which cgroup driver to use.
func (s *Server) RuntimeConfig(ctx context.Context, r *runtimeapi.RuntimeConfigRequest) (*runtimeapi.RuntimeConfigResponse, error) {
	driver := runtimeapi.CgroupDriver_CGROUPFS
	if s.cgroup == "systemd" {
		driver = runtimeapi.CgroupDriver_SYSTEMD
	}
	return &runtimeapi.RuntimeConfigResponse{Linux: &runtimeapi.LinuxRuntimeConfiguration{CgroupDriver: driver}}, nil
}

// UpdateRuntimeConfig takes the node's pod CIDR from the kubelet. Network
// configs that say "usePodCidr" where a subnet goes get it; for any other
// config the CNI config alone decides pod IPs, and the log says so.
func (s *Server) UpdateRuntimeConfig(ctx context.Context, r *runtimeapi.UpdateRuntimeConfigRequest) (*runtimeapi.UpdateRuntimeConfigResponse, error) {
	cidr := r.GetRuntimeConfig().GetNetworkConfig().GetPodCidr()
	if cidr == "" {
		return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
	}
	cidrs, err := network.ParsePodCIDRs(cidr)
	if err != nil {
		return nil, invalid("%v", err)
	}
	if s.network.SetPodCIDR(cidrs) {
		s.log.Info("pod CIDR handed to the CNI config", "cidr", cidr)
	} else {
		s.log.Info("pod CIDR not used: the CNI config does not ask for it (usePodCidr)", "cidr", cidr)
	}
	return &runtimeapi.UpdateRuntimeConfigResponse{}, nil
}
