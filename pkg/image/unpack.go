package image

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"strconv"
	"strings"
	"sync"
	"time"

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
//
// Every path is resolved by the kernel inside the layer root: each entry's
// parent directory is opened with openat2(RESOLVE_IN_ROOT), so ".." and
// symlinks (absolute or relative, made by this very layer) are clamped to
// the root, and the entry itself is made with the *at call on that
// descriptor, never following its last component. Nothing is remembered
// between entries: a directory a later entry replaces with a symlink is
// resolved afresh, so it can only ever lead to another place in the layer.
type unpacker struct {
	rootFD int
	dirs   []dirTime
	stats  unpackStats
	budget *byteBudget // shared by the layers of one pull; nil: no limit
}

type dirTime struct {
	rel   string
	mtime time.Time
}

// resolveInRoot confines every lookup to the layer, refuses /proc magic
// links (which jump anywhere) and mount crossings (there are none in a
// fresh layer dir; a mount there would not be ours).
const resolveInRoot = unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS | unix.RESOLVE_NO_XDEV

// copyBufs are the buffers file contents go through: 256 KiB copies are
// fewer syscalls than io.Copy's 32 KiB, and pooling keeps them off the
// heap of a pull unpacking three layers at once.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 256<<10); return &b }}

// unpackLayer applies the uncompressed layer tar r to dir, converting OCI
// whiteouts to overlayfs ones. It does not fsync: the caller renames dir
// into place only when this returns nil, and New discards anything else.
func unpackLayer(ctx context.Context, r io.Reader, dir string) (unpackStats, error) {
	return unpackLayerBudget(ctx, r, dir, nil)
}

func unpackLayerBudget(ctx context.Context, r io.Reader, dir string, budget *byteBudget) (unpackStats, error) {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return unpackStats{}, fmt.Errorf("open layer dir: %w", err)
	}
	defer unix.Close(fd)
	u := &unpacker{rootFD: fd, budget: budget}
	if err := unix.Fchmod(fd, 0o755); err != nil {
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
		if err := u.setDirTime(d); err != nil {
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

// openDir opens rel, a directory in the layer, resolving it inside the root.
func (u *unpacker) openDir(rel string) (int, error) {
	for {
		fd, err := unix.Openat2(u.rootFD, rel, &unix.OpenHow{
			Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_CLOEXEC,
			Resolve: resolveInRoot,
		})
		if err == unix.EINTR || err == unix.EAGAIN {
			// EAGAIN: a rename raced the lookup (RESOLVE_IN_ROOT is
			// strict about that); nothing else renames here, so retry.
			continue
		}
		return fd, err
	}
}

// parentDir opens rel's parent, creating missing ancestors as docker does
// (layers may omit them). It returns the parent's descriptor and rel's last
// component, which is never "", "." or "..".
func (u *unpacker) parentDir(rel string) (int, string, error) {
	fd, err := u.mkdirAll(path.Dir(rel))
	if err != nil {
		return -1, "", fmt.Errorf("parent %q: %w", path.Dir(rel), err)
	}
	return fd, path.Base(rel), nil
}

// mkdirAll opens directory rel, making it and its missing ancestors 0755.
func (u *unpacker) mkdirAll(rel string) (int, error) {
	fd, err := u.openDir(rel)
	if err == nil || !errors.Is(err, unix.ENOENT) || rel == "." {
		return fd, err
	}
	pfd, err := u.mkdirAll(path.Dir(rel))
	if err != nil {
		return -1, err
	}
	err = unix.Mkdirat(pfd, path.Base(rel), 0o755)
	unix.Close(pfd)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, err
	}
	if err == nil {
		u.stats.Inodes++
	}
	// A dangling symlink there made mkdirat fail with EEXIST; opening it
	// resolves the link inside the root and fails if it leads nowhere.
	return u.openDir(rel)
}

func (u *unpacker) entry(hdr *tar.Header, r io.Reader) error {
	// Each entry costs a header block at least, so a bomb of empty
	// entries spends the budget too.
	if err := u.budget.take(512); err != nil {
		return err
	}
	rel := cleanRel(hdr.Name)
	if hdr.Typeflag == tar.TypeXGlobalHeader {
		return nil
	}
	if rel == "." {
		if hdr.Typeflag != tar.TypeDir {
			return fmt.Errorf("layer root must be a directory, got type %q", hdr.Typeflag)
		}
		dfd, err := unix.Dup(u.rootFD)
		if err != nil {
			return err
		}
		defer unix.Close(dfd)
		return u.dirMeta(hdr, rel, dfd)
	}
	if strings.HasPrefix(path.Base(rel), whiteoutPrefix) {
		return u.whiteout(hdr, rel)
	}
	pfd, base, err := u.parentDir(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)

	if hdr.Typeflag == tar.TypeDir {
		return u.dir(hdr, rel, pfd, base)
	}
	if err := removeAt(pfd, base); err != nil {
		return err
	}
	switch hdr.Typeflag {
	case tar.TypeReg, tar.TypeGNUSparse: // tar.Reader reports the old TypeRegA as TypeReg
		return u.file(hdr, pfd, base, r)
	case tar.TypeSymlink:
		// The link text is interpreted inside the container (or, by this
		// unpacker, inside the layer root), never on the host.
		if err := unix.Symlinkat(hdr.Linkname, pfd, base); err != nil {
			return err
		}
		u.stats.Inodes++
		return u.pathMeta(hdr, pfd, base)
	case tar.TypeLink:
		return u.hardlink(hdr, pfd, base)
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		mode := tarMode(hdr.Mode)
		switch hdr.Typeflag {
		case tar.TypeChar:
			mode |= unix.S_IFCHR
		case tar.TypeBlock:
			mode |= unix.S_IFBLK
		default:
			mode |= unix.S_IFIFO
		}
		if err := unix.Mknodat(pfd, base, mode, int(unix.Mkdev(uint32(hdr.Devmajor), uint32(hdr.Devminor)))); err != nil {
			return err
		}
		u.stats.Inodes++
		return u.pathMeta(hdr, pfd, base)
	default:
		return fmt.Errorf("unsupported tar entry type %q", hdr.Typeflag)
	}
}

// dir makes (or keeps) directory base in pfd; a non-directory there is
// replaced, a directory keeps its contents as tar semantics want.
func (u *unpacker) dir(hdr *tar.Header, rel string, pfd int, base string) error {
	var st unix.Stat_t
	err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
	if err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(pfd, base, 0); err != nil {
			return err
		}
		err = unix.ENOENT
	}
	if errors.Is(err, unix.ENOENT) {
		if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
			return err
		}
		u.stats.Inodes++
		u.stats.Bytes += 4096
	} else if err != nil {
		return err
	}
	dfd, err := unix.Openat(pfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(dfd)
	return u.dirMeta(hdr, rel, dfd)
}

// file writes a regular file's content and metadata through its own
// descriptor, created O_EXCL|O_NOFOLLOW in its parent.
func (u *unpacker) file(hdr *tar.Header, pfd int, base string, r io.Reader) error {
	fd, err := unix.Openat(pfd, base, unix.O_CREAT|unix.O_EXCL|unix.O_WRONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return err
	}
	f := os.NewFile(uintptr(fd), base)
	defer f.Close()
	u.stats.Inodes++
	buf := copyBufs.Get().(*[]byte)
	n, err := io.CopyBuffer(onlyWriter{f}, u.budget.reader(r), *buf)
	copyBufs.Put(buf)
	u.stats.Bytes += (n + 4095) &^ 4095
	if err != nil {
		return err
	}
	if err := unix.Fchown(fd, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := setXattrs(hdr, func(k string, v []byte) error { return unix.Fsetxattr(fd, k, v, 0) }); err != nil {
		return err
	}
	// Mode after chown, which clears setuid/setgid bits.
	if err := unix.Fchmod(fd, tarMode(hdr.Mode)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	ts := timespecs(hdr.ModTime)
	if err := unix.UtimesNanoAt(fd, "", ts, unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return f.Close()
}

// onlyWriter hides *os.File's ReadFrom, which would bypass the pooled
// buffer and probe for copy_file_range/splice on every file.
type onlyWriter struct{ io.Writer }

// hardlink links base to an earlier entry of this layer. The source's
// parent is resolved inside the root like any entry's and its last
// component is not followed (link(2) links a symlink itself), so a link can
// name nothing but a non-directory this layer made.
func (u *unpacker) hardlink(hdr *tar.Header, pfd int, base string) error {
	src := cleanRel(hdr.Linkname)
	if src == "." {
		return errors.New("hard link to the layer root")
	}
	sfd, err := u.openDir(path.Dir(src))
	if err != nil {
		return fmt.Errorf("hard link target %q: %w", hdr.Linkname, err)
	}
	defer unix.Close(sfd)
	var st unix.Stat_t
	if err := unix.Fstatat(sfd, path.Base(src), &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("hard link target %q: %w", hdr.Linkname, err)
	}
	if st.Mode&unix.S_IFMT == unix.S_IFDIR {
		return fmt.Errorf("hard link target %q is a directory", hdr.Linkname)
	}
	// A hard link shares the inode, blocks and metadata of its target.
	return unix.Linkat(sfd, path.Base(src), pfd, base, 0)
}

// dirMeta sets a directory's owner, xattrs and mode now and its mtime at
// the end, through a descriptor of the directory itself.
func (u *unpacker) dirMeta(hdr *tar.Header, rel string, dfd int) error {
	if err := unix.Fchown(dfd, hdr.Uid, hdr.Gid); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if err := setXattrs(hdr, func(k string, v []byte) error { return unix.Fsetxattr(dfd, k, v, 0) }); err != nil {
		return err
	}
	if err := unix.Fchmod(dfd, tarMode(hdr.Mode)); err != nil {
		return fmt.Errorf("chmod: %w", err)
	}
	u.dirs = append(u.dirs, dirTime{rel, hdr.ModTime})
	return nil
}

// setDirTime stamps a directory's mtime once its contents are complete. A
// later entry may have removed it or put something else in its place: then
// there is nothing to stamp.
func (u *unpacker) setDirTime(d dirTime) error {
	fd, err := unix.Openat2(u.rootFD, d.rel, &unix.OpenHow{
		Flags:   unix.O_RDONLY | unix.O_DIRECTORY | unix.O_NOFOLLOW | unix.O_CLOEXEC,
		Resolve: resolveInRoot | unix.RESOLVE_NO_SYMLINKS,
	})
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) || errors.Is(err, unix.ELOOP) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("set times of %q: %w", d.rel, err)
	}
	defer unix.Close(fd)
	if err := unix.UtimesNanoAt(fd, "", timespecs(d.mtime), unix.AT_EMPTY_PATH); err != nil {
		return fmt.Errorf("set times of %q: %w", d.rel, err)
	}
	return nil
}

// pathMeta sets the metadata of a symlink or device node named base in pfd
// without following or opening it (opening a device would reach the
// device). xattrs go through /proc/self/fd/N/base: the kernel follows the
// magic link to the pinned parent, then does not follow base.
func (u *unpacker) pathMeta(hdr *tar.Header, pfd int, base string) error {
	if err := unix.Fchownat(pfd, base, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown: %w", err)
	}
	if hdr.Typeflag != tar.TypeSymlink {
		// Not a symlink, and nothing but this unpack writes the directory:
		// fchmodat cannot be led elsewhere.
		if err := unix.Fchmodat(pfd, base, tarMode(hdr.Mode), 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
		p := "/proc/self/fd/" + strconv.Itoa(pfd) + "/" + base
		if err := setXattrs(hdr, func(k string, v []byte) error { return unix.Lsetxattr(p, k, v, 0) }); err != nil {
			return err
		}
	}
	if err := unix.UtimesNanoAt(pfd, base, timespecs(hdr.ModTime), unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// keptPrivilegedXattrs are the trusted.*/security.* attributes a layer may
// carry. security.capability is a file capability (ping, arping in distro
// images): the kernel grants it only within the container's bounding set,
// so it cannot reach beyond what the pod was given. Every other trusted.*
// (overlay redirect/origin/metacopy would make overlayfs reach into other
// layers) and security.* (LSM labels, IMA/EVM) attribute is the host's to
// set, not an image's. The overlay whiteout and opaque markers are made by
// this unpacker from OCI whiteout entries, never copied.
var keptPrivilegedXattrs = map[string]bool{"security.capability": true}

// setXattrs applies the entry's user xattrs (and the kept privileged ones)
// with set. A namespace the file system or file type lacks is skipped:
// losing one does not break the image.
func setXattrs(hdr *tar.Header, set func(string, []byte) error) error {
	for k, v := range hdr.PAXRecords {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok {
			continue
		}
		if (strings.HasPrefix(name, "trusted.") || strings.HasPrefix(name, "security.")) && !keptPrivilegedXattrs[name] {
			continue
		}
		if err := set(name, []byte(v)); err != nil {
			if errors.Is(err, unix.ENOTSUP) || errors.Is(err, unix.EPERM) {
				continue
			}
			return fmt.Errorf("set xattr %s: %w", name, err)
		}
	}
	return nil
}

// tarMode converts tar's mode bits (which use the classic c_ISUID etc.
// values, as the kernel does) to a chmod argument.
func tarMode(m int64) uint32 { return uint32(m) & 0o7777 }

func timespecs(mtime time.Time) []unix.Timespec {
	ts := unix.NsecToTimespec(mtime.UnixNano())
	return []unix.Timespec{ts, ts}
}

// removeAt clears name in dirfd so a later entry can replace an earlier one.
// A directory goes with its contents, walked by descriptor.
func removeAt(dirfd int, name string) error {
	err := unix.Unlinkat(dirfd, name, 0)
	if err == nil || errors.Is(err, unix.ENOENT) {
		return nil
	}
	if !errors.Is(err, unix.EISDIR) {
		return err
	}
	return removeAllAt(dirfd, name)
}

func removeAllAt(dirfd int, name string) error {
	fd, err := unix.Openat(dirfd, name, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	d := os.NewFile(uintptr(fd), name)
	for {
		names, rerr := d.Readdirnames(256)
		for _, n := range names {
			if err := unix.Unlinkat(fd, n, 0); err != nil {
				if !errors.Is(err, unix.EISDIR) {
					d.Close()
					return err
				}
				if err := removeAllAt(fd, n); err != nil {
					d.Close()
					return err
				}
			}
		}
		if rerr == io.EOF {
			break
		}
		if rerr != nil {
			d.Close()
			return rerr
		}
	}
	d.Close()
	return unix.Unlinkat(dirfd, name, unix.AT_REMOVEDIR)
}

// whiteout converts an OCI whiteout entry to overlayfs form: ".wh.NAME"
// becomes a 0:0 char device NAME, ".wh..wh..opq" marks its directory opaque.
// Both act on the directory the whiteout's parent resolves to inside the
// root, so a whiteout can only hide or delete something of this layer.
func (u *unpacker) whiteout(hdr *tar.Header, rel string) error {
	base := path.Base(rel)
	if strings.HasPrefix(base, whiteoutMeta) && base != whiteoutOpaque {
		return nil // aufs bookkeeping (.wh..wh.plnk etc.), meaningless here
	}
	pfd, _, err := u.parentDir(rel)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if base == whiteoutOpaque {
		if err := unix.Fsetxattr(pfd, "trusted.overlay.opaque", []byte("y"), 0); err != nil {
			return fmt.Errorf("mark %q opaque: %w", path.Dir(rel), err)
		}
		return nil
	}
	name := strings.TrimPrefix(base, whiteoutPrefix)
	if name == "" || name == "." || name == ".." || strings.Contains(name, "/") {
		return fmt.Errorf("bad whiteout name %q", base)
	}
	if err := removeAt(pfd, name); err != nil {
		return err
	}
	if err := unix.Mknodat(pfd, name, unix.S_IFCHR, 0); err != nil {
		return fmt.Errorf("make whiteout: %w", err)
	}
	u.stats.Inodes++
	if err := unix.Fchownat(pfd, name, hdr.Uid, hdr.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("chown whiteout: %w", err)
	}
	return nil
}
