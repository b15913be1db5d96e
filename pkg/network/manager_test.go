package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
)

func TestSetupTeardown(t *testing.T) {
	tests := []struct {
		name string
		opts netOpts
	}{
		{name: "bridge+portmap", opts: netOpts{portmap: true}},
		{name: "loopback in chain", opts: netOpts{loopback: true, portmap: true}},
		{name: "bridge only", opts: netOpts{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tn := newTestNet(t, tt.opts)
			m := tn.manager(t)
			if ready, reason, msg := m.Status(); !ready {
				t.Fatalf("Status not ready: %s: %s", reason, msg)
			}
			ns := newTestNetNS(t, tn.dir, "pod")
			pod := tn.pod(t, ns)
			hostPort := 30000 + int32(time.Now().UnixNano()%20000)
			pod.PortMappings = []PortMapping{{HostPort: hostPort, ContainerPort: 8080, Protocol: "tcp"}}

			res, err := m.Setup(context.Background(), pod)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.IPs) != 1 || !strings.HasPrefix(res.IPs[0], tn.prefix+".") || res.Interface != "eth0" || res.Network != tn.name {
				t.Fatalf("result %+v, want one IP in %s.0/24 on eth0 of %s", res, tn.prefix, tn.name)
			}
			ip := res.IPs[0]

			eth0, addrs := nsLink(t, ns, "eth0")
			if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.IP.String() == ip }) {
				t.Errorf("eth0 in netns has %v, want %s", addrs, ip)
			}
			if eth0.Attrs().Flags&net.FlagUp == 0 {
				t.Error("eth0 is down")
			}
			if lo, _ := nsLink(t, ns, "lo"); lo.Attrs().Flags&net.FlagUp == 0 {
				t.Error("lo is down")
			}
			if got := tn.allocated(t); !slices.Equal(got, []string{ip}) {
				t.Errorf("host-local holds %v, want [%s]", got, ip)
			}
			veths := hostVeths(t, res.Raw, tn.bridge)
			if len(veths) != 1 || !slices.Equal(tn.bridgePorts(t), veths) {
				t.Fatalf("host veths %v, bridge ports %v", veths, tn.bridgePorts(t))
			}

			serveInNetNS(t, ns, 8080, "hello "+pod.Name)
			if got, err := dial(net.JoinHostPort(ip, "8080")); err != nil || got != "hello "+pod.Name {
				t.Errorf("host -> pod %s:8080: %q, %v", ip, got, err)
			}
			dnat := fmt.Sprintf("--to-destination %s:8080", ip)
			rules, _ := iptablesNat(t, "-S")
			if tt.opts.portmap {
				if !strings.Contains(rules, dnat) {
					t.Errorf("no portmap DNAT rule %q in:\n%s", dnat, rules)
				}
				// Through the DNAT from the host itself (portmap's OUTPUT hook).
				if got, err := dial(fmt.Sprintf("127.0.0.1:%d", hostPort)); err != nil || got != "hello "+pod.Name {
					t.Errorf("127.0.0.1:%d -> pod: %q, %v", hostPort, got, err)
				}
			} else if strings.Contains(rules, dnat) {
				t.Errorf("DNAT rule without portmap in the chain")
			}

			if err := m.Teardown(context.Background(), pod, res); err != nil {
				t.Fatal(err)
			}
			if got := tn.allocated(t); len(got) != 0 {
				t.Errorf("host-local still holds %v after Teardown", got)
			}
			if _, err := netlink.LinkByName(veths[0]); err == nil {
				t.Errorf("veth %s left after Teardown", veths[0])
			}
			if rules, _ := iptablesNat(t, "-S"); strings.Contains(rules, dnat) {
				t.Errorf("DNAT rule left after Teardown")
			}
			if cached, _ := filepath.Glob(filepath.Join(tn.cacheDir, "results", "*")); len(cached) != 0 {
				t.Errorf("libcni cache left: %v", cached)
			}
			if !isNetNS(ns) {
				t.Error("Teardown removed the netns; that is the caller's job")
			}
			if err := m.Teardown(context.Background(), pod, res); err != nil {
				t.Errorf("second Teardown: %v", err)
			}
		})
	}
}

// After a daemon restart the netns may be gone and the libcni cache lost;
// the stored Result must still free the address and port mappings.
func TestTeardownAfterRestartWithoutNetNS(t *testing.T) {
	tn := newTestNet(t, netOpts{portmap: true})
	m := tn.manager(t)
	ns := newTestNetNS(t, tn.dir, "pod")
	pod := tn.pod(t, ns)
	pod.PortMappings = []PortMapping{{HostPort: 30000 + int32(time.Now().UnixNano()%20000), ContainerPort: 80}}
	res, err := m.Setup(context.Background(), pod)
	if err != nil {
		t.Fatal(err)
	}
	veths := hostVeths(t, res.Raw, tn.bridge)
	if err := RemoveNetNS(ns); err != nil {
		t.Fatal(err)
	}
	if err := os.RemoveAll(tn.cacheDir); err != nil {
		t.Fatal(err)
	}

	m2 := tn.manager(t)
	if err := m2.Teardown(context.Background(), pod, res); err != nil {
		t.Fatal(err)
	}
	if got := tn.allocated(t); len(got) != 0 {
		t.Errorf("host-local still holds %v", got)
	}
	if rules, _ := iptablesNat(t, "-S"); strings.Contains(rules, "--to-destination "+res.IPs[0]+":80") {
		t.Error("DNAT rule left")
	}
	// The kernel drops the veth pair once the namespace is freed.
	waitGone(t, "veth "+veths[0], func() bool { _, err := netlink.LinkByName(veths[0]); return err != nil })
	if err := m2.Teardown(context.Background(), pod, res); err != nil {
		t.Errorf("second Teardown: %v", err)
	}
	// And with nothing stored at all (crash before the result was kept).
	if err := m2.Teardown(context.Background(), pod, nil); err != nil {
		t.Errorf("Teardown without result: %v", err)
	}
}

func TestSetupFailureLeavesNothing(t *testing.T) {
	tests := []struct {
		name   string
		plugin string // chained after bridge
		fake   bool   // install the failing fake plugin
	}{
		{name: "plugin binary missing", plugin: `{"type":"psmissing"}`},
		{name: "plugin allocates then fails", plugin: `{"type":"psfail","ipam":{"type":"host-local"}}`, fake: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tn := newTestNet(t, netOpts{})
			marker := filepath.Join(tn.dir, "fake-allocated")
			fakeData := filepath.Join(tn.dir, "ipam-fake")
			if tt.fake {
				// Allocates through real host-local (using the bridge's data
				// dir via the range below) and reports failure, like a plugin
				// dying halfway; DEL releases through host-local too.
				script := fmt.Sprintf(`#!/bin/sh
conf=$(cat)
case "$CNI_COMMAND" in
ADD) printf '%%s' "$conf" | %s/host-local > %s || exit 1
     echo '{"cniVersion":"1.0.0","code":11,"msg":"psfail: induced failure"}'; exit 1 ;;
DEL) printf '%%s' "$conf" | %s/host-local ;;
VERSION) echo '{"cniVersion":"1.0.0","supportedVersions":["0.4.0","1.0.0"]}' ;;
esac
`, pluginDir, marker, pluginDir)
				writeFile(t, filepath.Join(tn.binDir, "psfail"), script, 0o755)
				// Its own data dir: host-local refuses a second address for
				// the same container and interface in one store.
				tt.plugin = fmt.Sprintf(`{"type":"psfail","ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"%s.0/24"}]]}}`,
					fakeData, tn.prefix)
			}
			tn.writeConf(t, netOpts{extra: tt.plugin, file: "50-" + tn.name + ".conflist"})
			m := tn.manager(t)
			ns := newTestNetNS(t, tn.dir, "pod")
			pod := tn.pod(t, ns)

			_, err := m.Setup(context.Background(), pod)
			if err == nil {
				t.Fatal("Setup succeeded")
			}
			t.Log(err)
			if tt.fake {
				if b, _ := os.ReadFile(marker); !strings.Contains(string(b), `"ips"`) {
					t.Fatalf("fake plugin did not allocate: %q", b)
				}
				if !strings.Contains(err.Error(), "psfail: induced failure") {
					t.Errorf("error does not carry the plugin's message: %v", err)
				}
				fake := &testNet{name: tn.name, dataDir: fakeData}
				if got := fake.allocated(t); len(got) != 0 {
					t.Errorf("fake plugin's host-local still holds %v after failed Setup", got)
				}
			}
			if got := tn.allocated(t); len(got) != 0 {
				t.Errorf("host-local still holds %v after failed Setup", got)
			}
			if ports := tn.bridgePorts(t); len(ports) != 0 {
				t.Errorf("veths left on bridge: %v", ports)
			}
			if cached, _ := filepath.Glob(filepath.Join(tn.cacheDir, "results", "*")); len(cached) != 0 {
				t.Errorf("libcni cache left: %v", cached)
			}
		})
	}
}

func TestSetupCancelled(t *testing.T) {
	tn := newTestNet(t, netOpts{})
	m := tn.manager(t)
	ns := newTestNetNS(t, tn.dir, "pod")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := m.Setup(ctx, tn.pod(t, ns)); err == nil {
		t.Fatal("Setup with a cancelled context succeeded")
	}
	if got := tn.allocated(t); len(got) != 0 {
		t.Errorf("host-local holds %v", got)
	}
	if ports := tn.bridgePorts(t); len(ports) != 0 {
		t.Errorf("veths left: %v", ports)
	}
}

// DEL must use the network ADD used, even when the default changed or the
// config was removed since.
func TestTeardownUsesNetworkOfSetup(t *testing.T) {
	a := newTestNet(t, netOpts{})
	m := a.manager(t)
	nsA := newTestNetNS(t, a.dir, "a")
	podA := a.pod(t, nsA)
	resA, err := m.Setup(context.Background(), podA)
	if err != nil {
		t.Fatal(err)
	}

	// A second network, sorted first, becomes the default.
	b := newTestNet(t, netOpts{})
	b.confDir = a.confDir
	b.writeConf(t, netOpts{file: "10-" + b.name + ".conflist"})
	waitStatus(t, m, true, "", b.name)

	nsB := newTestNetNS(t, a.dir, "b")
	podB := b.pod(t, nsB)
	resB, err := m.Setup(context.Background(), podB)
	if err != nil {
		t.Fatal(err)
	}
	if resB.Network != b.name || !strings.HasPrefix(resB.IPs[0], b.prefix+".") {
		t.Fatalf("second pod got %+v, want network %s", resB, b.name)
	}

	if err := m.Teardown(context.Background(), podA, resA); err != nil {
		t.Fatal(err)
	}
	if got := a.allocated(t); len(got) != 0 {
		t.Errorf("network %s still holds %v: DEL went to the default network", a.name, got)
	}

	// B's config goes away; A is the default again, but libcni's cached
	// copy of B's config still lets B's pod be torn down.
	if err := os.Remove(filepath.Join(a.confDir, "10-"+b.name+".conflist")); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, m, true, "", a.name)
	if err := m.Teardown(context.Background(), podB, resB); err != nil {
		t.Fatal(err)
	}
	if got := b.allocated(t); len(got) != 0 {
		t.Errorf("network %s still holds %v after its config was removed", b.name, got)
	}
	if ports := b.bridgePorts(t); len(ports) != 0 {
		t.Errorf("veths left on %s: %v", b.bridge, ports)
	}
}

// Pods set up at once must each get their own address and not serialise.
func TestConcurrentSetup(t *testing.T) {
	tn := newTestNet(t, netOpts{portmap: true})
	m := tn.manager(t)
	const n = 6
	pods := make([]Pod, n)
	for i := range pods {
		pods[i] = tn.pod(t, newTestNetNS(t, tn.dir, fmt.Sprintf("pod%d", i)))
	}
	results := make([]*Result, n)
	errs := make([]error, n)
	done := make(chan int)
	start := time.Now()
	for i := range pods {
		go func() {
			results[i], errs[i] = m.Setup(context.Background(), pods[i])
			done <- i
		}()
	}
	for range pods {
		<-done
	}
	t.Logf("%d concurrent Setups took %v", n, time.Since(start))
	seen := map[string]bool{}
	for i, err := range errs {
		if err != nil {
			t.Fatalf("pod %d: %v", i, err)
		}
		ip := results[i].IPs[0]
		if seen[ip] {
			t.Errorf("address %s handed out twice", ip)
		}
		seen[ip] = true
	}
	for i := range pods {
		go func() {
			errs[i] = m.Teardown(context.Background(), pods[i], results[i])
			done <- i
		}()
	}
	for range pods {
		<-done
	}
	for i, err := range errs {
		if err != nil {
			t.Errorf("teardown pod %d: %v", i, err)
		}
	}
	if got := tn.allocated(t); len(got) != 0 {
		t.Errorf("host-local still holds %v", got)
	}
	if ports := tn.bridgePorts(t); len(ports) != 0 {
		t.Errorf("veths left: %v", ports)
	}
}

func TestSetupNotReady(t *testing.T) {
	m, err := New(Options{ConfDir: t.TempDir(), BinDirs: []string{pluginDir}, CacheDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	_, err = m.Setup(context.Background(), Pod{ID: "x", NetNS: "/nonexistent"})
	if !errors.Is(err, ErrNotReady) {
		t.Errorf("Setup without config = %v, want ErrNotReady", err)
	}
	_, err = m.Setup(context.Background(), Pod{ID: "x", NetNS: "/x",
		Annotations: map[string]string{IngressBandwidthAnnotation: "lots"}})
	if !errors.Is(err, ErrInvalidPod) {
		t.Errorf("Setup with bad annotation = %v, want ErrInvalidPod", err)
	}
}

// BenchmarkPodNetwork measures the pod-start path: NewNetNS, Setup (ADD
// with bridge, host-local and portmap) and Teardown (DEL), each reported
// on its own.
func BenchmarkPodNetwork(b *testing.B) {
	for _, bc := range []struct {
		name string
		opts netOpts
	}{{"bridge", netOpts{}}, {"bridge+portmap", netOpts{portmap: true}}} {
		b.Run(bc.name, func(b *testing.B) {
			tn := newTestNet(b, bc.opts)
			m := tn.manager(b)
			var nsT, addT, delT time.Duration
			for i := 0; b.Loop(); i++ {
				t0 := time.Now()
				ns, err := NewNetNS(tn.dir, fmt.Sprintf("b%d", i))
				if err != nil {
					b.Fatal(err)
				}
				t1 := time.Now()
				pod := tn.pod(b, ns)
				pod.PortMappings = []PortMapping{{HostPort: int32(31000 + i), ContainerPort: 80}}
				res, err := m.Setup(context.Background(), pod)
				if err != nil {
					RemoveNetNS(ns)
					b.Fatal(err)
				}
				t2 := time.Now()
				err = m.Teardown(context.Background(), pod, res)
				t3 := time.Now()
				RemoveNetNS(ns)
				if err != nil {
					b.Fatal(err)
				}
				nsT, addT, delT = nsT+t1.Sub(t0), addT+t2.Sub(t1), delT+t3.Sub(t2)
			}
			n := float64(b.N)
			b.ReportMetric(float64(nsT.Microseconds())/1000/n, "netns-ms")
			b.ReportMetric(float64(addT.Microseconds())/1000/n, "add-ms")
			b.ReportMetric(float64(delT.Microseconds())/1000/n, "del-ms")
		})
	}
}
