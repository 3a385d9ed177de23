# Exact resume (issues 4 and 7): a run killed with SIGKILL (first mid-epoch right after a
# checkpoint, then at random moments, a save included) and continued with --resume ends
# with the same weights, optimizer state, LL-Cp corrected labels, BN statistics and
# metrics as the uninterrupted run, bit for bit; the same for ROLE (its estimator G)
# stopped by --max-steps in the middle of an epoch. Shuffle and flips stay on.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
store=store
wsml-ingest --format fashion-mosaic --size 32 --train-count 400 --test-count 64 --out $store --quiet

cat > compare.py <<'EOF'
import json, struct, sys
import numpy as np

def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    tensors = {k: data[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in header.items()}
    return tensors, meta

def lines(path):
    out = []
    for l in open(path):
        j = json.loads(l)
        for k in ("time_s", "images_per_s", "step_s"):  # wall-clock figures differ between runs
            j.pop(k, None)
        out.append(j)
    return out

a, b = sys.argv[1], sys.argv[2]
for name in ("best.safetensors", "last.safetensors"):
    ta, ma = read_st(a + "/" + name)
    tb, mb = read_st(b + "/" + name)
    assert sorted(ta) == sorted(tb), "%s: tensor names differ" % name
    for k in ta:
        assert ta[k] == tb[k], "%s: tensor %s differs" % (name, k)
    ma.pop("state.train_seconds", None), mb.pop("state.train_seconds", None)
    ma.pop("state.jsonl_bytes", None), mb.pop("state.jsonl_bytes", None)
    ma.pop("wsml.crc32", None), mb.pop("wsml.crc32", None)  # covers the two above
    assert ma == mb, "%s: metadata differs: %s vs %s" % (name, ma, mb)
    print("%s: %d tensors identical" % (name, len(ta)))
la, lb = lines(a + "/run.jsonl"), lines(b + "/run.jsonl")
assert la == lb, "run.jsonl differs:\n%s\n%s" % (la, lb)
final = [l for l in la if l.get("event") == "final"]
assert len(final) == 1, "expected one final line"
print("run.jsonl: %d lines identical; final %s" % (len(la), final[0]))
if len(sys.argv) > 3:  # LL-Cp: the corrected labels must exist and be the same
    ta, _ = read_st(a + "/last.safetensors")
    n = len(ta["label_state.flips"]) // 16
    assert n > 0, "LL-Cp made no corrections: the test would not cover them"
    print("LL-Cp corrected labels: %d pairs identical" % n)
EOF

cat > state.py <<'EOF'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    m = json.loads(f.read(n))["__metadata__"]
print(m["state.epoch"], m["state.batches_done"], m["state.global_step"])
EOF

flags=(--store $store --arch resnet18 --width-mult 0.25 --loss ll-cp --delta-rel 2 --epochs 5
       --batch 16 --lr 1e-3 --save-every 3 --no-early-stop --threads 2 --trace)
t0=$(date +%s%N)
wsml-train "${flags[@]}" --out ref --quiet
ref_ms=$(( ($(date +%s%N) - t0) / 1000000 ))

# SIGKILL trials. A trial passes --resume always (the first one starts a new run).
# Trial 1 kills right after a checkpoint, trials 2 and 3 while a checkpoint is being
# written (its temp file exists: the rename has not happened), the others at a random
# moment within a third of the uninterrupted run's time.
steps_seen() { local n; n=$(grep -c '"step"' kill/run.jsonl 2>/dev/null) || true; echo "${n:-0}"; }
exec 9<> <(:) # read -t on it is a sleep without a fork
saves_killed=0
kill_during_save() { # PID
  local f waited=0
  while kill -0 "$1" 2>/dev/null && [ $waited -lt 20000 ]; do
    for f in kill/*.safetensors.tmp."$1"; do # this run's temp file, not a stale one
      if [ -e "$f" ]; then
        if kill -9 "$1" 2>/dev/null; then saves_killed=$((saves_killed + 1)); fi
        echo "killed while writing $f"
        return
      fi
    done
    read -r -t 0.001 -u 9 || true
    waited=$((waited + 1))
  done
}
mid_epoch_resumes=0
launched=0
for trial in 1 2 3 4 5 6 7; do
  if [ -f kill/last.safetensors ]; then
    read -r epoch batch step < <($PYTHON state.py kill/last.safetensors)
    echo "trial $trial resumes at epoch $epoch batch $batch step $step"
    if [ "$batch" -gt 0 ] && [ "$batch" -lt 20 ]; then mid_epoch_resumes=$((mid_epoch_resumes+1)); fi
  fi
  wsml-train "${flags[@]}" --out kill --resume --quiet &
  pid=$!
  launched=$((launched + 1))
  if [ $trial -eq 1 ]; then
    # right after the checkpoint of step 3 (its trace line 4 follows the save)
    for _ in $(seq 1 2000); do
      if [ "$(steps_seen)" -ge 5 ]; then break; fi
      sleep 0.005
    done
  elif [ $trial -le 3 ]; then
    kill_during_save $pid
  else
    ms=$(( 200 + RANDOM % (ref_ms / 3 > 800 ? ref_ms / 3 : 800) ))
    sleep "$((ms / 1000)).$(printf %03d $((ms % 1000)))"
  fi
  kill -9 $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  if grep -q '"event":"final"' kill/run.jsonl 2>/dev/null; then break; fi
done
[ $mid_epoch_resumes -ge 1 ] || { echo "no trial resumed mid-epoch after a checkpoint"; exit 1; }
[ $saves_killed -ge 1 ] || { echo "no trial was killed during a checkpoint save"; exit 1; }
wsml-train "${flags[@]}" --out kill --resume --quiet
if ls kill | grep -v -E '^(best|last)\.safetensors$|^run\.jsonl$|^config\.json$|^train\.log$'; then
  fail "temporary files left in the run directory"
fi
# train.log: every invocation appended its lines (a kill right at start-up may come before
# the first), every line whole (one write per line: no SIGKILL leaves half a line), and the
# last invocation ended with status 0
starts=$(grep -c ' wsml-train: start ' kill/train.log)
[ "$starts" -ge 2 ] && [ "$starts" -le $((launched + 1)) ] ||
  { echo "train.log: $starts invocations logged of $((launched + 1))"; exit 1; }
bad=$(grep -Evc '^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} \[kill\] wsml-train: ' kill/train.log || true)
[ "$bad" = 0 ] || { echo "train.log: $bad broken lines"; grep -Ev '^[0-9]{4}-' kill/train.log | head -3; exit 1; }
tail -n1 kill/train.log | grep -q 'wsml-train: exit status 0$' || { echo "train.log ends: $(tail -n1 kill/train.log)"; exit 1; }
echo "ok: train.log holds $starts of $((launched + 1)) invocations, every line whole"
$PYTHON compare.py ref kill llcp

# ROLE (estimator G and its Adam state) stopped by --max-steps mid-epoch, then resumed.
flags=(--store $store --arch resnet18 --width-mult 0.25 --loss role --epochs 2 --batch 16
       --lr 1e-3 --save-every 0 --no-early-stop --threads 2)
wsml-train "${flags[@]}" --out role-ref --quiet
wsml-train "${flags[@]}" --out role --max-steps 27 --quiet
test -f role/last.safetensors
if grep -q '"event":"final"' role/run.jsonl; then fail "--max-steps must not finish the run"; fi
read -r epoch batch step < <($PYTHON state.py role/last.safetensors)
[ "$epoch $batch $step" = "2 7 27" ] || { echo "max-steps checkpoint at $epoch $batch $step"; exit 1; }
wsml-train "${flags[@]}" --out role --resume --quiet
$PYTHON compare.py role-ref role

# Resuming a finished run only redoes the test pass; a changed option is refused.
wsml-train "${flags[@]}" --out role --resume --quiet
$PYTHON compare.py role-ref role
set +e
wsml-train "${flags[@]}" --out role --resume --lr 2e-3 --quiet 2> err.txt
rc=$?
set -e
[ $rc -eq 2 ] && grep -q -- "--lr" err.txt && [ "$(wc -l < err.txt)" -eq 1 ] || \
  { echo "changed --lr on resume: rc $rc, $(cat err.txt)"; exit 1; }
