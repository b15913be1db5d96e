package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
	"github.com/pod-shim/pod-shim/test/images"
)

// TestPodLifecycle is issue 2's acceptance items 1 and 2: a real pod driven by
// crictl from pull to removal, then nothing of it left on the host.
func TestPodLifecycle(t *testing.T) {
	requireHost(t)
	_, ref := registry(t)
	d := startDaemon(t)

	// version
	out := d.Crictl("version")
	for _, re := range []string{`(?m)^Version:\s+0\.1\.0$`, `(?m)^RuntimeName:\s+pod-shim$`, `(?m)^RuntimeApiVersion:\s+v1$`, `(?m)^RuntimeVersion:\s+\S+`} {
		if !regexp.MustCompile(re).MatchString(out) {
			t.Errorf("crictl version output does not match %s:\n%s", re, out)
		}
	}

	// info: both conditions true
	var info infoJSON
	d.CrictlJSON(&info, "info", "-o", "json")
	for _, cond := range []string{"RuntimeReady", "NetworkReady"} {
		i := slices.IndexFunc(info.Status.Conditions, func(c conditionJSON) bool { return c.Type == cond })
		if i < 0 {
			t.Errorf("crictl info: no %s condition in %+v", cond, info.Status.Conditions)
		} else if c := info.Status.Conditions[i]; !c.Status {
			t.Errorf("crictl info: %s is false (%s: %s)", cond, c.Reason, c.Message)
		}
	}

	// pull from the loopback registry, then images lists it with the pushed digest
	d.Crictl("pull", ref)
	img, _ := images.Busybox()
	digest, _ := img.Digest()
	repo := strings.TrimSuffix(ref, ":1.36")
	var list imageListJSON
	d.CrictlJSON(&list, "images", "-o", "json")
	i := slices.IndexFunc(list.Images, func(im imageJSON) bool { return slices.Contains(im.RepoTags, ref) })
	if i < 0 {
		t.Fatalf("crictl images does not list %s: %+v", ref, list.Images)
	}
	if want := repo + "@" + digest.String(); !slices.Contains(list.Images[i].RepoDigests, want) {
		t.Errorf("crictl images: repo digests %v, want %s", list.Images[i].RepoDigests, want)
	}
	if table := d.Crictl("images"); !strings.Contains(table, repo) || !strings.Contains(table, "1.36") {
		t.Errorf("crictl images table lacks %s 1.36:\n%s", repo, table)
	}

	// runp → Ready with an IP on the test's bridge
	webID, webCfg := d.CrictlRunPod("web-" + harness.RandHex(3))
	webIP := d.podIP(webID)

	// a busybox container that prints a line, then serves /var/www
	line := "hello-from-pod-shim-" + harness.RandHex(4)
	httpdCfg := d.ContainerConfigFile("httpd", ref, "sh", "-c", "echo "+line+"; exec httpd -f -p 8080 -h /var/www")
	httpdID := d.CrictlStartContainer(webID, httpdCfg, webCfg)
	d.RecordNetns(httpdID)

	// logs shows the line, and the file is in CRI format
	harness.Eventually(t, "crictl logs shows the line", 30*time.Second, func() error {
		out, err := d.CrictlErr("logs", httpdID)
		if err != nil {
			return err
		}
		if !strings.Contains(out, line) {
			return fmt.Errorf("crictl logs = %q, want %q", out, line)
		}
		return nil
	})
	var cs containerStatusJSON
	d.CrictlJSON(&cs, "inspect", "-o", "json", httpdID)
	if b, err := os.ReadFile(cs.Status.LogPath); err != nil {
		t.Errorf("container log file: %v", err)
	} else if !regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d) stdout F ` + line + `$`).Match(b) {
		t.Errorf("log file %s is not in CRI format with the line:\n%s", cs.Status.LogPath, b)
	}

	// the host reaches the pod
	url := "http://" + webIP + ":8080/"
	harness.Eventually(t, "curl "+url, 30*time.Second, func() error {
		out, err := exec.Command("curl", "-sS", "--noproxy", "*", "--max-time", "5", url).CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if string(out) != images.IndexHTML {
			return fmt.Errorf("curl %s = %q, want %q", url, out, images.IndexHTML)
		}
		return nil
	})

	// a container in a second pod reaches the first pod
	clientID, clientCfg := d.CrictlRunPod("client-" + harness.RandHex(3))
	d.podIP(clientID)
	sleeperID := d.CrictlStartContainer(clientID, d.ContainerConfigFile("sleeper", ref, "sleep", "3600"), clientCfg)
	d.RecordNetns(sleeperID)
	out = d.Crictl("exec", "-s", sleeperID, "sh", "-c", `printf 'GET / HTTP/1.0\r\n\r\n' | nc -w 5 `+webIP+` 8080`)
	if !strings.Contains(out, "200 OK") || !strings.Contains(out, images.IndexHTML) {
		t.Errorf("pod-to-pod HTTP through nc: got %q, want 200 OK and %q", out, images.IndexHTML)
	}

	// exec -s returns output and the exit code. crictl v1.37 prints stdout and
	// stderr each followed by a newline on success, and on a non-zero exit
	// reports "exited with N" (its own exit status is then 1, the output dropped);
	// the CRI call itself is checked for the exact values.
	if out := d.Crictl("exec", "-s", sleeperID, "sh", "-c", "echo hi"); strings.TrimRight(out, "\n") != "hi" {
		t.Errorf("crictl exec -s 'echo hi' = %q, want hi", out)
	}
	if _, err := d.CrictlErr("exec", "-s", sleeperID, "sh", "-c", "echo hi; exit 3"); err == nil {
		t.Errorf("crictl exec -s 'exit 3' succeeded, want a reported exit code 3")
	} else if !strings.Contains(err.Error(), "exited with 3") {
		t.Errorf("crictl exec -s 'exit 3': %v, want it to report \"exited with 3\"", err)
	}
	rs, _ := d.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	execResp, err := rs.ExecSync(ctx, &cri.ExecSyncRequest{ContainerId: sleeperID, Cmd: []string{"sh", "-c", "echo hi; echo err >&2; exit 3"}, Timeout: 10})
	if err != nil {
		t.Errorf("ExecSync: %v", err)
	} else if execResp.ExitCode != 3 || string(execResp.Stdout) != "hi\n" || string(execResp.Stderr) != "err\n" {
		t.Errorf("ExecSync = exit %d, stdout %q, stderr %q; want 3, \"hi\\n\", \"err\\n\"", execResp.ExitCode, execResp.Stdout, execResp.Stderr)
	}
	// ExecSync past its timeout: DeadlineExceeded, and the process is gone.
	_, err = rs.ExecSync(ctx, &cri.ExecSyncRequest{ContainerId: sleeperID, Cmd: []string{"sleep", "31"}, Timeout: 1})
	if status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("ExecSync of sleep 31 with timeout 1s: %v, want DeadlineExceeded", err)
	}
	if out := d.Crictl("exec", "-s", sleeperID, "ps", "-o", "args"); !strings.Contains(out, "sleep 3600") {
		t.Errorf("ps in the pod does not show the container's own sleep 3600, so it cannot tell whether the exec was killed:\n%s", out)
	} else if strings.Contains(out, "sleep 31") {
		t.Errorf("the timed-out exec still runs:\n%s", out)
	}
	if out := d.Crictl("exec", "-s", httpdID, "cat", "/var/www/index.html"); strings.TrimRight(out, "\n") != strings.TrimRight(images.IndexHTML, "\n") {
		t.Errorf("crictl exec -s cat = %q, want %q", out, images.IndexHTML)
	}

	// While the pods run, the leftover probes must see them: otherwise item 2 would check nothing.
	if n := len(d.Monitors()); n != 2 {
		t.Errorf("found %d pod monitor processes for 2 running pods (ARCHITECTURE.md: one per pod): %+v", n, d.Monitors())
	}
	if v := d.VethsOnBridge(); len(v) != 2 {
		t.Errorf("bridge %s has veths %v, want 2", d.Bridge, v)
	}
	if a := d.IPAMAllocations(); len(a) != 2 {
		t.Errorf("host-local allocations %v, want 2", a)
	}

	// stop, rm, stopp, rmp: each succeeds, and again when repeated
	d.Crictl("stop", httpdID)
	d.Crictl("stop", httpdID)
	d.CrictlJSON(&cs, "inspect", "-o", "json", httpdID)
	if cs.Status.State != "CONTAINER_EXITED" {
		t.Errorf("after crictl stop: state %s, want CONTAINER_EXITED", cs.Status.State)
	}
	d.Crictl("rm", httpdID)
	// crictl rm asks ContainerStatus first, which is NotFound for a removed
	// container, so the repeat goes straight to RemoveContainer as kubelet does.
	if _, err := rs.RemoveContainer(ctx, &cri.RemoveContainerRequest{ContainerId: httpdID}); err != nil {
		t.Errorf("RemoveContainer of a removed container: %v, want success", err)
	}
	if _, err := d.CrictlErr("rm", httpdID); err == nil {
		t.Errorf("crictl rm of a removed container succeeded: ContainerStatus should say NotFound")
	}
	for _, pod := range []string{webID, clientID} {
		d.Crictl("stopp", pod)
		d.Crictl("stopp", pod)
		var ps podStatusJSON
		d.CrictlJSON(&ps, "inspectp", "-o", "json", pod)
		if ps.Status.State != "SANDBOX_NOTREADY" {
			t.Errorf("after crictl stopp: pod state %s, want SANDBOX_NOTREADY", ps.Status.State)
		}
		d.Crictl("rmp", pod)
		if _, err := rs.RemovePodSandbox(ctx, &cri.RemovePodSandboxRequest{PodSandboxId: pod}); err != nil {
			t.Errorf("RemovePodSandbox of a removed pod: %v, want success", err)
		}
	}
	if s := d.snapshot(); len(s) != 0 {
		t.Errorf("after removal crictl still lists %v", s)
	}

	// item 2: nothing of those pods remains
	for _, p := range d.leftovers() {
		t.Error(p)
	}
}

// podIP checks the pod is Ready with an IP in the test's subnet and returns it.
func (d *daemon) podIP(id string) string {
	d.T.Helper()
	var ps podStatusJSON
	d.CrictlJSON(&ps, "inspectp", "-o", "json", id)
	if ps.Status.State != "SANDBOX_READY" {
		d.T.Fatalf("pod %s state %s, want SANDBOX_READY", id, ps.Status.State)
	}
	ip := net.ParseIP(ps.Status.Network.IP)
	if ip == nil || !d.Subnet.Contains(ip) {
		d.T.Fatalf("pod %s IP %q, want one in %s", id, ps.Status.Network.IP, d.Subnet)
	}
	return ip.String()
}
