#!/usr/bin/env bash
# Builds a static busybox from Debian's busybox source package with upstream's
# defconfig into a cache dir and prints its path.
#
# Why not Debian's busybox-static binary: it lacks ipcs and pgrep, its wget
# segfaults, and it is built with FEATURE_SH_STANDALONE, so `sh -c ls` runs the
# ls applet in-process and never executes /bin/ls, which critest's MaskedPaths
# spec masks. defconfig has all of those applets and a shell that searches PATH,
# as the upstream e2e busybox image does.
#
# The source comes through apt with a private sources list and lists dir
# (nothing of the host's apt configuration is changed); no deb-src line is needed.
# Cold: ~3 min on 2 cores; warm: instant.
set -euo pipefail

CACHE=${POD_SHIM_CACHE:-/var/cache/pod-shim-ci}
OUT=$CACHE/busybox/busybox
if [[ -x $OUT ]] && "$OUT" --list | grep -qx ipcs; then
	echo "$OUT"
	exit 0
fi
mkdir -p "$(dirname "$OUT")"
work=$(mktemp -d "${TMPDIR:-/tmp}/busybox-build.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/lists/partial" "$work/src"
suite=$(. /etc/os-release && echo "${VERSION_CODENAME:-bookworm}")
printf 'Types: deb-src\nURIs: http://deb.debian.org/debian\nSuites: %s\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' \
	"$suite" >"$work/src.sources"
apt=(-o Dir::Etc::sourcelist="$work/src.sources" -o Dir::Etc::sourceparts=/nonexistent
	-o Dir::State::Lists="$work/lists" -o Debug::NoLocking=1 -o APT::Sandbox::User=root)
apt-get "${apt[@]}" update >&2
(cd "$work/src" && apt-get "${apt[@]}" source --download-only busybox >&2)
orig=$(ls "$work"/src/busybox_*.orig.tar.*)
tar -xf "$orig" -C "$work"
dir=$(ls -d "$work"/busybox-*/ | head -1)
cd "$dir"
# A fixed build date (kconfig stamps it into the banner) keeps the binary, and
# so the images' digests, the same from one cold build to the next.
export SOURCE_DATE_EPOCH=1704067200
make defconfig >/dev/null
sed -i -e 's/^# CONFIG_STATIC is not set/CONFIG_STATIC=y/' .config
# tc does not build against newer kernel headers and no spec needs it.
sed -i -e 's/^CONFIG_TC=y/# CONFIG_TC is not set/' .config
make oldconfig </dev/null >/dev/null
make -j"$(nproc)" busybox >&2
strip busybox
cp busybox "$OUT.tmp"
mv "$OUT.tmp" "$OUT"
echo "$OUT"
