package container

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pod-shim/pod-shim/pkg/oci"
)

func TestDecideAppArmor(t *testing.T) {
	rd := &Profile{Type: ProfileRuntimeDefault}
	un := &Profile{Type: ProfileUnconfined}
	lh := &Profile{Type: ProfileLocalhost, LocalhostRef: "localhost/my-prof"}
	tests := []struct {
		name       string
		p          *Profile
		privileged bool
		enabled    bool
		want       appArmorChoice
		wantErr    bool
	}{
		{"on: nothing asked gets the default", nil, false, true, appArmorChoice{profile: AppArmorDefaultProfile, loadDefault: true}, false},
		{"on: RuntimeDefault is the default", rd, false, true, appArmorChoice{profile: AppArmorDefaultProfile, loadDefault: true}, false},
		{"on: privileged gets none", nil, true, true, appArmorChoice{}, false},
		{"on: privileged RuntimeDefault gets none", rd, true, true, appArmorChoice{}, false},
		{"on: unconfined", un, false, true, appArmorChoice{}, false},
		{"on: localhost", lh, false, true, appArmorChoice{profile: "my-prof"}, false},
		{"on: localhost without prefix", &Profile{Type: ProfileLocalhost, LocalhostRef: "my-prof"}, false, true, appArmorChoice{profile: "my-prof"}, false},
		{"on: privileged localhost is still applied", lh, true, true, appArmorChoice{profile: "my-prof"}, false},
		{"on: empty localhost", &Profile{Type: ProfileLocalhost}, false, true, appArmorChoice{}, true},
		{"on: localhost with a newline", &Profile{Type: ProfileLocalhost, LocalhostRef: "a\nb"}, false, true, appArmorChoice{}, true},
		{"on: unknown type", &Profile{Type: 7}, false, true, appArmorChoice{}, true},
		{"off: nothing asked", nil, false, false, appArmorChoice{}, false},
		{"off: RuntimeDefault accepted with a notice", rd, false, false, appArmorChoice{notice: true}, false},
		{"off: unconfined", un, false, false, appArmorChoice{}, false},
		{"off: localhost refused", lh, false, false, appArmorChoice{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := decideAppArmor(tt.p, tt.privileged, tt.enabled)
			if (err != nil) != tt.wantErr || got != tt.want {
				t.Fatalf("decideAppArmor = %+v, %v; want %+v, err=%v", got, err, tt.want, tt.wantErr)
			}
			if err != nil && !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not wrap ErrInvalid", err)
			}
		})
	}
}

func TestGenerateAppArmorProfile(t *testing.T) {
	// Without the host's policy files: @{PROC} defined inline.
	var bare bytes.Buffer
	if err := generateAppArmorProfile(&bare, "pod-shim-default", "unconfined", t.TempDir()); err != nil {
		t.Fatal(err)
	}
	p := bare.String()
	for _, want := range []string{
		"@{PROC}=/proc/",
		"profile pod-shim-default flags=(attach_disconnected,mediate_deleted) {",
		"deny mount,",
		"deny @{PROC}/sysrq-trigger rwklx,",
		"deny /sys/kernel/security/** rwklx,",
		"signal (send,receive) peer=pod-shim-default,",
		"signal (receive) peer=unconfined,",
		"ptrace (trace,tracedby,read,readby) peer=pod-shim-default,",
	} {
		if !strings.Contains(p, want) {
			t.Errorf("profile lacks %q:\n%s", want, p)
		}
	}
	if strings.Contains(p, "#include") || strings.Contains(p, "abi <") {
		t.Errorf("includes without the host's files:\n%s", p)
	}

	// With them: tunables, the base abstraction and the ABI are used.
	conf := t.TempDir()
	for _, f := range []string{"abi/3.0", "tunables/global", "abstractions/base"} {
		os.MkdirAll(filepath.Dir(filepath.Join(conf, f)), 0o755)
		if err := os.WriteFile(filepath.Join(conf, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var full bytes.Buffer
	if err := generateAppArmorProfile(&full, "x", "pod-shim-daemon", conf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"abi <abi/3.0>,", "#include <tunables/global>", "  #include <abstractions/base>", "signal (receive) peer=pod-shim-daemon,"} {
		if !strings.Contains(full.String(), want) {
			t.Errorf("profile lacks %q:\n%s", want, full.String())
		}
	}
}

// The generated profile is valid AppArmor policy: apparmor_parser compiles
// it (-Q: without loading it, which this host could not do).
func TestGeneratedAppArmorProfileParses(t *testing.T) {
	parser, err := exec.LookPath("apparmor_parser")
	if err != nil {
		t.Skip("needs apparmor_parser (Debian package apparmor) to compile the profile")
	}
	for _, conf := range []string{"/etc/apparmor.d", t.TempDir()} {
		var prof bytes.Buffer
		if err := generateAppArmorProfile(&prof, AppArmorDefaultProfile, "unconfined", conf); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(parser, "-Q", "-K")
		cmd.Stdin = &prof
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apparmor_parser rejects the profile generated with %s: %v\n%s\n%s", conf, err, out, prof.String())
		}
	}
}

func TestDaemonProfile(t *testing.T) {
	dir := t.TempDir()
	for _, tt := range []struct{ content, want string }{
		{"unconfined\n", "unconfined"},
		{"pod-shim-daemon (enforce)\n", "pod-shim-daemon"},
		{"", "unconfined"},
		{"evil, peer=x {\n", "unconfined"},
	} {
		f := filepath.Join(dir, "current")
		os.WriteFile(f, []byte(tt.content), 0o644)
		if got := daemonProfile(f); got != tt.want {
			t.Errorf("daemonProfile(%q) = %q, want %q", tt.content, got, tt.want)
		}
	}
	if got := daemonProfile(filepath.Join(dir, "missing")); got != "unconfined" {
		t.Errorf("missing file: %q", got)
	}
}

// fakeAppArmorHost is an AppArmor host made of files: a parser that records
// what it was given, and a profile list.
func fakeAppArmorHost(t *testing.T, enabled bool) (*appArmorHost, string) {
	t.Helper()
	dir := t.TempDir()
	record := filepath.Join(dir, "loads")
	parser := filepath.Join(dir, "apparmor_parser")
	script := "#!/bin/sh\necho \"$@\" >> " + record + "\ncat >> " + record + ".profile\n"
	if err := os.WriteFile(parser, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	profiles := filepath.Join(dir, "profiles")
	if err := os.WriteFile(profiles, []byte("my-prof (enforce)\nother (complain)\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return &appArmorHost{
		enabled: func() bool { return enabled }, parser: parser, profiles: profiles,
		confDir: dir, current: filepath.Join(dir, "current"),
	}, record
}

// On an AppArmor host the default profile is generated and loaded once
// (apparmor_parser -Kr, profile on stdin), and applied to every
// unprivileged container; a Localhost profile must be loaded already.
func TestAppArmorApplyOnAnAppArmorHost(t *testing.T) {
	h, record := fakeAppArmorHost(t, true)
	log := slog.New(slog.DiscardHandler)
	for range 3 {
		s := oci.DefaultSpec("c")
		if err := h.apply(s, Security{}, log); err != nil {
			t.Fatal(err)
		}
		if s.Process.ApparmorProfile != AppArmorDefaultProfile {
			t.Fatalf("profile %q, want the default", s.Process.ApparmorProfile)
		}
	}
	loads, _ := os.ReadFile(record)
	if string(loads) != "-Kr\n" {
		t.Fatalf("parser calls %q, want one -Kr", loads)
	}
	prof, _ := os.ReadFile(record + ".profile")
	if !strings.Contains(string(prof), "profile "+AppArmorDefaultProfile+" ") {
		t.Fatalf("parser got no profile on stdin: %q", prof)
	}

	s := oci.DefaultSpec("c")
	if err := h.apply(s, Security{Privileged: true}, log); err != nil || s.Process.ApparmorProfile != "" {
		t.Fatalf("privileged: %q, %v", s.Process.ApparmorProfile, err)
	}
	s = oci.DefaultSpec("c")
	if err := h.apply(s, Security{Apparmor: &Profile{Type: ProfileLocalhost, LocalhostRef: "localhost/my-prof"}}, log); err != nil || s.Process.ApparmorProfile != "my-prof" {
		t.Fatalf("loaded localhost profile: %q, %v", s.Process.ApparmorProfile, err)
	}
	s = oci.DefaultSpec("c")
	if err := h.apply(s, Security{Apparmor: &Profile{Type: ProfileLocalhost, LocalhostRef: "localhost/not-loaded"}}, log); !errors.Is(err, ErrInvalid) {
		t.Fatalf("profile that is not loaded: %v, want InvalidArgument", err)
	}
}

// A failed load is reported, not remembered: the next container retries.
func TestAppArmorLoadFailureRetried(t *testing.T) {
	h, record := fakeAppArmorHost(t, true)
	good := h.parser
	h.parser = filepath.Join(t.TempDir(), "missing-parser")
	if err := h.apply(oci.DefaultSpec("c"), Security{}, slog.New(slog.DiscardHandler)); err == nil {
		t.Fatal("no error with the parser missing")
	}
	h.parser = good
	if err := h.apply(oci.DefaultSpec("c"), Security{}, slog.New(slog.DiscardHandler)); err != nil {
		t.Fatal(err)
	}
	if loads, _ := os.ReadFile(record); string(loads) != "-Kr\n" {
		t.Fatalf("parser calls %q", loads)
	}
}

// Without AppArmor nothing is loaded or applied, RuntimeDefault is accepted
// and the log says so once.
func TestAppArmorApplyWithoutAppArmor(t *testing.T) {
	h, record := fakeAppArmorHost(t, false)
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, nil))
	for range 3 {
		s := oci.DefaultSpec("c")
		if err := h.apply(s, Security{Apparmor: &Profile{Type: ProfileRuntimeDefault}}, log); err != nil {
			t.Fatal(err)
		}
		if s.Process.ApparmorProfile != "" {
			t.Fatalf("profile %q applied on a host without AppArmor", s.Process.ApparmorProfile)
		}
	}
	if n := strings.Count(buf.String(), "AppArmor is not enabled"); n != 1 {
		t.Fatalf("%d notices, want 1:\n%s", n, buf.String())
	}
	if _, err := os.Stat(record); !os.IsNotExist(err) {
		t.Fatal("the parser ran on a host without AppArmor")
	}
	if err := h.apply(oci.DefaultSpec("c"), Security{Apparmor: &Profile{Type: ProfileLocalhost, LocalhostRef: "localhost/my-prof"}}, log); !errors.Is(err, ErrInvalid) {
		t.Fatalf("localhost profile without AppArmor: %v, want InvalidArgument", err)
	}
}
