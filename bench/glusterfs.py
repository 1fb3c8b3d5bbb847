#!/usr/bin/env python3
"""glusterfs.py OUTDIR LABEL [LABEL ...]: medians of compare.sh's raw results
(OUTDIR/raw/LABEL.rN.txt) for each LABEL beside GlusterFS 10.3's figures, and the first
LABEL / GlusterFS (for *_ms lower is better: the ratio is GlusterFS / LABEL, so above 1x is
faster either way).

GlusterFS's figures are a fixed table, not measured in this run: one compare.sh run on this kind
of machine (2 vCPUs), medians of 3 rounds, a single GlusterFS 10.3 brick mounted on loopback
(the project's shared bench notes). Ratios against them are indicative only.
"""
import os
import re
import statistics
import sys

GLUSTERFS_10_3 = {
    "seq_write_MiBps": 464,
    "seq_write_fsync_MiBps": 397,
    "seq_read_MiBps": 334,
    "create_write_ops": 620,
    "stat_ops": 1722,
    "unlink_ops": 1198,
    "readdir_2000_ms": 234,
    "ls_l_2000_ms": 274,
}


def load(outdir, labels):
    vals = {}
    for f in os.listdir(os.path.join(outdir, "raw")):
        m = re.match(r"(.+)\.r\d+\.txt$", f)
        if not m or m.group(1) not in labels:
            continue
        for line in open(os.path.join(outdir, "raw", f)):
            mm = re.match(r"metric=(\S+) value=(\S+)", line)
            if mm:
                vals.setdefault(mm.group(1), {}).setdefault(m.group(1), []).append(float(mm.group(2)))
    return vals


def main():
    if len(sys.argv) < 3:
        sys.exit(__doc__)
    outdir, labels = sys.argv[1], sys.argv[2:]
    vals = load(outdir, labels)
    print()
    print("| metric | " + " | ".join(labels) + f" | GlusterFS 10.3 (fixed) | {labels[0]} / GlusterFS |")
    print("|---|" + "---|" * (len(labels) + 2))
    for metric, g in GLUSTERFS_10_3.items():
        meds = [statistics.median(vals[metric][l]) if l in vals.get(metric, {}) else None for l in labels]
        ratio = "n/a"
        if meds[0]:
            ratio = f"{(g / meds[0] if metric.endswith('_ms') else meds[0] / g):.2f}x"
        print(f"| {metric} | " + " | ".join("n/a" if v is None else f"{v:.4g}" for v in meds) + f" | {g:g} | {ratio} |")


if __name__ == "__main__":
    main()
