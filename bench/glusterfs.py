#!/usr/bin/env python3
"""glusterfs.py OUTDIR README LABEL [LABEL ...]: medians of compare.sh's raw results for each
LABEL beside the GlusterFS 10.3 loopback figures of the shared bench README (its table's last
column, measured on this kind of machine, not in this run), and the first LABEL / GlusterFS
(for *_ms lower is better: the ratio is GlusterFS / LABEL, so above 1x is faster either way)."""
import os
import re
import statistics
import sys

outdir, readme, labels = sys.argv[1], sys.argv[2], sys.argv[3:]

# The README's row labels -> compare.sh's metric names.
ROWS = {
    "seq write, no fsync": "seq_write_MiBps",
    "seq write + fsync": "seq_write_fsync_MiBps",
    "seq read, cold": "seq_read_MiBps",
    "create+write 1 KiB": "create_write_ops",
    "stat, cold": "stat_ops",
    "unlink": "unlink_ops",
    "readdir 2,000": "readdir_2000_ms",
    "`ls -l` 2,000, cold": "ls_l_2000_ms",
}

gluster = {}
for line in open(readme):
    cells = [c.strip() for c in line.strip().strip("|").split("|")]
    if len(cells) < 3:
        continue
    name = re.sub(r"\s*\([^)]*\)$", "", cells[0])
    if name in ROWS:
        try:
            gluster[ROWS[name]] = float(cells[-1])
        except ValueError:
            pass

vals = {}
for f in os.listdir(os.path.join(outdir, "raw")):
    m = re.match(r"(.+)\.r\d+\.txt$", f)
    if not m or m.group(1) not in labels:
        continue
    for line in open(os.path.join(outdir, "raw", f)):
        mm = re.match(r"metric=(\S+) value=(\S+)", line)
        if mm:
            vals.setdefault(mm.group(1), {}).setdefault(m.group(1), []).append(float(mm.group(2)))

print()
print("| metric | " + " | ".join(labels) + f" | GlusterFS 10.3 | {labels[0]} / GlusterFS |")
print("|---|" + "---|" * (len(labels) + 2))
for metric, g in gluster.items():
    meds = [statistics.median(vals[metric][l]) if l in vals.get(metric, {}) else None for l in labels]
    ratio = "n/a"
    if meds[0]:
        ratio = f"{(g / meds[0] if metric.endswith('_ms') else meds[0] / g):.2f}x"
    print(f"| {metric} | " + " | ".join("n/a" if v is None else f"{v:.4g}" for v in meds) + f" | {g:g} | {ratio} |")
