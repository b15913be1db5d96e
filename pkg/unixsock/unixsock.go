// Package unixsock creates listening unix sockets that are never reachable
// with a wider mode than asked, whatever the process umask, and reads the
// credentials of a connected peer. It depends on the standard library and
// x/sys only, so the per-pod monitor can link it without growing.
package unixsock

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// Listen listens on path with the socket file's mode set to mode before the
// path exists: bind(2) makes the file with 0777&^umask, and a chmod after it
// leaves a window in which anyone the umask lets in can connect. So the
// socket is bound inside a fresh 0700 directory next to path, chmodded
// there, and renamed into place. A stale socket at path is replaced.
//
// The returned listener removes path when closed, unless another socket
// has replaced it there since.
func Listen(path string, mode os.FileMode) (*Listener, error) {
	dir := filepath.Dir(path)
	tmp, err := os.MkdirTemp(dir, ".sock-")
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	defer os.RemoveAll(tmp)
	// MkdirTemp asks for 0700 and the umask can only take bits away, but
	// say it explicitly: this directory is the only thing guarding the
	// socket until the chmod below.
	if err := os.Chmod(tmp, 0o700); err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	staging := filepath.Join(tmp, "s")
	lis, err := net.ListenUnix("unix", &net.UnixAddr{Name: staging, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	// The listener's own unlink-on-close would name the staging path.
	lis.SetUnlinkOnClose(false)
	if err := os.Chmod(staging, mode.Perm()); err != nil {
		lis.Close()
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if fi, err := os.Lstat(path); err == nil && fi.Mode()&os.ModeSocket == 0 {
		lis.Close()
		return nil, fmt.Errorf("listen %s: exists and is not a socket (%s)", path, fi.Mode().Type())
	}
	// rename(2) replaces a stale socket atomically: a client sees the old
	// dead one or the new one, never no file and never a wider mode.
	fi, err := os.Lstat(staging)
	if err != nil {
		lis.Close()
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	if err := os.Rename(staging, path); err != nil {
		lis.Close()
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	return &Listener{UnixListener: lis, path: path, file: fi}, nil
}

// Listener is a listening unix socket at a path of its own.
type Listener struct {
	*net.UnixListener
	path string
	file os.FileInfo // the socket file as bound, to tell it from a successor's
	once sync.Once
}

// Path is where the socket is.
func (l *Listener) Path() string { return l.path }

// Close stops listening and removes the socket file if it is still this
// listener's.
func (l *Listener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() {
		if fi, serr := os.Lstat(l.path); serr == nil && os.SameFile(fi, l.file) {
			os.Remove(l.path)
		}
	})
	return err
}

// Remove deletes the socket file at path; a missing file is not an error.
func Remove(path string) error {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	return nil
}

// PeerCred is the peer's process credentials as the kernel recorded them at
// connect(2) (SO_PEERCRED): they cannot be forged by the peer.
func PeerCred(c net.Conn) (*unix.Ucred, error) {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return nil, fmt.Errorf("peer credentials: not a unix connection (%T)", c)
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var serr error
	if err := raw.Control(func(fd uintptr) {
		cred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	if serr != nil {
		return nil, fmt.Errorf("peer credentials: %w", serr)
	}
	return cred, nil
}

// ParseEndpoint reads a listen address as the kubelet writes it
// (--container-runtime-endpoint): an absolute or relative path, or a
// unix:// URL with an absolute path. Anything else (another scheme, a host
// part, an empty path) is an error rather than a file name: "unix:///run/x"
// taken as a path would make a directory named "unix:" under the cwd.
func ParseEndpoint(s string) (string, error) {
	if s == "" {
		return "", errors.New("empty endpoint")
	}
	if strings.ContainsRune(s, 0) {
		return "", fmt.Errorf("endpoint %q: contains a NUL byte", s)
	}
	scheme, rest, hasScheme := strings.Cut(s, "://")
	if !hasScheme {
		if strings.Contains(s, ":") && !strings.Contains(s, "/") || strings.HasPrefix(s, "unix:") {
			// "unix:/run/x", "tcp:..." or "host:port": a URL-ish
			// string, not a file someone meant to create.
			return "", fmt.Errorf("endpoint %q: want a socket path or unix:///absolute/path", s)
		}
		return filepath.Clean(s), nil
	}
	if scheme != "unix" {
		return "", fmt.Errorf("endpoint %q: scheme %q is not supported, only unix://", s, scheme)
	}
	if !strings.HasPrefix(rest, "/") {
		return "", fmt.Errorf("endpoint %q: a unix:// URL needs an absolute path (unix:///path)", s)
	}
	if strings.ContainsAny(rest, "?#") {
		return "", fmt.Errorf("endpoint %q: query and fragment are not allowed", s)
	}
	return filepath.Clean(rest), nil
}
