#!/usr/bin/env bash
# bench/gpu.sh — the one GPU script (issue 11; docs/benchmarks.md row `train-gpu`): proves the CUDA
# backend on a real GPU and times it against PyTorch on the same GPU.
#
# Two halves, because the GPU machine has none of our Debian packages (no LMDB, OpenBLAS,
# jansson, libjpeg, libvips, Criterion) and no network to build with:
#
#   here (Debian packages + nvcc, no GPU needed), right before going there:
#     bash bench/gpu.sh --prepare
#       builds build/gpu/ (wsml-train, libwsml-cuda.so, wsml-gpubench from bench/gpu_step.c,
#       wsml-cudatest = tests/unit/test_cuda.c over bench/shim/, a small JPEG store, the CPU
#       reference of the end-to-end runs) and .devlibs/ (the run-time libraries as .deb
#       files, fetched with apt-get download), then checks that what travels (tree +
#       .devlibs + build/gpu) fits in 64 MiB and prints the device call to make.
#   there (device tool: carry [".devlibs", "build/gpu"], timeout_s ~560):
#     bash bench/gpu.sh
#       stops at once (exit 3) if build/gpu is missing or there is no GPU; otherwise runs
#       the stages below, most valuable first, each step under `timeout -k 5 N` with N
#       capped by the time left (GPU_BUDGET) minus a margin, and rewrites the summary
#       after every stage. A failing step never stops the script.
#   `make bench-gpu` on a machine with a GPU and the packages does both halves.
#
# Stages (GPU_STAGES, default all, in this order):
#   parity     the CUDA unit tests (wsml-cudatest --timeout 45: each test capped at 45 s):
#              every backend operation, whole ResNet-18/50s and ten SGD steps vs the cpu
#              backend; a test skipped for want of a GPU counts as a failure here
#   train      wsml-train --backend cuda on the carried store: every loss x both heads at
#              tf32 (3 epochs, --no-early-stop: loss must fall, gpu_idle_frac on every
#              epoch), ll-cp at fp32 and bf16, a solo repeat (determinism, idle fraction),
#              a run stopped by --max-steps and resumed (must end equal to the solo run),
#              test mAP against the CPU reference made by --prepare (bench/gpu_train_check.py)
#   bench      ResNet-50 448x448, batch 16 then 64: wsml-gpubench tf32/fp32/bf16 and PyTorch
#              (bench/gpu_torch.py: eager fp32, tf32, tf32 channels_last, channels_last +
#              bf16 autocast); both sides copy the batch from pinned host memory each step
#   sanitizer  compute-sanitizer memcheck over the small-operation CUDA tests
#   extra      optional rows: cudnnFind, wsml-train's host optimizer
#
# Results (at most 8 files; in $OUT when the device tool sets it, else build/bench/gpu/):
#   gpu.log         everything printed
#   gpu.json        the summary (bench/gpu_summary.py), rewritten after every stage
#   gpu-runs.jsonl  every end-to-end run's run.jsonl lines, tagged with the run's name
#   gpu-bench.jsonl the benchmark rows of both sides
#
# Environment: GPU_BUDGET (seconds for all stages, default 500), GPU_STAGES, PYTHON_GPU
# (python3), GPU_BACKEND=cpu (a dry run of the plumbing on a machine without a GPU: the
# runs use --backend cpu; the parity stage then fails, since its tests skip),
# GPU_BENCH_SIZE/GPU_BENCH_BATCHES/GPU_BENCH_ARCH (448 / "16 64" / resnet50),
# GPU_TRAIN_JOBS (end-to-end runs at a time, 6), GPU_DEVLIBS=0 (--prepare without
# .devlibs), GPU_KEEP_WORK=1 (keep the runs in /tmp/wsml-gpu-work.*).
set -uo pipefail
cd "$(dirname "$0")/.." || exit 1
B=${WSML_BUILD:-build}
G=$B/gpu
PY=${PYTHON_GPU:-python3}
BACKEND=${GPU_BACKEND:-cuda}
DEBS="liblmdb0 libopenblas0-pthread libgfortran5 libquadmath0 libjansson4 libjpeg62-turbo"
LOSSES="full an an-ls wan epr role ll-r ll-ct ll-cp"
# The end-to-end runs: small enough for 3 epochs in seconds on a GPU and in the CPU
# reference here; ll-* with the demo's delta-rel (pipelines/demo.mk).
TRAIN_NET=(--arch resnet18 --width-mult 0.25 --batch 32 --epochs 3 --no-early-stop --save-every 0
    --quiet)
loss_flags() { case $1 in ll-*) echo "--loss $1 --delta-rel 4" ;; *) echo "--loss $1" ;; esac; }

die() {
    echo "gpu.sh: $*" >&2
    exit 3
}

usage() {
    sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'
}

# ---- here: build what travels ------------------------------------------------------------

build_gpu_dir() {
    [ -x "${CUDA_HOME:-/usr/local/cuda}/bin/nvcc" ] || die "nvcc not found (CUDA_HOME)"
    echo "== building $B with CUDA (CUDA_ARCHS=${CUDA_ARCHS:-default}), then $G"
    make -j"$(nproc)" BUILD="$B" all "$B/libwsml-cuda.so" "$B/libwsml-train.a" \
        >"$B/gpu-build.log" 2>&1 || { tail -20 "$B/gpu-build.log"; die "make failed"; }
    mkdir -p "$G"
    local cflags=(-O2 -g -std=gnu11 -Wall -Wextra -Werror -pthread -I.)
    local libs
    libs="$B/libwsml-train.a $B/libwsml-store.a $B/libwsml-common.a $(pkg-config --libs jansson zlib openblas lmdb libjpeg) -lm -ldl"
    # shellcheck disable=SC2086
    cc "${cflags[@]}" -o "$G/wsml-gpubench" bench/gpu_step.c $libs || die "wsml-gpubench"
    # The parity tests against the Criterion stand-in: bench/shim comes first on the
    # include path, so <criterion/criterion.h> is the shim.
    # shellcheck disable=SC2086
    cc "${cflags[@]}" -Ibench/shim -Wno-format-zero-length -o "$G/wsml-cudatest" \
        tests/unit/test_cuda.c bench/shim/runner.c $libs || die "wsml-cudatest"
    # wsml-train without MPI (the GPU machine has no Open MPI; a data-parallel run needs a
    # build with it there): common/comm.c compiled without WSML_HAVE_MPI comes before the
    # archives, so the linker takes its communicator instead of the MPI one.
    cc "${cflags[@]}" -c common/comm.c -o "$B/gpu-comm-single.o" || die "comm.o without MPI"
    # shellcheck disable=SC2086
    cc "${cflags[@]}" -o "$G/wsml-train" "$B/obj/train/main.o" "$B/gpu-comm-single.o" $libs ||
        die "wsml-train without MPI"
    cp "$B/libwsml-cuda.so" "$G/"
    # A JPEG store (~6.5 MB; raw pixels would be 25 MB): 1280 train, 320 val, 320 test
    # mosaics at 64x64; wsml-train decodes it with libjpeg (in .devlibs).
    [ -f "$G/store/data.mdb" ] || "$B/wsml-ingest" --format fashion-mosaic --size 64 \
        --train-count 1600 --test-count 320 --encoding jpeg --out "$G/store" --force --quiet ||
        die "store"
}

# The CPU reference of the end-to-end runs (seeds 1 and 2; seed 2 measures seed noise),
# kept while wsml-train, the store and the flags are unchanged.
cpu_reference() {
    local key
    key=$({ sha256sum "$G/wsml-train" "$G/store/data.mdb" | cut -d' ' -f1; echo "${TRAIN_NET[*]} $LOSSES"; } | sha256sum | cut -c1-16)
    if [ -f "$G/cpu-ref.jsonl" ] && grep -q "\"key\": \"$key\"" "$G/cpu-ref.jsonl"; then
        echo "== CPU reference: up to date ($G/cpu-ref.jsonl)"
        return
    fi
    echo "== CPU reference: 2 seeds x $(echo $LOSSES | wc -w) losses x 2 heads on the cpu backend (minutes)"
    local root=/tmp/wsml-gpu-cpuref.$$ t0=$SECONDS
    rm -rf "$root"
    local seed
    for seed in 1 2; do
        sweep cpu "$root/s$seed" "$(nproc)" 1 600 --seed "$seed"
    done
    $PY bench/gpu_train_check.py merge "$root" "$G/cpu-ref.jsonl" --key "$key" ||
        die "CPU reference failed (runs in $root)"
    rm -rf "$root"
    echo "   done in $((SECONDS - t0)) s"
}

fetch_devlibs() {
    [ "${GPU_DEVLIBS:-1}" = 0 ] && return
    mkdir -p .devlibs
    local ex p
    ex=$(git rev-parse --git-path info/exclude 2>/dev/null || echo .git/info/exclude)
    mkdir -p "$(dirname "$ex")"
    grep -qx '/.devlibs/' "$ex" 2>/dev/null || echo /.devlibs/ >>"$ex"
    for p in $DEBS; do
        ls .devlibs/"${p}"_*.deb >/dev/null 2>&1 || (cd .devlibs && apt-get download "$p" >/dev/null) ||
            die "apt-get download $p failed"
    done
}

# What the device tool copies: the tree (tracked + untracked files git does not ignore)
# plus the carried paths; it allows 64 MiB in all.
travel_size() {
    local tree carried
    tree=$(git ls-files -z --cached --others --exclude-standard | xargs -0 stat -c %s 2>/dev/null | awk '{s += $1} END {print s + 0}')
    carried=$(find .devlibs "$G" -type f -printf '%s\n' 2>/dev/null | awk '{s += $1} END {print s + 0}')
    echo $((tree + carried))
}

prepare() {
    BUDGET=1000000 # no time budget here
    build_gpu_dir
    cpu_reference
    fetch_devlibs
    local bytes mib
    bytes=$(travel_size)
    mib=$(awk -v b="$bytes" 'BEGIN {printf "%.1f", b / 1048576}')
    {
        echo "prepared: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
        echo "commit: $(git rev-parse HEAD 2>/dev/null)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
        echo "CUDA_ARCHS: $(make -s --no-print-directory BUILD="$B" print-cuda-archs 2>/dev/null)"
        echo "travels: $mib MiB (tree + .devlibs + $G)"
    } >"$G/PREPARED.txt"
    cat "$G/PREPARED.txt"
    echo "   $G: $(du -sh "$G" | cut -f1), .devlibs: $(du -sh .devlibs 2>/dev/null | cut -f1)"
    [ "$bytes" -le $((64 * 1048576)) ] || die "what travels is $mib MiB, over the device tool's 64 MiB"
    echo "libraries the executables need: $(ldd "$G/wsml-gpubench" "$G/wsml-cudatest" "$G/wsml-train" "$G/libwsml-cuda.so" | awk '/=>/ {print $1}' | sort -u | tr '\n' ' ')"
    echo "device call: carry [\".devlibs\", \"$G\"], timeout_s 560, command: bash bench/gpu.sh"
}

# ---- the end-to-end runs (used there, and here for the CPU reference) -------------------

# sweep BACKEND ROOT PARALLEL THREADS CAP [FLAGS...]: every loss x both heads, PARALLEL at
# a time, each in ROOT/<loss>-<head> under `timeout -k 5 CAP` (capped by the time left
# there), exit status in ROOT/<name>.rc, output in ROOT/<name>.log.
sweep() {
    local backend=$1 root=$2 par=$3 threads=$4 cap=$5
    shift 5
    mkdir -p "$root"
    local head loss name n pids=()
    for head in linear boostlu; do
        for loss in $LOSSES; do
            name=$loss-$head
            # (a plain `wait` would also wait for the log's tee: poll, then wait by pid)
            while [ "$(jobs -rp | wc -l)" -ge "$par" ]; do sleep 0.2; done
            n=$(capped "$cap")
            # shellcheck disable=SC2046
            (timeout -k 5 "$n" "$G/wsml-train" --store "$G/store" --backend "$backend" \
                "${TRAIN_NET[@]}" $(loss_flags "$loss") --head "$head" --threads "$threads" \
                "$@" --out "$root/$name" --force >"$root/$name.log" 2>&1
                echo $? >"$root/$name.rc") &
            pids+=($!)
        done
    done
    wait "${pids[@]}"
}

# ---- there: the time budget ----------------------------------------------------------------

T0=$SECONDS
BUDGET=${GPU_BUDGET:-500}
MARGIN=15   # seconds kept for the last summary
MIN_STEP=8  # a step with less time than this is skipped
left() { echo $((BUDGET - (SECONDS - T0))); }
# capped N: N, or less if the budget ends sooner (never below 1)
capped() {
    local n=$1 l
    l=$(($(left) - MARGIN))
    [ "$l" -lt "$n" ] && n=$l
    [ "$n" -lt 1 ] && n=1
    echo "$n"
}

# step NAME CAP CMD...: CMD under `timeout -k 5 N`, N = capped CAP; skipped when less
# than MIN_STEP seconds are left. Sets STEP_RC (the exit status, or "skipped") and
# records the step in $WORK/steps.jsonl for the summary; its own lines go to stderr, so
# that CMD's stdout can be redirected to a results file.
step() {
    local name=$1 cap=$2
    shift 2
    local n t0=$SECONDS status
    n=$(capped "$cap")
    if [ $(($(left) - MARGIN)) -lt "$MIN_STEP" ]; then
        echo "-- $name: SKIPPED (time: $(left) s left of $BUDGET)" >&2
        STEP_RC=skipped
        record "$name" skipped 0 ""
        return 0
    fi
    echo "-- $name (limit ${n} s, $(left) s left)" >&2
    timeout -k 5 "$n" "$@"
    STEP_RC=$?
    case $STEP_RC in
    0) status=passed ;;
    124 | 137) status="timed out" ;;
    *) status=failed ;;
    esac
    echo "-- $name: $status (exit $STEP_RC, $((SECONDS - t0)) s)" >&2
    record "$name" "$status" $((SECONDS - t0)) "$STEP_RC"
    return 0
}

# enough NAME SECONDS: whether a stage that needs SECONDS still fits (else recorded as
# skipped for time)
enough() {
    [ $(($(left) - MARGIN)) -ge "$2" ] && return 0
    echo "== $1: SKIPPED (time: $(left) s left of $BUDGET, needs $2 s)"
    record "$1" skipped 0 ""
    return 1
}

record() { # NAME STATUS SECONDS RC
    printf '{"step": "%s", "status": "%s", "seconds": %s, "rc": "%s", "at_s": %s}\n' \
        "$1" "$2" "$3" "$4" $((SECONDS - T0)) >>"$WORK/steps.jsonl"
}

# summary WHEN: rewrites gpu.json, prints each stage's status; SUMMARY_RC = 0 when every
# stage that ran passed (after the last stage: and every stage ran)
summary() {
    echo "== summary after $1 ($((SECONDS - T0)) s)"
    timeout -k 2 20 $PY bench/gpu_summary.py --work "$WORK" --bench "$OUTDIR/gpu-bench.jsonl" \
        --out "$OUTDIR/gpu.json" ${FINAL:+--final}
    SUMMARY_RC=$?
}

# ---- stages ----------------------------------------------------------------------------------

stage_parity() {
    echo "== parity: CUDA unit tests vs the cpu backend ($(left) s left)"
    step parity 420 "$G/wsml-cudatest" --timeout 45 'cuda/*' 2>&1 | tee "$WORK/parity.log"
    [ "$BACKEND" = cpu ] && echo "(dry run without a GPU: the parity stage fails by design)"
}

stage_train() {
    enough train 60 || return
    echo "== train: wsml-train --backend $BACKEND end to end ($(left) s left)"
    local R=$WORK/runs t0=$SECONDS
    mkdir -p "$R"
    # 18 runs, 6 at a time (16 cores there); each capped at 120 s
    echo "-- sweep: every loss x both heads, tf32, 3 epochs"
    sweep "$BACKEND" "$R" "${GPU_TRAIN_JOBS:-6}" 2 120 --precision tf32 --seed 1
    echo "-- sweep: $(grep -lx 0 "$R"/*.rc | wc -l) of $(ls "$R"/*.rc | wc -l) runs exited 0, $((SECONDS - t0)) s"
    local f
    for f in "$R"/*.rc; do # the errors of the runs that failed
        grep -qx 0 "$f" || { echo "   ${f%.rc}: exit $(cat "$f"):" && tail -3 "${f%.rc}.log"; }
    done
    record sweep finished $((SECONDS - t0)) ""
    # ll-cp, linear head, as the sweep's ll-cp-linear (seed 1); train_run NAME FLAGS... runs it
    # alone with FLAGS added and leaves its exit status in $R/NAME.rc (errors: in the log)
    # shellcheck disable=SC2207
    local llcp=("$G/wsml-train" --store "$G/store" --backend "$BACKEND" "${TRAIN_NET[@]}"
        $(loss_flags ll-cp) --threads 2 --seed 1)
    train_run() {
        local name=$1
        shift
        step "train $name" 120 "${llcp[@]}" "$@"
        echo "$STEP_RC" >"$R/$name.rc"
    }
    local p
    for p in fp32 bf16; do
        [ "$BACKEND" = cpu ] && [ "$p" = bf16 ] && continue # the cpu backend refuses bf16
        train_run "precision-$p" --precision "$p" --out "$R/precision-$p" --force
    done
    # alone: the idle fraction without other runs, and (with the sweep's run) determinism
    train_run solo --precision tf32 --out "$R/solo" --force
    # the run log names the GPU it ran on (docs/build.md "Logs")
    if [ "$BACKEND" = cuda ]; then
        grep -h "GPU 0: \|CUDA backend" "$R/solo/train.log" 2>/dev/null ||
            echo "gpu.sh: solo/train.log has no GPU line"
    fi
    # stopped mid-epoch 2 by --max-steps (exit 0, last.safetensors written), then resumed
    train_run stopped --precision tf32 --max-steps 50 --out "$R/stopped" --force
    [ -d "$R/stopped" ] && cp -r "$R/stopped" "$R/stopped-at-50" # what the stop left
    train_run stopped.resume --precision tf32 --out "$R/stopped" --resume
    step "train check" 30 $PY bench/gpu_train_check.py check "$R" --backend "$BACKEND" \
        --reference "$G/cpu-ref.jsonl" --json "$WORK/train.json" --runs "$OUTDIR/gpu-runs.jsonl"
}

# bench_rows BATCH: our precisions, then PyTorch's modes, at one batch size
bench_rows() {
    local batch=$1 p
    for p in tf32 fp32 bf16; do
        [ "$BACKEND" = cpu ] && [ "$p" != fp32 ] && continue
        step "wsml $p b$batch" 90 env WSML_PRECISION=$p "$G/wsml-gpubench" --backend "$BACKEND" \
            --arch "$ARCH" --size "$SIZE" --batch "$batch" >>"$OUTDIR/gpu-bench.jsonl"
    done
    step "pytorch b$batch" 150 env LD_LIBRARY_PATH="$LD_ORIG" $PY bench/gpu_torch.py \
        --device "$BACKEND" --arch "$ARCH" --size "$SIZE" --batch "$batch" >>"$OUTDIR/gpu-bench.jsonl"
}

stage_bench() {
    enough bench 30 || return
    echo "== bench: $ARCH ${SIZE}x$SIZE, wsml vs PyTorch on the same GPU ($(left) s left)"
    local b
    for b in $BATCHES; do bench_rows "$b"; done
}

stage_sanitizer() {
    enough sanitizer 30 || return
    local san
    san=$(command -v compute-sanitizer || ls "${CUDA_HOME:-/usr/local/cuda}"/bin/compute-sanitizer 2>/dev/null || true)
    echo "== sanitizer: compute-sanitizer memcheck ($(left) s left)"
    if [ -z "$san" ]; then
        echo "-- no compute-sanitizer on this machine"
        record sanitizer "not available" 0 ""
        return
    fi
    # memory, staged input (pinned buffers, copy stream), GEMMs, device optimizer, pools,
    # max pool, then batch norm (the slowest under memcheck): the own kernels and every
    # copy path (convolutions are cuDNN's)
    local glob
    for glob in 'cuda/[mgsd]*' 'cuda/batchnorm*'; do
        step "sanitizer $glob" 100 "$san" --tool memcheck --target-processes all \
            --error-exitcode 9 "$G/wsml-cudatest" --timeout 90 "$glob" >>"$WORK/sanitizer.log" 2>&1
    done
    grep -E '^\[(PASS|FAIL|SKIP)\]|Synthesis|ERROR SUMMARY' "$WORK/sanitizer.log"
    grep -m 20 -B2 -A8 'Invalid|Uninitialized|Leaked|ERROR:' "$WORK/sanitizer.log"
}

stage_extra() {
    enough extra 20 || return
    echo "== extra rows ($(left) s left)"
    local b
    for b in $BATCHES; do
        step "wsml tf32 b$b cudnnFind" 90 env WSML_PRECISION=tf32 WSML_CUDNN_ALGO=find \
            "$G/wsml-gpubench" --backend "$BACKEND" --arch "$ARCH" --size "$SIZE" --batch "$b" \
            >>"$OUTDIR/gpu-bench.jsonl"
    done
    b=${BATCHES%% *}
    step "wsml tf32 b$b host optimizer" 90 env WSML_PRECISION=tf32 "$G/wsml-gpubench" \
        --backend "$BACKEND" --arch "$ARCH" --size "$SIZE" --batch "$b" --optimizer host \
        >>"$OUTDIR/gpu-bench.jsonl"
}

# ---- main ------------------------------------------------------------------------------------

case "${1:-}" in
--prepare)
    prepare
    exit 0
    ;;
--help | -h)
    usage
    exit 0
    ;;
"") ;;
*)
    echo "gpu.sh: unknown argument '$1' (expected --prepare or --help)" >&2
    exit 2
    ;;
esac

OUTDIR=${OUT:-$B/bench/gpu}
mkdir -p "$OUTDIR" || die "cannot create $OUTDIR"
exec > >(tee -a "$OUTDIR/gpu.log") 2>&1
TEE_PID=$!
# at the end: the work folder goes (GPU_KEEP_WORK=1 keeps it), and the log is complete
# before the script ends (tee may lag behind)
trap '[ "${GPU_KEEP_WORK:-0}" = 1 ] || rm -rf "${WORK:-/nonexistent}"; exec >&- 2>&-; wait $TEE_PID 2>/dev/null' EXIT
echo "== gpu.sh $(date -u +%Y-%m-%dT%H:%M:%SZ), budget $BUDGET s, backend $BACKEND"
for f in wsml-train wsml-gpubench wsml-cudatest libwsml-cuda.so store/data.mdb; do
    [ -e "$G/$f" ] || die "$G/$f is missing: run 'bash bench/gpu.sh --prepare' on the build machine and carry $G (there is no network here to build with)"
done
cat "$G/PREPARED.txt" 2>/dev/null
STAGES=${GPU_STAGES:-parity train bench sanitizer extra}
SIZE=${GPU_BENCH_SIZE:-448}
BATCHES=${GPU_BENCH_BATCHES:-16 64}
ARCH=${GPU_BENCH_ARCH:-resnet50}
WORK=$(mktemp -d /tmp/wsml-gpu-work.XXXXXX) || die "mktemp failed"

# ---- run-time libraries: ours from .devlibs, cuDNN/cuBLAS from the pip wheels ----------------
LD_ORIG=${LD_LIBRARY_PATH:-}
if ls .devlibs/*.deb >/dev/null 2>&1; then
    command -v dpkg >/dev/null || die "dpkg not found: cannot unpack .devlibs"
    D=$WORK/devroot # never into / (docs/benchmarks.md, GPU machine); one per run
    mkdir -p "$D"
    for f in .devlibs/*.deb; do dpkg -x "$f" "$D" || echo "gpu.sh: dpkg -x $f failed"; done
    L=$D/usr/lib/x86_64-linux-gnu
    export LD_LIBRARY_PATH="$L:$L/openblas-pthread${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
fi
# site-packages of the Python that has PyTorch (its nvidia/*/lib hold cuDNN, cuBLAS, NVRTC)
SP=$(timeout -k 5 60 $PY -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))' 2>/dev/null ||
    timeout -k 5 20 $PY -c 'import site; print(site.getsitepackages()[0])' 2>/dev/null || true)
for d in "$SP"/nvidia/*/lib; do
    [ -d "$d" ] && export LD_LIBRARY_PATH="$d${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
done
# OpenBLAS 0.3.21's own kernels may be wrong on a newer CPU (docs/benchmarks.md): the parity tests
# compare against the cpu backend, so they use the kernel the tests use here.
export OPENBLAS_CORETYPE=${OPENBLAS_CORETYPE:-Haswell}
echo "python: $PY ($SP); pip CUDA packages: $(ls "$SP/nvidia" 2>/dev/null | tr '\n' ' ')"
echo "LD_LIBRARY_PATH=${LD_LIBRARY_PATH:-}"
missing=$(ldd "$G/wsml-gpubench" "$G/wsml-cudatest" "$G/wsml-train" "$G/libwsml-cuda.so" 2>&1 | grep -E "not found|No such" || true)
[ -z "$missing" ] || printf 'gpu.sh: MISSING LIBRARIES (the stages below will fail):\n%s\n' "$missing"

echo "== GPU"
if command -v nvidia-smi >/dev/null; then
    timeout -k 5 30 nvidia-smi --query-gpu=name,uuid,driver_version,memory.total,clocks.max.sm,power.limit \
        --format=csv 2>&1 | tee "$WORK/nvidia-smi.txt"
else
    echo "(no nvidia-smi)"
fi
describe=$(timeout -k 5 60 "$G/wsml-gpubench" --describe 2>&1)
drc=$?
echo "$describe" | tee "$WORK/describe.txt"
# the versions a run logs: driver and the cuDNN that loads here (cuBLAS is never loaded)
timeout -k 5 30 "$G/wsml-train" --version 2>&1 || true
if [ "$BACKEND" = cuda ] && [ $drc -ne 0 ] && ! timeout -k 5 30 nvidia-smi -L >/dev/null 2>&1; then
    die "no GPU here ($describe): nothing to run"
fi
: >"$OUTDIR/gpu-bench.jsonl"
: >"$OUTDIR/gpu-runs.jsonl"
cpus=$(nproc)
echo "cores: $cpus; $(grep -m1 'model name' /proc/cpuinfo 2>/dev/null)"
record setup finished $((SECONDS - T0)) "$drc"

for s in $STAGES; do
    case $s in
    parity | train | bench | sanitizer | extra) "stage_$s" ;;
    *) echo "gpu.sh: unknown stage '$s' in GPU_STAGES" ;;
    esac
    summary "$s"
done
FINAL=1 summary "all stages"
echo "gpu.sh: $([ "$SUMMARY_RC" = 0 ] && echo "every stage passed" || echo "NOT every stage passed (see above)"); results in $OUTDIR"
exit "$SUMMARY_RC"
