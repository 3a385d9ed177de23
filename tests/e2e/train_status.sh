#!/usr/bin/env bash
# How a run ends (issue 14): run.jsonl's final line carries "status" — "ok", "early-stopped"
# or "diverged". A NaN/Inf ends the run as finished ("diverged", exit 3, one line saying
# where; last.safetensors keeps the last good state). --resume of any finished run does
# nothing (run.jsonl untouched) and exits with the run's status; flags that change the
# numbers must still agree with config.json.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
store=store
wsml-ingest --format fashion-mosaic --size 32 --train-count 40 --test-count 8 --out $store --quiet
base=(--store $store --arch resnet18 --width-mult 0.25 --batch 8 --threads 1 --quiet)

final() { # final RUNDIR KEY: the final line's value of KEY (JSON)
  $PYTHON - "$1/run.jsonl" "$2" <<'EOF'
import json, sys
finals = [json.loads(l) for l in open(sys.argv[1]) if '"event"' in l]
finals = [f for f in finals if f.get("event") == "final"]
assert len(finals) == 1, "expected one final line, got %d" % len(finals)
print(json.dumps(finals[0].get(sys.argv[2], "<absent>")))
EOF
}

# resume_noop RUNDIR STATUS: --resume does nothing, exits STATUS, leaves run.jsonl as it was
resume_noop() {
  local before rc
  before=$(md5sum < "$1/run.jsonl")
  set +e
  wsml-train --out "$1" --resume 2> resume.err
  rc=$?
  set -e
  [ $rc -eq "$2" ] || fail "--resume of finished $1: exit $rc, expected $2: $(cat resume.err)"
  grep -q "$1 is a finished run (status .*): nothing to do" resume.err ||
    fail "--resume of $1: no info line: $(cat resume.err)"
  [ "$(md5sum < "$1/run.jsonl")" = "$before" ] || fail "--resume of finished $1 changed run.jsonl"
  echo "ok: --resume of $1 is a no-op with exit $rc"
}

# ---- diverged: SGD at lr 1e20 overflows in the first steps
set +e
wsml-train "${base[@]}" --out div --optimizer sgd --lr 1e20 --epochs 2 2> div.err
rc=$?
set -e
[ $rc -eq 3 ] || fail "diverging run: exit $rc, expected 3: $(cat div.err)"
[ "$(wc -l < div.err)" -eq 1 ] || fail "diverging run: expected one line: $(cat div.err)"
grep -q 'diverged at epoch 1 step [0-9]*: .*nan.*status "diverged"' div.err ||
  fail "the line does not say where it diverged: $(cat div.err)"
[ "$(final div status)" = '"diverged"' ] || fail "status: $(final div status)"
[ "$(final div diverged_epoch)" = 1 ] || fail "diverged_epoch: $(final div diverged_epoch)"
[ "$(final div best_epoch)" = null ] && [ "$(final div test_map)" = null ] ||
  fail "no epoch completed: best_epoch and test_map must be null"
[ "$(final div early_stopped)" = false ] || fail "early_stopped of a diverged run"
grep -q "exit status 3" div/train.log || fail "train.log lacks the exit status"
resume_noop div 3
# a finished run still refuses flags that differ from its config.json
set +e
wsml-train --out div --resume --lr 1 2> err.txt
rc=$?
set -e
[ $rc -eq 2 ] && grep -q -- "--lr 1 differs" err.txt || fail "differing flag on resume: $rc $(cat err.txt)"

# ---- diverged after a completed epoch (SGD at lr 30 on this fixture: epoch 3's val scores
# are NaN): best_epoch and the test mAP of that epoch are kept
set +e
wsml-train "${base[@]}" --out div2 --optimizer sgd --lr 30 --epochs 6 2> div2.err
rc=$?
set -e
[ $rc -eq 3 ] || fail "div2: exit $rc, expected 3: $(cat div2.err)"
[ "$(final div2 status)" = '"diverged"' ] || fail "div2 status: $(final div2 status)"
[ "$(final div2 best_epoch)" = 1 ] && [ "$(final div2 epochs_run)" = 2 ] ||
  fail "div2: best_epoch $(final div2 best_epoch), epochs_run $(final div2 epochs_run)"
[ "$(final div2 diverged_epoch)" = 3 ] || fail "div2: diverged_epoch $(final div2 diverged_epoch)"
$PYTHON -c "import sys; v = float(sys.argv[1]); assert 0 <= v <= 100" "$(final div2 test_map)" ||
  fail "div2: the best epoch's test mAP is missing: $(final div2 test_map)"
grep -q 'best epoch 1, val mAP' div2.err || fail "div2: the line lacks the best epoch: $(cat div2.err)"
resume_noop div2 3
# ... and when even the best epoch's weights give NaN test scores (lr 100): test_map null
set +e
wsml-train "${base[@]}" --out div3 --optimizer sgd --lr 100 --epochs 6 2> div3.err
rc=$?
set -e
[ $rc -eq 3 ] || fail "div3: exit $rc, expected 3: $(cat div3.err)"
[ "$(final div3 status)" = '"diverged"' ] && [ "$(final div3 best_epoch)" = 1 ] &&
  [ "$(final div3 test_map)" = null ] || fail "div3: $(tail -n1 div3/run.jsonl)"

# ---- ok: a normal run
wsml-train "${base[@]}" --out ok --epochs 2 --lr 1e-3 2> ok.err || fail "normal run: $(cat ok.err)"
[ "$(final ok status)" = '"ok"' ] || fail "normal run status: $(final ok status)"
[ "$(final ok early_stopped)" = false ] || fail "normal run early_stopped"
resume_noop ok 0

# ---- early-stopped: Adam at lr 1e-2 on this fixture falls >3 points below epoch 1's val mAP
wsml-train "${base[@]}" --out early --epochs 8 --lr 1e-2 2> early.err || fail "$(cat early.err)"
[ "$(final early early_stopped)" = true ] || fail "the fixture run did not stop early (the test needs it)"
[ "$(final early status)" = '"early-stopped"' ] || fail "early run status: $(final early status)"
resume_noop early 0
# a final line written before there was a "status" (older wsml): read from "early_stopped"
cp -r early legacy
sed -i 's/"status":"early-stopped",//' legacy/run.jsonl
if grep -q '"status"' legacy/run.jsonl; then fail "could not strip the status"; fi
resume_noop legacy 0
grep -q "legacy is a finished run (status early-stopped)" resume.err || fail "legacy: $(cat resume.err)"
echo "all run statuses behaved"
