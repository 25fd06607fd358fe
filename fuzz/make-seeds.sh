#!/bin/bash
# Write the fuzz seed corpus: valid objects serialized by the real `ostree` (our oracle).
# Usage: fuzz/make-seeds.sh OUTDIR
# Seeds: .commit (with and without parent, with metadata), .commitmeta (a{sv}), .dirtree,
# .dirmeta, .filez headers (regular files, symlinks, xattrs), the summary, and bare-user
# `user.ostreemeta` xattr values. Needs ostree and attr (getfattr/setfattr).
set -euo pipefail

out=${1:?usage: $0 OUTDIR}
for tool in ostree setfattr getfattr; do
    command -v "$tool" >/dev/null || { echo "$0: $tool missing (apt-get install ostree attr)" >&2; exit 1; }
done
mkdir -p "$out"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

tree=$work/tree
mkdir -p "$tree/usr/bin" "$tree/etc/dir with space" "$tree/empty"
printf 'hello\n' >"$tree/usr/bin/hello"
chmod 4755 "$tree/usr/bin/hello"
: >"$tree/etc/empty-file"
head -c 3000 /dev/zero | tr '\0' 'x' >"$tree/etc/dir with space/big"
chmod 0600 "$tree/etc/dir with space/big"
ln -s ../usr/bin/hello "$tree/etc/link"
ln -s "$(printf 'é%.0s' {1..40})" "$tree/etc/long-link"
chmod 1777 "$tree/empty"
# user.* xattrs survive on any filesystem that has them; skip quietly where it does not.
setfattr -n user.a -v 1 "$tree/usr/bin/hello" 2>/dev/null || true
setfattr -n user.b -v 0x00ff00 "$tree/usr/bin/hello" 2>/dev/null || true
setfattr -n user.dir -v x "$tree/etc" 2>/dev/null || true

commit() { # repo, extra args...
    local repo=$1
    shift
    ostree commit --repo="$repo" -b main --tree=dir="$tree" \
        --timestamp=2020-01-01T00:00:00Z -s "fuzz seed" "$@" >/dev/null
}

a=$work/archive
ostree init --repo="$a" --mode=archive
commit "$a" --body="a body" --add-metadata-string=version=1.0 \
    --add-metadata='count=uint64 7' --add-metadata='list=["a", "b"]' \
    --add-detached-metadata-string=note=detached
echo more >"$tree/etc/more"
commit "$a" --add-metadata='flag=true' --add-metadata='byte=byte 0x12' \
    --add-metadata='nested=<(uint32 1, @ay [])>'
ostree summary --repo="$a" -u --add-metadata='ostree.summary.expires=uint64 99' >/dev/null \
    || ostree summary --repo="$a" -u >/dev/null

find "$a/objects" -type f | while read -r f; do
    base=${f##*/}
    cp "$f" "$out/${base##*.}-${base:0:16}"
done
cp "$a/summary" "$out/summary"

b=$work/bare-user
ostree init --repo="$b" --mode=bare-user
commit "$b"
find "$b/objects" -name '*.file' | while read -r f; do
    base=${f##*/}
    getfattr --only-values -n user.ostreemeta "$f" >"$out/ostreemeta-${base:0:16}" 2>/dev/null \
        || rm -f "$out/ostreemeta-${base:0:16}"
done

echo "$0: $(find "$out" -type f | wc -l) seeds in $out" >&2
