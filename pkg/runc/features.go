package runc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"slices"
)

// ErrUnsupported is wrapped by errors about a pod asking for a feature its
// runtime handler's binary does not have.
var ErrUnsupported = errors.New("not supported by the runtime handler")

// featuresDoc is the part of the OCI runtime features document
// (`runc features`, runtime-spec features.md) pod-shim reads.
type featuresDoc struct {
	MountOptions []string `json:"mountOptions"`
	Linux        *struct {
		Namespaces      []string `json:"namespaces"`
		MountExtensions *struct {
			IDMap *struct {
				Enabled *bool `json:"enabled"`
			} `json:"idmap"`
		} `json:"mountExtensions"`
	} `json:"linux"`
}

// ReadFeatures asks binary what it supports. A runtime without the
// features command (runc < 1.1) is reported as supporting nothing: what a
// binary does not say it can do is never assumed.
func ReadFeatures(ctx context.Context, binary string) (Features, error) {
	out, err := exec.CommandContext(ctx, binary, "features").Output()
	if err != nil {
		return Features{}, fmt.Errorf("%s features: %w", binary, err)
	}
	return parseFeatures(out), nil
}

// parseFeatures reads the OCI runtime features document. User namespaces
// need both the user namespace and idmapped mounts (runc >= 1.2): without
// idmapped mounts the image's files would be owned by nobody inside, and
// volumes would need a recursive chown.
func parseFeatures(data []byte) Features {
	var doc featuresDoc
	if json.Unmarshal(data, &doc) != nil {
		return Features{}
	}
	f := Features{RecursiveReadOnlyMounts: slices.Contains(doc.MountOptions, "rro")}
	if l := doc.Linux; l != nil && slices.Contains(l.Namespaces, "user") &&
		l.MountExtensions != nil && l.MountExtensions.IDMap != nil &&
		l.MountExtensions.IDMap.Enabled != nil && *l.MountExtensions.IDMap.Enabled {
		f.UserNamespaces = true
	}
	return f
}

// Probe reads every handler's features, so that the daemon learns them at
// start; Status and pod creation then use what was read.
func (h *Handlers) Probe(ctx context.Context) map[string]Features {
	out := map[string]Features{}
	for _, name := range h.Names() {
		out[name] = h.Features(ctx, name)
	}
	return out
}

// Require fails, wrapping ErrUnsupported, when handler name lacks a
// feature need asks for; the message names the handler, its binary and
// the feature, which is what an operator needs to pick another handler.
func (h *Handlers) Require(ctx context.Context, name string, need Features) error {
	x, ok := h.Get(name)
	if !ok {
		return fmt.Errorf("unknown runtime handler %q", name)
	}
	have := h.Features(ctx, name)
	label := name
	if label == "" {
		label = "default"
	}
	switch {
	case need.UserNamespaces && !have.UserNamespaces:
		return fmt.Errorf("runtime handler %q (%s) does not support user namespaces (needs idmapped mounts: runc >= 1.2): %w", label, x.Binary, ErrUnsupported)
	case need.RecursiveReadOnlyMounts && !have.RecursiveReadOnlyMounts:
		return fmt.Errorf("runtime handler %q (%s) does not support recursive read-only mounts: %w", label, x.Binary, ErrUnsupported)
	}
	return nil
}
