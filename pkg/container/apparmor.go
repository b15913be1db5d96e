package container

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"text/template"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// AppArmorDefaultProfile is the profile unprivileged containers get on an
// AppArmor host when they ask for none or for RuntimeDefault, as
// containerd's cri-containerd.apparmor.d.
const AppArmorDefaultProfile = "pod-shim-default"

// appArmorTemplate is the default profile. It lets a container do what a
// container does (files, network, the capabilities its spec leaves it) and
// takes away what would reach past it: mounting, writing the kernel's knobs
// under /proc and /sys, reading firmware and LSM state, and signals or
// ptrace across the container's boundary.
var appArmorTemplate = template.Must(template.New("apparmor").Parse(`{{if .ABI}}abi <{{.ABI}}>,
{{end}}{{range .Includes}}{{.}}
{{end}}
profile {{.Name}} flags=(attach_disconnected,mediate_deleted) {
{{range .InnerIncludes}}  {{.}}
{{end}}
  file,
  network,
  capability,
  umount,

  # Who may signal the container: the host's unconfined processes, the
  # daemon and the runtimes; and the container's own processes each other.
  signal (receive) peer=unconfined,
  signal (receive) peer={{.DaemonProfile}},
  signal (receive) peer=runc,
  signal (receive) peer=crun,
  signal (send,receive) peer={{.Name}},
  ptrace (trace,tracedby,read,readby) peer={{.Name}},

  deny mount,

  # /proc: nothing written at its top level or in another pid's tree than
  # numbered ones and sys; of sys, only kernel/shm*; never sysrq or kcore.
  deny @{PROC}/* w,
  deny @{PROC}/{[^1-9/],[^1-9/][^0-9/],[^1-9s/][^0-9y/][^0-9s/],[^1-9/][^0-9/][^0-9/][^0-9/]*}/** w,
  deny @{PROC}/sys/[^k]** w,
  deny @{PROC}/sys/kernel/{?,??,[^s][^h][^m]**} w,
  deny @{PROC}/sysrq-trigger rwklx,
  deny @{PROC}/kcore rwklx,

  # /sys: read-only but for the cgroup tree; firmware, powercap and the
  # LSMs' own files not even readable.
  deny /sys/[^f]*/** wklx,
  deny /sys/f[^s]*/** wklx,
  deny /sys/fs/[^c]*/** wklx,
  deny /sys/fs/c[^g]*/** wklx,
  deny /sys/fs/cg[^r]*/** wklx,
  deny /sys/firmware/** rwklx,
  deny /sys/devices/virtual/powercap/** rwklx,
  deny /sys/kernel/security/** rwklx,
}
`))

// appArmorProfileData fills appArmorTemplate.
type appArmorProfileData struct {
	Name          string
	DaemonProfile string
	ABI           string   // "abi/3.0" where the host's policy has it
	Includes      []string // before the profile
	InnerIncludes []string // inside it
}

// generateAppArmorProfile writes the default profile for a host whose
// policy directory is confDir (/etc/apparmor.d): its tunables and base
// abstraction are included where present, as every distribution's
// profiles do, else @{PROC} is defined here.
func generateAppArmorProfile(w io.Writer, name, daemonProfile, confDir string) error {
	d := appArmorProfileData{Name: name, DaemonProfile: daemonProfile}
	has := func(p string) bool { _, err := os.Stat(filepath.Join(confDir, p)); return err == nil }
	if has("abi/3.0") {
		d.ABI = "abi/3.0"
	}
	if has("tunables/global") {
		d.Includes = append(d.Includes, "#include <tunables/global>")
	} else {
		d.Includes = append(d.Includes, "@{PROC}=/proc/")
	}
	if has("abstractions/base") {
		d.InnerIncludes = append(d.InnerIncludes, "#include <abstractions/base>")
	}
	return appArmorTemplate.Execute(w, d)
}

// appArmorHost is what the AppArmor decisions need of the host, and the
// once-per-daemon load of the default profile.
type appArmorHost struct {
	enabled  func() bool
	parser   string // apparmor_parser
	profiles string // the kernel's list of loaded profiles
	confDir  string // the host's policy dir, for includes
	current  string // the daemon's own confinement (/proc/self/attr/current)

	mu     sync.Mutex
	loaded bool // the default profile was loaded by this daemon

	noticeOnce sync.Once
}

// hostAppArmor is this host's, read once: AppArmor does not come and go
// while the daemon runs.
var hostAppArmor = &appArmorHost{
	enabled: sync.OnceValue(func() bool {
		// runc's and containerd's test: the securityfs dir and the
		// module's switch.
		if _, err := os.Stat("/sys/kernel/security/apparmor"); err != nil {
			return false
		}
		b, err := os.ReadFile("/sys/module/apparmor/parameters/enabled")
		return err == nil && strings.TrimSpace(string(b)) == "Y"
	}),
	parser:   "apparmor_parser",
	profiles: "/sys/kernel/security/apparmor/profiles",
	confDir:  "/etc/apparmor.d",
	current:  "/proc/self/attr/current",
}

// appArmorChoice is what a container gets.
type appArmorChoice struct {
	profile     string // "" = none
	loadDefault bool   // profile is the default, to be loaded first
	notice      bool   // RuntimeDefault on a host without AppArmor: say so once
}

// decideAppArmor is containerd's rule. With AppArmor on the host: no
// profile or RuntimeDefault means the default profile, except for a
// privileged container, which runs unconfined as it does everywhere;
// Unconfined means none; Localhost names a loaded profile. Without it:
// RuntimeDefault is accepted (there is nothing to apply, and the log says
// so), and a Localhost profile, which cannot be honoured, is refused
// rather than silently dropped.
func decideAppArmor(p *Profile, privileged, enabled bool) (appArmorChoice, error) {
	if !enabled {
		switch {
		case p == nil || p.Type == ProfileUnconfined:
			return appArmorChoice{}, nil
		case p.Type == ProfileRuntimeDefault:
			return appArmorChoice{notice: true}, nil
		case p.Type == ProfileLocalhost:
			return appArmorChoice{}, fmt.Errorf("apparmor profile %q: AppArmor is not enabled on this host: %w", p.LocalhostRef, ErrInvalid)
		}
		return appArmorChoice{}, fmt.Errorf("apparmor profile type %d: %w", p.Type, ErrInvalid)
	}
	if p == nil {
		p = &Profile{Type: ProfileRuntimeDefault}
	}
	switch p.Type {
	case ProfileUnconfined:
		return appArmorChoice{}, nil
	case ProfileRuntimeDefault:
		if privileged {
			return appArmorChoice{}, nil
		}
		return appArmorChoice{profile: AppArmorDefaultProfile, loadDefault: true}, nil
	case ProfileLocalhost:
		name := strings.TrimPrefix(p.LocalhostRef, "localhost/")
		if name == "" || strings.ContainsAny(name, "\x00\n") {
			return appArmorChoice{}, fmt.Errorf("apparmor localhost profile %q: not a profile name: %w", p.LocalhostRef, ErrInvalid)
		}
		return appArmorChoice{profile: name}, nil
	}
	return appArmorChoice{}, fmt.Errorf("apparmor profile type %d: %w", p.Type, ErrInvalid)
}

// apply sets s's AppArmor profile for a container with sec.
func (h *appArmorHost) apply(s *specs.Spec, sec Security, log *slog.Logger) error {
	c, err := decideAppArmor(sec.Apparmor, sec.Privileged, h.enabled())
	if err != nil {
		return err
	}
	if c.notice {
		h.noticeOnce.Do(func() {
			log.Info("AppArmor is not enabled on this host: RuntimeDefault AppArmor profiles are accepted and mean no AppArmor confinement")
		})
	}
	if c.profile == "" {
		return nil
	}
	if c.loadDefault {
		if err := h.loadDefault(); err != nil {
			return err
		}
	} else {
		ok, err := profileLoaded(h.profiles, c.profile)
		if err != nil {
			return fmt.Errorf("apparmor: %w", err)
		}
		if !ok {
			return fmt.Errorf("apparmor profile %q is not loaded on this host: %w", c.profile, ErrInvalid)
		}
	}
	s.Process.ApparmorProfile = c.profile
	return nil
}

// loadDefault generates the default profile and loads it with
// apparmor_parser, once per daemon: -r replaces what an older daemon
// loaded under the name, -K keeps the parser from writing its cache. A
// failure is not remembered, so the next container tries again.
func (h *appArmorHost) loadDefault() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.loaded {
		return nil
	}
	var prof bytes.Buffer
	if err := generateAppArmorProfile(&prof, AppArmorDefaultProfile, daemonProfile(h.current), h.confDir); err != nil {
		return fmt.Errorf("apparmor: generate the default profile: %w", err)
	}
	cmd := exec.Command(h.parser, "-Kr")
	cmd.Stdin = &prof
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("apparmor: load the default profile %s with %s: %v: %s", AppArmorDefaultProfile, h.parser, err, bytes.TrimSpace(out))
	}
	h.loaded = true
	return nil
}

// daemonProfile is the daemon's own AppArmor label ("name (mode)", or a
// bare "unconfined"), which may signal containers.
func daemonProfile(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "unconfined"
	}
	name, _, _ := strings.Cut(strings.TrimSpace(string(b)), " (")
	if name == "" || strings.ContainsAny(name, " \n,{}") {
		return "unconfined"
	}
	return name
}

// profileLoaded says whether the kernel's profile list (lines "name (mode)")
// has name.
func profileLoaded(list, name string) (bool, error) {
	f, err := os.Open(list)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		n, _, _ := strings.Cut(sc.Text(), " (")
		if n == name {
			return true, nil
		}
	}
	return false, sc.Err()
}
