#!/usr/bin/env bash
# bench/caches.sh: what each cache translator buys over the network stack on loopback, as the
# ratio of its workload with and without it, measured in one run. One brick (volfiles/brick.vol,
# with features/upcall) and five client mounts of it: the full client stack (volfiles/client.vol)
# and the same stack without each cache. For each cache, its workload runs on both mounts in
# alternation (ABBA), CACHES_ROUNDS times (default 5); the table gives the medians and the ratio.
#   md-cache       stat of 2,000 files after drop_caches (the kernel looks each up again);
#                  `ls -l` of them
#   io-cache       a 32 MiB file read again (each open drops the kernel's pages)
#   read-ahead     a new 128 MiB file read once, sequentially
#   readdir-ahead  `ls -l` of 10,000 entries after drop_caches
# `npm run bench` runs it last; it also runs alone (bench/caches.sh).
# Env: CACHES_ROUNDS (else ROUNDS), BENCH_BRICK_PORT (default: a free one), BENCH_META_N,
# BENCH_MANY_N, BENCH_REREAD_MB, BENCH_SEQ_MB, BENCH_NO_DROP, CACHES_ONLY (e.g. "io-cache
# read-ahead"). CACHES_QUICK=1, a quick look: CACHES_ROUNDS=2, BENCH_META_N=500,
# BENCH_REREAD_MB=16, BENCH_SEQ_MB=64 unless given (`ls -l` stays at 10,000 entries).
# Needs root and python3. Leaves nothing mounted.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
XL="node $ROOT/dist/src/cli/main.js"
# A port nobody listens on unless one is given (other benches on the machine use the usual ones:
# a client of someone else's brick would measure it).
PORT=${BENCH_BRICK_PORT:-$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}
# Rounds: CACHES_ROUNDS, else ROUNDS, else 5; quick: 2 (one each way round: A B, then B A).
if [ "${CACHES_QUICK:-0}" = 1 ]; then
  CACHES_ROUNDS=${CACHES_ROUNDS:-2}
  export BENCH_META_N=${BENCH_META_N:-500} BENCH_REREAD_MB=${BENCH_REREAD_MB:-16} BENCH_SEQ_MB=${BENCH_SEQ_MB:-64}
fi
ROUNDS=${CACHES_ROUNDS:-${ROUNDS:-5}}
[ -f "$ROOT/dist/src/cli/main.js" ] || (cd "$ROOT" && npm run build >/dev/null)

. "$ROOT/bench/scratch.sh"
W=$(scratch_dir caches)
PIDS=()
VARIANTS=(full no-md-cache no-io-cache no-read-ahead no-readdir-ahead)

cleanup() {
  set +e
  for v in "${VARIANTS[@]}"; do
    mountpoint -q "$W/$v" && $XL unmount "$W/$v" >/dev/null 2>&1
    mountpoint -q "$W/$v" && fusermount -uz "$W/$v"
  done
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  rm -rf "$W"
}
trap cleanup EXIT

mkdir -p "$W/brick-back"
sed -e "s|option directory .*|option directory $W/brick-back|" -e "s|listen-port .*|listen-port $PORT|" "$ROOT/volfiles/brick.vol" >"$W/brick.vol"
$XL brick "$W/brick.vol" 2>"$W/brick.log" &
PIDS+=($!)
for _ in $(seq 100); do grep -q ' up (pid' "$W/brick.log" && break; sleep 0.1; done
grep -q ' up (pid' "$W/brick.log" || { echo "bench: the brick did not start on port $PORT:" >&2; cat "$W/brick.log" >&2; exit 1; }

# A volfile without one volume: the volume above it takes its subvolume.
without() { # without VOLUME VOLFILE
  python3 - "$1" "$2" <<'EOF'
import re, sys
gone = sys.argv[1]
text = open(sys.argv[2]).read()
vols = re.findall(r"volume (\S+)\n(.*?)end-volume\n", text, re.S)
sub = next(re.search(r"subvolumes (\S+)", body).group(1) for name, body in vols if name == gone)
out = re.sub(r"(?:#[^\n]*\n)*volume %s\n.*?end-volume\n\n?" % re.escape(gone), "", text, flags=re.S)
out = re.sub(r"subvolumes %s\n" % re.escape(gone), "subvolumes %s\n" % sub, out)
sys.stdout.write(out)
EOF
}

sed -e "s|remote-port .*|remote-port $PORT|" "$ROOT/volfiles/client.vol" >"$W/full.vol"
without client-io-cache "$W/full.vol" >"$W/no-io-cache.vol"
without client-read-ahead "$W/full.vol" >"$W/no-read-ahead.vol"
without client-readdir-ahead "$W/full.vol" >"$W/no-readdir-ahead.vol"
# md-cache is the top ('client'): the volume under it becomes the top.
python3 - "$W/full.vol" >"$W/no-md-cache.vol" <<'EOF'
import re, sys
text = open(sys.argv[1]).read()
print(re.sub(r"\nvolume client\n.*?end-volume\n", "\n", text, flags=re.S), end="")
EOF
for v in "${VARIANTS[@]}"; do
  $XL check "$W/$v.vol" >/dev/null
  mkdir -p "$W/$v"
  $XL mount "$W/$v.vol" "$W/$v" 2>"$W/$v.log" &
  PIDS+=($!)
done
for v in "${VARIANTS[@]}"; do
  for _ in $(seq 100); do mountpoint -q "$W/$v" && break; sleep 0.1; done
  mountpoint -q "$W/$v" || { echo "bench: $v did not mount:" >&2; cat "$W/$v.log" >&2; exit 1; }
done

PY="python3 $ROOT/bench/caches.py"
echo "caches: preparing the files (once, through the full mount)..." >&2
$PY prepare "$W/full/"
# Every mount then holds the same objects (inodes, handles), not only the one that made them.
for v in "${VARIANTS[@]}"; do $PY warm "$W/$v"; done
RAW="$W/raw"
mkdir -p "$RAW"

# measure VARIANT MEASUREMENT [ARGS]: one measurement on one mount, appended to its raw file.
measure() {
  local v=$1; shift
  $PY "$1" "$W/$v" "${@:2}" | sed "s/\$/ variant=$v/" >>"$RAW/$v.txt"
}

# compare CACHE MEASUREMENT: ROUNDS rounds, ABBA order, on the full mount and the one without CACHE.
compare() {
  local cache=$1 m=$2 r
  for r in $(seq "$ROUNDS"); do
    if [ $((r % 2)) = 1 ]; then measure full "$m" "$r-a"; measure "no-$cache" "$m" "$r-b"
    else measure "no-$cache" "$m" "$r-b"; measure full "$m" "$r-a"; fi
    echo "caches: $cache $m round $r/$ROUNDS" >&2
  done
}

# CACHES_ONLY: the caches to measure (default all four).
only() { [[ " ${CACHES_ONLY:-md-cache io-cache read-ahead readdir-ahead} " == *" $1 "* ]]; }
if only md-cache; then compare md-cache stat; compare md-cache lsl; fi
if only io-cache; then compare io-cache reread; fi
if only read-ahead; then compare read-ahead seqread; fi
if only readdir-ahead; then compare readdir-ahead lsl-many; fi

python3 - "$RAW" <<'EOF'
import os, re, statistics, sys
raw = sys.argv[1]
vals = {}
for f in os.listdir(raw):
    for line in open(os.path.join(raw, f)):
        m = re.match(r"metric=(\S+) value=(\S+) unit=(\S+) variant=(\S+)", line)
        if m:
            vals.setdefault((m.group(1), m.group(4)), []).append(float(m.group(2)))
meta_n, many_n = os.environ.get("BENCH_META_N", "2000"), os.environ.get("BENCH_MANY_N", "10000")
rows = [("md-cache", "stat_cold_ops"), ("md-cache", f"ls_l_{meta_n}_ms"), ("io-cache", "reread_MiBps"),
        ("read-ahead", "seqread_MiBps"), ("readdir-ahead", f"ls_l_{many_n}_ms")]
print()
print("| translator | workload | with it | without it | speedup |")
print("|---|---|---|---|---|")
for cache, metric in rows:
    w, wo = vals.get((metric, "full")), vals.get((metric, "no-" + cache))
    if not w or not wo:
        print(f"| {cache} | {metric} | n/a | n/a | n/a |")
        continue
    a, b = statistics.median(w), statistics.median(wo)
    speed = b / a if metric.endswith("_ms") else a / b
    print(f"| {cache} | {metric} | {a:.4g} | {b:.4g} | {speed:.2f}x |")
EOF
echo
echo "cache logs (warnings and errors):"
grep -hE ' (WARN|ERROR) ' "$W"/*.log || echo "(none)"
