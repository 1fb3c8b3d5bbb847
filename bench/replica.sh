#!/usr/bin/env bash
# Replica 2 over loopback against one brick over loopback: two bricks from
# volfiles/replica-brick1.vol and -2.vol and volfiles/replica.vol cut to those two
# children, beside volfiles/brick.vol + client.vol, both with the shipped options, measured
# in alternation by ../shared/bench/compare.sh; then ratios.
# Env: BENCH_SCRIPTS (default ../shared/bench next to this repository), compare.sh's knobs
# (ROUNDS, BENCH_SIZE, BENCH_META_N, ...), BENCH_BRICK_PORT (first of three ports, 24129).
# Needs root, fio, python3.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH_SCRIPTS:-$ROOT/../shared/bench}
CLI="$ROOT/dist/src/cli/main.js"
[ -x "$BENCH/compare.sh" ] || { echo "bench: no compare.sh in $BENCH (set BENCH_SCRIPTS)" >&2; exit 2; }
for tool in fio python3; do command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 2; }; done
[ -f "$CLI" ] || (cd "$ROOT" && npm run build >/dev/null)

W=$(mktemp -d /tmp/xlstack-bench-replica.XXXXXX)
chmod 755 "$W"
mkdir -p "$W"/{net,replica}
PIDS=()
cleanup() {
  set +e
  for m in "$W/net" "$W/replica"; do mountpoint -q "$m" && node "$CLI" unmount "$m" >/dev/null 2>&1; done
  for m in "$W/net" "$W/replica"; do mountpoint -q "$m" && fusermount -uz "$m"; done
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  rm -rf "$W"
}
trap cleanup EXIT

PORT=${BENCH_BRICK_PORT:-24129}
brick() { # volfile name
  node "$CLI" brick "$W/$1" 2>"$W/$1.log" &
  PIDS+=($!)
  for _ in $(seq 100); do grep -q ' up (pid' "$W/$1.log" && break; sleep 0.1; done
}
mounted() { # volfile mountpoint
  node "$CLI" mount "$W/$1" "$W/$2" 2>"$W/$2.log" &
  PIDS+=($!)
  for _ in $(seq 100); do mountpoint -q "$W/$2" && break; sleep 0.1; done
  mountpoint -q "$W/$2" || { echo "bench: $1 did not mount:" >&2; cat "$W"/*.log >&2; exit 1; }
}

# One brick, as npm run bench measures it.
sed -e "s|option directory .*|option directory $W/single|" -e "s|listen-port .*|listen-port $PORT|" "$ROOT/volfiles/brick.vol" >"$W/single.vol"
sed -e "s|remote-port .*|remote-port $PORT|" "$ROOT/volfiles/client.vol" >"$W/net.vol"
brick single.vol
mounted net.vol net

# Two bricks of the shipped replica, and the shipped client with its first two children.
for i in 1 2; do
  sed -e "s|/var/lib/xlstack/replica-$i|$W/replica-$i|g" -e "s|listen-port .*|listen-port $((PORT + i))|" "$ROOT/volfiles/replica-brick$i.vol" >"$W/replica-brick$i.vol"
  brick "replica-brick$i.vol"
done
python3 - "$ROOT/volfiles/replica.vol" "$PORT" >"$W/replica.vol" <<'EOF'
import re, sys
text, port = open(sys.argv[1]).read(), int(sys.argv[2])
text = re.sub(r'volume replica-client-2\n.*?end-volume\n\n', '', text, flags=re.S)
text = text.replace('subvolumes replica-client-0 replica-client-1 replica-client-2', 'subvolumes replica-client-0 replica-client-1')
for i in range(2):
    text = text.replace(f'remote-port {24010 + i}', f'remote-port {port + 1 + i}')
print(text, end='')
EOF
mounted replica.vol replica

OUTDIR=${OUTDIR:-$W/out}
export OUTDIR
"$BENCH/compare.sh" xlstack_net="$W/net" replica2="$W/replica"
python3 "$ROOT/bench/ratios.py" "$OUTDIR" replica2 xlstack_net
echo
echo "replica logs (warnings and errors):"
grep -hE ' (WARN|ERROR) ' "$W"/*.log || echo "(none)"
