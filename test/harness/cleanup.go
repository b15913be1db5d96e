package harness

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// cleanup removes everything the test made, in an order that works even
// when the daemon is broken: CRI removal first, then by hand.
func (d *Daemon) cleanup() {
	t := d.T
	if t.Failed() {
		t.Logf("pod-shim daemon log (%s):\n%s", d.LogFile, d.LogTail())
	}
	if dir := d.Opts.LogCopyDir; dir != "" {
		// Keep the daemon's whole log for a look at a passing run too.
		if b, err := os.ReadFile(d.LogFile); err == nil {
			name := strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()) + ".log"
			_ = os.WriteFile(filepath.Join(dir, name), b, 0o644)
		}
	}
	if d.Running() && d.RS != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		if resp, err := d.RS.ListPodSandbox(ctx, &cri.ListPodSandboxRequest{}); err == nil {
			for _, p := range resp.Items {
				if _, err := d.RS.StopPodSandbox(ctx, &cri.StopPodSandboxRequest{PodSandboxId: p.Id}); err != nil {
					t.Logf("cleanup: StopPodSandbox %s: %v", p.Id, err)
				}
				if _, err := d.RS.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: p.Id}); err != nil {
					t.Logf("cleanup: RemovePodSandbox %s: %v", p.Id, err)
				}
			}
		}
		cancel()
	}
	if err := d.Stop(); errors.Is(err, ErrStopTimeout) {
		t.Errorf("cleanup: %v", err)
	} else if err != nil {
		t.Logf("cleanup: %v", err)
	}
	if d.conn != nil {
		d.conn.Close()
	}

	// By hand, whatever the daemon left.
	for _, id := range d.RuncContainers() {
		exec.Command("runc", "--root", d.RuncRoot(), "delete", "-f", id).Run()
	}
	for _, p := range d.Monitors() {
		syscall.Kill(p.Pid, syscall.SIGKILL)
	}
	for _, p := range Processes() {
		if strings.Contains(p.Cmdline, d.Base) {
			syscall.Kill(p.Pid, syscall.SIGKILL)
		}
	}
	d.mu.Lock()
	for _, m := range NsfsMountsOf(d.netnsInos) {
		unix.Unmount(m, unix.MNT_DETACH)
		if strings.HasPrefix(m, "/run/netns/") || strings.HasPrefix(m, "/var/run/netns/") {
			os.Remove(m)
		}
	}
	d.mu.Unlock()
	for _, m := range MountsUnder(d.Base) {
		if err := unix.Unmount(m, unix.MNT_DETACH); err != nil {
			t.Logf("cleanup: unmount %s: %v", m, err)
		}
	}
	for _, v := range d.VethsOnBridge() {
		exec.Command("ip", "link", "del", v).Run()
	}
	if exec.Command("ip", "link", "show", d.Bridge).Run() == nil {
		if out, err := exec.Command("ip", "link", "del", d.Bridge).CombinedOutput(); err != nil {
			t.Errorf("cleanup: ip link del %s: %v: %s", d.Bridge, err, out)
		}
	}
	for _, f := range d.cniResultCache() {
		os.Remove(f)
	}
	if d.Opts.Cleanup != nil {
		d.Opts.Cleanup(d)
	}
	if r := d.RaceReports(); r != "" {
		t.Errorf("data races in the daemon or its monitors (-race build):\n%s", r)
	}
	// Never RemoveAll through a live mount: it would delete what the mount shows.
	if m := MountsUnder(d.Base); len(m) > 0 {
		t.Errorf("cleanup: mounts still under %s, leaving it: %v", d.Base, m)
		return
	}
	if err := os.RemoveAll(d.Base); err != nil {
		t.Errorf("cleanup: %v", err)
	}
}
