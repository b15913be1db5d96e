package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	securejoin "github.com/cyphar/filepath-securejoin"
	"golang.org/x/sys/unix"
)

const (
	whiteoutPrefix = ".wh."
	whiteoutMeta   = ".wh..wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// unpackStats is what an unpacked layer costs on disk, for FsInfo.
type unpackStats struct {
	Bytes  int64
	Inodes int64
}

// unpacker extracts one layer tar into an empty directory that nothing else
// touches until it is renamed into place. Entries are applied in order, a
// later entry replacing an earlier one at the same path, as tar semantics
// and the OCI layer spec require.
type unpacker struct {
	root string
	// realDirs holds layer-relative paths this unpack made as directories.
	// Their parents need no symlink resolution, which saves an lstat per
	// path component on every entry; a path leaves the set as soon as a
	// non-directory replaces it.
	realDirs map[string]bool
	dirs     []dirTime
	stats    unpackStats
}

type dirTime struct {
	path  string
	mtime time.Time
}

// unpackLayer applies the uncompressed layer tar r to dir, converting OCI
// whiteouts to overlayfs ones. It does not fsync: the caller renames dir
// into place only when this returns nil, and New discards anything else.
func unpackLayer(ctx context.Context, r io.Reader, dir string) (unpackStats, error) {
	u := &unpacker{root: dir, realDirs: map[string]bool{".": true}}
	if err := os.Chmod(dir, 0o755); err != nil {
		return u.stats, err
	}
	tr := tar.NewReader(r)
	for {
		if err := ctx.Err(); err != nil {
			return u.stats, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return u.stats, fmt.Errorf("read layer tar: %w", err)
		}
		if err := u.entry(hdr, tr); err != nil {
			return u.stats, fmt.Errorf("unpack %q: %w", hdr.Name, err)
		}
	}
	// Directory mtimes last: creating their contents changed them.
	for _, d := range u.dirs {
		if err := setTimes(d.path, d.mtime); err != nil {
			return u.stats, err
		}
	}
	return u.stats, nil
}

// cleanRel turns a tar entry name into a clean path relative to the layer
// root; ".." components cannot climb above it.
func cleanRel(name string) string {
	rel := path.Clean("/" + name)[1:]
	if rel == "" {
		return "."
	}
	return rel
}

// resolveParent returns the host path of rel's parent directory, resolving
// symlinks inside the layer so that no entry can write outside it.
func (u *unpacker) resolveParent(rel string) (string, error) {
	parent := path.Dir(rel)
	if u.realDirs[parent] {
		return filepath.Join(u.root, parent), nil
	}
	p, err := securejoin.SecureJoin(u.root, parent)
	if err != nil {
		return "", fmt.Errorf("resolve parent: %w", err)
	}
	fi, err := os.Lstat(p)
	switch {
	case errors.Is(err, os.ErrNotExist):
		// Layers may omit parent directories; create them as docker does.
		if err := os.MkdirAll(p, 0o755); err != nil {
			return "", err
		}
		u.stats.Inodes++
	case err != nil:
		return "", err
	case !fi.IsDir():
		return "", fmt.Errorf("parent %q is not a directory", parent)
	}
	if p == filepath.Join(u.root, parent) {
		// No symlink on the way: later entries below it skip SecureJoin.
		u.realDirs[parent] = true
	}
	return p, nil
}

// forget drops rel and everything below it from realDirs when a
// non-directory (perhaps a symlink) takes its place.
func (u *unpacker) forget(rel string) {
	if !u.realDirs[rel] {
		return
	}
	prefix := rel + "/"
	for k := range u.realDirs {
		if k == rel || strings.HasPrefix(k, prefix) {
			delete(u.realDirs, k)
		}
	}
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	rel := cleanRel(hdr.Name)
	base := path.Base(rel)

	if rel != "." && strings.HasPrefix(base, whiteoutPrefix) {
		return u.whiteout(hdr, rel, base)
	}

	var target string
	if rel == "." {
		target = u.root
	} else {
		parent, err := u.resolveParent(rel)
		if err != nil {
			return err
		}
		target = filepath.Join(parent, base)
	}

	switch hdr.Typeflag {
	case tar.TypeXGlobalHeader:
		return nil
	case tar.TypeDir:
		fi, err := os.Lstat(target)
		if err == nil && !fi.IsDir() {
			if err := os.Remove(target); err != nil {
				return err
			}
			err = os.ErrNotExist
		}
		if errors.Is(err, os.ErrNotExist) {
			if err := os.Mkdir(target, 0o700); err != nil {
				return err
			}
			u.stats.Inodes++
			u.stats.Bytes += 4096
		} else if err != nil {
			return err
		}
		if rel != "." && u.realDirs[path.Dir(rel)] {
			u.realDirs[rel] = true
		}
	default:
		if rel == "." {
			return fmt.Errorf("layer root must be a directory, got type %q", hdr.Typeflag)
		}
		u.forget(rel)
		if err := removeExisting(target); err != nil {
			return err
		}
		if err := u.create(hdr, target, r); err != nil {
			return err
		}
		if hdr.Typeflag == tar.TypeLink {
			// A hard link shares the inode and blocks of its target.
			return nil
		}
		u.stats.Inodes++
	}
	return u.meta(hdr, target)
}

// removeExisting clears target so a later entry can replace an earlier one.
func removeExisting(target string) error {
	fi, err := os.Lstat(target)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.IsDir() {
		return os.RemoveAll(target)
	}
	return os.Remove(target)
}

func (u *unpacker) create(hdr *tar.Header, target string, r io.Reader) error {
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeRegA, tar.TypeGNUSparse:
		f, err := os.OpenFile(target, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
		if err != nil {
			return err
		}
		n, err := io.Copy(f, r)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		u.stats.Bytes += (n + 4095) &^ 4095
		return nil
	case tar.TypeSymlink:
		// The link text is interpreted inside the container, never here.
		return os.Symlink(hdr.Linkname, target)
	case tar.TypeLink:
		src, err := u.resolveLinkTarget(hdr.Linkname)
		if err != nil {
			return err
		}
		return unix.Linkat(unix.AT_FDCWD, src, unix.AT_FDCWD, target, 0)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := uint32(hdr.Mode & 0o7777)
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode |= unix.S_IFCHR
		case tar.TypeBlock:
			mode |= unix.S_IFBLK
		default:
			mode |= unix.S_IFIFO
		}
		return unix.Mknod(target, mode, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor))))
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
}

// resolveLinkTarget finds a hard link's source inside the layer. Its parent
// is resolved like any entry's, its last component is not followed: link(2)
// links a symlink itself.
func (u *unpacker) resolveLinkTarget(name string) (string, error) {
	rel := cleanRel(name)
	if rel == "." {
		return "", errors.New("hard link to the layer root")
	}
	parent, err := securejoin.SecureJoin(u.root, path.Dir(rel))
	if err != nil {
		return "", err
	}
	src := filepath.Join(parent, path.Base(rel))
	fi, err := os.Lstat(src)
	if err != nil {
		return "", fmt.Errorf("hard link target %q: %w", name, err)
	}
	if fi.IsDir() {
		return "", fmt.Errorf("hard link target %q is a directory", name)
	}
	return src, nil
}

// meta applies ownership, mode, xattrs and times. Mode comes after chown,
// which clears setuid/setgid bits.
func (u *unpacker) meta(hdr *tar.Header, target string) error {
	if hdr.Typeflag == tar.TypeLink {
		return nil // the inode already has its metadata
	}
	if err := os.Lchown(target, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("lchown: %w", err)
	}
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		if err := unix.Lsetxattr(target, name, []byte(v), 0); err != nil {
			if errors.Is(err, unix.ENOTSUP) || (hdr.Typeflag == tar.TypeSymlink && errors.Is(err, unix.EPERM)) {
				// Not every xattr namespace exists on every file system
				// or file type; losing one does not break the image.
				continue
			}
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	if hdr.Typeflag != tar.TypeSymlink {
		if err := unix.Chmod(target, tarMode(hdr.Mode)); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
	}
	if hdr.Typeflag == tar.TypeDir {
		u.dirs = append(u.dirs, dirTime{target, hdr.ModTime})
		return nil
	}
	return setTimes(target, hdr.ModTime)
}

// tarMode converts tar's mode bits (which use the classic c_ISUID etc.
// values, as the kernel does) to a chmod argument.
func tarMode(m int64) uint32 { return uint32(m) & 0o7777 }

func setTimes(p string, mtime time.Time) error {
	ts := unix.NsecToTimespec(mtime.UnixNano())
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, p, []unix.Timespec{ts, ts}, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// whiteout converts an OCI whiteout entry to overlayfs form: ".wh.NAME"
// becomes a 0:0 char device NAME, ".wh..wh..opq" marks its directory opaque.
func (u *unpacker) whiteout(hdr *tar.Header, rel, base string) error {
	parent, err := u.resolveParent(rel)
	if err != nil {
		return err
	}
	if base == whiteoutOpaque {
		if err := unix.Lsetxattr(parent, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
			return fmt.Errorf("mark %q opaque: %w", path.Dir(rel), err)
		}
		return nil
	}
	if strings.HasPrefix(base, whiteoutMeta) {
		return nil // aufs bookkeeping (.wh..wh.plnk etc.), meaningless here
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("bad whiteout name %q", base)
	}
	target := filepath.Join(parent, name)
	u.forget(path.Join(path.Dir(rel), name))
	if err := removeExisting(target); err != nil {
		return err
	}
	if err := unix.Mknod(target, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("make whiteout: %w", err)
	}
	u.stats.Inodes++
	if err := os.Lchown(target, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("lchown whiteout: %w", err)
	}
	return nil
}
