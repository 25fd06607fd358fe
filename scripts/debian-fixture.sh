#!/bin/bash
# Build the Debian 12 minbase test fixture once, outside the repository, and print its path.
#
#   TRELLIS_TEST_CACHE  cache directory (default /var/cache/trellis-test); the tree is
#                       $TRELLIS_TEST_CACHE/minbase
#   TRELLIS_DEBIAN_MIRROR  mirror (default http://deb.debian.org/debian)
#
# Idempotent: if the tree is already there, only its path is printed. Otherwise mmdebstrap
# writes into a temporary directory beside it, which is then renamed into place, so a killed
# run never leaves a half-built fixture behind. Needs root (mmdebstrap --mode=root makes the
# device nodes in /dev) and the mmdebstrap package. Progress goes to stderr; stdout carries
# only the path, for `cargo xtask test`.
set -euo pipefail

cache=${TRELLIS_TEST_CACHE:-/var/cache/trellis-test}
mirror=${TRELLIS_DEBIAN_MIRROR:-http://deb.debian.org/debian}
dest=$cache/minbase

present() { [ -f "$dest/etc/debian_version" ] && [ -d "$dest/usr/bin" ]; }

if present; then
    echo "$dest"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    echo "$0: building $dest needs root (mmdebstrap --mode=root)" >&2
    exit 1
fi
command -v mmdebstrap >/dev/null || {
    echo "$0: mmdebstrap is missing: apt-get install mmdebstrap" >&2
    exit 1
}

mkdir -p "$cache"
# One builder at a time; a second caller waits, then finds the tree present.
exec 9>"$cache/.minbase.lock"
flock 9
if present; then
    echo "$dest"
    exit 0
fi

# A directory at $dest without the marker files is a leftover we did not make atomically.
if [ -e "$dest" ]; then
    echo "$0: $dest exists but is not a complete minbase tree; remove it and rerun" >&2
    exit 1
fi
# Temp dirs of earlier killed runs.
rm -rf "$cache"/.minbase.tmp.*

tmp=$(mktemp -d "$cache/.minbase.tmp.XXXXXX")
trap 'rm -rf "$tmp"' EXIT
echo "$0: building $dest with mmdebstrap (bookworm, minbase)" >&2
mmdebstrap --variant=minbase --mode=root bookworm "$tmp" "$mirror" >&2
chmod 0755 "$tmp" # mktemp made it 0700; the tree's root directory should look like /.
mv -T "$tmp" "$dest"
trap - EXIT
echo "$dest"
