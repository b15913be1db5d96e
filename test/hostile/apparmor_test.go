package hostile

import (
	"os"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	cri "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/pod-shim/pod-shim/test/harness"
)

// On a host without AppArmor (this one), RuntimeDefault is accepted and
// the daemon says once that it means no confinement; a Localhost profile,
// which cannot be honoured, is refused. The AppArmor-enabled path (default
// profile generated, loaded once, applied) is unit-tested in pkg/container:
// no host here can run it.
func TestAppArmorWithoutAppArmor(t *testing.T) {
	requireHost(t)
	if b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled"); err == nil && strings.TrimSpace(string(b)) == "Y" {
		t.Skip("AppArmor is enabled on this host: this test is for hosts without it")
	}
	d := startDaemon(t, harness.Options{})
	img := d.Pull()
	podCfg := d.PodConfig("apparmor")
	pod := d.RunPod(podCfg)
	for _, name := range []string{"rd1", "rd2"} {
		cfg := harness.ContainerConfig(name, img, "true")
		cfg.Linux = &cri.LinuxContainerConfig{SecurityContext: &cri.LinuxContainerSecurityContext{
			Apparmor: &cri.SecurityProfile{ProfileType: cri.SecurityProfile_RuntimeDefault},
		}}
		d.StartContainer(pod, podCfg, cfg)
	}
	log, err := os.ReadFile(d.LogFile)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), "AppArmor is not enabled on this host"); n != 1 {
		t.Errorf("%d log lines about AppArmor for two RuntimeDefault containers, want 1", n)
	}
	cfg := harness.ContainerConfig("lh", img, "true")
	cfg.Linux = &cri.LinuxContainerConfig{SecurityContext: &cri.LinuxContainerSecurityContext{
		Apparmor: &cri.SecurityProfile{ProfileType: cri.SecurityProfile_Localhost, LocalhostRef: "localhost/some-profile"},
	}}
	_, err = d.CreateContainer(pod, podCfg, cfg)
	wantCode(t, "Localhost AppArmor profile without AppArmor", err, codes.InvalidArgument, "AppArmor is not enabled")
}
