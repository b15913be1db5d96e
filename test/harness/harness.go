// Package harness is what the integration suites (test/e2e, test/containers,
// test/crash, test/network, test/streaming) share to drive a real pod-shim
// daemon: the binaries built once per test binary, a daemon with private
// root/state/socket dirs and its own CNI bridge network, the loopback test
// registry, crictl and CRI gRPC clients, the leak checks and a cleanup that
// undoes everything a test made, also when it fails.
//
// A suite's differences are Options, not copies: extra serve flags, config
// TOML, failpoint environment, fake CNI plugins, the network's plugin chain.
package harness

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pod-shim/pod-shim/test/images"
)

// CNIBinDir is where Debian's containernetworking-plugins puts the plugins.
const CNIBinDir = "/usr/lib/cni"

// ErrNotYet is what an Eventually condition returns while it waits.
var ErrNotYet = errors.New("not yet")

var (
	buildOnce sync.Once
	buildDir  string // holds pod-shim, pod-shim-monitor and pod-shim-pause
	buildTemp bool   // buildDir was made here (not POD_SHIM_BIN_DIR): remove it at exit
	buildErr  error

	registryOnce sync.Once
	testRegistry *images.Registry
	busyboxRef   string // 127.0.0.1:PORT/busybox:1.36
	registryErr  error
)

// Main runs a suite's tests and then removes what the package shares: the
// built binaries and the loopback registry. Call it from TestMain.
func Main(m *testing.M) {
	code := m.Run()
	if testRegistry != nil {
		testRegistry.Close()
	}
	if buildTemp {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// Host is what a suite needs of the machine; RequireHost skips without it.
type Host struct {
	Suite   string   // in the skip messages, e.g. "end-to-end test"
	Bins    []string // commands needed in PATH
	Plugins []string // CNI plugins needed in CNIBinDir
	Files   []string // other files needed (e.g. images.BusyboxPath)
	Crictl  bool     // crictl is needed
}

// CrictlHost is what the suites driving the daemon through crictl need
// (test/e2e, test/containers, test/streaming).
var CrictlHost = Host{
	Suite:   "end-to-end test",
	Bins:    []string{"runc", "ip", "curl", "gcc"},
	Plugins: []string{"bridge", "host-local", "portmap"},
	Files:   []string{images.BusyboxPath},
	Crictl:  true,
}

// RequireCrictlHost is RequireHost(t, CrictlHost).
func RequireCrictlHost(t testing.TB) {
	t.Helper()
	RequireHost(t, CrictlHost)
}

// RequireHost skips the test unless the host has what h lists, runs as root
// and the run is not -short.
func RequireHost(t testing.TB, h Host) {
	t.Helper()
	if testing.Short() {
		t.Skipf("%s: skipped in -short mode", h.Suite)
	}
	if os.Geteuid() != 0 {
		t.Skipf("%s: needs root (runc, network namespaces, CNI bridge)", h.Suite)
	}
	for _, bin := range h.Bins {
		if _, err := exec.LookPath(bin); err != nil {
			t.Skipf("%s: needs %s in PATH (see .ci/run): %v", h.Suite, bin, err)
		}
	}
	for _, p := range h.Plugins {
		if _, err := os.Stat(filepath.Join(CNIBinDir, p)); err != nil {
			t.Skipf("%s: needs the %s CNI plugin (apt-get install containernetworking-plugins): %v", h.Suite, p, err)
		}
	}
	for _, f := range h.Files {
		if _, err := os.Stat(f); err != nil {
			t.Skipf("%s: needs %s (apt-get install busybox-static): %v", h.Suite, f, err)
		}
	}
	if h.Crictl && CrictlPath() == "" {
		t.Skipf("%s: needs crictl (go install sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0)", h.Suite)
	}
}

// CrictlPath finds crictl in PATH or in GOPATH/bin; "" if it is not there.
func CrictlPath() string {
	if p, err := exec.LookPath("crictl"); err == nil {
		return p
	}
	gopath := os.Getenv("GOPATH")
	if gopath == "" {
		if out, err := exec.Command("go", "env", "GOPATH").Output(); err == nil {
			gopath = strings.TrimSpace(string(out))
		}
	}
	for _, dir := range filepath.SplitList(gopath) {
		p := filepath.Join(dir, "bin", "crictl")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}

// RepoRoot is the root of the pod-shim source tree.
func RepoRoot() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

// Binary returns the pod-shim binary (its monitor and pause beside it):
// POD_SHIM_BIN_DIR's prebuilt ones (e.g. an older commit's, to compare), or
// this tree's, built with hack/build.sh once per test binary.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if dir := os.Getenv("POD_SHIM_BIN_DIR"); dir != "" {
			buildDir = dir
			return
		}
		dir, err := os.MkdirTemp("", "pod-shim-test-bin-")
		if err != nil {
			buildErr = err
			return
		}
		buildDir, buildTemp = dir, true
		cmd := exec.Command("bash", "hack/build.sh")
		cmd.Dir = RepoRoot()
		cmd.Env = append(os.Environ(), "OUT="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("hack/build.sh: %w\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(buildDir, "pod-shim")
}

// Registry returns the shared loopback registry and the busybox reference on it.
func Registry(t testing.TB) (*images.Registry, string) {
	t.Helper()
	registryOnce.Do(func() {
		testRegistry, busyboxRef, registryErr = images.ServeBusybox()
	})
	if registryErr != nil {
		t.Fatal(registryErr)
	}
	return testRegistry, busyboxRef
}

// Busybox returns the reference of the busybox test image on the loopback registry.
func Busybox(t testing.TB) string {
	t.Helper()
	_, ref := Registry(t)
	return ref
}

// RandHex is n random bytes in hex.
func RandHex(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic(err)
	}
	return hex.EncodeToString(b)
}

// WriteJSON writes v indented to file.
func WriteJSON(t testing.TB, file string, v any) {
	t.Helper()
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// MustLookPath is exec.LookPath failing the test.
func MustLookPath(t testing.TB, bin string) string {
	t.Helper()
	p, err := exec.LookPath(bin)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Ctx is a context for one call, bounded so a hung daemon can't hang the suite.
func Ctx(t testing.TB) context.Context {
	c, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return c
}

// Eventually polls f until it returns nil; the bound only stops a hang.
func Eventually(t testing.TB, what string, bound time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for {
		err := f()
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: still failing after %v: %v", what, bound, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
