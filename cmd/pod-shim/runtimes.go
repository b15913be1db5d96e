package main

import (
	"os/exec"
	"path/filepath"

	"github.com/pod-shim/pod-shim/pkg/config"
	"github.com/pod-shim/pod-shim/pkg/runc"
)

// runtimeHandlers builds the RuntimeClass handler table from the config:
// "" and "runc" are the [runtime] binary, or [runtimes.runc] when the
// config has one, and each other [runtimes.<name>] its own. A handler whose
// binary is missing stays listed (Status shows it) and fails at use with
// the lookup error.
func runtimeHandlers(cfg config.Config, defBin, defRoot string) *runc.Handlers {
	others := map[string]runc.Handler{}
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
	}
	return runc.NewHandlers(runc.Handler{Binary: defBin, Root: defRoot}, others)
}
