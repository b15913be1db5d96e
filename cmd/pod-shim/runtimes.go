package main

import (
	"os/exec"
	"path/filepath"

	"github.com/pod-shim/pod-shim/pkg/config"
	"github.com/pod-shim/pod-shim/pkg/runtime"
)

// runtimeHandlers builds the RuntimeClass handler table from the config:
// "" and "runc" are the [runtime] binary, each [runtimes.<name>] its own.
// A handler whose binary is missing stays listed (Status shows it) and
// fails at use with the lookup error.
func runtimeHandlers(cfg config.Config, defBin, defRoot string) (*runtime.Handlers, map[string]*runtime.Runtime) {
	others := map[string]runtime.Handler{}
	runtimes := map[string]*runtime.Runtime{}
	for name, h := range cfg.Runtimes {
		bin := h.Path
		if p, err := exec.LookPath(h.Path); err == nil {
			bin = p
		}
		root := h.Root
		if root == "" {
			root = filepath.Join(cfg.State, "runtimes", name)
		}
		others[name] = runtime.Handler{Binary: bin, Root: root, Options: h.Options}
		runtimes[name] = runtime.FromHandler(others[name])
	}
	return runtime.NewHandlers(runtime.Handler{Binary: defBin, Root: defRoot}, others), runtimes
}
