#!/usr/bin/env bash
# POSIX conformance: pjdfstest (vendored in ./pjdfstest, BSD licence) on a local posix
# volfile (storage/posix under features/locks) mounted with each transport given.
#
# usage: test/conformance/run.sh [kernel] [fuse-native]     (default: kernel fuse-native)
# env:   PJD_FILES="chmod rename/09.t ..."  run only these groups/files
#        PJD_TIMEOUT  per test file, seconds [300]
#        PJD_OUT      where logs go [a fresh directory under /tmp]
#
# For each transport it prints "conformance <transport>: files=N failed_files=K" and one
# "FAIL <file> ..." line per failing file, with the first failing assertion. The kernel
# transport must fail no file outside known-failures.txt (each listed with its reason):
# the exit status is 1 if it does, or if a known failure now passes (update the list).
# fuse-native's failures are reported, not judged: its limits are listed in the README.
# Needs root (pjdfstest switches to other uids) and Debian's autoconf, automake, gcc, perl.
set -uo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$HERE/../.." && pwd)
XLSTACK="node $ROOT/dist/src/cli/main.js"
TRANSPORTS=("$@")
[ ${#TRANSPORTS[@]} -gt 0 ] || TRANSPORTS=(kernel fuse-native)
PJD_TIMEOUT=${PJD_TIMEOUT:-300}
OUT=${PJD_OUT:-$(mktemp -d /tmp/xlstack-conformance.XXXXXX)}
BUILD=/var/tmp/xlstack-pjdfstest

[ "$(id -u)" = 0 ] || { echo "conformance: must run as root" >&2; exit 2; }
for t in "${TRANSPORTS[@]}"; do
  case $t in kernel|fuse-native) ;; *) echo "conformance: unknown transport '$t'" >&2; exit 2 ;; esac
done

# Build pjdfstest once (the build directory is keyed by the sources' checksum).
sum=$(cd "$HERE/pjdfstest" && find . -type f -print0 | sort -z | xargs -0 sha1sum | sha1sum | cut -c1-12)
if [ ! -x "$BUILD-$sum/pjdfstest" ]; then
  command -v autoreconf >/dev/null && command -v prove >/dev/null && command -v gcc >/dev/null ||
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq autoconf automake libtool make gcc perl >/dev/null; } ||
    { echo "conformance: cannot install autoconf automake libtool make gcc perl" >&2; exit 2; }
  rm -rf "$BUILD-$sum" && cp -r "$HERE/pjdfstest" "$BUILD-$sum"
  (cd "$BUILD-$sum" && autoreconf -ifs && ./configure && make pjdfstest) >"$OUT/build.log" 2>&1 ||
    { echo "conformance: building pjdfstest failed, see $OUT/build.log" >&2; exit 2; }
fi
PJD=$BUILD-$sum

tests=()
if [ -n "${PJD_FILES:-}" ]; then
  for f in $PJD_FILES; do tests+=("$PJD/tests/$f"); done
else
  tests=("$PJD/tests")
fi

MNT= PID=
cleanup() {
  if [ -n "$MNT" ] && mountpoint -q "$MNT"; then $XLSTACK unmount "$MNT" >/dev/null 2>&1 || umount -l "$MNT"; fi
  [ -n "$PID" ] && kill "$PID" 2>/dev/null
  MNT= PID=
}
trap cleanup EXIT

# Failing files of a prove log, one per line: "<group>/<nn>.t <first failing assertion>".
failures() {
  perl -ne '
    if (m{/tests/(\S+\.t) \.+}) { $f = $1; next; }
    if (defined $f && /^not ok/ && !/# TODO/ && !$seen{$f}++) { chomp; s/pjdfstest_[0-9a-f]+/<n>/g; s/[0-9a-f]{40,}/<long>/g; $why{$f} = substr($_, 0, 160); push @o, $f; }
    if (/^(\S+)\/tests\/(\S+\.t)\s+\(Wstat: (\d+)/ && $3 != 0 && !$seen{$2}++) { push @o, $2; $why{$2} = "exit status $3"; }
    END { print "$_ $why{$_}\n" for @o; }
  ' "$1"
}

status=0
for t in "${TRANSPORTS[@]}"; do
  W=$(mktemp -d /tmp/xlstack-conf-$t.XXXXXX)
  chmod 755 "$W"
  mkdir -p "$W/back" "$W/mnt"
  cat >"$W/conformance.vol" <<EOF
volume conformance-posix
    type storage/posix
    option directory $W/back
end-volume

volume conformance
    type features/locks
    subvolumes conformance-posix
end-volume
EOF
  $XLSTACK mount --background --transport "$t" --pidfile "$W/pid" --log-file "$OUT/$t.xlstack.log" "$W/conformance.vol" "$W/mnt" >/dev/null ||
    { echo "conformance: mounting with $t failed:" >&2; tail -5 "$OUT/$t.xlstack.log" >&2; status=1; continue; }
  MNT=$W/mnt PID=$(cat "$W/pid")
  mkdir "$W/mnt/work" && chmod 755 "$W/mnt/work"
  start=$(date +%s)
  (cd "$W/mnt/work" && prove -r --exec "timeout -k 10 $PJD_TIMEOUT /bin/sh" -v "${tests[@]}") >"$OUT/$t.log" 2>&1
  secs=$(( $(date +%s) - start ))
  files=$(grep -oE '^Files=[0-9]+' "$OUT/$t.log" | cut -d= -f2)
  failures "$OUT/$t.log" >"$OUT/$t.failures"
  echo "conformance $t: files=${files:-?} failed_files=$(wc -l <"$OUT/$t.failures") seconds=$secs log=$OUT/$t.log"
  sed 's/^/  FAIL /' "$OUT/$t.failures"
  cleanup
  rm -rf "$W"
  if [ "$t" = kernel ]; then
    known=$(grep -vE '^\s*(#|$)' "$HERE/known-failures.txt" | awk '{print $1}' | sort)
    got=$(awk '{print $1}' "$OUT/$t.failures" | sort)
    new=$(comm -13 <(echo "$known") <(echo "$got") | grep -v '^$')
    fixed=$(comm -23 <(echo "$known") <(echo "$got") | grep -v '^$')
    [ -z "${files:-}" ] && { echo "conformance kernel: no prove summary (see $OUT/$t.log)"; status=1; }
    [ -n "$new" ] && { echo "conformance kernel: failing and not in known-failures.txt:" $new; status=1; }
    [ -n "$fixed" ] && [ -z "${PJD_FILES:-}" ] && { echo "conformance kernel: in known-failures.txt but passing now (take them out):" $fixed; status=1; }
  fi
done
exit $status
