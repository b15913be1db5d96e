package network

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// Real plugins as Debian installs them.
const pluginDir = "/usr/lib/cni"

func randHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, (n+1)/2)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)[:n]
}

// testNet is a CNI network private to one test: its own bridge, subnet,
// host-local data dir, conf dir and cache dir, all removed at the end.
type testNet struct {
	name, bridge, prefix  string // prefix is "10.251.N"
	confDir, dataDir, dir string
	cacheDir, binDir      string
}

type netOpts struct {
	loopback bool   // put the loopback plugin first in the chain
	portmap  bool   // chain portmap after bridge
	extra    string // one more plugin (JSON) at the end of the chain
	file     string // conf file name, "50-<name>.conflist" by default
}

func newTestNet(t testing.TB, o netOpts) *testNet {
	t.Helper()
	needRoot(t)
	if _, err := os.Stat(filepath.Join(pluginDir, "bridge")); err != nil {
		t.Skipf("needs the CNI plugins in %s (containernetworking-plugins): %v", pluginDir, err)
	}
	id := randHex(t, 6)
	dir := t.TempDir()
	tn := &testNet{
		name: "psnet" + id, bridge: "psb" + id, prefix: freePrefix(t),
		dir: dir, confDir: filepath.Join(dir, "net.d"), dataDir: filepath.Join(dir, "ipam"),
		cacheDir: filepath.Join(dir, "cache"), binDir: filepath.Join(dir, "bin"),
	}
	for _, d := range []string{tn.confDir, tn.binDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// Registered first so they run last, after the test's netns are gone.
	snapshot := natRules(t)
	t.Cleanup(func() { cleanIptables(t, snapshot, tn.name) })
	t.Cleanup(func() {
		if l, err := netlink.LinkByName(tn.bridge); err == nil {
			if err := netlink.LinkDel(l); err != nil {
				t.Errorf("delete bridge %s: %v", tn.bridge, err)
			}
		}
	})
	if o.file == "" {
		o.file = "50-" + tn.name + ".conflist"
	}
	tn.writeConf(t, o)
	return tn
}

func (tn *testNet) writeConf(t testing.TB, o netOpts) {
	t.Helper()
	var plugins []string
	if o.loopback {
		plugins = append(plugins, `{"type":"loopback"}`)
	}
	plugins = append(plugins, fmt.Sprintf(`{"type":"bridge","bridge":%q,"isGateway":true,"ipMasq":false,"hairpinMode":true,
		"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"%s.0/24"}]],"routes":[{"dst":"0.0.0.0/0"}]}}`,
		tn.bridge, tn.dataDir, tn.prefix))
	if o.portmap {
		plugins = append(plugins, `{"type":"portmap","capabilities":{"portMappings":true},"snat":true}`)
	}
	if o.extra != "" {
		plugins = append(plugins, o.extra)
	}
	conf := fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[%s]}`, tn.name, strings.Join(plugins, ","))
	writeFile(t, filepath.Join(tn.confDir, o.file), conf, 0o644)
}

func (tn *testNet) manager(t testing.TB) *Manager {
	t.Helper()
	m, err := New(Options{
		ConfDir: tn.confDir, BinDirs: []string{tn.binDir, pluginDir}, CacheDir: tn.cacheDir,
		Timeout: 30 * time.Second, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// allocated lists the addresses host-local holds for the network.
func (tn *testNet) allocated(t testing.TB) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(tn.dataDir, tn.name))
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	var ips []string
	for _, e := range entries {
		if net.ParseIP(e.Name()) != nil {
			ips = append(ips, e.Name())
		}
	}
	return ips
}

// bridgePorts lists the host veths attached to the test's bridge.
func (tn *testNet) bridgePorts(t testing.TB) []string {
	t.Helper()
	br, err := netlink.LinkByName(tn.bridge)
	if err != nil {
		return nil
	}
	links, err := netlink.LinkList()
	if err != nil {
		t.Fatal(err)
	}
	var ports []string
	for _, l := range links {
		if l.Attrs().MasterIndex == br.Attrs().Index {
			ports = append(ports, l.Attrs().Name)
		}
	}
	return ports
}

func (tn *testNet) pod(t testing.TB, nsPath string) Pod {
	return Pod{ID: randHex(t, 64), Name: "web-" + randHex(t, 4), Namespace: "default", UID: randHex(t, 8), NetNS: nsPath}
}

// freePrefix picks a 10.251.N.0/24 that no host address or route uses.
func freePrefix(t testing.TB) string {
	t.Helper()
	routes, err := netlink.RouteList(nil, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	for range 50 {
		n, _ := rand.Int(rand.Reader, big.NewInt(254))
		prefix := fmt.Sprintf("10.251.%d", n.Int64()+1)
		_, subnet, _ := net.ParseCIDR(prefix + ".0/24")
		used := false
		for _, r := range routes {
			if r.Dst != nil && (r.Dst.Contains(subnet.IP) || subnet.Contains(r.Dst.IP)) && r.Dst.String() != "0.0.0.0/0" {
				used = true
			}
		}
		if !used {
			return prefix
		}
	}
	t.Fatal("no free 10.251.N.0/24")
	return ""
}

func iptablesNat(t testing.TB, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "iptables", append([]string{"-w", "5", "-t", "nat"}, args...)...).CombinedOutput()
	return string(out), err
}

func natRules(t testing.TB) map[string]bool {
	t.Helper()
	out, err := iptablesNat(t, "-S")
	if err != nil {
		t.Fatalf("iptables -S: %v: %s", err, out)
	}
	set := map[string]bool{}
	for _, l := range strings.Split(out, "\n") {
		set[l] = true
	}
	return set
}

// cleanIptables removes what portmap made for the test's network: the
// rules naming it, the per-pod CNI-DN chains they jump to, and the shared
// CNI-HOSTPORT chains if the test created them and nobody else uses them.
func cleanIptables(t testing.TB, before map[string]bool, network string) {
	out, err := iptablesNat(t, "-S")
	if err != nil {
		t.Errorf("iptables -S: %v", err)
		return
	}
	lines := strings.Split(out, "\n")
	chains := map[string]bool{}
	for _, l := range lines {
		if !strings.HasPrefix(l, "-A ") || !strings.Contains(l, `\"`+network+`\"`) {
			continue
		}
		args := splitRule(l)
		for i, a := range args {
			if a == "-j" && i+1 < len(args) && strings.HasPrefix(args[i+1], "CNI-DN-") {
				chains[args[i+1]] = true
			}
		}
		args[0] = "-D"
		if out, err := iptablesNat(t, args...); err != nil {
			t.Errorf("iptables %v: %v: %s", args, err, out)
		}
	}
	for c := range chains {
		iptablesNat(t, "-F", c)
		if out, err := iptablesNat(t, "-X", c); err != nil {
			t.Errorf("iptables -X %s: %v: %s", c, err, out)
		}
	}
	if before["-N CNI-HOSTPORT-DNAT"] {
		return
	}
	if out, _ := iptablesNat(t, "-S", "CNI-HOSTPORT-DNAT"); strings.Count(out, "-A ") > 0 {
		return // someone else's pods use it now
	}
	out, _ = iptablesNat(t, "-S")
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "-A ") && strings.Contains(l, "-j CNI-HOSTPORT-") && !before[l] {
			args := splitRule(l)
			args[0] = "-D"
			iptablesNat(t, args...)
		}
	}
	for _, c := range []string{"CNI-HOSTPORT-DNAT", "CNI-HOSTPORT-SETMARK", "CNI-HOSTPORT-MASQ"} {
		if !before["-N "+c] {
			iptablesNat(t, "-F", c)
			iptablesNat(t, "-X", c)
		}
	}
}

// splitRule splits one iptables -S line, honouring its "..." quoting.
func splitRule(line string) []string {
	var args []string
	var cur strings.Builder
	inQuote, have := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == '\\' && inQuote && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == '"':
			inQuote, have = !inQuote, true
		case c == ' ' && !inQuote:
			if have || cur.Len() > 0 {
				args = append(args, cur.String())
			}
			cur.Reset()
			have = false
		default:
			cur.WriteByte(c)
		}
	}
	if have || cur.Len() > 0 {
		args = append(args, cur.String())
	}
	return args
}

// serveInNetNS listens on port inside the netns at nsPath and answers
// every connection with greeting, until the test ends.
func serveInNetNS(t *testing.T, nsPath string, port int, greeting string) {
	t.Helper()
	type res struct {
		l   net.Listener
		err error
	}
	ch := make(chan res, 1)
	go func() {
		// Left locked on purpose: the thread is in the pod's netns and Go
		// discards it when this goroutine ends.
		runtime.LockOSThread()
		fd, err := unix.Open(nsPath, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			ch <- res{err: err}
			return
		}
		err = unix.Setns(fd, unix.CLONE_NEWNET)
		unix.Close(fd)
		if err != nil {
			ch <- res{err: err}
			return
		}
		// The socket belongs to the netns it was made in; Accept can run anywhere.
		l, err := net.Listen("tcp4", fmt.Sprintf(":%d", port))
		ch <- res{l, err}
	}()
	r := <-ch
	if r.err != nil {
		t.Fatalf("listen in netns: %v", r.err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := r.l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(greeting))
			c.Close()
		}
	}()
	t.Cleanup(func() { r.l.Close(); wg.Wait() })
}

func dial(addr string) (string, error) {
	c, err := net.DialTimeout("tcp4", addr, 3*time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	return string(b), err
}

func hostVeths(t *testing.T, raw json.RawMessage, bridge string) []string {
	t.Helper()
	var r struct {
		Interfaces []struct{ Name, Sandbox string }
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		t.Fatal(err)
	}
	var veths []string
	for _, i := range r.Interfaces {
		if i.Sandbox == "" && i.Name != bridge {
			veths = append(veths, i.Name)
		}
	}
	return veths
}

func waitGone(t *testing.T, what string, gone func() bool) {
	t.Helper()
	for deadline := time.Now().Add(3 * time.Second); !gone(); time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("%s still there after 3s", what)
		}
	}
}
