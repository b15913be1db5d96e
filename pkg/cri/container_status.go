package cri

import (
	"context"
	"encoding/json"
	"time"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/pkg/container"
)

// ContainerStatus reports one container.
func (s *Server) ContainerStatus(ctx context.Context, r *runtimeapi.ContainerStatusRequest) (*runtimeapi.ContainerStatusResponse, error) {
	if r.GetContainerId() == "" {
		return nil, invalid("container_id is empty")
	}
	c, err := s.containers.Get(r.GetContainerId())
	if err != nil {
		return nil, err
	}
	st := &runtimeapi.ContainerStatus{
		Id:          c.ID,
		Metadata:    &runtimeapi.ContainerMetadata{Name: c.Config.Name, Attempt: c.Config.Attempt},
		State:       containerState(c.State),
		CreatedAt:   c.CreatedAt.UnixNano(),
		StartedAt:   unixNano(c.StartedAt),
		FinishedAt:  unixNano(c.FinishedAt),
		ExitCode:    c.ExitCode,
		Image:       statusImage(&c.Config),
		ImageRef:    c.ImageRef,
		ImageId:     c.ImageID,
		Reason:      c.Reason,
		Message:     c.Message,
		Labels:      c.Config.Labels,
		Annotations: c.Config.Annotations,
		LogPath:     c.LogPath,
	}
	st.Mounts = statusMounts(c.Config.Mounts)
	if u := c.User; u != nil {
		st.User = &runtimeapi.ContainerUser{Linux: &runtimeapi.LinuxContainerUser{Uid: u.UID, Gid: u.GID, SupplementalGroups: u.SupplementalGroups}}
	}
	if r := c.Resources; r != nil {
		st.Resources = &runtimeapi.ContainerResources{Linux: linuxResources(r)}
	}
	if sig, ok := runtimeapi.Signal_value["SIGNAL_"+c.StopSignal]; ok {
		st.StopSignal = runtimeapi.Signal(sig)
	}
	resp := &runtimeapi.ContainerStatusResponse{Status: st}
	if r.GetVerbose() {
		data, _ := json.Marshal(map[string]any{"pid": c.Pid, "sandboxID": c.SandboxID, "bundle": c.Bundle, "rootfs": c.Rootfs})
		resp.Info = map[string]string{"info": string(data)}
	}
	return resp, nil
}

func unixNano(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func containerState(s container.State) runtimeapi.ContainerState {
	switch s {
	case container.StateCreated, container.StateStarting:
		return runtimeapi.ContainerState_CONTAINER_CREATED
	case container.StateRunning:
		return runtimeapi.ContainerState_CONTAINER_RUNNING
	case container.StateExited:
		return runtimeapi.ContainerState_CONTAINER_EXITED
	}
	return runtimeapi.ContainerState_CONTAINER_UNKNOWN
}

// statusMounts reports the container's mounts as created; an image volume
// carries its image's id as image_ref, which the kubelet compares with the
// one PullImage returned.
func statusMounts(ms []container.Mount) []*runtimeapi.Mount {
	var out []*runtimeapi.Mount
	for _, m := range ms {
		sm := &runtimeapi.Mount{
			ContainerPath:     m.ContainerPath,
			HostPath:          m.HostPath,
			Readonly:          m.Readonly,
			RecursiveReadOnly: m.RecursiveReadonly,
			SelinuxRelabel:    m.SelinuxRelabel,
			Propagation:       runtimeapi.MountPropagation(m.Propagation),
		}
		if m.Image != "" {
			sm.Image = &runtimeapi.ImageSpec{Image: m.Image, ImageRef: m.ImageRef}
			sm.ImageSubPath = m.ImageSubPath
		}
		out = append(out, sm)
	}
	return out
}

// statusImage is the image a status reports: the name the pod spec gave
// (the kubelet copies it into the pod's status and waits for it after an
// image change), or what CreateContainer named when the client gave no
// such name (crictl names images directly).
func statusImage(c *container.Config) *runtimeapi.ImageSpec {
	spec := &runtimeapi.ImageSpec{Image: c.Image, UserSpecifiedImage: c.UserSpecifiedImage}
	if c.UserSpecifiedImage != "" {
		spec.Image = c.UserSpecifiedImage
	}
	return spec
}
