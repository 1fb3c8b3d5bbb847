#!/usr/bin/env python3
"""What each cache translator buys, one measurement per run, in ONE python process.

usage: caches.py prepare DIR             make DIR/meta (2,000 x 1 KiB), DIR/many (10,000 x 0 B),
                                         DIR/reread (32 MiB) through the mount given (once, for all)
       caches.py warm DIR                stat every file of DIR/meta and DIR/many and read
                                         DIR/reread, so that every mount holds what the
                                         one that made them holds (untimed)
       caches.py stat DIR                drop caches, stat each file of DIR/meta  -> stat_cold_ops
       caches.py lsl DIR                 drop caches, `ls -l DIR/meta`            -> ls_l_2000_ms
       caches.py reread DIR              open + read DIR/reread (the kernel drops its pages at
                                         each open: the read reaches the daemon)  -> reread_MiBps
       caches.py seqread DIR TAG         write DIR/seq-TAG (128 MiB, untimed), then read it once,
                                         1 MiB at a time                          -> seqread_MiBps
       caches.py lsl-many DIR            drop caches, `ls -l DIR/many`            -> ls_l_10000_ms
Prints one `metric=NAME value=N unit=U` line. BENCH_NO_DROP=1 skips drop_caches.
Sizes: BENCH_META_N (2000), BENCH_MANY_N (10000), BENCH_REREAD_MB (32), BENCH_SEQ_MB (128).
"""
import os
import subprocess
import sys
import time

META_N = int(os.environ.get("BENCH_META_N", "2000"))
MANY_N = int(os.environ.get("BENCH_MANY_N", "10000"))
REREAD_MB = int(os.environ.get("BENCH_REREAD_MB", "32"))
SEQ_MB = int(os.environ.get("BENCH_SEQ_MB", "128"))
MiB = 1 << 20


def drop_caches():
    if os.environ.get("BENCH_NO_DROP") == "1":
        return
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
    except OSError:
        pass


def emit(name, value, unit):
    print(f"metric={name} value={value} unit={unit}", flush=True)


def write_file(path, mb):
    block = bytes(range(256)) * 4096  # 1 MiB
    with open(path, "wb") as f:
        for _ in range(mb):
            f.write(block)


def read_all(path):
    n = 0
    fd = os.open(path, os.O_RDONLY)
    try:
        while True:
            b = os.read(fd, MiB)
            if not b:
                return n
            n += len(b)
    finally:
        os.close(fd)


def prepare(d):
    for sub, n, data in (("meta", META_N, b"x" * 1024), ("many", MANY_N, b"")):
        p = os.path.join(d, sub)
        os.makedirs(p, exist_ok=True)
        have = set(os.listdir(p))
        for i in range(n):
            name = f"f{i:06d}"
            if name not in have:
                with open(os.path.join(p, name), "wb") as f:
                    f.write(data)
    p = os.path.join(d, "reread")
    if not os.path.exists(p) or os.path.getsize(p) != REREAD_MB * MiB:
        write_file(p, REREAD_MB)


def main():
    what, d = sys.argv[1], sys.argv[2]
    pc = time.perf_counter
    if what == "prepare":
        prepare(d)
    elif what == "warm":
        for sub in ("meta", "many"):
            for name in os.listdir(os.path.join(d, sub)):
                os.stat(os.path.join(d, sub, name))
        read_all(os.path.join(d, "reread"))
    elif what == "stat":
        names = [os.path.join(d, "meta", f"f{i:06d}") for i in range(META_N)]
        drop_caches()
        t0 = pc()
        for p in names:
            os.stat(p)
        emit("stat_cold_ops", round(len(names) / (pc() - t0)), "ops/s")
    elif what in ("lsl", "lsl-many"):
        sub, metric = ("meta", f"ls_l_{META_N}_ms") if what == "lsl" else ("many", f"ls_l_{MANY_N}_ms")
        drop_caches()
        t0 = pc()
        subprocess.run(["ls", "-l", os.path.join(d, sub)], stdout=subprocess.DEVNULL, check=True)
        emit(metric, round((pc() - t0) * 1000, 1), "ms")
    elif what == "reread":
        p = os.path.join(d, "reread")
        t0 = pc()
        n = read_all(p)
        emit("reread_MiBps", round(n / MiB / (pc() - t0), 1), "MiB/s")
    elif what == "seqread":
        p = os.path.join(d, f"seq-{sys.argv[3]}")
        write_file(p, SEQ_MB)
        drop_caches()
        t0 = pc()
        n = read_all(p)
        emit("seqread_MiBps", round(n / MiB / (pc() - t0), 1), "MiB/s")
        os.unlink(p)
    else:
        sys.exit(f"unknown measurement {what}")


if __name__ == "__main__":
    main()
