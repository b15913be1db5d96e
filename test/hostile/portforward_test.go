package hostile

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pod-shim/pod-shim/test/harness"
)

// A port-forward to a stopped pod must not be dialled on the host, where
// the same port may be a host service the pod author should not reach.
// Here the host listens on 127.0.0.1:R with a marker; a forward to port R
// of the stopped pod gets its stream closed, and the host listener sees no
// connection. (Before the fix the host was dialled only for a pod without
// a netns path, one still being created; a stopped pod keeps its stale
// path. pkg/streaming's TestDialTarget covers every state.)
func TestPortForwardStoppedPodNotHost(t *testing.T) {
	requireHost(t)
	d := startDaemon(t, harness.Options{Crictl: true})
	pod := d.RunPod(d.PodConfig("pf-stopped"))
	if err := d.StopPod(pod); err != nil {
		t.Fatal(err)
	}

	host, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close()
	var reached atomic.Int32
	go func() {
		for {
			c, err := host.Accept()
			if err != nil {
				return
			}
			reached.Add(1)
			io.WriteString(c, "host-secret\n")
			c.Close()
		}
	}()
	remote := host.Addr().(*net.TCPAddr).Port
	local := freePort(t)
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, harness.CrictlPath(), "--config", d.CrictlYAML, "--runtime-endpoint", "unix://"+d.Sock,
		"port-forward", pod, fmt.Sprintf("%d:%d", local, remote))
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cancel(); cmd.Wait() })

	// Wait until crictl forwards (its local port accepts), then read what
	// the forwarded connection yields: the daemon must end it without
	// having dialled the host.
	var got []byte
	harness.Eventually(t, "a connection through crictl port-forward", 30*time.Second, func() error {
		c, err := net.DialTimeout("tcp", fmt.Sprintf("127.0.0.1:%d", local), 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		got, err = io.ReadAll(c)
		if err != nil && !errors.Is(err, io.EOF) {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				return fmt.Errorf("forwarded connection neither answered nor closed: %v", err)
			}
		}
		return nil
	})
	if n := reached.Load(); n != 0 || len(got) != 0 {
		t.Fatalf("port-forward to a stopped pod reached the host listener %d times and read %q", n, got)
	}
}
