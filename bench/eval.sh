#!/usr/bin/env bash
# `make bench` row "eval": wsml-eval vs a scikit-learn average_precision_score loop on
# 40,000 x 80 random scores (docs/benchmarks.md). Both sides single-threaded, warmed up, median of
# several repetitions. ours = the whole `wsml-eval --scores --labels` process (reading
# the .npy files included); peer = only the in-process sklearn loop over the classes
# (Python start-up and loading excluded), so the ratio is conservative.
# Prints `eval: ours=…s peer=…s ratio=…x (higher is better)`, writes $WSML_BUILD/bench/eval.json.
# Standalone: WSML_BUILD=$PWD/build PYTHON=/usr/bin/python3 bash bench/eval.sh
set -euo pipefail
WSML_BUILD=${WSML_BUILD:-$(cd "$(dirname "$0")/.." && pwd)/build}
PYTHON=${PYTHON:-/usr/bin/python3}
REPS=${REPS:-7}
out="$WSML_BUILD/bench"
mkdir -p "$out/eval-data"
[ -x "$WSML_BUILD/wsml-eval" ] || { echo "bench eval: $WSML_BUILD/wsml-eval not built (make)" >&2; exit 1; }
export OMP_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 MKL_NUM_THREADS=1

WSML_EVAL="$WSML_BUILD/wsml-eval" DATA="$out/eval-data" JSON_OUT="$out/eval.json" REPS="$REPS" \
PYTHONPATH="$(cd "$(dirname "$0")" && pwd)${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" - <<'PYEOF'
import json, os, platform, statistics, subprocess, sys, time
import numpy as np
import sklearn
from sklearn.metrics import average_precision_score
from machine import machine

N, C = 40000, 80
data, exe, reps = os.environ["DATA"], os.environ["WSML_EVAL"], int(os.environ["REPS"])
rng = np.random.RandomState(0)
scores = rng.rand(N, C).astype(np.float32)
labels = (rng.rand(N, C) < 0.05).astype(np.int8)  # ~5% positives, like COCO's label density
np.save(data + "/scores.npy", scores)
np.save(data + "/labels.npy", labels)

def ours():
    t = time.perf_counter()
    r = subprocess.run([exe, "--scores", data + "/scores.npy", "--labels", data + "/labels.npy",
                        "--json", "--quiet"], check=True, capture_output=True, text=True)
    return time.perf_counter() - t, json.loads(r.stdout)["map"]

def peer():
    t = time.perf_counter()
    aps = [average_precision_score(labels[:, k], scores[:, k]) if labels[:, k].any() else 0.0
           for k in range(C)]
    return time.perf_counter() - t, 100.0 * float(np.mean(aps))

def startup():  # process start-up alone (dynamic loading), to show where ours' time goes
    t = time.perf_counter()
    subprocess.run([exe, "--help"], check=True, capture_output=True)
    return time.perf_counter() - t

ours(); peer(); startup()  # warm-up (page cache, imports)
ours_t, peer_t = [], []
for _ in range(reps):  # interleaved so that machine noise hits both sides alike
    t, ours_map = ours(); ours_t.append(t)
    t, peer_map = peer(); peer_t.append(t)
if abs(ours_map - peer_map) > 1e-9:
    sys.exit("bench eval: mAP differs: wsml-eval %.12f, sklearn %.12f" % (ours_map, peer_map))
o, p = statistics.median(ours_t), statistics.median(peer_t)
start = statistics.median([startup() for _ in range(reps)])
print("eval: ours=%.4fs peer=%.4fs ratio=%.2fx (higher is better)" % (o, p, p / o))
json.dump({
    "name": "eval", "unit": "seconds", "ours_s": o, "peer_s": p, "ratio": p / o,
    "higher_is_better": "ratio", "ours_all_s": ours_t, "ours_startup_s": start, "peer_all_s": peer_t, "reps": reps,
    "shape": [N, C], "positive_rate": 0.05, "map_ours": ours_map, "map_sklearn": peer_map,
    "ours": "wsml-eval --scores --labels (whole process incl. .npy reading), 1 thread",
    "peer": "sklearn.metrics.average_precision_score loop over classes, in-process, 1 thread",
    "machine": machine(),
    "backend": "cpu", "precision": "float32 scores, float64 accumulation",
    "versions": {"python": platform.python_version(), "numpy": np.__version__,
                 "sklearn": sklearn.__version__},
}, open(os.environ["JSON_OUT"], "w"), indent=1)
PYEOF
