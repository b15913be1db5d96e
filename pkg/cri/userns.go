package cri

import (
	specs "github.com/opencontainers/runtime-spec/specs-go"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/pkg/sandbox"
)

// userNS translates a pod's user namespace option; nil means the host's.
// The sandbox validates it (mode, one mapping each, root mapped).
func userNS(u *runtimeapi.UserNamespace) *sandbox.UserNS {
	if u == nil {
		return nil
	}
	return &sandbox.UserNS{Mode: sandbox.NamespaceMode(u.GetMode()), UIDs: idMappings(u.GetUids()), GIDs: idMappings(u.GetGids())}
}

func idMappings(in []*runtimeapi.IDMapping) []specs.LinuxIDMapping {
	if len(in) == 0 {
		return nil
	}
	out := make([]specs.LinuxIDMapping, 0, len(in))
	for _, m := range in {
		out = append(out, specs.LinuxIDMapping{ContainerID: m.GetContainerId(), HostID: m.GetHostId(), Size: m.GetLength()})
	}
	return out
}
