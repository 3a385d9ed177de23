#!/usr/bin/env bash
# train-cpu row (docs/benchmarks.md, issue 4): wsml-train's training step on the cpu backend against
# PyTorch (Debian python3-torch) on the same model, batch, input size and thread count.
#   ours: wsml-train --trace records each step's time (forward + loss + backward + Adam
#         update, not the loader, which runs beside it); the median of the steps after
#         3 warm-up steps.
#   peer: tests/oracles/train_ref.py bench: torchvision's model (ScaledResNet for a
#         width multiplier), Adam with the same two groups, BCE-with-logits, the same
#         median after 3 warm-up steps, torch.set_num_threads(same).
# Rows: ResNet-18 at 64x64 batch 32, and the demo's model (DEMO_* below, kept in step with
# pipelines/demo.mk). Then, only if the ten-step PyTorch parity test passes with the
# OpenBLAS kernel OpenBLAS picks itself (OPENBLAS_CORETYPE/OPENBLAS_L2_SIZE unset in that
# command only, docs/benchmarks.md), the ResNet-18 row again with that kernel.
# Prints "train-cpu…: ours=… img/s peer=… img/s ratio=…x (higher is better)" per row and
# writes $WSML_BUILD/bench/train_cpu.json (kernel names from each run's config.json).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
WSML_BUILD=${WSML_BUILD:-$here/../build}
PYTHON=${PYTHON:-/usr/bin/python3}
THREADS=${BENCH_THREADS:-2}
STEPS=${BENCH_STEPS:-10}
WARMUP=3
DEMO_ARCH=${DEMO_ARCH:-resnet18}
DEMO_WIDTH=${DEMO_WIDTH:-0.25}
DEMO_SIZE=${DEMO_SIZE:-64}
DEMO_BATCH=${DEMO_BATCH:-64}
mkdir -p "$WSML_BUILD/bench"
work=$(mktemp -d /tmp/wsml-bench-train.XXXXXX)
trap 'rm -rf "$work"' EXIT

# A store whose train split is a whole number of batches (no short last batch is timed).
store_for() { # SIZE BATCH -> path
  local size=$1 batch=$2 dir="$work/store-$1-$2"
  if [ ! -d "$dir" ]; then
    # val-frac 0.2 of N: train = 0.8 N = batch * (WARMUP + STEPS) exactly
    local train=$(( batch * (WARMUP + STEPS) ))
    "$WSML_BUILD/wsml-ingest" --format fashion-mosaic --size "$size" \
      --train-count $(( train * 5 / 4 )) --test-count 8 --out "$dir" --quiet
  fi
  echo "$dir"
}

rows="$work/rows.jsonl"
: > "$rows"
row() { # NAME ARCH WIDTH SIZE BATCH [env prefix...]
  local name=$1 arch=$2 width=$3 size=$4 batch=$5
  shift 5
  local store run base
  store=$(store_for "$size" "$batch")
  run="$work/run-$RANDOM"
  base=$("$PYTHON" -c "print(max(1, round(64 * $width)))")
  "$@" "$WSML_BUILD/wsml-train" --store "$store" --out "$run" --arch "$arch" --width-mult "$width" \
    --batch "$batch" --threads "$THREADS" --max-steps $((WARMUP + STEPS)) --trace \
    --save-every 0 --no-flip --lr 1e-4 --quiet
  "$@" "$PYTHON" -W ignore "$here/../tests/oracles/train_ref.py" bench --arch "$arch" --base "$base" \
    --classes 10 --size "$size" --batch "$batch" --threads "$THREADS" --warmup $WARMUP \
    --steps "$STEPS" > "$work/peer.json"
  "$PYTHON" - "$name" "$arch" "$width" "$size" "$batch" "$run" "$work/peer.json" "$WARMUP" \
    "$THREADS" "$*" >> "$rows" <<'EOF'
import json, sys
name, arch, width, size, batch, run, peer, warmup, threads, env = sys.argv[1:]
steps = [json.loads(l) for l in open(run + "/run.jsonl") if '"step"' in l]
ours = [s["step_s"] for s in steps[int(warmup):]]
ours_med = sorted(ours)[len(ours) // 2] if len(ours) % 2 else \
    sum(sorted(ours)[len(ours) // 2 - 1:len(ours) // 2 + 1]) / 2
p = json.load(open(peer))
cfg = json.load(open(run + "/config.json"))
r = {"name": name, "arch": arch, "width_mult": float(width), "size": int(size),
     "batch": int(batch), "threads": int(threads), "env": env or "default",
     "ours_images_per_s": int(batch) / ours_med, "peer_images_per_s": p["images_per_s"],
     "ours_step_s": ours, "peer_step_s": p["step_s"], "blas_core": cfg.get("blas_core"),
     "torch": p["torch"]}
r["ratio"] = r["ours_images_per_s"] / r["peer_images_per_s"]
print(json.dumps(r))
EOF
  "$PYTHON" -c "
import json, sys
r = [json.loads(l) for l in open('$rows')][-1]
print('%s: ours=%.1f img/s peer=%.1f img/s ratio=%.2fx (higher is better)  [kernel %s]'
      % (r['name'], r['ours_images_per_s'], r['peer_images_per_s'], r['ratio'], r['blas_core']))"
}

row "train-cpu resnet18 64x64 b32 t$THREADS" resnet18 1 64 32 env
row "train-cpu demo $DEMO_ARCH x$DEMO_WIDTH ${DEMO_SIZE}x$DEMO_SIZE b$DEMO_BATCH t$THREADS" \
  "$DEMO_ARCH" "$DEMO_WIDTH" "$DEMO_SIZE" "$DEMO_BATCH" env

# OpenBLAS's own kernel choice: first the outside-oracle check, in the same environment.
if (export WSML_BUILD PYTHON; env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE \
      bash "$here/../tests/run-e2e.sh" train_torch_steps > "$work/check.txt" 2>&1); then
  row "train-cpu resnet18 64x64 b32 t$THREADS native-blas" resnet18 1 64 32 \
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE
else
  echo "train-cpu native-blas: skipped, the PyTorch parity check failed with OpenBLAS's own kernel:"
  tail -n 5 "$work/check.txt"
fi

"$PYTHON" - "$rows" "$WSML_BUILD/bench/train_cpu.json" <<'EOF'
import json, platform, subprocess, sys, time
rows = [json.loads(l) for l in open(sys.argv[1])]
cpu = ""
try:
    cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
except Exception:
    pass
out = {"bench": "train-cpu", "date": time.strftime("%Y-%m-%dT%H:%M:%S"), "machine": platform.node(),
       "cpu": cpu, "backend": "cpu", "precision": "fp32", "rows": rows}
json.dump(out, open(sys.argv[2], "w"), indent=2)
print("wrote", sys.argv[2])
EOF
