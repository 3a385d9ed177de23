"""Checks bench/gpu.sh's end-to-end `wsml-train --backend cuda` runs (ROOT/<name>/run.jsonl).

Each run (tf32, fp32, bf16, and one stopped after 40 steps then resumed) must have three
epoch lines with a finite train loss that falls from the first to the last epoch, a
gpu_idle_frac in [0, 1] on every epoch line, and the final line. Prints one line per run
(losses, val mAP, idle fraction, images/s, test mAP) and exits 1 if any run fails.

    python3 bench/gpu_train_check.py ROOT
"""
import json
import math
import os
import sys


def check(root, name):
    path = os.path.join(root, name, "run.jsonl")
    try:
        lines = [json.loads(line) for line in open(path)]
    except (OSError, ValueError) as e:
        print(f"train {name}: FAILED: {path}: {e}")
        return False
    epochs = [l for l in lines if "epoch" in l and "train_loss" in l]
    final = [l for l in lines if l.get("event") == "final"]
    idle = [l.get("gpu_idle_frac") for l in epochs]
    ok = (len(epochs) == 3 and bool(final)
          and all(math.isfinite(l["train_loss"]) for l in epochs)
          and epochs[-1]["train_loss"] < epochs[0]["train_loss"]
          and all(isinstance(x, (int, float)) and 0 <= x <= 1 for x in idle))
    fmt = lambda xs, f: " ".join(f % x if isinstance(x, (int, float)) else str(x) for x in xs)
    print(f"train {name}: {'ok' if ok else 'FAILED'}: loss {fmt([l['train_loss'] for l in epochs], '%.4f')}"
          f"; val mAP {fmt([l.get('val_map') for l in epochs], '%.2f')}"
          f"; gpu_idle_frac {fmt(idle, '%.3f')}"
          f"; images/s {fmt([l.get('images_per_s') for l in epochs], '%.0f')}"
          + (f"; test mAP {final[0]['test_map']:.2f}" if final else ""))
    return ok


def main():
    root = sys.argv[1]
    results = [check(root, name) for name in ("tf32", "fp32", "bf16", "resume")]
    sys.exit(0 if all(results) else 1)


if __name__ == "__main__":
    main()
