# Where an 8B-shaped decode step's time goes, kernel by kernel, on the device as it ran (overlapping launches
# included), from either
#   nsys profile --cuda-graph-trace=node -t cuda -o step node dev/decode_profile.mjs 10
#   nsys export --type sqlite -o step.sqlite step.nsys-rep
# or, where nsys is not installed, dev/cupti_timeline.cpp's CSV (its header says how). `python3
# dev/decode_timeline.py step.sqlite|step.csv` prints one layer's kernels of the last step replayed, and per kernel
# what it adds to the step: its end minus the end of the kernel before it. A kernel launched early starts before
# the one ahead has finished and waits on the device, so its start-to-end span overstates its cost; the sum of
# what the kernels add is the step.
import csv
import sqlite3
import sys


def demangled(name):
    # The kernel's own name out of a mangled nested one, _ZN<len><part>...<len><name>I...: its last part.
    i, parts = 3, []
    while name.startswith("_ZN") and i < len(name) and name[i].isdigit():
        j = i
        while name[j].isdigit():
            j += 1
        parts.append(name[j : j + int(name[i:j])])
        i = j + int(name[i:j])
    return parts[-1] if parts else name


if sys.argv[1].endswith(".csv"):
    with open(sys.argv[1]) as f:
        rows = sorted((int(r["start_ns"]), int(r["end_ns"]), demangled(r["name"])) for r in csv.DictReader(f))
    names = {}
else:
    db = sqlite3.connect(sys.argv[1])
    names = dict(db.execute("select id, value from StringIds"))
    rows = db.execute("select start, end, shortName from CUPTI_ACTIVITY_KIND_KERNEL order by start").fetchall()
steps = [i for i, r in enumerate(rows) if "embedding" in names.get(r[2], str(r[2]))]
if len(steps) < 2:
    sys.exit("decode_timeline: fewer than two steps (embedding kernels) in the export")
step = rows[steps[-2] : steps[-1]]
t0 = step[0][0]
print(f"last whole step: {(max(r[1] for r in step) - t0) / 1e3:.1f} us, {len(step)} kernels")
# What the host adds between steps: the device idle from a step's last kernel to the next step's first.
spans, idles = [], []
for a, b in zip(steps, steps[1:]):
    end = max(r[1] for r in rows[a:b])
    spans.append((end - rows[a][0]) / 1e3)
    if b < len(rows):
        idles.append((rows[b][0] - end) / 1e3)
spans.sort()
idles.sort()
print(f"steps replayed: {len(spans)}, on the device median {spans[len(spans) // 2]:.1f} us, idle between steps median "
      f"{idles[len(idles) // 2]:.1f} us (min {idles[0]:.1f}, max {idles[-1]:.1f})")
per_kernel = {}
prev_end = step[0][1]
layer = 10  # kernels of the second layer, past the embedding and the first layer's norm
for i, (start, end, short) in enumerate(step):
    name = names.get(short, str(short))
    adds = (end - prev_end if i else end - start) / 1e3
    v = per_kernel.setdefault(name, [0, 0.0, 0.0])
    v[0] += 1
    v[1] += adds
    v[2] += (end - start) / 1e3
    if layer + 3 <= i < 2 * layer + 3:
        print(f"{i:4d} start {(start - t0) / 1e3:9.2f} end {(end - t0) / 1e3:9.2f} adds {adds:7.2f} us  {name}")
    prev_end = end
print("kernel: count, us it adds to the step, us from start to end")
for name, (n, adds, span) in sorted(per_kernel.items(), key=lambda kv: -kv[1][1]):
    print(f"  {name[:48]:48s} {n:4d} {adds:9.1f} {span:9.1f}")
