#!/usr/bin/env bash
# Data-parallel training (issue 13) on the cpu backend, 2 processes under mpirun:
#  1. --sync-bn: 2 processes x batch 4 train as 1 process x batch 8 (losses full and an,
#     store order, no flips, lr 1e-5): the per-step losses of run.jsonl --trace agree
#     within 1e-5 relative for 10 steps and the final weights within 1e-5 (numpy); without
#     --sync-bn they do not (each process's own BatchNorm statistics), which shows the
#     comparison can fail; one process with WSML_MPI=1 (the data-parallel path, MPI) equals a
#     plain run bit for bit;
#  2. LL-Cp: the checkpoint's corrected labels are the union of both processes' flips
#     (images of both shares, as many as the steps flipped in all); ROLE: one step changes
#     G's rows of the whole global batch (both shares) and no other; two identical runs
#     give identical files;
#  3. validation and test are sharded across the processes: their mAP equals wsml-eval's,
#     one process over the same checkpoint;
#  4. a process killed mid-epoch stops every process (mpirun names the rank and the
#     signal); --resume on 2 processes ends with the checkpoint of an uninterrupted run;
#     SIGTERM to mpirun stops every process after the same step with a checkpoint and one
#     line, and --resume ends the same way (also with --sync-bn); a process that fails (rank 0's disk full) stops
#     all with one line naming the rank and the cause, and its last checkpoint intact;
#     resuming with 1 process is refused; a NaN ends every process as diverged (exit 3).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
command -v mpirun > /dev/null || fail "mpirun not found (Debian: openmpi-bin, make deps)"
MPI=(mpirun --allow-run-as-root --oversubscribe -n 2)

wsml-ingest --format fashion-mosaic --size 32 --train-count 100 --test-count 24 --out store --quiet
net=(--store store --arch resnet18 --width-mult 0.25 --threads 1)

# ---- 0. one process failing in setup stops both, whichever (no hang): the collectives of
# setup are reached by every process in the same order (WSML_TEST_FAIL_SETUP, test only:
# RANK:POINT fails process RANK there; "connect" is right before rank 0 broadcasts the
# device communicator's id). A hang is timeout's exit 124.
for case in 0:connect 1:connect 1:store 0:backend; do
  rank=${case%%:*}
  rc=0
  timeout -k 5 60 "${MPI[@]}" -x WSML_TEST_FAIL_SETUP=$case wsml-train "${net[@]}" --batch 4 \
    --epochs 1 --out fail-${case/:/-} --quiet 2> err.txt || rc=$?
  cat err.txt
  [ $rc -ne 124 ] && [ $rc -ne 137 ] || fail "rank $rank failing at ${case#*:}: the job hung"
  [ $rc -ne 0 ] || fail "rank $rank failing at ${case#*:}: exit 0"
  [ "$(grep -c '^wsml-train: error: ' err.txt)" -eq 1 ] || fail "$case: expected one error line"
  grep -q "^wsml-train: error: rank $rank: WSML_TEST_FAIL_SETUP: failing at ${case#*:}" err.txt ||
    fail "$case: the error line does not name rank $rank and the cause"
done

# ---- 0b. srun without PMI wiring: each process is a world of one although the launcher
# started 2 (every one would train alone into the same run directory): refused
rc=0
SLURM_STEP_NUM_TASKS=2 SLURM_LOCALID=1 timeout -k 5 60 wsml-train "${net[@]}" --batch 4 \
  --epochs 1 --out alone --quiet 2> err.txt || rc=$?
cat err.txt
[ $rc -eq 2 ] || fail "MPI's 1 process of a launched 2: exit $rc, expected 2"
[ "$(wc -l < err.txt)" -eq 1 ] || fail "expected one line"
grep -q '^wsml-train: error: .*2 processes.*MPI.*1.*srun --mpi=pmix' err.txt || fail "$(cat err.txt)"
[ ! -e alone/run.jsonl ] || fail "the refused run wrote alone/run.jsonl"

# ---- 0c. the default device is the communicator's local rank (MPI's ranks on this node),
# not a launcher variable MPI does not agree with: one MPI process (WSML_MPI=1) is local
# rank 0 whatever SLURM_LOCALID says (config.json records the device picked)
WSML_MPI=1 SLURM_LOCALID=3 wsml-train "${net[@]}" --batch 4 --epochs 1 --max-steps 1 --out dev \
  --quiet || fail "WSML_MPI=1 SLURM_LOCALID=3: exit $?"
grep -q '"device": *0,' dev/config.json || fail "device: $(grep '"device"' dev/config.json)"
# and one info line names the all-reduce path taken (train.log keeps it under --quiet)
[ "$(grep -c 'data parallel: 1 process(es), gradients summed by MPI_Allreduce$' dev/train.log)" \
  -eq 1 ] || fail "no all-reduce path line in dev/train.log"

cat > st.py <<'EOF'
import json, struct
import numpy as np

DT = {"F32": np.float32, "I64": np.int64, "I32": np.int32}

def read(path):
    """tensors (numpy), metadata of a safetensors file"""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    return {k: np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]], DT[v["dtype"]])
            .reshape(v["shape"]) for k, v in header.items()}, meta

def lines(path, drop=("time_s", "images_per_s", "step_s")):
    out = []
    for l in open(path):
        j = json.loads(l)
        for k in drop:  # wall-clock figures differ between runs
            j.pop(k, None)
        out.append(j)
    return out

def same_runs(a, b):
    """identical run directories: every tensor, the metadata but for wall clock, run.jsonl"""
    for name in ("best.safetensors", "last.safetensors"):
        ta, ma = read(a + "/" + name)
        tb, mb = read(b + "/" + name)
        assert sorted(ta) == sorted(tb), "%s: tensor names differ" % name
        for k in ta:
            assert ta[k].tobytes() == tb[k].tobytes(), "%s %s: tensor %s differs" % (a, name, k)
        for m in (ma, mb):  # wall clock and what covers it
            for k in ("state.train_seconds", "state.jsonl_bytes", "wsml.crc32"):
                m.pop(k, None)
        assert ma == mb, "%s: metadata differs: %s vs %s" % (name, ma, mb)
    assert lines(a + "/run.jsonl") == lines(b + "/run.jsonl"), "run.jsonl differs"
    print("%s = %s: checkpoints and run.jsonl identical" % (a, b))
EOF

# ---- 1. --sync-bn: 2 x 4 = 1 x 8
fixed=("${net[@]}" --no-shuffle --no-flip --lr 1e-5 --epochs 1 --max-steps 10 --trace --quiet)
for loss in full an; do
  wsml-train "${fixed[@]}" --loss "$loss" --batch 8 --out one-$loss || fail "1 x 8 ($loss) exited $?"
  "${MPI[@]}" wsml-train "${fixed[@]}" --loss "$loss" --batch 4 --sync-bn --out two-$loss ||
    fail "2 x 4 --sync-bn ($loss) exited $?"
done
"${MPI[@]}" wsml-train "${fixed[@]}" --loss an --batch 4 --out two-nosync || fail "2 x 4 exited $?"
cat > same_steps.py <<'EOF'
import sys
import numpy as np
from st import lines, read
one, two, expect = sys.argv[1], sys.argv[2], sys.argv[3]
la = [l["loss"] for l in lines(one + "/run.jsonl") if "step" in l]
lb = [l["loss"] for l in lines(two + "/run.jsonl") if "step" in l]
assert len(la) == len(lb) == 10, "expected 10 steps, got %d and %d" % (len(la), len(lb))
rel = max(abs(a - b) / abs(a) for a, b in zip(la, lb))
ta, _ = read(one + "/last.safetensors")
tb, _ = read(two + "/last.safetensors")
assert sorted(ta) == sorted(tb)
worst, name = 0.0, ""
for k in ta:
    if ta[k].dtype == np.float32:
        d = float(np.max(np.abs(ta[k].astype(np.float64) - tb[k]) / np.maximum(1.0, np.abs(ta[k]))))
        if d > worst:
            worst, name = d, k
    else:
        assert np.array_equal(ta[k], tb[k]), "%s differs" % k
same = rel <= 1e-5 and worst <= 1e-5
print("%s vs %s: per-step losses within %.2g relative, weights within %.2g (%s)" %
      (one, two, rel, worst, name))
assert same == (expect == "same"), "expected %s" % expect
EOF
for loss in full an; do
  $PYTHON same_steps.py one-$loss two-$loss same || fail "2 x 4 --sync-bn differs from 1 x 8 ($loss)"
done
$PYTHON same_steps.py one-an two-nosync different ||
  fail "without --sync-bn 2 x 4 should differ from 1 x 8 (per-process BatchNorm statistics)"
grep -q '"world_size": 2' two-an/config.json || fail "config.json does not record world_size 2"
# WSML_MPI=1: one process on the data-parallel path (MPI, all-reduces with itself) trains
# exactly as a plain process, bit for bit
WSML_MPI=1 wsml-train "${fixed[@]}" --loss an --batch 8 --out forced || fail "WSML_MPI=1 exited $?"
grep -q 'data parallel: 1 processes (mpi)' forced/train.log || fail "WSML_MPI=1 did not use MPI"
$PYTHON - <<'EOF'
from st import lines, read
a, b = read("one-an/last.safetensors")[0], read("forced/last.safetensors")[0]
assert sorted(a) == sorted(b) and all(a[k].tobytes() == b[k].tobytes() for k in a), \
    "WSML_MPI=1 changed the weights"
assert [l["loss"] for l in lines("one-an/run.jsonl")] == [l["loss"] for l in lines("forced/run.jsonl")]
print("WSML_MPI=1, one process: weights and losses identical to a plain run")
EOF
grep -q '"sync_bn": true' two-an/config.json || fail "config.json does not record sync_bn"

# ---- 2. LL-Cp and ROLE: the state of both processes, identical reruns
cp_flags=("${net[@]}" --no-shuffle --loss ll-cp --delta-rel 5 --lr 1e-3 --epochs 3 --batch 4 --trace
          --quiet)
for i in a b; do
  "${MPI[@]}" wsml-train "${cp_flags[@]}" --out cp-$i || fail "LL-Cp run $i exited $?"
done
$PYTHON - <<'EOF'
from st import lines, read, same_runs
same_runs("cp-a", "cp-b")
t, _ = read("cp-a/last.safetensors")
pairs = t["label_state.flips"].reshape(-1, 2)
flipped = sum(l["flips"] for l in lines("cp-a/run.jsonl") if "step" in l)
# store order, 2 x 4: global batch b = images 8b..8b+7, rank 0 takes 8b..8b+3, rank 1 the rest
ranks = {int(i) % 8 >= 4 for i in pairs[:, 0]}
print("LL-Cp: %d corrected labels, %d flips in the steps, from ranks %s" %
      (len(pairs), flipped, sorted(ranks)))
assert len(pairs) > 0 and len(pairs) == flipped, "the checkpoint lacks some process's flips"
assert ranks == {False, True}, "the corrections come from one process only"
EOF

role=("${net[@]}" --no-shuffle --loss role --lr 1e-3 --epochs 1 --batch 4 --quiet)
"${MPI[@]}" wsml-train "${role[@]}" --max-steps 1 --out role-1 || fail "ROLE 1 step exited $?"
"${MPI[@]}" wsml-train "${role[@]}" --max-steps 2 --out role-2 || fail "ROLE 2 steps exited $?"
"${MPI[@]}" wsml-train "${role[@]}" --max-steps 2 --out role-2b || fail "ROLE rerun exited $?"
$PYTHON - <<'EOF'
import numpy as np
from st import read
g1 = read("role-1/last.safetensors")[0]["role.estimator_logits"]
g2 = read("role-2/last.safetensors")[0]["role.estimator_logits"]
g2b = read("role-2b/last.safetensors")[0]["role.estimator_logits"]
assert g2.tobytes() == g2b.tobytes(), "two identical ROLE runs differ"
changed = np.flatnonzero(np.any(g1 != g2, axis=1))
# step 2's global batch is images 8..15 (rank 0: 8..11, rank 1: 12..15); Adam's momentum
# also moves step 1's rows 0..7; rows never in a batch have zero moments and stay put
print("ROLE: rows changed by step 2:", changed.tolist())
assert set(range(8, 16)) <= set(changed.tolist()), "rows of a process's share were not updated"
assert set(changed.tolist()) <= set(range(16)), "rows outside the batches changed"
EOF

# ---- 3. sharded validation and test = one process's mAP over the same checkpoint
$PYTHON - > picks.txt <<'EOF'
from st import lines
runs = lines("cp-a/run.jsonl")
final = [l for l in runs if l.get("event") == "final"][0]
print("%.17g %.17g" % (final["best_val_map"], final["test_map"]))
EOF
read -r val_map test_map < picks.txt
for split in val test; do
  wsml-eval --store store --model cp-a/best.safetensors --split $split --batch 4 --threads 1 \
    --json --quiet > ev-$split.json || fail "wsml-eval $split exited $?"
done
$PYTHON - "$val_map" "$test_map" <<'EOF'
import json, sys
val, test = float(sys.argv[1]), float(sys.argv[2])
ev = json.load(open("ev-val.json"))["map"], json.load(open("ev-test.json"))["map"]
print("2 processes: val %.17g test %.17g; wsml-eval (1 process): val %.17g test %.17g" %
      (val, test, ev[0], ev[1]))
assert (val, test) == ev, "sharded mAP differs from one process's"
EOF

# ---- 4. failures and exact resume
wsml-ingest --format fashion-mosaic --size 32 --train-count 800 --test-count 16 --out big --quiet
# 4 epochs (320 steps, ~5 s): mpirun passes a SIGTERM on to its processes only ~2 s later
kr=(--store big --arch resnet18 --width-mult 0.25 --threads 1 --batch 4 --epochs 4 --loss ll-cp
    --delta-rel 5 --lr 1e-3 --save-every 5 --no-early-stop --quiet)
"${MPI[@]}" wsml-train "${kr[@]}" --out ref || fail "uninterrupted run exited $?"
step_of() { # the global step last.safetensors holds (0 without one), from its header
  local s
  s=$(head -c 65536 "$1/last.safetensors" 2> /dev/null | tr -d '\0' |
      grep -ao '"state.global_step":"[0-9]*"' | grep -o '[0-9]*' | head -n 1) || true
  echo "${s:-0}"
}
# this test's ranks (other wsml-train processes may run on the machine): rank R's pid
rank_pid() {
  local p
  for p in $(pgrep -x wsml-train); do
    [ "$(readlink /proc/$p/cwd 2> /dev/null)" = "$PWD" ] || continue
    if tr '\0' '\n' < /proc/$p/environ 2> /dev/null | grep -qx "OMPI_COMM_WORLD_RANK=$1"; then
      echo "$p"
    fi
  done
}
alive() { # PID: running (a zombie is not: this machine's PID 1 may not reap orphans)
  local state
  state=$(ps -o stat= -p "$1" 2> /dev/null) || return 1
  if [ -n "$state" ] && [ "${state#Z}" = "$state" ]; then return 0; fi
  return 1
}
rc=0
"${MPI[@]}" wsml-train "${kr[@]}" --out kill > kill.out 2> kill.err & launcher=$!
victim="" other=""
for _ in $(seq 200); do
  victim=$(rank_pid 1) other=$(rank_pid 0)
  if [ -n "$victim" ] && [ -n "$other" ]; then break; fi
  sleep 0.05
done
[ -n "$victim" ] && [ -n "$other" ] || fail "found no ranks 0 and 1 to watch"
for _ in $(seq 1200); do # a checkpoint mid-epoch 1 first (80 steps per epoch)
  if [ "$(step_of kill)" -ge 5 ]; then break; fi
  sleep 0.02
done
kill -9 "$victim"
wait $launcher || rc=$?
cat kill.err
[ $rc -ne 0 ] || fail "a killed rank: mpirun exited 0"
grep -q 'rank 1 .*exited on signal 9' kill.err || fail "no line naming rank 1 and its signal"
sleep 0.5
if alive "$other"; then fail "rank 0 outlived the job"; fi
step=$(step_of kill)
echo "killed rank 1 with last.safetensors at step $step"
[ "$step" -ge 5 ] && [ "$step" -lt 80 ] || fail "not killed mid-epoch 1: the test covers nothing"
"${MPI[@]}" wsml-train --out kill --resume --quiet || fail "--resume on 2 processes exited $?"
$PYTHON -c 'from st import same_runs; same_runs("ref", "kill")'

# SIGTERM to the launcher (a Slurm time limit): mpirun passes it on, every process stops
# after the same step with a checkpoint, one line says so; --resume ends as the reference
term_run() { # OUT FLAGS...: a run stopped by SIGTERM to mpirun after a mid-epoch checkpoint
  local out=$1 rc=0 launcher
  shift
  "${MPI[@]}" wsml-train "$@" --out "$out" > "$out.out" 2> "$out.err" & launcher=$!
  for _ in $(seq 1200); do
    if [ "$(step_of "$out")" -ge 5 ]; then break; fi
    sleep 0.02
  done
  kill -TERM $launcher
  wait $launcher || rc=$?
  cat "$out.err"
  [ $rc -ne 0 ] || fail "SIGTERM ($out): mpirun exited 0"
  [ "$(grep -c "^wsml-train: error: interrupted at epoch [0-9]* step [0-9]*; $out/last.safetensors saved" \
        "$out.err")" -eq 1 ] || fail "SIGTERM ($out): expected one 'interrupted' line"
  local step
  step=$(step_of "$out")
  [ "$step" -ge 5 ] && [ "$step" -lt 320 ] || fail "$out: stopped at step $step, not mid-run"
}
term_run term "${kr[@]}"
# an unfinished 2-process run resumed by 1 process: refused, nothing changed
cp term/last.safetensors term-last.before
rc=0
wsml-train --out term --resume --quiet 2> err.txt || rc=$?
cat err.txt
[ $rc -eq 2 ] || fail "resuming a 2-process run with 1 process: exit $rc, expected 2"
grep -q 'trained by 2 process(es) and is resumed by 1' err.txt || fail "$(cat err.txt)"
cmp term/last.safetensors term-last.before || fail "a refused resume changed last.safetensors"
"${MPI[@]}" wsml-train --out term --resume --quiet || fail "--resume after SIGTERM exited $?"
$PYTHON -c 'from st import same_runs; same_runs("ref", "term")'
# the same with --sync-bn: the resumed run is the uninterrupted one bit for bit
"${MPI[@]}" wsml-train "${kr[@]}" --sync-bn --out ref-sb || fail "--sync-bn run exited $?"
grep -q '"sync_bn": *true' ref-sb/config.json || fail "config.json does not record --sync-bn"
term_run term-sb "${kr[@]}" --sync-bn
"${MPI[@]}" wsml-train --out term-sb --resume --quiet || fail "--sync-bn --resume exited $?"
$PYTHON -c 'from st import same_runs; same_runs("ref-sb", "term-sb")'


# a NaN in step 2 (the weights overflow): every process ends the run as diverged, exit 3,
# and one line says so
rc=0
"${MPI[@]}" wsml-train "${net[@]}" --batch 4 --loss an --lr 1e30 --save-every 1 --epochs 2 \
  --out nan --quiet 2> err.txt || rc=$?
cat err.txt
[ $rc -eq 3 ] || fail "a diverged 2-process run: exit $rc, expected 3"
[ "$(grep -c 'diverged at epoch 1 step 2' err.txt)" -eq 1 ] || fail "expected one 'diverged' line"
grep -q '"status":"diverged"' nan/run.jsonl || fail "run.jsonl's final line lacks status diverged"

mkdir -p full
if mount -t tmpfs -o size=15m tmpfs full 2> /dev/null; then
  trap 'umount full 2> /dev/null || true' EXIT
  rc=0
  "${MPI[@]}" wsml-train --store big --arch resnet18 --width-mult 0.25 --threads 1 --batch 8 \
    --loss ll-cp --save-every 3 --epochs 2 --out full/run --quiet 2> err.txt & launcher=$!
  ranks=""
  for _ in $(seq 100); do
    ranks="$(rank_pid 0) $(rank_pid 1)"
    if [ "$(echo $ranks | wc -w)" -eq 2 ]; then break; fi
    sleep 0.05
  done
  wait $launcher || rc=$?
  cat err.txt
  [ $rc -ne 0 ] || fail "disk full on rank 0: exit 0"
  [ "$(grep -c '^wsml-train: error: ' err.txt)" -eq 1 ] || fail "expected one error line"
  grep -q '^wsml-train: error: rank 0: .*last.safetensors.*No space left on device' err.txt ||
    fail "the error line does not name rank 0 and the cause"
  if ls full/run | grep -q '\.tmp\.'; then fail "a temporary file was left behind"; fi
  $PYTHON -c 'from st import read; read("full/run/last.safetensors")' ||
    fail "the last good checkpoint is damaged"
  sleep 0.5
  for p in $ranks; do
    if alive "$p"; then fail "rank pid $p outlived the job"; fi
  done
else
  optional_part "the disk-full case: cannot mount a tmpfs here (needs root)"
fi
echo "data parallel: ok"
