#!/usr/bin/env bash
# train-cpu-mpi row (docs/benchmarks.md, issue 13): data-parallel training on this machine's
# CPUs, 2 processes (mpirun, one thread each, --batch B each: global batch 2B) against 1
# process (one thread, --batch B), on the demo's model. Images per second from wsml-train
# --trace's step times (forward + loss + backward + the gradient all-reduce + Adam), the
# median after 3 warm-up steps, as the train-cpu row; 2 processes train 2B images per step.
# The three configurations run interleaved, ROUNDS times (default 3), so that a change in
# the machine's load hits all of them; each figure is the median over the rounds.
# Scaling efficiency = images/s of 2 processes / (2 x images/s of 1).
# Also the same 2 cores as one process with 2 threads and batch 2B, the alternative to MPI
# on one machine. Prints "train-cpu-mpi…: ours=… img/s peer=… img/s ratio=…x" and writes
# $WSML_BUILD/bench/train_cpu_mpi.json.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
WSML_BUILD=${WSML_BUILD:-$here/../build}
PYTHON=${PYTHON:-/usr/bin/python3}
STEPS=${BENCH_STEPS:-10}
ROUNDS=${BENCH_ROUNDS:-3}
WARMUP=3
ARCH=${DEMO_ARCH:-resnet18}
WIDTH=${DEMO_WIDTH:-0.25}
SIZE=${DEMO_SIZE:-64}
B=${BENCH_MPI_BATCH:-32}
command -v mpirun > /dev/null || { echo "train-cpu-mpi: mpirun not found (openmpi-bin)" >&2; exit 1; }
mkdir -p "$WSML_BUILD/bench"
work=$(mktemp -d /tmp/wsml-bench-mpi.XXXXXX)
trap 'rm -rf "$work"' EXIT

# train = 2B x (WARMUP + STEPS) images (val-frac 0.2): whole global batches only
train=$(( 2 * B * (WARMUP + STEPS) ))
"$WSML_BUILD/wsml-ingest" --format fashion-mosaic --size "$SIZE" --train-count $(( train * 5 / 4 )) \
  --test-count 8 --out "$work/store" --quiet
run() { # OUT BATCH THREADS [launcher...]
  local out=$1 batch=$2 threads=$3
  shift 3
  "$@" "$WSML_BUILD/wsml-train" --store "$work/store" --out "$work/$out" --arch "$ARCH" \
    --width-mult "$WIDTH" --batch "$batch" --threads "$threads" --max-steps $((WARMUP + STEPS)) \
    --trace --save-every 0 --no-flip --lr 1e-4 --quiet
}
for r in $(seq "$ROUNDS"); do
  run one-$r "$B" 1
  run two-$r "$B" 1 mpirun --allow-run-as-root --oversubscribe --bind-to core -n 2
  run threads-$r $((2 * B)) 2
done

"$PYTHON" - "$work" "$B" "$WARMUP" "$ROUNDS" "$WSML_BUILD/bench/train_cpu_mpi.json" <<'EOF'
import json, os, platform, sys, time
work, B, warmup, rounds, out = (sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]),
                                 sys.argv[5])
def median(v):
    s = sorted(v)
    return s[len(s) // 2] if len(s) % 2 else (s[len(s) // 2 - 1] + s[len(s) // 2]) / 2
def rate(name, images_per_step):
    """median over the rounds of images/s (each: the median step after warm-up)"""
    per_round, steps = [], []
    for r in range(1, rounds + 1):
        st = [json.loads(l)["step_s"] for l in open(os.path.join(work, "%s-%d" % (name, r), "run.jsonl"))
              if '"step"' in l][warmup:]
        per_round.append(images_per_step / median(st))
        steps.append(st)
    return median(per_round), {"images_per_s_per_round": per_round, "step_s": steps}
one, one_steps = rate("one", B)
two, two_steps = rate("two", 2 * B)
thr, thr_steps = rate("threads", 2 * B)
cfg = json.load(open(os.path.join(work, "two-1", "config.json")))
rows = [{"name": "train-cpu-mpi demo b%d/process: 2 processes vs 1 (1 thread each)" % B,
         "ours_images_per_s": two, "peer_images_per_s": one, "ratio": two / one,
         "scaling_efficiency": two / (2 * one), "ours_step_s": two_steps, "peer_step_s": one_steps},
        {"name": "train-cpu-mpi demo b%d: 2 processes x 1 thread vs 1 process x 2 threads" % (2 * B),
         "ours_images_per_s": two, "peer_images_per_s": thr, "ratio": two / thr,
         "ours_step_s": two_steps, "peer_step_s": thr_steps}]
for r in rows:
    print("%s: ours=%.1f img/s peer=%.1f img/s ratio=%.2fx (higher is better)%s"
          % (r["name"], r["ours_images_per_s"], r["peer_images_per_s"], r["ratio"],
             "  [scaling efficiency %.0f%%]" % (100 * r["scaling_efficiency"])
             if "scaling_efficiency" in r else ""))
cpu = ""
try:
    cpu = [l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")][0]
except Exception:
    pass
json.dump({"bench": "train-cpu-mpi", "date": time.strftime("%Y-%m-%dT%H:%M:%S"),
           "machine": platform.node(), "cpu": cpu, "cpus": os.cpu_count(),
           "world_size": cfg.get("world_size"), "blas_core": cfg.get("blas_core"), "rows": rows},
          open(out, "w"), indent=2)
print("wrote", out)
EOF
