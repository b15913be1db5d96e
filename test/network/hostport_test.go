package network

import (
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
	"github.com/pod-shim/pod-shim/test/images"
)

// TestHostPort: hostPort 18080 → the pod's 8080 is reachable at
// 127.0.0.1:18080 from the host, and the rules are gone with the pod.
func TestHostPort(t *testing.T) {
	requireHost(t)
	if l, err := net.Listen("tcp", "127.0.0.1:18080"); err != nil {
		t.Skipf("port 18080 is in use on this host: %v", err)
	} else {
		l.Close()
	}
	e := newEnv(t)
	e.WriteNetConf(e.BridgePlugin(), portmapPlugin())
	e.Start()
	ref := e.Pull()

	cfg := e.podConfig("web", func(c *cri.PodSandboxConfig) {
		c.PortMappings = []*cri.PortMapping{{Protocol: cri.Protocol_TCP, ContainerPort: 8080, HostPort: 18080}}
	})
	id := e.RunPod(cfg)
	e.startContainer(id, cfg, ref, cri.NamespaceMode_CONTAINER, "httpd", "-f", "-p", "8080", "-h", "/var/www")

	var body string
	harness.Eventually(t, "curl http://127.0.0.1:18080/", 30*time.Second, func() error {
		out, err := exec.Command("curl", "-sS", "--max-time", "5", "http://127.0.0.1:18080/").CombinedOutput()
		body = string(out)
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	})
	if body != images.IndexHTML {
		t.Errorf("curl 127.0.0.1:18080 = %q, want %q", body, images.IndexHTML)
	}
	ip := e.PodStatus(id).Status.Network.Ip
	if out, err := exec.Command("curl", "-sS", "--max-time", "5", "http://"+ip+":8080/").CombinedOutput(); err != nil || string(out) != images.IndexHTML {
		t.Errorf("curl pod IP %s:8080: %v %q", ip, err, out)
	}
	var dnat []string
	for _, l := range natRules(t) {
		if strings.Contains(l, "18080") {
			dnat = append(dnat, l)
		}
	}
	if len(dnat) == 0 {
		t.Errorf("no nat rule mentions 18080 while the pod runs")
	}

	if err := e.StopPod(id); err != nil {
		t.Fatal(err)
	}
	if err := e.RemovePod(id); err != nil {
		t.Fatal(err)
	}
	for _, l := range natRules(t) {
		if strings.Contains(l, "18080") {
			t.Errorf("nat rule for 18080 left after removal: %s", l)
		}
	}
	if out, err := exec.Command("curl", "-sS", "--max-time", "3", "http://127.0.0.1:18080/").CombinedOutput(); err == nil {
		t.Errorf("127.0.0.1:18080 still answers after removal: %q", out)
	}
	e.NoLeftovers()
}
