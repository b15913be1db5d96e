package harness

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
)

// BridgePlugin is the real bridge + host-local plugin config of the daemon's
// network: its own bridge, subnet and host-local dataDir, no masquerade
// rules to leak.
func (d *Daemon) BridgePlugin() map[string]any {
	return map[string]any{
		"type":        "bridge",
		"bridge":      d.Bridge,
		"isGateway":   true,
		"ipMasq":      false,
		"hairpinMode": true,
		"ipam": map[string]any{
			"type":    "host-local",
			"ranges":  [][]map[string]string{{{"subnet": d.Subnet.String()}}},
			"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
			"dataDir": d.IPAMDir,
		},
	}
}

// PortmapPlugin is the real portmap plugin with the portMappings capability.
func PortmapPlugin(snat bool) map[string]any {
	p := map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}}
	if snat {
		p["snat"] = true
	}
	return p
}

// SubnetPrefix is the pod subnet's "X.Y.Z." prefix.
func (d *Daemon) SubnetPrefix() string {
	return strings.TrimSuffix(d.Subnet.IP.String(), "0")
}

// WriteNetConf writes a CNI 1.0.0 conflist with the given plugin chain into
// the conf dir, replacing the daemon's one atomically.
func (d *Daemon) WriteNetConf(plugins ...map[string]any) {
	d.T.Helper()
	d.WriteNetConfVersion("1.0.0", plugins...)
}

// WriteNetConfVersion is WriteNetConf with a chosen cniVersion.
func (d *Daemon) WriteNetConfVersion(version string, plugins ...map[string]any) {
	d.T.Helper()
	conf := map[string]any{"cniVersion": version, "name": d.NetName, "plugins": plugins}
	b, err := json.MarshalIndent(conf, "", "  ")
	if err != nil {
		d.T.Fatal(err)
	}
	file := filepath.Join(d.CNIConf, "10-"+d.NetName+".conflist")
	if err := os.WriteFile(file+".tmp", b, 0o644); err != nil {
		d.T.Fatal(err)
	}
	if err := os.Rename(file+".tmp", file); err != nil {
		d.T.Fatal(err)
	}
}

// FakePlugin writes an executable plugin script into the fake bin dir
// (Options.FakePlugins), searched before the real plugins.
func (d *Daemon) FakePlugin(name, script string) {
	d.T.Helper()
	if d.FakeBin == "" {
		d.T.Fatal("harness: FakePlugin needs Options.FakePlugins")
	}
	if err := os.WriteFile(filepath.Join(d.FakeBin, name), []byte(script), 0o755); err != nil {
		d.T.Fatal(err)
	}
}
