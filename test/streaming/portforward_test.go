package streaming

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pod-shim/pod-shim/test/harness"
)

// freePort prefers want (the port the acceptance names) and falls back to
// any free loopback port.
func freePort(t *testing.T, want int) int {
	t.Helper()
	if want == 0 {
		// any free port, below
	} else if l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(want)); err == nil {
		l.Close()
		return want
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestPortForward: crictl port-forward POD 18081:8080, then a plain HTTP
// GET on 127.0.0.1:18081 reaches the pod's httpd.
func TestPortForward(t *testing.T) {
	requireHost(t)
	d := startDaemon(t)
	pod, _ := d.podWith("pf", "mkdir -p /www && echo pf-ok > /www/index.html && exec httpd -f -p 8080 -h /www")

	local := freePort(t, 18081)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, harness.CrictlPath(), "--config", d.CrictlYAML, "--runtime-endpoint", "unix://"+d.Sock,
		"port-forward", pod, fmt.Sprintf("%d:8080", local))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })

	url := fmt.Sprintf("http://127.0.0.1:%d/", local)
	client := &http.Client{Timeout: 5 * time.Second}
	for i := range 3 { // several connections over one forward
		harness.Eventually(t, "GET through port-forward", 30*time.Second, func() error {
			resp, err := client.Get(url)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			if !strings.Contains(string(body), "pf-ok") {
				return fmt.Errorf("request %d: %s %q", i, resp.Status, body)
			}
			return nil
		})
	}
}
