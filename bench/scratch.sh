# shellcheck shell=bash
# The scratch directory of a bench script. Source it; then `W=$(scratch_dir NAME)`.
# Every script unmounts what it mounted when it exits (its EXIT trap runs on INT, TERM and
# HUP too), but nothing runs after a SIGKILL: the next run finds the scratch directories
# whose owner is gone, unmounts what is still mounted in them (lazily: their daemons may be
# dead too) and removes them.

# scratch_dir NAME: a new /tmp/xlstack-bench-NAME.XXXXXX owned by this shell (its pid in
# owner.pid), after sweeping the ones left by runs that were killed.
scratch_dir() {
  sweep_stale_scratch
  local w
  w=$(mktemp -d "/tmp/xlstack-bench-$1.XXXXXX")
  chmod 755 "$w"
  echo $$ >"$w/owner.pid"
  echo "$w"
}

sweep_stale_scratch() {
  local d pid m
  for d in /tmp/xlstack-bench*.*; do
    [ -d "$d" ] || continue
    pid=$(cat "$d/owner.pid" 2>/dev/null || true)
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null && continue
    # Deepest first, so that a mount inside another comes off before it.
    awk -v d="$d/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
      echo "bench: unmounting $m, left by a run that was killed" >&2
      fusermount -uz "$m" 2>/dev/null || umount -l "$m"
    done
    # --one-file-system: whatever could not be unmounted is left alone, not emptied.
    rm -rf --one-file-system "$d" 2>/dev/null || echo "bench: could not remove $d" >&2
  done
}
