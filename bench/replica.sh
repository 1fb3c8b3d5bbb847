#!/usr/bin/env bash
# Replica 2 over loopback against one brick over loopback: two bricks from
# volfiles/replica-brick1.vol and -2.vol and volfiles/replica.vol cut to those two
# children, beside npm run bench's xlstack_net (volfiles/brick.vol + client.vol), both with
# the shipped options, measured in alternation by bench/measure/compare.sh; then ratios.
# Env: BENCH_SCRIPTS (default bench/measure), compare.sh's knobs (ROUNDS, BENCH_SIZE,
# BENCH_META_N, ...), BENCH_BRICK_PORT (xlstack_net's port, 24119; the replica's bricks take
# the next two), OUTDIR (raw results, default in the scratch directory, removed at the end).
# Needs root, fio, python3.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH_SCRIPTS:-$ROOT/bench/measure}
[ -x "$BENCH/compare.sh" ] || { echo "bench: no compare.sh in $BENCH" >&2; exit 2; }
for tool in fio python3 fusermount; do command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 2; }; done
[ -f "$ROOT/dist/src/cli/main.js" ] || (cd "$ROOT" && npm run build >/dev/null)

. "$ROOT/bench/scratch.sh"
W=$(scratch_dir replica)
. "$ROOT/bench/mounts.sh"
cleanup() {
  set +e
  unmount_all
  rm -rf "$W"
}
trap cleanup EXIT

mount_xlstack_net
mount_replica2

OUTDIR=${OUTDIR:-$W/out}
export OUTDIR
"$BENCH/compare.sh" xlstack_net="$W/xlstack_net" replica2="$W/replica2"
python3 "$ROOT/bench/ratios.py" "$OUTDIR" replica2 xlstack_net
echo
echo "## logs (warnings and errors)"
grep -hE ' (WARN|ERROR) ' "$W"/*.log || echo "(none)"
