package images

import (
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Entry is one image to serve, under the repository path its upstream host
// uses, so a runtime's mirror config maps the upstream name onto it.
type Entry struct {
	RepoTag string
	Image   v1.Image
}

// ServeUntilSignal starts a registry on addr, pushes set, prints the address,
// each pushed ref@digest and "ready" (what the shell suites read), and serves
// until SIGTERM or SIGINT.
func ServeUntilSignal(addr string, set []Entry) error {
	r, err := StartRegistry(addr)
	if err != nil {
		return err
	}
	defer r.Close()
	fmt.Println(r.Addr)
	for _, e := range set {
		if _, _, err := r.Push(e.RepoTag, e.Image); err != nil {
			return err
		}
		d, _ := e.Image.Digest()
		fmt.Printf("%s@%s\n", e.RepoTag, d)
	}
	fmt.Println("ready")
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	return nil
}

// BuildStandinAndPause compiles, from the repository at src into dir, the
// stand-in server (static Go, test/conformance/standin) and the pause (static
// C), reproducibly, and returns both binaries.
func BuildStandinAndPause(src, dir string) (standin, pause []byte, err error) {
	sp, pp := filepath.Join(dir, "standin"), filepath.Join(dir, "pause")
	cmd := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags=-s -w -buildid=", "-o", sp, "./test/conformance/standin")
	cmd.Dir, cmd.Stdout, cmd.Stderr = src, os.Stderr, os.Stderr
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if err := cmd.Run(); err != nil {
		return nil, nil, fmt.Errorf("build standin: %w", err)
	}
	cmd = exec.Command("gcc", "-Os", "-static", "-o", pp, "cmd/pod-shim-pause/pause.c")
	cmd.Dir, cmd.Stdout, cmd.Stderr = src, os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return nil, nil, fmt.Errorf("build pause (gcc -static): %w", err)
	}
	if err := exec.Command("strip", pp).Run(); err != nil {
		return nil, nil, fmt.Errorf("strip pause: %w", err)
	}
	if standin, err = os.ReadFile(sp); err != nil {
		return nil, nil, err
	}
	pause, err = os.ReadFile(pp)
	return standin, pause, err
}
