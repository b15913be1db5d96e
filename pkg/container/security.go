package container

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/moby/profiles/seccomp"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// applyPrivileged gives a privileged container what containerd and CRI-O
// give it: every host device and the device cgroup open, no masked or
// read-only paths, writable /sys and cgroupfs. Capabilities are set by
// applyCapabilities; seccomp and LSMs are skipped by their appliers.
func applyPrivileged(s *specs.Spec) {
	s.Linux.MaskedPaths = nil
	s.Linux.ReadonlyPaths = nil
	s.Linux.Resources.Devices = []specs.LinuxDeviceCgroup{{Allow: true, Access: "rwm"}}
	s.Linux.Devices = append(s.Linux.Devices, hostDevices()...)
	for i := range s.Mounts {
		if s.Mounts[i].Destination == "/sys" || s.Mounts[i].Destination == "/sys/fs/cgroup" {
			opts := s.Mounts[i].Options[:0:0]
			for _, o := range s.Mounts[i].Options {
				if o != "ro" {
					opts = append(opts, o)
				}
			}
			s.Mounts[i].Options = append(opts, "rw")
		}
	}
}

// hostDevices lists the host's device nodes under /dev, as runc's
// HostDevices does: the pts, shm, mqueue and fd dirs and /dev/console are
// the container's own.
func hostDevices() []specs.LinuxDevice {
	var out []specs.LinuxDevice
	filepath.WalkDir("/dev", func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if e.IsDir() {
			switch e.Name() {
			case "pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev":
				return filepath.SkipDir
			}
			return nil
		}
		if e.Name() == "console" {
			return nil
		}
		if d, ok := deviceAt(p, p); ok {
			out = append(out, d)
		}
		return nil
	})
	return out
}

// deviceAt describes the device node at host, to appear at path.
func deviceAt(host, path string) (specs.LinuxDevice, bool) {
	var st unix.Stat_t
	if err := unix.Stat(host, &st); err != nil {
		return specs.LinuxDevice{}, false
	}
	var typ string
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFCHR:
		typ = "c"
	case unix.S_IFBLK:
		typ = "b"
	default:
		return specs.LinuxDevice{}, false
	}
	mode := fs.FileMode(st.Mode & 0o777)
	uid, gid := st.Uid, st.Gid
	return specs.LinuxDevice{
		Path: path, Type: typ,
		Major: int64(unix.Major(uint64(st.Rdev))), Minor: int64(unix.Minor(uint64(st.Rdev))),
		FileMode: &mode, UID: &uid, GID: &gid,
	}, true
}

// applyDevices adds the kubelet's devices (device plugins, explicit ones)
// to the spec and opens the device cgroup for them with their permissions.
// A directory host path adds every device below it, as containerd does.
func applyDevices(s *specs.Spec, devs []Device) error {
	for _, d := range devs {
		if d.HostPath == "" {
			return fmt.Errorf("device %q has no host_path: %w", d.ContainerPath, ErrInvalid)
		}
		perms := d.Permissions
		if perms == "" {
			perms = "rwm"
		}
		if strings.Trim(perms, "rwm") != "" {
			return fmt.Errorf("device %s: permissions %q must be made of r, w, m: %w", d.HostPath, perms, ErrInvalid)
		}
		ctrPath := d.ContainerPath
		if ctrPath == "" {
			ctrPath = d.HostPath
		}
		fi, err := os.Stat(d.HostPath)
		if err != nil {
			return fmt.Errorf("device %s: %w", d.HostPath, err)
		}
		var found []specs.LinuxDevice
		if fi.IsDir() {
			filepath.WalkDir(d.HostPath, func(p string, e fs.DirEntry, err error) error {
				if err != nil || e.IsDir() {
					return nil
				}
				rel, _ := filepath.Rel(d.HostPath, p)
				if dev, ok := deviceAt(p, filepath.Join(ctrPath, rel)); ok {
					found = append(found, dev)
				}
				return nil
			})
		} else if dev, ok := deviceAt(d.HostPath, ctrPath); ok {
			found = append(found, dev)
		} else {
			return fmt.Errorf("%s is not a device node: %w", d.HostPath, ErrInvalid)
		}
		for _, dev := range found {
			s.Linux.Devices = append(s.Linux.Devices, dev)
			major, minor := dev.Major, dev.Minor
			s.Linux.Resources.Devices = append(s.Linux.Resources.Devices, specs.LinuxDeviceCgroup{
				Allow: true, Type: dev.Type, Major: &major, Minor: &minor, Access: perms,
			})
		}
	}
	return nil
}

// applySeccomp sets the seccomp filter: RuntimeDefault is moby's default
// profile (the one containerd and CRI-O ship too), computed for the
// container's capabilities; Localhost loads a profile file; Unconfined and
// no profile mean none, as in containerd. Privileged containers always
// run unconfined, even when a profile file is named: containerd and CRI-O
// skip seccomp for them, and a privileged pod is expected to do what a
// profile would forbid (critest: a profile blocking sethostname is ignored).
func applySeccomp(s *specs.Spec, sec Security) error {
	p := sec.Seccomp
	if p == nil || p.Type == ProfileUnconfined || sec.Privileged {
		return nil
	}
	switch p.Type {
	case ProfileRuntimeDefault:
		prof, err := seccomp.GetDefaultProfile(s)
		if err != nil {
			return fmt.Errorf("seccomp default profile: %w", err)
		}
		s.Linux.Seccomp = prof
	case ProfileLocalhost:
		ref := strings.TrimPrefix(p.LocalhostRef, "localhost/")
		if !filepath.IsAbs(ref) {
			return fmt.Errorf("seccomp localhost profile %q must be an absolute path: %w", p.LocalhostRef, ErrInvalid)
		}
		body, err := os.ReadFile(ref)
		if err != nil {
			return fmt.Errorf("seccomp localhost profile: %v: %w", err, ErrInvalid)
		}
		prof, err := seccomp.LoadProfile(string(body), s)
		if err != nil {
			return fmt.Errorf("seccomp localhost profile %s: %v: %w", ref, err, ErrInvalid)
		}
		s.Linux.Seccomp = prof
	default:
		return fmt.Errorf("seccomp profile type %d: %w", p.Type, ErrInvalid)
	}
	return nil
}

// Host LSM support, read once: these never change while the daemon runs.
var (
	seLinuxEnabled = sync.OnceValue(func() bool {
		_, err := os.Stat("/sys/fs/selinux/enforce")
		return err == nil
	})
)

// applyLSM applies AppArmor (see apparmor.go) and SELinux where the host
// has them, and says in the log when a label is skipped because it does not.
func applyLSM(s *specs.Spec, sec Security, log *slog.Logger) error {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := hostAppArmor.apply(s, sec, log); err != nil {
		return err
	}
	if l := sec.SELinux; l != nil && (l.User != "" || l.Role != "" || l.Type != "" || l.Level != "") {
		if !seLinuxEnabled() {
			log.Info("SELinux label not applied: SELinux is not enabled on this host", "type", l.Type, "level", l.Level)
			return nil
		}
		s.Process.SelinuxLabel = strings.Join([]string{l.User, l.Role, l.Type, l.Level}, ":")
		s.Linux.MountLabel = s.Process.SelinuxLabel
	}
	return nil
}

// errNoSignal is returned by signalNumber for names it does not know.
var errNoSignal = errors.New("unknown signal")

// signalNumber reads a signal as the CRI enum names it (SIGRTMINPLUS1,
// SIGIOT…), as an image's STOPSIGNAL may (SIGRTMIN+3, TERM, 15).
func signalNumber(s string) (unix.Signal, error) {
	if n, ok := parseUint(s); ok {
		if n > 0 && n <= 64 {
			return unix.Signal(n), nil
		}
		return 0, errNoSignal
	}
	name := strings.ToUpper(strings.TrimSpace(s))
	if !strings.HasPrefix(name, "SIG") {
		name = "SIG" + name
	}
	switch name {
	case "SIGIOT":
		return unix.SIGABRT, nil
	case "SIGCLD":
		return unix.SIGCHLD, nil
	case "SIGPOLL":
		return unix.SIGIO, nil
	case "SIGRTMIN":
		return sigRTMin, nil
	case "SIGRTMAX":
		return sigRTMax, nil
	}
	for _, pfx := range []string{"SIGRTMINPLUS", "SIGRTMIN+"} {
		if rest, ok := strings.CutPrefix(name, pfx); ok {
			if n, ok := parseUint(rest); ok && sigRTMin+unix.Signal(n) <= sigRTMax {
				return sigRTMin + unix.Signal(n), nil
			}
			return 0, errNoSignal
		}
	}
	for _, pfx := range []string{"SIGRTMAXMINUS", "SIGRTMAX-"} {
		if rest, ok := strings.CutPrefix(name, pfx); ok {
			if n, ok := parseUint(rest); ok && sigRTMax-unix.Signal(n) >= sigRTMin {
				return sigRTMax - unix.Signal(n), nil
			}
			return 0, errNoSignal
		}
	}
	if sig := unix.SignalNum(name); sig != 0 {
		return sig, nil
	}
	return 0, errNoSignal
}

// The real-time signal range as Linux and the CRI enum number it.
const (
	sigRTMin unix.Signal = 34
	sigRTMax unix.Signal = 64
)

// signalName is the CRI enum name of sig without its SIGNAL_ prefix.
func signalName(sig unix.Signal) string {
	switch {
	case sig == sigRTMin:
		return "SIGRTMIN"
	case sig == sigRTMax:
		return "SIGRTMAX"
	case sig > sigRTMin && sig <= sigRTMin+15:
		return fmt.Sprintf("SIGRTMINPLUS%d", sig-sigRTMin)
	case sig > sigRTMin+15 && sig < sigRTMax:
		return fmt.Sprintf("SIGRTMAXMINUS%d", sigRTMax-sig)
	}
	return unix.SignalName(sig)
}

func parseUint(s string) (int, bool) {
	if s == "" || len(s) > 3 {
		return 0, false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// maxUserDBBytes caps the image's /etc/passwd and /etc/group: they are read
// into memory by the daemon, and a real one is a few KiB.
const maxUserDBBytes = 4 << 20

// readUserDB reads etc/passwd or etc/group (name) of a container's rootfs
// for user lookups, treating it as the image's, not the host's: the path is
// resolved inside rootfs by the kernel, the file must be a regular file
// (a symlink, FIFO or device there is the image's error, not something to
// follow, block on or read from), and it is capped at maxUserDBBytes. A
// missing file is nil, nil: the lookup then uses its defaults.
func readUserDB(rootfs, name string) ([]byte, error) {
	rootFD, err := unix.Open(rootfs, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("open rootfs: %w", err)
	}
	defer unix.Close(rootFD)
	rel := "etc/" + name
	open := func(flags uint64) (int, error) {
		for {
			fd, err := unix.Openat2(rootFD, rel, &unix.OpenHow{
				Flags:   flags | unix.O_NOFOLLOW | unix.O_CLOEXEC,
				Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV,
			})
			if err != unix.EINTR && err != unix.EAGAIN {
				return fd, err
			}
		}
	}
	// Look before opening for reading: opening a device node can have
	// effects of its own, and the rootfs mount does not forbid devices.
	pfd, err := open(unix.O_PATH)
	switch {
	case errors.Is(err, unix.ENOENT):
		return nil, nil
	case errors.Is(err, unix.ELOOP):
		return nil, fmt.Errorf("the image's /%s: too many levels of symlinks inside the image: %w", rel, ErrInvalid)
	case err != nil:
		return nil, fmt.Errorf("open the image's /%s: %w", rel, err)
	}
	var st unix.Stat_t
	err = unix.Fstat(pfd, &st)
	unix.Close(pfd)
	if err != nil {
		return nil, fmt.Errorf("stat the image's /%s: %w", rel, err)
	}
	if err := userDBRegular(rel, &st); err != nil {
		return nil, err
	}
	fd, err := open(unix.O_RDONLY | unix.O_NONBLOCK | unix.O_NOCTTY)
	if err != nil {
		return nil, fmt.Errorf("open the image's /%s: %w", rel, err)
	}
	f := os.NewFile(uintptr(fd), rel)
	defer f.Close()
	var st2 unix.Stat_t
	if err := unix.Fstat(fd, &st2); err != nil {
		return nil, fmt.Errorf("stat the image's /%s: %w", rel, err)
	}
	if err := userDBRegular(rel, &st2); err != nil {
		return nil, err
	}
	data, err := io.ReadAll(io.LimitReader(f, maxUserDBBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read the image's /%s: %w", rel, err)
	}
	if len(data) > maxUserDBBytes {
		return nil, fmt.Errorf("the image's /%s is over %d bytes: %w", rel, maxUserDBBytes, ErrInvalid)
	}
	return data, nil
}

func userDBRegular(rel string, st *unix.Stat_t) error {
	if st.Mode&unix.S_IFMT == unix.S_IFREG {
		return nil
	}
	kind := "not a regular file"
	switch st.Mode & unix.S_IFMT {
	case unix.S_IFIFO:
		kind = "a FIFO"
	case unix.S_IFCHR, unix.S_IFBLK:
		kind = "a device node"
	case unix.S_IFLNK:
		kind = "a symlink"
	case unix.S_IFDIR:
		kind = "a directory"
	case unix.S_IFSOCK:
		kind = "a socket"
	}
	return fmt.Errorf("the image's /%s is %s; it must be a regular file: %w", rel, kind, ErrInvalid)
}
