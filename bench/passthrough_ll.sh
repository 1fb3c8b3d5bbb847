#!/usr/bin/env bash
# passthrough_ll.sh OUTDIR: builds libfuse 3.14's example low-level passthrough (C, single
# process), the fastest plain C FUSE filesystem to compare with, into OUTDIR/passthrough_ll.
# Its source comes from Debian's fuse3 source tarball (checked against a pinned sha256) and is
# kept in BENCH_CACHE (default /var/cache/xlstack-bench) for the next run. Needs curl, gcc,
# pkg-config and libfuse3-dev (`make bench` installs them; libfuse3-dev needs only libfuse3-3,
# it never replaces an installed fuse or fuse3).
set -euo pipefail
OUT=${1:?usage: passthrough_ll.sh OUTDIR}
CACHE=${BENCH_CACHE:-/var/cache/xlstack-bench}
TARBALL=fuse3_3.14.0.orig.tar.xz
URL=https://deb.debian.org/debian/pool/main/f/fuse3/$TARBALL
SHA256=96115b2a8ff34bd1e0c7b00c5dfd8297571d7e165042b94498c9a26356a9a70a
SRC=$CACHE/fuse-3.14.0/example
mkdir -p "$CACHE" "$OUT"
if [ ! -f "$SRC/passthrough_ll.c" ]; then
  [ -f "$CACHE/$TARBALL" ] || curl -sSfL -o "$CACHE/$TARBALL.part" "$URL"
  [ -f "$CACHE/$TARBALL" ] || mv "$CACHE/$TARBALL.part" "$CACHE/$TARBALL"
  echo "$SHA256  $CACHE/$TARBALL" | sha256sum -c --quiet - ||
    { rm -f "$CACHE/$TARBALL"; echo "passthrough_ll.sh: $URL does not match its pinned sha256" >&2; exit 1; }
  tar xf "$CACHE/$TARBALL" -C "$CACHE" fuse-3.14.0/example/passthrough_ll.c fuse-3.14.0/example/passthrough_helpers.h
fi
gcc -O2 -Wall -I"$SRC" "$SRC/passthrough_ll.c" $(pkg-config fuse3 --cflags --libs) -o "$OUT/passthrough_ll"
