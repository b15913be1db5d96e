// Package unixsock creates listening unix sockets that are never reachable
// with a wider mode than asked, whatever the process umask, and reads the
// credentials of a connected peer. It depends on the standard library and
// x/sys only, so the per-pod monitor can link it without growing.
package unixsock

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// Listen listens on path with the socket file's mode set to mode from the
// moment it exists: bind(2) makes the file with 0777&^umask, and a chmod
// after it leaves a window in which anyone the umask lets in can connect.
// Linux's bind takes the file's mode from the socket's own inode, so the
// socket is fchmodded before bind (the file then gets mode&^umask, never
// wider), and chmodded after bind to give back any bit the umask took. A
// stale socket at path is replaced; anything else there is an error.
//
// The returned listener removes path when closed, unless another socket
// has replaced it there since.
func Listen(path string, mode os.FileMode) (*Listener, error) {
	mode = mode.Perm()
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("listen %s: exists and is not a socket (%s)", path, fi.Mode().Type())
		}
		if err := Remove(path); err != nil {
			return nil, fmt.Errorf("listen %s: remove stale socket: %w", path, err)
		}
	}
	lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
		var ferr error
		if err := c.Control(func(fd uintptr) { ferr = unix.Fchmod(int(fd), uint32(mode)) }); err != nil {
			return err
		}
		if ferr != nil {
			return fmt.Errorf("fchmod socket: %w", ferr)
		}
		return nil
	}}
	l, err := lc.Listen(context.Background(), "unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	lis := l.(*net.UnixListener)
	lis.SetUnlinkOnClose(false) // Close below does it, if the file is still ours
	if err := os.Chmod(path, mode); err != nil {
		lis.Close()
		os.Remove(path)
		return nil, fmt.Errorf("listen %s: %w", path, err)
	}
	fi, err := os.Lstat(path)
	if err != nil {
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
