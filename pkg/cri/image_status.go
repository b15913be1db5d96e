package cri

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/pkg/image"
)

// ImageStatus reports an image; an absent image is a nil image, not an
// error, as the kubelet expects.
func (s *Server) ImageStatus(ctx context.Context, r *runtimeapi.ImageStatusRequest) (*runtimeapi.ImageStatusResponse, error) {
	ref := r.GetImage().GetImage()
	if ref == "" {
		return nil, invalid("image is empty")
	}
	img, err := s.images.Get(ref)
	if errors.Is(err, image.ErrNotFound) {
		return &runtimeapi.ImageStatusResponse{}, nil
	}
	if err != nil {
		return nil, err
	}
	resp := &runtimeapi.ImageStatusResponse{Image: criImage(img)}
	if r.GetVerbose() {
		data, _ := json.Marshal(map[string]any{"config": img.Config, "layers": img.Layers})
		resp.Info = map[string]string{"info": string(data)}
	}
	return resp, nil
}

func criImage(img *image.Image) *runtimeapi.Image {
	out := &runtimeapi.Image{
		Id:          img.ID,
		RepoTags:    img.RepoTags,
		RepoDigests: img.RepoDigests,
		Size:        img.Size,
		Pinned:      img.Pinned,
		Spec:        &runtimeapi.ImageSpec{Image: img.ID},
	}
	// USER is "uid", "uid:gid", "name" or "name:group"; the kubelet wants
	// the uid when numeric, else the name.
	u, _, _ := strings.Cut(img.Config.User, ":")
	if u != "" {
		if n, err := strconv.ParseInt(u, 10, 64); err == nil {
			out.Uid = &runtimeapi.Int64Value{Value: n}
		} else {
			out.Username = u
		}
	}
	return out
}
