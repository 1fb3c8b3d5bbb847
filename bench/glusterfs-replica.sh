#!/usr/bin/env bash
# xlstack replica 2 over loopback against a GlusterFS replica 2 volume on this host, in the
# same run: two GlusterFS bricks on this host (replica 2, force: both on one machine) mounted
# with the glusterfs FUSE client, beside bench/mounts.sh's replica2 (bench/replica.sh's xlstack
# mount), measured in alternation by bench/measure/compare.sh; then ratios.
#
# Installs glusterfs-server with apt-get when glusterd is missing, and only if that removes
# nothing (fuse and fuse3 stay). Starts its own glusterd in the foreground (so its pid is this
# script's to end); refuses to run beside a glusterd already running. Everything is taken down
# at the end: the mounts, the volume (stopped and deleted), the bricks' and self-heal daemon's
# processes (by the pids GlusterFS reported), glusterd.
# Env: compare.sh's knobs (ROUNDS, BENCH_SIZE, BENCH_META_N, ...), BENCH_BRICK_PORT (see
# mounts.sh), GLUSTER_VOLUME (default xlbench-r2), OUTDIR (raw results, default in the scratch
# directory, removed at the end). Needs root, fio, python3.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
BENCH=${BENCH_SCRIPTS:-$ROOT/bench/measure}
VOL=${GLUSTER_VOLUME:-xlbench-r2}
[ "$(id -u)" = 0 ] || { echo "bench: needs root (glusterd, mounts)" >&2; exit 2; }
for tool in fio python3 fusermount; do command -v "$tool" >/dev/null || { echo "bench: $tool is missing" >&2; exit 2; }; done
[ -f "$ROOT/dist/src/cli/main.js" ] || (cd "$ROOT" && npm run build >/dev/null)

# --- GlusterFS, installed only if that removes nothing ---------------------------------------
if ! command -v glusterd >/dev/null || ! command -v gluster >/dev/null || ! command -v mount.glusterfs >/dev/null; then
  plan=$(apt-get -s install -y glusterfs-server)
  if grep -q '^Remv' <<<"$plan" || ! grep -q ' 0 to remove' <<<"$plan"; then
    echo "bench: installing glusterfs-server would remove packages; not installing:" >&2
    grep -E '^Remv|to remove' <<<"$plan" >&2
    exit 2
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y glusterfs-server >/dev/null
fi
if pgrep -x glusterd >/dev/null; then
  echo "bench: a glusterd already runs here (pid $(pgrep -x glusterd | tr '\n' ' ')); this script uses only one it starts" >&2
  exit 2
fi

. "$ROOT/bench/scratch.sh"
W=$(scratch_dir gluster)
. "$ROOT/bench/mounts.sh"
GLUSTERD_PID=
GLUSTER_PIDS=()
VOLUME_MADE=
cleanup() {
  set +e
  mountpoint -q "$W/glusterfs" && { umount "$W/glusterfs" || umount -l "$W/glusterfs"; }
  unmount_all
  if [ -n "$VOLUME_MADE" ]; then
    gluster --mode=script volume stop "$VOL" force >/dev/null
    gluster --mode=script volume delete "$VOL" >/dev/null
  fi
  for pid in "${GLUSTER_PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  [ -n "$GLUSTERD_PID" ] && kill "$GLUSTERD_PID" 2>/dev/null && wait "$GLUSTERD_PID" 2>/dev/null
  rm -rf "$W"
}
trap cleanup EXIT

# -N: stays in front, so its pid is ours to end.
glusterd -N --log-file="$W/glusterd.log" &
GLUSTERD_PID=$!
for _ in $(seq 100); do gluster --mode=script pool list >/dev/null 2>&1 && break; kill -0 "$GLUSTERD_PID" 2>/dev/null || break; sleep 0.2; done
if ! gluster --mode=script pool list >/dev/null 2>&1; then
  echo "bench: glusterd did not start (or does not answer):" >&2
  tail -30 "$W/glusterd.log" >&2
  exit 1
fi

# Two bricks on this host; `force`: GlusterFS warns against replica bricks on one machine.
HOST=$(hostname)
mkdir -p "$W/gbrick1" "$W/gbrick2" "$W/glusterfs"
gluster --mode=script volume create "$VOL" replica 2 "$HOST:$W/gbrick1" "$HOST:$W/gbrick2" force
VOLUME_MADE=1
gluster --mode=script volume start "$VOL"
# The processes glusterd started for it (bricks, self-heal daemon), to end by pid afterwards.
mapfile -t GLUSTER_PIDS < <(gluster --mode=script volume status "$VOL" --xml | sed -n 's|.*<pid>\([0-9][0-9]*\)</pid>.*|\1|p' | sort -u)
mount -t glusterfs "$HOST:/$VOL" "$W/glusterfs"
mountpoint -q "$W/glusterfs" || { echo "bench: the glusterfs mount failed" >&2; exit 1; }
chmod 755 "$W/glusterfs"

mount_replica2

OUTDIR=${OUTDIR:-$W/out}
export OUTDIR
{
  echo "# glusterfs: $(glusterfs --version | head -1), volume $VOL (replica 2, two bricks on this host, default options)"
  gluster --mode=script volume info "$VOL" | sed 's/^/#   /'
} >&2
"$BENCH/compare.sh" glusterfs_r2="$W/glusterfs" replica2="$W/replica2"
python3 "$ROOT/bench/ratios.py" "$OUTDIR" replica2 glusterfs_r2
echo
echo "## logs (warnings and errors)"
grep -hE ' (WARN|ERROR) ' "$W"/*.log || echo "(none)"
