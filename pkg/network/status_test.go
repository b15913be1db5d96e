package network

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeFile writes atomically, as config managers do, so a half-written
// conf is never observed by the test either.
func writeFile(t testing.TB, path, data string, mode os.FileMode) {
	t.Helper()
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, []byte(data), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// waitStatus polls Status until it matches, for at most the 2 s a config
// change may take to be noticed.
func waitStatus(t *testing.T, m *Manager, ready bool, message, network string) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		r, reason, msg := m.Status()
		def := ""
		if d := m.config().def; d != nil {
			def = d.Name
		}
		if r == ready && (ready || reason == "NetworkPluginNotReady" && strings.Contains(msg, message)) &&
			(network == "" || def == network) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after 2s: Status = %v %q %q, network %q; want %v, message containing %q, network %q",
				r, reason, msg, def, ready, message, network)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestStatus(t *testing.T) {
	confDir := filepath.Join(t.TempDir(), "net.d") // does not exist yet
	binDir := t.TempDir()
	for _, p := range []string{"fakebr", "fakeipam"} {
		writeFile(t, filepath.Join(binDir, p), "#!/bin/sh\nexit 0\n", 0o755)
	}
	m, err := New(Options{ConfDir: confDir, BinDirs: []string{binDir}, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}

	steps := []struct {
		name    string
		change  func()
		ready   bool
		message string // substring
		network string
	}{
		{name: "missing dir", change: func() {}, message: "no network config found in " + confDir},
		{name: "empty dir", change: func() { os.MkdirAll(confDir, 0o755) }, message: "no network config found"},
		{name: "ignored extension", change: func() { writeFile(t, filepath.Join(confDir, "x.txt"), "{}", 0o644) }, message: "no network config found"},
		{name: "invalid only", change: func() { writeFile(t, filepath.Join(confDir, "10-bad.conflist"), "{nope", 0o644) }, message: "10-bad.conflist"},
		{
			name: "valid conflist next to invalid",
			change: func() {
				writeFile(t, filepath.Join(confDir, "20-b.conflist"),
					`{"cniVersion":"1.0.0","name":"bnet","plugins":[{"type":"fakebr","ipam":{"type":"fakeipam"}}]}`, 0o644)
			},
			ready: true, network: "bnet",
		},
		{
			name: "lexically first valid wins, .conf upconverted",
			change: func() {
				writeFile(t, filepath.Join(confDir, "15-a.conf"), `{"cniVersion":"0.4.0","name":"anet","type":"fakebr"}`, 0o644)
			},
			ready: true, network: "anet",
		},
		{
			name: "default names a plugin that is not installed",
			change: func() {
				writeFile(t, filepath.Join(confDir, "15-a.conf"), `{"cniVersion":"0.4.0","name":"anet","type":"nosuchplugin"}`, 0o644)
			},
			message: `plugin "nosuchplugin" not found`, network: "anet",
		},
		{name: "back to the other", change: func() { os.Remove(filepath.Join(confDir, "15-a.conf")) }, ready: true, network: "bnet"},
		{name: "all removed", change: func() { os.RemoveAll(confDir) }, message: "no network config found"},
	}
	for _, s := range steps {
		t.Log(s.name)
		s.change()
		waitStatus(t, m, s.ready, s.message, s.network)
	}
}

func TestNewOptions(t *testing.T) {
	tests := []struct {
		name string
		opts Options
		ok   bool
	}{
		{name: "complete", opts: Options{ConfDir: "/x", BinDirs: []string{"/b"}, CacheDir: "/c"}, ok: true},
		{name: "no conf dir", opts: Options{BinDirs: []string{"/b"}, CacheDir: "/c"}},
		{name: "no bin dirs", opts: Options{ConfDir: "/x", CacheDir: "/c"}},
		{name: "no cache dir", opts: Options{ConfDir: "/x", BinDirs: []string{"/b"}}},
	}
	for _, tt := range tests {
		m, err := New(tt.opts)
		if (err == nil) != tt.ok {
			t.Errorf("%s: err = %v", tt.name, err)
		}
		if m != nil && m.opts.Timeout != DefaultTimeout {
			t.Errorf("%s: timeout %v", tt.name, m.opts.Timeout)
		}
	}
}

func TestPodCIDR(t *testing.T) {
	confDir := t.TempDir()
	binDir := t.TempDir()
	writeFile(t, filepath.Join(binDir, "fakebr"), "#!/bin/sh\nexit 0\n", 0o755)
	m, err := New(Options{ConfDir: confDir, BinDirs: []string{binDir}, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	// A config without the placeholder: the CIDR changes nothing.
	writeFile(t, filepath.Join(confDir, "20-plain.conflist"),
		`{"cniVersion":"1.0.0","name":"plain","plugins":[{"type":"fakebr","ipam":{"subnet":"10.9.0.0/24"}}]}`, 0o644)
	waitStatus(t, m, true, "", "plain")
	if m.SetPodCIDR([]string{"10.1.0.0/24"}) {
		t.Error("SetPodCIDR says a config without usePodCidr uses it")
	}
	m.SetPodCIDR(nil)

	// A lexically first config that asks for it waits for it, rather than
	// letting pods fall through to the next network.
	writeFile(t, filepath.Join(confDir, "10-cidr.conflist"),
		`{"cniVersion":"1.0.0","name":"cidr","plugins":[{"type":"fakebr","ipam":{"ranges":[[{"subnet":"usePodCidr"}],[{"subnet":"usePodCidrIPv6"}]]}}]}`, 0o644)
	waitStatus(t, m, false, "has not sent yet", "")
	cidrs, err := ParsePodCIDRs("10.1.0.0/24, fd00:1::/64")
	if err != nil {
		t.Fatal(err)
	}
	if !m.SetPodCIDR(cidrs) {
		t.Error("SetPodCIDR says the usePodCidr config does not use it")
	}
	waitStatus(t, m, true, "", "cidr")
	got := string(m.config().def.Plugins[0].Bytes)
	if !strings.Contains(got, `"10.1.0.0/24"`) || !strings.Contains(got, `"fd00:1::/64"`) || strings.Contains(got, "usePodCidr") {
		t.Errorf("plugin config after SetPodCIDR = %s", got)
	}
	if _, err := ParsePodCIDRs("10.1.0.0/33"); err == nil {
		t.Error("ParsePodCIDRs accepted 10.1.0.0/33")
	}
}
