package network

import (
	"encoding/json"
	"testing"

	"github.com/containernetworking/cni/libcni"
	current "github.com/containernetworking/cni/pkg/types/100"
)

// A result kept by the caller must read back through libcni exactly as if
// libcni had cached it, so DEL after a lost cache still gets prevResult.
func TestSeedCache(t *testing.T) {
	m, err := New(Options{ConfDir: t.TempDir(), BinDirs: []string{"/nonexistent"}, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	list, err := libcni.ConfListFromBytes([]byte(`{"cniVersion":"1.0.0","name":"seednet","plugins":[{"type":"bridge"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	raw := json.RawMessage(`{"cniVersion":"1.0.0","interfaces":[{"name":"eth0","sandbox":"/x"}],"ips":[{"address":"10.251.9.4/24","interface":0}]}`)
	pod := Pod{ID: "0123abcd", Name: "p", Namespace: "ns", UID: "u"}
	rt := m.runtimeConf(pod, "", map[string]any{"cgroupPath": "/kubepods/x"})

	if err := m.seedCache(list, rt, raw); err != nil {
		t.Fatal(err)
	}
	res, err := m.cni.GetNetworkListCachedResult(list, rt)
	if err != nil || res == nil {
		t.Fatalf("cached result: %v, %v", res, err)
	}
	r, err := current.NewResultFromResult(res)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.IPs) != 1 || r.IPs[0].Address.String() != "10.251.9.4/24" {
		t.Errorf("cached result IPs %v", r.IPs)
	}
	conf, crt, err := m.cni.GetNetworkListCachedConfig(list, rt)
	if err != nil || string(conf) != string(list.Bytes) || crt.CapabilityArgs["cgroupPath"] != "/kubepods/x" {
		t.Errorf("cached config %s %+v %v", conf, crt, err)
	}
	if got := m.cachedConfig("seednet", pod.ID); got == nil || got.Name != "seednet" || len(got.Plugins) != 1 {
		t.Errorf("cachedConfig = %+v", got)
	}

	// An entry libcni wrote itself is never overwritten.
	other := json.RawMessage(`{"cniVersion":"1.0.0","ips":[{"address":"10.251.9.99/24"}]}`)
	if err := m.seedCache(list, rt, other); err != nil {
		t.Fatal(err)
	}
	res, _ = m.cni.GetNetworkListCachedResult(list, rt)
	if r, _ := current.NewResultFromResult(res); r == nil || r.IPs[0].Address.IP.String() != "10.251.9.4" {
		t.Errorf("seedCache overwrote an existing entry: %v", res)
	}
}
