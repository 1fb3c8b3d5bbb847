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

W=$(mktemp -d /tmp/xlstack-bench-replica.XXXXXX)
chmod 755 "$W"
. "$ROOT/bench/mounts.sh"
REPLICA_BRICKS=()
cleanup() {
  set +e
  unmount_all
  for pid in "${REPLICA_BRICKS[@]}"; do kill "$pid" 2>/dev/null; done
  rm -rf "$W"
}
trap cleanup EXIT

# Two bricks of the shipped replica, and the shipped client with its first two children.
mount_replica2() {
  local port=$((${BENCH_BRICK_PORT:-24119} + 1)) i
  mkdir -p "$W/replica2"
  for i in 1 2; do
    sed -e "s|/var/lib/xlstack/replica-$i|$W/replica-$i|g" -e "s|listen-port .*|listen-port $((port + i - 1))|" "$ROOT/volfiles/replica-brick$i.vol" >"$W/replica-brick$i.vol"
    node "$XL" brick "$W/replica-brick$i.vol" 2>"$W/replica-brick$i.log" &
    REPLICA_BRICKS+=($!)
    for _ in $(seq "$MOUNT_WAIT_TENTHS"); do grep -q ' up (pid' "$W/replica-brick$i.log" && break; sleep 0.1; done
  done
  python3 - "$ROOT/volfiles/replica.vol" "$port" >"$W/replica2.vol" <<'EOF'
import re, sys
text, port = open(sys.argv[1]).read(), int(sys.argv[2])
text = re.sub(r'volume replica-client-2\n.*?end-volume\n\n', '', text, flags=re.S)
text = text.replace('subvolumes replica-client-0 replica-client-1 replica-client-2', 'subvolumes replica-client-0 replica-client-1')
for i in range(2):
    text = text.replace(f'remote-port {24010 + i}', f'remote-port {port + i}')
print(text, end='')
EOF
  chmod 600 "$W"/replica*.vol
  node "$XL" mount "$W/replica2.vol" "$W/replica2" 2>"$W/replica2.log" &
  PIDS+=($!)
  wait_mounted "$W/replica2" "$W/replica2.log"
}

mount_xlstack_net
mount_replica2

OUTDIR=${OUTDIR:-$W/out}
export OUTDIR
"$BENCH/compare.sh" xlstack_net="$W/xlstack_net" replica2="$W/replica2"
python3 "$ROOT/bench/ratios.py" "$OUTDIR" replica2 xlstack_net
echo
echo "## logs (warnings and errors)"
grep -hE ' (WARN|ERROR) ' "$W"/*.log || echo "(none)"
