package network

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeStatusPlugin is a plugin script that logs each command it is run
// with, speaks the given CNI versions, and fails STATUS (with CNI 1.1's
// "plugin not available" code) while the marker file exists.
func fakeStatusPlugin(t *testing.T, binDir, name, versions string) (log, marker string) {
	t.Helper()
	log = filepath.Join(t.TempDir(), name+".log")
	marker = filepath.Join(t.TempDir(), name+".notready")
	script := fmt.Sprintf(`#!/bin/sh
cat >/dev/null
echo "$CNI_COMMAND" >>%q
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":[%s]}' ;;
STATUS)
	if [ -e %q ]; then
		echo '{"cniVersion":"1.1.0","code":50,"msg":"fake: datapath not up yet","details":"marker file present"}'
		exit 1
	fi ;;
esac
exit 0
`, log, versions, marker)
	writeFile(t, filepath.Join(binDir, name), script, 0o755)
	return log, marker
}

func calls(t *testing.T, log string) []string {
	t.Helper()
	b, err := os.ReadFile(log)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	return strings.Fields(string(b))
}

// waitReady polls Status for what a STATUS change may take to show.
func waitReady(t *testing.T, m *Manager, ready bool, message string) {
	t.Helper()
	deadline := time.Now().Add(statusRecheck + 3*time.Second)
	for {
		r, reason, msg := m.Status()
		if r == ready && (ready || reason == "NetworkPluginNotReady" && strings.Contains(msg, message)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("Status = %v %q %q; want ready=%v, message containing %q", r, reason, msg, ready, message)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestPluginStatus(t *testing.T) {
	binDir := t.TempDir()
	const v11 = `"0.4.0","1.0.0","1.1.0"`
	const v10 = `"0.3.1","0.4.0","1.0.0"` // what plugins built before CNI 1.1 say
	newLog, newMarker := fakeStatusPlugin(t, binDir, "new11", v11)
	oldLog, _ := fakeStatusPlugin(t, binDir, "old10", v10)

	newManager := func(conf string) *Manager {
		confDir := t.TempDir()
		writeFile(t, filepath.Join(confDir, "10-net.conflist"), conf, 0o644)
		m, err := New(Options{ConfDir: confDir, BinDirs: []string{binDir, pluginDir}, CacheDir: t.TempDir()})
		if err != nil {
			t.Fatal(err)
		}
		return m
	}

	t.Run("CNI 1.0 config: never asked STATUS", func(t *testing.T) {
		os.Remove(newLog)
		os.WriteFile(newMarker, nil, 0o644)
		defer os.Remove(newMarker)
		m := newManager(`{"cniVersion":"1.0.0","name":"n10","plugins":[{"type":"new11"},{"type":"old10"}]}`)
		waitReady(t, m, true, "")
		if c := calls(t, newLog); len(c) != 0 {
			t.Errorf("plugin of a 1.0.0 config was run with %v", c)
		}
	})

	t.Run("CNI 1.1 plugin reports not ready, then ready", func(t *testing.T) {
		os.Remove(newLog)
		if err := os.WriteFile(newMarker, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		m := newManager(`{"cniVersion":"1.1.0","name":"n11","plugins":[{"type":"new11"}]}`)
		waitReady(t, m, false, "datapath not up yet")
		_, _, msg := m.Status()
		if !strings.Contains(msg, `"n11"`) || !strings.Contains(msg, `plugin "new11"`) {
			t.Errorf("message %q does not name the network and plugin", msg)
		}
		// Answers are cached: a burst of Status calls is not a burst of
		// processes.
		before := len(calls(t, newLog))
		for range 20 {
			m.Status()
		}
		if after := len(calls(t, newLog)); after-before > 2 {
			t.Errorf("20 Status calls ran the plugin %d times", after-before)
		}
		os.Remove(newMarker)
		waitReady(t, m, true, "")
		c := calls(t, newLog)
		if strings.Count(strings.Join(c, " "), "VERSION") != 1 {
			t.Errorf("plugin calls %v: VERSION should be asked once per binary", c)
		}
	})

	t.Run("CNI 1.1 config with a plugin that predates it", func(t *testing.T) {
		os.Remove(oldLog)
		m := newManager(`{"cniVersion":"1.1.0","name":"mixed","plugins":[{"type":"new11"},{"type":"old10"}]}`)
		waitReady(t, m, false, `plugin "old10"`)
		_, _, msg := m.Status()
		if !strings.Contains(msg, "not the config's 1.1.0") {
			t.Errorf("message %q", msg)
		}
		for _, c := range calls(t, oldLog) {
			if c != "VERSION" {
				t.Errorf("plugin without CNI 1.1 was run with %s", c)
			}
		}
	})

	t.Run("Debian's plugins under a CNI 1.1 config", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(pluginDir, "bridge")); err != nil {
			t.Skipf("needs the CNI plugins in %s: %v", pluginDir, err)
		}
		m := newManager(`{"cniVersion":"1.1.0","name":"deb","plugins":[{"type":"bridge","bridge":"none0","ipam":{"type":"host-local","subnet":"10.9.9.0/24"}}]}`)
		// Their ADD refuses a 1.1.0 config ("incompatible CNI versions"),
		// and STATUS to them would answer a misleading "missing containerID".
		waitReady(t, m, false, "supports CNI versions")
		_, _, msg := m.Status()
		if strings.Contains(msg, "containerID") {
			t.Errorf("STATUS was sent to a pre-1.1 plugin: %q", msg)
		}
	})

	t.Run("CNI 1.0 config with Debian's plugins stays ready", func(t *testing.T) {
		if _, err := os.Stat(filepath.Join(pluginDir, "bridge")); err != nil {
			t.Skipf("needs the CNI plugins in %s: %v", pluginDir, err)
		}
		m := newManager(`{"cniVersion":"1.0.0","name":"deb10","plugins":[{"type":"bridge","bridge":"none0","ipam":{"type":"host-local","subnet":"10.9.9.0/24"}}]}`)
		waitReady(t, m, true, "")
	})

	t.Run("hung STATUS is bounded", func(t *testing.T) {
		if testing.Short() {
			t.Skip("waits for the status timeout")
		}
		dir := t.TempDir()
		writeFile(t, filepath.Join(dir, "hang11"), `#!/bin/sh
cat >/dev/null
case "$CNI_COMMAND" in
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["1.0.0","1.1.0"]}' ;;
STATUS) exec sleep 600 ;;
esac
`, 0o755)
		confDir := t.TempDir()
		writeFile(t, filepath.Join(confDir, "10-h.conflist"), `{"cniVersion":"1.1.0","name":"h","plugins":[{"type":"hang11"}]}`, 0o644)
		m, err := New(Options{ConfDir: confDir, BinDirs: []string{dir}, CacheDir: t.TempDir(), Timeout: time.Second})
		if err != nil {
			t.Fatal(err)
		}
		ready, _, msg := m.Status()
		if ready || !strings.Contains(msg, "status timeout") {
			t.Errorf("Status = %v %q, want not ready by the status timeout", ready, msg)
		}
	})
}
