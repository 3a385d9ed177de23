# bench/gpu.sh's machinery, without a GPU (issue 11): the test runner's per-test cap, the
# script's stops (no build/gpu, no GPU), a hung step ended by its cap while later stages
# are skipped for time, the summary writer, the end-to-end checker and the scaling model,
# each on inputs whose right answer is known by hand.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
repo=$(cd "$WSML_TESTS/.." && pwd)
# A process that still runs: a killed one may linger as a zombie when its parent died too
# and this machine's PID 1 does not reap orphans.
running() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [ -n "$state" ] || return 1
    [ "${state#Z}" = "$state" ]
}

# ---- 1. the shim runner: pass, fail, skip, and a test that ignores SIGTERM and hangs --------
cat > t.c <<'EOF'
#include <criterion/criterion.h>
#include <signal.h>
#include <stdio.h>
#include <unistd.h>
Test(t, passes) { cr_expect(1 + 1 == 2); }
Test(t, fails) { cr_expect(1 + 1 == 3, "one plus one is %d", 1 + 1); }
Test(t, skips) { cr_skip_test("no GPU: none here"); }
Test(t, hangs, .timeout = 300) {
    FILE *f = fopen("hang.pid", "w");
    fprintf(f, "%d\n", (int)getpid());
    fclose(f);
    signal(SIGTERM, SIG_IGN);
    signal(SIGALRM, SIG_IGN);
    for (;;)
        pause();
}
EOF
cc -std=gnu11 -Wall -Wextra -Werror -I"$repo/bench/shim" -Wno-format-zero-length -o runner t.c \
    "$repo/bench/shim/runner.c" || fail "the shim runner does not build"
t0=$(date +%s)
rc=0
./runner --timeout 2 't/*' 2> runner.log || rc=$?
dt=$(( $(date +%s) - t0 ))
cat runner.log
[ "$rc" = 1 ] || fail "runner exit status $rc, expected 1"
[ "$dt" -le 8 ] || fail "a 2 s cap took $dt s"
grep -q '^\[PASS\] t/passes' runner.log || fail "t/passes"
grep -q '^\[FAIL\] t/fails' runner.log || fail "t/fails"
grep -q 'one plus one is 2' runner.log || fail "the failed expectation's message"
grep -q '^\[SKIP\] t/skips' runner.log || fail "t/skips"
grep -q '^\[FAIL\] t/hangs: timeout, killed after 2 s' runner.log || fail "t/hangs not killed"
grep -q 'Tested: 3 | Passing: 1 | Failing: 1 | Crashing: 1 | Skipped: 1' runner.log ||
    fail "synthesis line"
if running "$(cat hang.pid)"; then fail "the hung test's process survived"; fi
./runner 't/passes' 2>/dev/null || fail "a passing selection must exit 0"
rc=0; ./runner --timeout 0 2>err.txt || rc=$?
[ "$rc" = 2 ] && grep -q -- "--timeout '0'" err.txt || fail "--timeout 0: exit $rc, $(cat err.txt)"

# ---- 2. gpu.sh stops at once without build/gpu ----------------------------------------------
mkdir bin
printf '#!/bin/sh\necho "NVIDIA-SMI has failed" >&2\nexit 9\n' > bin/nvidia-smi
chmod +x bin/nvidia-smi
# python without site-packages: no PyTorch to import (slow here), the scripts need none
printf '#!/bin/sh\nexec %s -S "$@"\n' "$PYTHON" > bin/py
chmod +x bin/py
export PATH="$PWD/bin:$PATH" PYTHON_GPU=$PWD/bin/py
t0=$(date +%s)
rc=0
WSML_BUILD=$PWD/nob OUT=$PWD/out1 bash "$repo/bench/gpu.sh" > out1.txt 2>&1 || rc=$?
[ "$rc" = 3 ] || fail "no build/gpu: exit $rc"
grep -q "gpu/wsml-train is missing: run 'bash bench/gpu.sh --prepare'" out1.txt || fail "no build/gpu: $(cat out1.txt)"
[ $(( $(date +%s) - t0 )) -le 5 ] || fail "no build/gpu: did not stop at once"
[ "$(ls out1)" = gpu.log ] || fail "no build/gpu: left $(ls out1)"

# ---- 3. ... and without a GPU (what wsml-gpubench --describe says on this machine) ---------
G=$PWD/b/gpu
mkdir -p "$G/store"
touch "$G/libwsml-cuda.so" "$G/store/data.mdb"
printf '#!/bin/sh\nexit 0\n' > "$G/wsml-train"
printf '#!/bin/sh\n[ "$1" = --describe ] || exit 1\necho "GPU 0: cudaGetDeviceProperties: no CUDA-capable device is detected"\nexit 1\n' > "$G/wsml-gpubench"
printf '#!/bin/sh\necho "[====] Synthesis: Tested: 0"\n' > "$G/wsml-cudatest"
chmod +x "$G"/wsml-*
rc=0
WSML_BUILD=$PWD/b OUT=$PWD/out2 bash "$repo/bench/gpu.sh" > out2.txt 2>&1 || rc=$?
[ "$rc" = 3 ] || fail "no GPU: exit $rc"
grep -q "gpu.sh: no GPU here (GPU 0: cudaGetDeviceProperties: no CUDA-capable device" out2.txt ||
    fail "no GPU: $(tail -3 out2.txt)"
if grep -q "^== parity" out2.txt; then fail "no GPU: a stage ran"; fi

# ---- 4. a hung parity run: killed at its cap, later stages skipped for time, summary kept ---
cat > "$G/wsml-gpubench" <<'EOF'
#!/bin/sh
[ "$1" = --describe ] && { echo "FAKE GPU (sm_90), driver 13.0"; exit 0; }
exit 1
EOF
cat > "$G/wsml-cudatest" <<EOF
#!/bin/bash
echo \$\$ > $PWD/cudatest.pid
echo "[RUN ] cuda/hangs"
trap '' TERM
sleep 600
EOF
chmod +x "$G"/wsml-*
t0=$(date +%s)
rc=0
GPU_BUDGET=35 GPU_STAGES="parity train bench" WSML_BUILD=$PWD/b OUT=$PWD/out3 \
    bash "$repo/bench/gpu.sh" > out3.txt 2>&1 || rc=$?
dt=$(( $(date +%s) - t0 ))
cat out3.txt
[ "$rc" != 0 ] || fail "a hung parity stage must not end with exit 0"
[ "$dt" -le 45 ] || fail "budget 35 s, took $dt s"
grep -q -- '-- parity: timed out (exit 137' out3.txt || fail "parity not ended by its cap"
if running "$(cat cudatest.pid)"; then fail "the hung step survived"; fi
grep -q '^== train: SKIPPED (time' out3.txt || fail "train not skipped for time"
grep -q '^== bench: SKIPPED (time' out3.txt || fail "bench not skipped for time"
[ "$(grep -c '^== summary after' out3.txt)" = 4 ] || fail "a summary after each of 3 stages + the last"
ls out3
[ "$(ls out3 | wc -l)" -le 8 ] || fail "more than 8 result files"
$PYTHON - out3/gpu.json <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
st = d["stages"]
assert st["parity"]["status"] == "FAILED", st["parity"]
assert st["train"]["status"].startswith("incomplete (train: skipped"), st["train"]
assert st["bench"]["status"].startswith("incomplete (bench: skipped"), st["bench"]
assert st["sanitizer"]["status"] == "not run", st["sanitizer"]
assert any(s["step"] == "parity" and s["status"] == "timed out" for s in d["steps"]), d["steps"]
assert d["describe"].startswith("FAKE GPU"), d["describe"]
print("gpu.json after a hung parity stage: ok")
EOF

# ---- 5. the summary writer on hand-made results ----------------------------------------------
mkdir w
cat > w/parity.log <<'EOF'
[RUN ] cuda/a
[PASS] cuda/a (1.5 s)
cuda/b: worst gpu-vs-cpu error 2e-05 (conv)
[PASS] cuda/b (2.0 s)
[====] Synthesis: Tested: 2 | Passing: 2 | Failing: 0 | Crashing: 0 | Skipped: 0
EOF
echo '{"passed": true, "failures": []}' > w/train.json
echo '========= ERROR SUMMARY: 0 errors' > w/sanitizer.log
echo '{"step": "wsml tf32 b16 cudnnFind", "status": "passed", "seconds": 3, "rc": "0", "at_s": 99}' > w/steps.jsonl
# ours 200 img/s, PyTorch 100 img/s, 100 GFLOP per image on an H100 SXM (tf32 494.7 TFLOP/s):
# ratio 2.00x; ours 100 * 100e9 * 200 / 494.7e12 = 4.043% of peak, PyTorch 2.021%
cat > bench.jsonl <<'EOF'
{"tool": "flops", "arch": "resnet50", "size": 448, "train_flops_per_image": 100000000000}
{"tool": "versions", "gpu": "NVIDIA H100 80GB HBM3"}
not json: a line the benchmark printed
{"tool": "wsml", "precision": "tf32", "algo": "heuristic", "optimizer": "device", "arch": "resnet50", "size": 448, "batch": 16, "images_per_s": 200, "step_ms": 80, "peak_alloc_mib": 9000, "device_used_mib": 10000, "device": "x"}
{"tool": "pytorch", "mode": "tf32", "precision": "tf32", "batch": 16, "images_per_s": 100, "step_ms": 160, "peak_alloc_mib": 8000, "device_used_mib": 9000}
EOF
$PYTHON "$repo/bench/gpu_summary.py" --work w --bench bench.jsonl --out s.json --final > s.txt ||
    fail "summary of passing stages: $(cat s.txt)"
cat s.txt
grep -q 'train-gpu: ours=200.0 peer=100.0 ratio=2.00x (higher is better)' s.txt || fail "comparison line"
$PYTHON - s.json <<'EOF'
import json, sys
d = json.load(open(sys.argv[1]))
b = d["stages"]["bench"]
c = b["comparisons"][0]
assert abs(c["ratio"] - 2.0) < 1e-12, c
assert abs(c["ours_percent_of_peak"] - 4.0428) < 1e-3, c
assert abs(c["peer_percent_of_peak"] - 2.0214) < 1e-3, c
assert b["peak_table"] == "H100 SXM / H200", b["peak_table"]
assert all(d["stages"][s]["status"] == "passed" for s in d["stages"]), d["stages"]
print("summary: ratio and share of peak as computed by hand")
EOF
echo '[SKIP] cuda/c (0.1 s)' >> w/parity.log
rc=0; $PYTHON "$repo/bench/gpu_summary.py" --work w --bench bench.jsonl --out s.json > s.txt || rc=$?
[ "$rc" = 1 ] && grep -q "stage parity: FAILED: 2 passed, failed none, skipped \['cuda/c'\]" s.txt ||
    fail "a skipped parity test must fail the stage: $(cat s.txt)"

# ---- 6. the end-to-end checker on hand-made run directories -----------------------------------
cat > mkruns.py <<'EOF'
import json, os, struct, sys
root = sys.argv[1]
shift = float(os.environ.get("SHIFT", "0.5"))
losses = ["full", "an", "an-ls", "wan", "epr", "role", "ll-r", "ll-ct", "ll-cp"]
def st(path, step, value):
    blob = struct.pack("<2f", value, 1.0)
    head = json.dumps({"__metadata__": {"state.global_step": str(step)},
                       "w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    open(path, "wb").write(struct.pack("<Q", len(head)) + head + blob)
def run(name, test_map, epochs=3, final=True, falls=True, step=120, value=0.5):
    d = os.path.join(root, name); os.makedirs(d)
    with open(d + "/run.jsonl", "w") as f:
        for e in range(1, epochs + 1):
            loss = [0.4, 0.3, 0.2][e - 1] if falls else [0.2, 0.3, 0.4][e - 1]
            f.write(json.dumps({"epoch": e, "train_loss": loss, "val_map": 40 + e,
                                "time_s": 1.0 * e, "gpu_idle_frac": 0.1}) + "\n")
        if final:
            f.write(json.dumps({"event": "final", "test_map": test_map, "best_val_map": 43}) + "\n")
    for n in ("best", "last"):
        st(f"{d}/{n}.safetensors", step, value)
    open(os.path.join(root, name + ".rc"), "w").write("0\n")
ref = open(sys.argv[2], "w")
for i, l in enumerate(losses):
    for h in ("linear", "boostlu"):
        run(f"{l}-{h}", 40 + i + shift)             # gpu: SHIFT (0.5) above cpu seed 1
        for seed, m in ((1, 40 + i), (2, 40 + i + (1 if i % 2 else -1))):  # seed rms 1
            ref.write(json.dumps({"seed": seed, "run": f"{l}-{h}", "test_map": m}) + "\n")
for n in ("precision-fp32", "precision-bf16", "solo", "stopped"):
    run(n, 41)
run("stopped-at-50", None, epochs=1, final=False, step=50)
open(os.path.join(root, "stopped.resume.rc"), "w").write("0\n")
EOF
check() { $PYTHON "$repo/bench/gpu_train_check.py" check runs --backend cuda --reference ref.jsonl \
    --json t.json --runs r.jsonl > check.txt; }
$PYTHON mkruns.py runs ref.jsonl
check || fail "hand-made good runs: $(cat check.txt)"
grep -q '^resume: exact' check.txt && grep -q '^reference: ok: .* rms 0.50' check.txt ||
    fail "good runs: $(cat check.txt)"
[ "$(grep -c '"run": "ll-cp-linear"' r.jsonl)" = 4 ] || fail "merged run lines"
breaks=(
  "echo 1 > runs/stopped.rc|the run stopped by --max-steps exited 1"
  "rm runs/stopped-at-50/last.safetensors|left no readable last.safetensors"
  "cp runs/solo/run.jsonl runs/stopped-at-50/run.jsonl|wrote a final line"
  "sed -i 's/\"state.global_step\": \"50\"/\"state.global_step\": \"40\"/' runs/stopped-at-50/last.safetensors|at step 40, not 50"
  "sed -i 's/\"train_loss\": 0.2/\"train_loss\": 0.9/' runs/an-linear/run.jsonl|did not fall"
  "sed -i 's/, \"gpu_idle_frac\": 0.1//' runs/wan-boostlu/run.jsonl|gpu_idle_frac missing"
  "head -2 runs/epr-linear/run.jsonl > x && mv x runs/epr-linear/run.jsonl|2 epoch lines"
  "sed -i 's/\"test_map\": 43.5/\"test_map\": 60/' runs/wan-linear/run.jsonl|reference: FAILED"
  "rm -r runs ref.jsonl && SHIFT=1.2 $PYTHON mkruns.py runs ref.jsonl|reference: FAILED"
  "$PYTHON -c 'import sys; f=open(\"runs/stopped/last.safetensors\",\"r+b\"); f.seek(-4,2); f.write(bytes(4))'|resume: FAILED"
)
for b in "${breaks[@]}"; do
  rm -rf runs ref.jsonl r.jsonl
  $PYTHON mkruns.py runs ref.jsonl
  bash -c "${b%%|*}"
  if check; then fail "the checker passed after: ${b%%|*}"; fi
  grep -q -- "${b##*|}" check.txt || fail "after '${b%%|*}': expected '${b##*|}' in: $(cat check.txt)"
done
echo "checker: ${#breaks[@]} broken inputs refused"

# ---- 7. the scaling model against the hand-worked row of docs/benchmarks.md -----------------
$PYTHON "$repo/bench/gpu_scaling.py" > scaling.txt
grep -q '^| ib | 32 | 16 | 1500 | 10.67 | 5.52 | 65.9% | 89.3% |' scaling.txt || fail "scaling: $(cat scaling.txt)"
grep -q '^| ib | 32 | 16 | 10.67 | 5.52 | 65.9% | 89.3% |' "$repo/docs/benchmarks.md" ||
  fail "docs/benchmarks.md lacks the worked row"
echo "bench_gpu_script: ok"
