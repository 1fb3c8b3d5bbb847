#!/usr/bin/env bash
# npm run bench: in one run, on the same machine, xlstack's default stack over the kernel
# transport (supervised, and in one process: what the in-flight record costs) and over
# fuse-native, its client/server stack over loopback (volfiles/brick.vol + volfiles/client.vol),
# bindfs, bindfs -o big_writes and libfuse3's C low-level passthrough, measured in alternation
# (bench/measure/compare.sh: A B C ... A B C ...); then the ratios against bindfs, bindfs -o big_writes and passthrough_ll, the issue's targets, and a held fd
# doing I/O while the kernel-transport mount switches graphs K times (graph-switch-stall.sh);
# the client/server stack (every cache on) beside GlusterFS 10.3's figures (bench/glusterfs.py);
# then what each cache buys over the network stack, with and without it (bench/caches.sh).
# Env: BENCH_SCRIPTS (default bench/measure); BENCH_TARGETS (the
# labels to mount, default all but xlstack_dist: see bench/mounts.sh); K (graph switches, default 20; 0: none);
# OUTDIR (raw results, default in the scratch directory, removed at the end); plus
# compare.sh's knobs (ROUNDS, BENCH_SIZE, BENCH_META_N, QUIET_MAX_BUSY, ...); BENCH_CACHES=0
# skips bench/caches.sh (CACHES_QUICK=1: its quick sizes).
# Quick look: ROUNDS=1 BENCH_SIZE=64M BENCH_META_N=500 BENCH_RR_SECS=1 BENCH_RRD_SECS=1 K=4
# CACHES_QUICK=1.
# Needs root, fio, bindfs, python3, and gcc with libfuse3-dev for passthrough_ll (`make bench`
# installs them).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
# The measuring scripts (bench/measure) print one metric line per figure; BENCH_SCRIPTS may
# point at another copy of them.
BENCH=${BENCH_SCRIPTS:-$ROOT/bench/measure}
[ -x "$BENCH/compare.sh" ] || { echo "bench: no compare.sh in $BENCH" >&2; exit 2; }
for tool in fio bindfs python3 fusermount curl gcc pkg-config; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (make bench installs it)" >&2; exit 2; }
done
[ -f "$ROOT/dist/src/cli/main.js" ] || (cd "$ROOT" && npm run build >/dev/null)

TARGETS=(${BENCH_TARGETS:-xlstack xlstack_1p xlstack_native xlstack_net bindfs bindfs_bw passthrough_ll})
. "$ROOT/bench/scratch.sh"
W=$(scratch_dir run)
XL_PID=
. "$ROOT/bench/mounts.sh"
cleanup() {
  set +e
  unmount_all
  rm -rf "$W"
}
trap cleanup EXIT

ARGS=()
for t in "${TARGETS[@]}"; do
  declare -F "mount_$t" >/dev/null || { echo "bench: unknown target $t (see bench/mounts.sh)" >&2; exit 2; }
  "mount_$t"
  ARGS+=("$t=$W/$t")
done

OUTDIR=${OUTDIR:-$W/out}
export OUTDIR
"$BENCH/compare.sh" "${ARGS[@]}"
for s in xlstack xlstack_native xlstack_net xlstack_dist; do
  [[ " ${TARGETS[*]} " == *" $s "* ]] || continue
  echo
  echo "## $s"
  python3 "$ROOT/bench/ratios.py" "$OUTDIR" "$s" bindfs bindfs_bw passthrough_ll
done
if [[ " ${TARGETS[*]} " == *" xlstack_1p "* ]]; then
  echo
  echo "## what the supervisor's in-flight record costs: xlstack (supervised) / xlstack_1p (--single-process)"
  python3 "$ROOT/bench/ratios.py" "$OUTDIR" xlstack xlstack_1p
fi
echo
echo "## targets"
python3 "$ROOT/bench/ratios.py" "$OUTDIR" --targets
if [[ " ${TARGETS[*]} " == *" xlstack_net "* ]]; then
  echo
  echo "## the client/server stack (volfiles/client.vol, every cache on) beside GlusterFS 10.3"
  python3 "$ROOT/bench/glusterfs.py" "$OUTDIR" xlstack_net
fi

# Graph switches under a held fd: the volfile alternates between two topologies (a
# delay-gen layer that delays nothing is added on top and removed) and SIGHUP switches
# graphs (`xlstack reload` would do the same, but starting node for it each time takes CPU
# from the loop being measured; the log lines count the switches).
if [ -n "$XL_PID" ] && [ "${K:-20}" -gt 0 ]; then
  cp "$W/xlstack.vol" "$W/topo-0.vol"
  { cat "$W/xlstack.vol"; printf 'volume switch-extra\n    type debug/delay-gen\n    subvolumes default\nend-volume\n'; } >"$W/topo-1.vol"
  echo
  echo "## graph switches under a held fd (K=${K:-20})"
  K=${K:-20} RSS_PID=$XL_PID GS_LOG="$W/xlstack.log" "$BENCH/graph-switch-stall.sh" "$W/xlstack" \
    "cp $W/topo-\$((GS_ITER % 2)).vol $W/xlstack.vol && kill -HUP $XL_PID"
fi
echo
echo "## xlstack logs (warnings and errors)"
grep -E ' (WARN|ERROR) ' "$W"/*.log /dev/null || echo "(none)"

# What each cache buys, with and without it in one run, on a brick and mounts of its own
# (the mounts above are down by then: unmount them first so they share no CPU with it).
if [ "${BENCH_CACHES:-1}" != 0 ]; then
  unmount_all
  echo
  echo "## what each cache buys over the network stack (with / without it, same run)"
  env -u BENCH_BRICK_PORT "$ROOT/bench/caches.sh"
fi
