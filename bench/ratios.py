#!/usr/bin/env python3
"""ratios.py OUTDIR SUBJECT REF [REF ...]: medians of compare.sh's raw results and the
ratio SUBJECT/REF for each metric (higher is better for rates, lower for *_ms)."""
import os
import re
import statistics
import sys

outdir, subject, refs = sys.argv[1], sys.argv[2], sys.argv[3:]
vals = {}
order = []
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

print()
print(f"| metric | {subject} | " + " | ".join(f"{subject}/{r}" for r in refs) + " |")
print("|---|---|" + "---|" * len(refs))
for name in order:
    v = vals[name]
    if subject not in v:
        continue
    s = statistics.median(v[subject])
    cells = []
    for r in refs:
        if r in v and statistics.median(v[r]):
            cells.append(f"{s / statistics.median(v[r]):.2f}x")
        else:
            cells.append("n/a")
    print(f"| {name} | {s:.4g} | " + " | ".join(cells) + " |")
