package harness

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// KubeLock is the lock every test or script that runs a kubelet holds for
// as long as its kubelet runs (`flock /run/lock/pod-shim-kube.lock ...` in
// shell): kubelets share the loopback ports 10248/10250/10255, /var/log/pods
// and the kubepods cgroups, so two at once break each other.
const KubeLock = "/run/lock/pod-shim-kube.lock"

// LockKube takes KubeLock for the rest of t (t.Cleanup releases it, and
// cleanups run last-in first-out, so take it before starting anything that
// the lock guards). It waits while another run holds it, up to bound.
func LockKube(t testing.TB, bound time.Duration) {
	t.Helper()
	if err := os.MkdirAll("/run/lock", 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(KubeLock, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		t.Fatalf("kubelet lock: %v", err)
	}
	begin := time.Now()
	logged := false
	for {
		err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			t.Fatalf("kubelet lock %s: %v", KubeLock, err)
		}
		if time.Since(begin) > bound {
			f.Close()
			t.Fatalf("kubelet lock %s still held after %v (%s)", KubeLock, bound, lockHolders(f))
		}
		if !logged {
			t.Logf("waiting for the kubelet lock %s (%s)", KubeLock, lockHolders(f))
			logged = true
		}
		time.Sleep(time.Second) // poll: flock(2) has no timeout of its own
	}
	if logged {
		t.Logf("kubelet lock taken after %.1fs", time.Since(begin).Seconds())
	}
	t.Cleanup(func() {
		unix.Flock(int(f.Fd()), unix.LOCK_UN)
		f.Close()
	})
}

// lockHolders names the processes holding a flock on f, from /proc/locks.
func lockHolders(f *os.File) string {
	var st unix.Stat_t
	if err := unix.Fstat(int(f.Fd()), &st); err != nil {
		return "holder unknown"
	}
	b, err := os.ReadFile("/proc/locks")
	if err != nil {
		return "holder unknown"
	}
	suffix := fmt.Sprintf(":%d", st.Ino)
	var who []string
	for _, l := range strings.Split(string(b), "\n") {
		fl := strings.Fields(l)
		// "1: FLOCK  ADVISORY  WRITE 1234 00:19:567 0 EOF"
		if len(fl) < 6 || fl[1] != "FLOCK" || !strings.HasSuffix(fl[5], suffix) {
			continue
		}
		cmd, _ := os.ReadFile("/proc/" + fl[4] + "/cmdline")
		who = append(who, "pid "+fl[4]+" "+strings.TrimSpace(strings.ReplaceAll(string(cmd), "\x00", " ")))
	}
	if len(who) == 0 {
		return "holder unknown"
	}
	return "held by " + strings.Join(who, "; ")
}
