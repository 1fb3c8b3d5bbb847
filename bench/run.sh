#!/usr/bin/env bash
# npm run bench: xlstack's default stack and its client/server stack over loopback
# (volfiles/brick.vol + volfiles/client.vol, every cache on; and the same client with
# write-behind alone, as before the caches) against a plain directory, bindfs and
# bindfs -o big_writes, all on the same run (../shared/bench/compare.sh), then ratios and the
# client/server stack beside GlusterFS's figures; then a held fd doing I/O while the graph
# switches K times (graph-switch-stall.sh); then what each cache buys (bench/caches.sh).
# Env: BENCH_SCRIPTS (default ../shared/bench next to this repository), plus compare.sh's
# knobs (ROUNDS, BENCH_SIZE, BENCH_META_N, ...). Needs root, fio, bindfs, python3.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH_SCRIPTS:-$ROOT/../shared/bench}
[ -x "$BENCH/compare.sh" ] || { echo "bench: no compare.sh in $BENCH (set BENCH_SCRIPTS)" >&2; exit 2; }
for tool in fio bindfs python3 fusermount; do
  command -v "$tool" >/dev/null || { echo "bench: $tool is missing (apt-get install fio bindfs fuse)" >&2; exit 2; }
done
[ -f "$ROOT/dist/src/cli/main.js" ] || (cd "$ROOT" && npm run build >/dev/null)

W=$(mktemp -d /tmp/xlstack-bench.XXXXXX)
chmod 755 "$W"
mkdir -p "$W"/{plain,bindfs-src,bindfs,bindfs-bw-src,bindfs-bw,xl-back,xl,brick-back,xlnet,xlnet-wb}
XL_PID= BRICK_PID= NET_PID= WB_PID=

cleanup() {
  set +e
  for m in "$W/xl" "$W/xlnet" "$W/xlnet-wb"; do
    mountpoint -q "$m" && node "$ROOT/dist/src/cli/main.js" unmount "$m" >/dev/null 2>&1
  done
  for m in "$W/xl" "$W/xlnet" "$W/xlnet-wb" "$W/bindfs" "$W/bindfs-bw"; do
    mountpoint -q "$m" && fusermount -uz "$m"
  done
  for pid in $XL_PID $NET_PID $WB_PID $BRICK_PID; do kill "$pid" 2>/dev/null; done
  rm -rf "$W"
}
trap cleanup EXIT

bindfs "$W/bindfs-src" "$W/bindfs"
bindfs -o big_writes "$W/bindfs-bw-src" "$W/bindfs-bw"

# The default volfile, with its backing directory moved into the scratch area.
sed "s|option directory .*|option directory $W/xl-back|" "$ROOT/volfiles/default.vol" >"$W/bench.vol"
node "$ROOT/dist/src/cli/main.js" mount "$W/bench.vol" "$W/xl" 2>"$W/xlstack.log" &
XL_PID=$!
for _ in $(seq 100); do mountpoint -q "$W/xl" && break; sleep 0.1; done
mountpoint -q "$W/xl" || { echo "bench: xlstack did not mount:" >&2; cat "$W/xlstack.log" >&2; exit 1; }

# The shipped brick and client volfiles, on a scratch directory and a port of their own.
PORT=${BENCH_BRICK_PORT:-24119}
sed -e "s|option directory .*|option directory $W/brick-back|" -e "s|listen-port .*|listen-port $PORT|" "$ROOT/volfiles/brick.vol" >"$W/brick.vol"
sed -e "s|remote-port .*|remote-port $PORT|" "$ROOT/volfiles/client.vol" >"$W/client.vol"
node "$ROOT/dist/src/cli/main.js" brick "$W/brick.vol" 2>"$W/brick.log" &
BRICK_PID=$!
for _ in $(seq 100); do grep -q ' up (pid' "$W/brick.log" && break; sleep 0.1; done
node "$ROOT/dist/src/cli/main.js" mount "$W/client.vol" "$W/xlnet" 2>"$W/xlnet.log" &
NET_PID=$!
# The same client with write-behind alone (no md-cache, io-cache, read-ahead, readdir-ahead).
sed '/^volume client-write-behind/,$d' "$W/client.vol" >"$W/client-wb.vol"
printf 'volume client\n    type performance/write-behind\n    subvolumes remote\nend-volume\n' >>"$W/client-wb.vol"
node "$ROOT/dist/src/cli/main.js" mount "$W/client-wb.vol" "$W/xlnet-wb" 2>"$W/xlnet-wb.log" &
WB_PID=$!
for m in xlnet xlnet-wb; do
  for _ in $(seq 100); do mountpoint -q "$W/$m" && break; sleep 0.1; done
  mountpoint -q "$W/$m" || { echo "bench: the client/server stack did not mount ($m):" >&2; cat "$W/brick.log" "$W/$m.log" >&2; exit 1; }
done

OUTDIR=${OUTDIR:-$W/out}
export OUTDIR
"$BENCH/compare.sh" plain="$W/plain" bindfs="$W/bindfs" bindfs_bw="$W/bindfs-bw" xlstack="$W/xl" xlstack_net="$W/xlnet" xlstack_net_wb="$W/xlnet-wb"
python3 "$ROOT/bench/ratios.py" "$OUTDIR" xlstack bindfs bindfs_bw plain
python3 "$ROOT/bench/ratios.py" "$OUTDIR" xlstack_net bindfs bindfs_bw xlstack xlstack_net_wb
echo
echo "the client/server stack (every cache on; xlstack_net_wb: write-behind alone) beside GlusterFS:"
python3 "$ROOT/bench/glusterfs.py" "$OUTDIR" "$BENCH/README.md" xlstack_net xlstack_net_wb

# Graph switches under a held fd: the volfile alternates between two topologies (a
# delay-gen layer that delays nothing is added on top and removed) and SIGHUP switches
# graphs (`xlstack reload` would do the same, but starting node for it each time takes CPU
# from the loop being measured; the log lines count the switches).
cp "$W/bench.vol" "$W/topo-0.vol"
{ cat "$W/bench.vol"; printf 'volume switch-extra\n    type debug/delay-gen\n    subvolumes default\nend-volume\n'; } >"$W/topo-1.vol"
echo
echo "graph switches under a held fd (K=${K:-20}):"
K=${K:-20} RSS_PID=$XL_PID GS_LOG="$W/xlstack.log" "$BENCH/graph-switch-stall.sh" "$W/xl" \
  "cp $W/topo-\$((GS_ITER % 2)).vol $W/bench.vol && kill -HUP $XL_PID"
echo
echo "xlstack logs (warnings and errors):"
grep -E ' (WARN|ERROR) ' "$W/xlstack.log" "$W/xlnet.log" "$W/xlnet-wb.log" "$W/brick.log" || echo "(none)"

# What each cache buys, with and without it, on a brick and mounts of its own.
echo
echo "what each cache buys over the network stack (with / without it, same run):"
BENCH_BRICK_PORT=$((PORT + 2)) "$ROOT/bench/caches.sh"
