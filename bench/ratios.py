#!/usr/bin/env python3
"""Ratios over compare.sh's raw results (OUTDIR/raw/LABEL.rN.txt), medians of the rounds.

ratios.py OUTDIR SUBJECT REF [REF ...]
    the median of each metric for SUBJECT and the ratio SUBJECT/REF for each REF (higher is
    better for rates; for *_ms, lower is better).
ratios.py OUTDIR --targets
    the issue's targets, each with its ratio and whether it is met: xlstack (the kernel
    transport) at least 1.0x bindfs on create, stat and unlink, and at least 1.0x
    bindfs -o big_writes on sequential write and read.
"""
import os
import re
import statistics
import sys

TARGETS = [
    ("create_write_ops", "bindfs"),
    ("stat_ops", "bindfs"),
    ("unlink_ops", "bindfs"),
    ("seq_write_MiBps", "bindfs_bw"),
    ("seq_read_MiBps", "bindfs_bw"),
]
SUBJECT = "xlstack"


def load(outdir):
    """{metric: {label: [values]}} and the metrics in the order first seen."""
    vals, order = {}, []
    for f in sorted(os.listdir(os.path.join(outdir, "raw"))):
        m = re.match(r"(.+)\.r\d+\.txt$", f)
        if not m:
            continue
        for line in open(os.path.join(outdir, "raw", f)):
            mm = re.match(r"metric=(\S+) value=(\S+) unit=(\S+)", line)
            if not mm or mm.group(1).startswith("cpu_") or mm.group(1) == "drop_caches_ok":
                continue
            name = mm.group(1)
            if name not in order:
                order.append(name)
            vals.setdefault(name, {}).setdefault(m.group(1), []).append(float(mm.group(2)))
    return vals, order


def median(vals, name, label):
    v = vals.get(name, {}).get(label)
    return statistics.median(v) if v else None


def ratios(vals, order, subject, refs):
    print()
    print(f"| metric | {subject} | " + " | ".join(f"{subject}/{r}" for r in refs) + " |")
    print("|---|---|" + "---|" * len(refs))
    for name in order:
        s = median(vals, name, subject)
        if s is None:
            continue
        cells = []
        for r in refs:
            ref = median(vals, name, r)
            cells.append(f"{s / ref:.2f}x" if ref else "n/a")
        print(f"| {name} | {s:.4g} | " + " | ".join(cells) + " |")


def targets(vals):
    print()
    print(f"| target | {SUBJECT} | reference | ratio | met |")
    print("|---|---|---|---|---|")
    missed = 0
    for name, ref in TARGETS:
        s, r = median(vals, name, SUBJECT), median(vals, name, ref)
        if s is None or not r:
            print(f"| {name} >= 1.0x {ref} | {s} | {r} | n/a | not measured |")
            missed += 1
            continue
        ok = s / r >= 1.0
        missed += not ok
        print(f"| {name} >= 1.0x {ref} | {s:.4g} | {r:.4g} | {s / r:.2f}x | {'yes' if ok else 'NO'} |")
    return missed


def main(argv):
    if len(argv) < 3:
        sys.exit(__doc__)
    vals, order = load(argv[1])
    if argv[2] == "--targets":
        missed = targets(vals)
        print(f"\n{len(TARGETS) - missed} of {len(TARGETS)} targets met")
        return
    ratios(vals, order, argv[2], [r for r in argv[3:] if any(r in v for v in vals.values())])


if __name__ == "__main__":
    main(sys.argv)
