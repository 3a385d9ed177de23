#!/usr/bin/env bash
# `make bench` row "ingest" (docs/benchmarks.md, issue 3): images/s of wsml-ingest turning ~2,000
# photo-sized JPEGs (500x375, generated once with PIL into $WSML_BUILD/bench/ingest-src)
# into a 448x448 store, against a Python peer on the same files with the same number of
# workers: PIL open + convert('RGB') + resize((448, 448), BILINEAR) in a
# multiprocessing pool, raw bytes written in order by python3-lmdb. Both sides write
# raw pixels (--encoding raw), so both do the same work: decode, resize, write.
# Median of REPS runs each (interleaved, after one warm-up each); peak RSS of each side
# from /usr/bin/time -v. A second line times wsml-ingest's default --encoding jpeg.
# Prints `ingest: ours=… img/s peer=… img/s ratio=…x (higher is better)` and writes
# $WSML_BUILD/bench/ingest.json.
# Standalone: WSML_BUILD=$PWD/build PYTHON=/usr/bin/python3 bash bench/ingest.sh
set -euo pipefail
WSML_BUILD=${WSML_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
PYTHON=${PYTHON:-/usr/bin/python3}
REPS=${REPS:-3}
N=${N:-2000}
THREADS=${THREADS:-$(nproc)}
out="$WSML_BUILD/bench"
src="$out/ingest-src"
work="$out/ingest-work"
[ -x "$WSML_BUILD/wsml-ingest" ] || { echo "bench ingest: $WSML_BUILD/wsml-ingest not built (make)" >&2; exit 1; }
mkdir -p "$src" "$work"

# ---- the input: N photo-like JPEGs (smooth shading, edges, texture, noise), cached -----
if [ "$(cat "$src/.count" 2>/dev/null)" != "$N" ]; then
    echo "bench ingest: generating $N 500x375 JPEGs in $src (once)"
    SRC="$src" N="$N" "$PYTHON" - <<'PYEOF'
import os
import numpy as np
from PIL import Image, ImageDraw, ImageFilter
src, n = os.environ["SRC"], int(os.environ["N"])
rng = np.random.RandomState(0)
classes = ["person", "dog", "cat", "car", "tree", "boat", "bird", "chair", "sofa", "bus"]
y, x = np.mgrid[0:375, 0:500].astype(np.float32)
rows = ["path,labels"]
for i in range(n):
    c0, c1 = rng.rand(3) * 255, rng.rand(3) * 255
    t = (np.sin(x / rng.uniform(30, 120) + rng.rand() * 6) * 0.5 + 0.5)[..., None] * \
        (y / 375.0)[..., None]
    img = c0 * (1 - t) + c1 * t
    img += rng.normal(0, 6, img.shape)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
    d = ImageDraw.Draw(im)
    for _ in range(rng.randint(3, 9)):
        x0, y0 = rng.randint(0, 450), rng.randint(0, 330)
        box = [x0, y0, x0 + rng.randint(20, 200), y0 + rng.randint(20, 150)]
        col = tuple(int(v) for v in rng.randint(0, 255, 3))
        (d.ellipse if rng.rand() < 0.5 else d.rectangle)(box, fill=col)
    im = im.filter(ImageFilter.GaussianBlur(0.6))
    name = "img%05d.jpg" % i
    im.save(os.path.join(src, name), "JPEG", quality=88)
    labels = [c for c in classes if rng.rand() < 0.2] or [classes[rng.randint(10)]]
    rows.append("%s,%s" % (name, "|".join(labels)))
open(os.path.join(src, "train.csv"), "w").write("\n".join(rows) + "\n")
open(os.path.join(src, ".count"), "w").write(str(n))
PYEOF
fi

# ---- the peer -------------------------------------------------------------------------
cat > "$work/peer.py" <<'PYEOF'
import os, sys, multiprocessing as mp
import lmdb
from PIL import Image
src, dst, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
names = [l.split(",")[0] for l in open(os.path.join(src, "train.csv")).read().split("\n")[1:] if l]

def load(name):
    with Image.open(os.path.join(src, name)) as im:
        return name, im.convert("RGB").resize((448, 448), Image.BILINEAR).tobytes()

if __name__ == "__main__":
    env = lmdb.open(dst, map_size=1 << 34, subdir=True)
    with mp.Pool(threads) as pool:
        txn = env.begin(write=True)
        for k, (name, pixels) in enumerate(pool.imap(load, names, chunksize=8)):
            txn.put(k.to_bytes(4, "big"), name.encode() + b"\0" + pixels)
            if k % 64 == 63:
                txn.commit()
                txn = env.begin(write=True)
        txn.commit()
    env.sync(True)
    env.close()
PYEOF

run_ours() { # $1 = encoding; prints "seconds maxrss_kb"
    rm -rf "$work/ours.store"
    /usr/bin/time -v -o "$work/time.txt" "$WSML_BUILD/wsml-ingest" --format csv --root "$src" \
        --out "$work/ours.store" --size 448 --encoding "$1" --jobs "$THREADS" --val-frac 0 \
        --quiet --json > "$work/ours.json"
    "$PYTHON" -c "
import json, re, sys
j = json.load(open('$work/ours.json'))
t = open('$work/time.txt').read()
assert j['counts']['train'] == $N, j['counts']
rss = re.search(r'Maximum resident set size \(kbytes\): (\d+)', t).group(1)
wall = re.search(r'Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)', t).group(1)
s = 0.0
for part in wall.split(':'): s = s * 60 + float(part)
print(s, rss)"
}

run_peer() {
    rm -rf "$work/peer.lmdb"
    /usr/bin/time -v -o "$work/time.txt" "$PYTHON" "$work/peer.py" "$src" "$work/peer.lmdb" \
        "$THREADS"
    "$PYTHON" -c "
import re
t = open('$work/time.txt').read()
rss = re.search(r'Maximum resident set size \(kbytes\): (\d+)', t).group(1)
wall = re.search(r'Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)', t).group(1)
s = 0.0
for part in wall.split(':'): s = s * 60 + float(part)
print(s, rss)"
}

sync
run_ours raw > /dev/null # warm-up: page cache, libvips start-up
run_peer > /dev/null
ours=() peer=() ours_jpeg=()
for _ in $(seq "$REPS"); do
    ours+=("$(run_ours raw)")
    peer+=("$(run_peer)")
    ours_jpeg+=("$(run_ours jpeg)")
done
store_bytes=$(du -sb "$work/ours.store" | cut -f1)
peer_bytes=$(du -sb "$work/peer.lmdb" | cut -f1)
rm -rf "$work/ours.store" "$work/peer.lmdb"

OURS="${ours[*]}" PEER="${peer[*]}" OURS_JPEG="${ours_jpeg[*]}" N="$N" THREADS="$THREADS" \
JSON_OUT="$out/ingest.json" STORE_BYTES="$store_bytes" PEER_BYTES="$peer_bytes" \
PYTHONPATH="$(cd "$(dirname "$0")" && pwd)${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - <<'PYEOF'
import json, os, platform, statistics
import PIL, numpy as np
from machine import machine
n, threads = int(os.environ["N"]), int(os.environ["THREADS"])
def parse(s):
    v = s.split()
    return [(float(v[i]), int(v[i + 1])) for i in range(0, len(v), 2)]
ours, peer, ours_jpeg = parse(os.environ["OURS"]), parse(os.environ["PEER"]), parse(os.environ["OURS_JPEG"])
o = n / statistics.median(t for t, _ in ours)
p = n / statistics.median(t for t, _ in peer)
oj = n / statistics.median(t for t, _ in ours_jpeg)
print("ingest: ours=%.1f img/s peer=%.1f img/s ratio=%.2fx (higher is better)" % (o, p, o / p))
print("ingest-jpeg: ours=%.1f img/s (--encoding jpeg, quality 95) peer(raw)=%.1f img/s ratio=%.2fx"
      % (oj, p, oj / p))
print("ingest peak RSS: ours=%.0f MiB peer=%.0f MiB (max over runs; peer = main process only)"
      % (max(r for _, r in ours) / 1024, max(r for _, r in peer) / 1024))
load = os.getloadavg()  # other work on the machine slows both sides, not always alike
print("ingest load average at the end: %.2f %.2f %.2f on %d cores" % (load + (os.cpu_count(),)))
json.dump({
    "name": "ingest", "unit": "images/s", "ours": o, "peer": p, "ratio": o / p,
    "higher_is_better": "ratio", "ours_jpeg": oj,
    "ours_runs_s": [t for t, _ in ours], "peer_runs_s": [t for t, _ in peer],
    "ours_jpeg_runs_s": [t for t, _ in ours_jpeg],
    "ours_peak_rss_kb": max(r for _, r in ours), "peer_peak_rss_kb": max(r for _, r in peer),
    "ours_jpeg_peak_rss_kb": max(r for _, r in ours_jpeg),
    "store_bytes_jpeg": int(os.environ["STORE_BYTES"]), "peer_bytes": int(os.environ["PEER_BYTES"]),
    "images": n, "input": "500x375 JPEG quality 88", "output": "448x448 RGB",
    "threads": threads, "reps": len(ours),
    "ours_cmd": "wsml-ingest --format csv --size 448 --encoding raw --jobs %d" % threads,
    "peer_cmd": "PIL open/convert/resize((448,448), BILINEAR) in multiprocessing.Pool(%d) + "
                "python3-lmdb puts, 64 per transaction" % threads,
    "machine": dict(machine(), load_average_1_5_15_min=list(load)),
    "versions": {"python": platform.python_version(), "PIL": PIL.__version__,
                 "numpy": np.__version__},
    "note": "peak RSS of the peer is its main process (pool workers are children)",
}, open(os.environ["JSON_OUT"], "w"), indent=1)
PYEOF
