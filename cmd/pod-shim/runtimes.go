package main

import (
	"os/exec"
	"path/filepath"

	"github.com/pod-shim/pod-shim/pkg/config"
	"github.com/pod-shim/pod-shim/pkg/runc"
)

// runtimeHandlers builds the RuntimeClass handler table from the config:
// "" and "runc" are the [runtime] binary, each [runtimes.<name>] its own.
// A handler whose binary is missing stays listed (Status shows it) and
// fails at use with the lookup error.
func runtimeHandlers(cfg config.Config, defBin, defRoot string) (*runc.Handlers, map[string]*runc.Runtime) {
	others := map[string]runc.Handler{}
	runtimes := map[string]*runc.Runtime{}
	for name, h := range cfg.Runtimes {
		bin := h.Path
		if p, err := exec.LookPath(h.Path); err == nil {
			bin = p
		}
		root := h.Root
		if root == "" {
			root = filepath.Join(cfg.State, "runtimes", name)
		}
		others[name] = runc.Handler{Binary: bin, Root: root, Options: h.Options}
		runtimes[name] = runc.FromHandler(others[name])
	}
	return runc.NewHandlers(runc.Handler{Binary: defBin, Root: defRoot}, others), runtimes
}
