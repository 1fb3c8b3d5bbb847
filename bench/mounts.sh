# shellcheck shell=bash
# The filesystems `npm run bench` compares, each mounted on a scratch directory of its own.
# Source it; do not run it. Each mount_LABEL function mounts one (its daemon's pid, when this
# script started one, goes into PIDS) and returns once it serves; unmount_all takes every one
# down again, ending only the processes it started.
#   xlstack         the default volfile (posix, features/locks, debug/trace quiet) over the kernel transport
#   xlstack_1p      the same in one process (--single-process: no supervisor, no in-flight record)
#   xlstack_native  the same volfile over fuse-native (libfuse2's high-level API)
#   xlstack_net     volfiles/brick.vol served by `xlstack brick`, mounted through volfiles/client.vol
#   xlstack_dist    volfiles/distribute.vol over DIST_BRICKS (2 or 3, default 3) of its bricks
#   replica2        volfiles/replica.vol cut to two children, over replica-brick1.vol and -2.vol
#   bindfs          bindfs with its default options
#   bindfs_bw       bindfs -o big_writes
#   passthrough_ll  libfuse3's C low-level passthrough example (built by bench/passthrough_ll.sh)
# Needs ROOT (this repository), BENCH (the measuring scripts) and W (the scratch directory).

XL="$ROOT/dist/src/cli/main.js"
PIDS=()
MOUNTED=()
BRICK_PID=
BRICK_PIDS=()
# How long a daemon may take to serve its mount (tenths of a second).
MOUNT_WAIT_TENTHS=150

# wait_mounted MNT LOG: returns once MNT is a mountpoint, or fails showing LOG.
wait_mounted() {
  local i
  for i in $(seq "$MOUNT_WAIT_TENTHS"); do
    mountpoint -q "$1" && { MOUNTED+=("$1"); return 0; }
    sleep 0.1
  done
  echo "bench: $1 was not mounted within $((MOUNT_WAIT_TENTHS / 10)) s:" >&2
  [ -f "$2" ] && tail -20 "$2" >&2
  return 1
}

# The default volfile with its backing directory in the scratch area.
local_volfile() {
  sed "s|option directory .*|option directory $W/$1-back|" "$ROOT/volfiles/default.vol" >"$W/$1.vol"
  mkdir -p "$W/$1"
}

mount_xlstack() {
  local_volfile xlstack
  node "$XL" mount "$W/xlstack.vol" "$W/xlstack" 2>"$W/xlstack.log" &
  PIDS+=($!)
  wait_mounted "$W/xlstack" "$W/xlstack.log"
  # The worker serves (its memory is what counts; a SIGHUP reaches it either way).
  XL_PID=$(pgrep -P "$!" -x node | head -1)
}

mount_xlstack_1p() {
  local_volfile xlstack_1p
  node "$XL" mount --single-process "$W/xlstack_1p.vol" "$W/xlstack_1p" 2>"$W/xlstack_1p.log" &
  PIDS+=($!)
  wait_mounted "$W/xlstack_1p" "$W/xlstack_1p.log"
}

mount_xlstack_native() {
  local_volfile xlstack_native
  node "$XL" mount --transport fuse-native "$W/xlstack_native.vol" "$W/xlstack_native" 2>"$W/xlstack_native.log" &
  PIDS+=($!)
  wait_mounted "$W/xlstack_native" "$W/xlstack_native.log"
}

mount_xlstack_net() {
  local port=${BENCH_BRICK_PORT:-24119} i
  mkdir -p "$W/xlstack_net"
  sed -e "s|option directory .*|option directory $W/brick-back|" -e "s|listen-port .*|listen-port $port|" "$ROOT/volfiles/brick.vol" >"$W/brick.vol"
  sed -e "s|remote-port .*|remote-port $port|" "$ROOT/volfiles/client.vol" >"$W/client.vol"
  chmod 600 "$W/brick.vol" "$W/client.vol"
  node "$XL" brick "$W/brick.vol" 2>"$W/brick.log" &
  BRICK_PID=$!
  for i in $(seq "$MOUNT_WAIT_TENTHS"); do grep -q ' up (pid' "$W/brick.log" && break; sleep 0.1; done
  # A brick that did not start (its port in use, say) must not leave the client to another's.
  grep -q ' up (pid' "$W/brick.log" || { echo "bench: the brick did not start on port $port:" >&2; tail -20 "$W/brick.log" >&2; return 1; }
  node "$XL" mount "$W/client.vol" "$W/xlstack_net" 2>"$W/xlstack_net.log" &
  PIDS+=($!)
  wait_mounted "$W/xlstack_net" "$W/xlstack_net.log" || { tail -20 "$W/brick.log" >&2; return 1; }
}

# serve_brick VOLFILE LOG: starts `xlstack brick` and returns once it is up (its pid in BRICK_PIDS).
serve_brick() {
  local i
  node "$XL" brick "$1" 2>"$2" &
  BRICK_PIDS+=($!)
  for i in $(seq "$MOUNT_WAIT_TENTHS"); do grep -qs ' up (pid' "$2" && return 0; sleep 0.1; done
  echo "bench: brick $1 did not start:" >&2
  tail -20 "$2" >&2
  return 1
}

mount_xlstack_dist() {
  local n=${DIST_BRICKS:-3} base=${BENCH_DIST_PORT:-24131} i subvols=
  mkdir -p "$W/xlstack_dist"
  cp "$ROOT/volfiles/distribute.vol" "$W/dist.vol"
  for i in $(seq 3); do
    if [ "$i" -le "$n" ]; then
      sed -e "s|option directory .*|option directory $W/dist$i-back|" -e "s|listen-port .*|listen-port $((base + i))|" \
        "$ROOT/volfiles/distribute-brick$i.vol" >"$W/dist-brick$i.vol"
      chmod 600 "$W/dist-brick$i.vol"
      serve_brick "$W/dist-brick$i.vol" "$W/dist-brick$i.log" || return 1
      sed -i "/^volume dist$i\$/,/^end-volume/s|remote-port .*|remote-port $((base + i))|" "$W/dist.vol"
      subvols="$subvols dist$i"
    else
      sed -i "/^volume dist$i\$/,/^end-volume/d" "$W/dist.vol"
    fi
  done
  sed -i "s|subvolumes dist1 dist2 dist3|subvolumes$subvols|" "$W/dist.vol"
  chmod 600 "$W/dist.vol"
  node "$XL" mount "$W/dist.vol" "$W/xlstack_dist" 2>"$W/xlstack_dist.log" &
  PIDS+=($!)
  wait_mounted "$W/xlstack_dist" "$W/xlstack_dist.log"
}

# Two bricks of the shipped replica, and the shipped client with its first two children
# (ports BENCH_BRICK_PORT+1 and +2, default 24120 and 24121).
mount_replica2() {
  local port=$((${BENCH_BRICK_PORT:-24119} + 1)) i
  mkdir -p "$W/replica2"
  for i in 1 2; do
    sed -e "s|/var/lib/xlstack/replica-$i|$W/replica-$i|g" -e "s|listen-port .*|listen-port $((port + i - 1))|" "$ROOT/volfiles/replica-brick$i.vol" >"$W/replica-brick$i.vol"
    serve_brick "$W/replica-brick$i.vol" "$W/replica-brick$i.log" || return 1
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

mount_bindfs() {
  mkdir -p "$W/bindfs-src" "$W/bindfs"
  bindfs "$W/bindfs-src" "$W/bindfs"
  wait_mounted "$W/bindfs" /dev/null
}

mount_bindfs_bw() {
  mkdir -p "$W/bindfs_bw-src" "$W/bindfs_bw"
  bindfs -o big_writes "$W/bindfs_bw-src" "$W/bindfs_bw"
  wait_mounted "$W/bindfs_bw" /dev/null
}

mount_passthrough_ll() {
  mkdir -p "$W/passthrough_ll-src" "$W/passthrough_ll"
  "$ROOT/bench/passthrough_ll.sh" "$W/bin"
  # -f: stays in front, so its pid is ours to end.
  "$W/bin/passthrough_ll" -f -o "source=$W/passthrough_ll-src,allow_other" "$W/passthrough_ll" 2>"$W/passthrough_ll.log" &
  PIDS+=($!)
  wait_mounted "$W/passthrough_ll" "$W/passthrough_ll.log"
}

unmount_all() {
  local m pid i
  for m in "${MOUNTED[@]}"; do
    mountpoint -q "$m" || continue
    case "$m" in
      */xlstack | */xlstack_1p | */xlstack_native | */xlstack_net | */xlstack_dist | */replica2) node "$XL" unmount "$m" >/dev/null 2>&1 || fusermount -uz "$m" ;;
      *) fusermount -u "$m" 2>/dev/null || fusermount -uz "$m" ;;
    esac
  done
  # The mount daemons exit once unmounted; the brick serves until told to stop.
  for pid in "${PIDS[@]}"; do
    for i in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill "$pid" 2>/dev/null || true
  done
  [ -n "$BRICK_PID" ] && kill "$BRICK_PID" 2>/dev/null || true
  for pid in "${BRICK_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
}
