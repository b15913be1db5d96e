package cri

import (
	"context"
	"encoding/json"
	"strconv"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// PodSandboxStatus reports one pod sandbox.
func (s *Server) PodSandboxStatus(ctx context.Context, r *runtimeapi.PodSandboxStatusRequest) (*runtimeapi.PodSandboxStatusResponse, error) {
	if r.GetPodSandboxId() == "" {
		return nil, invalid("pod_sandbox_id is empty")
	}
	sb, err := s.sandboxes.Get(r.GetPodSandboxId())
	if err != nil {
		return nil, err
	}
	st := &runtimeapi.PodSandboxStatus{
		Id:             sb.ID,
		Metadata:       sandboxMetadata(sb),
		State:          sandboxState(sb.State),
		CreatedAt:      sb.CreatedAt.UnixNano(),
		Labels:         sb.Config.Labels,
		Annotations:    sb.Config.Annotations,
		RuntimeHandler: sb.Config.RuntimeHandler,
		Linux: &runtimeapi.LinuxPodSandboxStatus{Namespaces: &runtimeapi.Namespace{Options: &runtimeapi.NamespaceOption{
			Network: runtimeapi.NamespaceMode(sb.Config.Namespaces.Network),
			Pid:     runtimeapi.NamespaceMode(sb.Config.Namespaces.PID),
			Ipc:     runtimeapi.NamespaceMode(sb.Config.Namespaces.IPC),
		}}},
	}
	if !sb.HostNetwork() {
		st.Network = &runtimeapi.PodSandboxNetworkStatus{Ip: sb.IP()}
		for _, ip := range sb.AdditionalIPs() {
			st.Network.AdditionalIps = append(st.Network.AdditionalIps, &runtimeapi.PodIP{Ip: ip})
		}
	}
	resp := &runtimeapi.PodSandboxStatusResponse{Status: st}
	if r.GetVerbose() {
		info := map[string]any{
			"pid":              sb.PausePID,
			"netNamespacePath": sb.NetNSPath,
			"dir":              sb.Dir,
			"cgroupPath":       sb.CgroupPath,
			"pauseImage":       sb.PauseImage,
		}
		if sb.Network != nil {
			info["cniResult"] = sb.Network.Raw
		}
		data, _ := json.Marshal(info)
		resp.Info = map[string]string{"info": string(data), "pid": strconv.Itoa(sb.PausePID)}
	}
	return resp, nil
}

func sandboxMetadata(sb *sandbox.Sandbox) *runtimeapi.PodSandboxMetadata {
	return &runtimeapi.PodSandboxMetadata{
		Name: sb.Config.Name, Uid: sb.Config.UID, Namespace: sb.Config.Namespace, Attempt: sb.Config.Attempt,
	}
}

func sandboxState(s sandbox.State) runtimeapi.PodSandboxState {
	if s == sandbox.StateReady {
		return runtimeapi.PodSandboxState_SANDBOX_READY
	}
	return runtimeapi.PodSandboxState_SANDBOX_NOTREADY
}
