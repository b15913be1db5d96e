package runc

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"
)

// Handler is one RuntimeClass handler: an OCI runtime with runc's CLI.
type Handler struct {
	Name    string
	Binary  string
	Root    string
	Options map[string]string
}

// SystemdCgroup is the "systemd_cgroup" option: the runtime is run with
// --systemd-cgroup, as containerd's SystemdCgroup runc option does.
func (h Handler) SystemdCgroup() bool {
	v := strings.ToLower(h.Options["systemd_cgroup"])
	return v == "true" || v == "1" || v == "yes"
}

// Features are what a handler's runtime can do, as CRI's Status reports it.
type Features struct {
	RecursiveReadOnlyMounts bool
	UserNamespaces          bool
}

// Handlers are the node's RuntimeClass handlers, and the one lookup from a
// pod's handler name to the runtime (binary, --root, options) that runs its
// pause and containers. "" (the kubelet's default) and "runc" are always
// there and are one and the same handler.
type Handlers struct {
	byName map[string]Handler

	mu       sync.Mutex
	features map[string]Features
}

// ErrUnknownHandler is wrapped by lookups of a handler the node does not
// have; RunPodSandbox refuses such a pod as InvalidArgument.
var ErrUnknownHandler = errors.New("unknown runtime handler")

// NewHandlers returns the handler table: def as "" and "runc", plus every
// entry of others. An entry of others named "runc" replaces def for both
// names: were "" and "runc" different runtimes, one pod's pause and its
// containers could be found under two runc roots.
func NewHandlers(def Handler, others map[string]Handler) *Handlers {
	h := &Handlers{byName: map[string]Handler{}, features: map[string]Features{}}
	if o, ok := others["runc"]; ok {
		def = o
	}
	def.Name = ""
	h.byName[""] = def
	named := def
	named.Name = "runc"
	h.byName["runc"] = named
	for name, o := range others {
		if name == "runc" {
			continue
		}
		o.Name = name
		h.byName[name] = o
	}
	return h
}

// Get returns the handler named name; ok is false for an unknown one,
// which RunPodSandbox refuses as InvalidArgument.
func (h *Handlers) Get(name string) (Handler, bool) {
	if h == nil {
		return Handler{}, name == "" || name == "runc"
	}
	x, ok := h.byName[name]
	return x, ok
}

// Runtime is the runtime of handler name: its binary, root and options.
func (h *Handlers) Runtime(name string) (*Runtime, error) {
	x, ok := h.Get(name)
	if !ok || h == nil {
		return nil, fmt.Errorf("%q: %w", name, ErrUnknownHandler)
	}
	return FromHandler(x), nil
}

// Names lists the handlers, "" first.
func (h *Handlers) Names() []string {
	if h == nil {
		return []string{""}
	}
	out := make([]string, 0, len(h.byName))
	for n := range h.byName {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Features asks the handler's runtime what it supports (`<binary>
// features`), once per handler: Status is polled, runtimes do not change.
func (h *Handlers) Features(ctx context.Context, name string) Features {
	x, ok := h.Get(name)
	if !ok || h == nil {
		return Features{}
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if f, ok := h.features[x.Binary]; ok {
		return f
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	f, err := ReadFeatures(ctx, x.Binary)
	if err == nil {
		h.features[x.Binary] = f
	}
	return f
}
