# wsml-train's failure behaviour: a NaN loss ends the run (status "diverged") with one clear
# line and exit 3 while last.safetensors keeps the last good (finite) state; bad flags exit
# 2 with one line; a run directory in the way is refused; SIGTERM saves and exits non-zero, and the
# run then resumes to the end.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
store=store
wsml-ingest --format fashion-mosaic --size 32 --train-count 40 --test-count 8 --out $store --quiet
base=(--store $store --arch resnet18 --width-mult 0.25 --batch 8 --threads 2 --quiet)

expect_fail() { # expect_fail CODE PATTERN -- args...
  local code=$1 pattern=$2; shift 3
  set +e
  wsml-train "$@" > out.txt 2> err.txt
  local rc=$?
  set -e
  if [ $rc -ne "$code" ] || ! grep -q -e "$pattern" err.txt || [ "$(wc -l < err.txt)" -ne 1 ] \
     || ! grep -q '^wsml-train: error: ' err.txt; then
    echo "wsml-train $*: expected exit $code and one line matching '$pattern', got $rc:"
    cat err.txt
    exit 1
  fi
  echo "ok ($rc): $(cat err.txt)"
}

# ---- NaN: the weights overflow after the first step (BN absorbs any finite scale, so
# only an overflow makes the loss NaN); step 1 was saved, step 2 diverges: the run ends as
# finished with status "diverged" and exit 3 (tests/e2e/train_status.sh has the rest).
set +e
wsml-train "${base[@]}" --out nan --loss an --lr 1e30 --save-every 1 --epochs 2 2> err.txt
rc=$?
set -e
[ $rc -eq 3 ] || fail "NaN run: exit $rc, expected 3: $(cat err.txt)"
if [ "$(wc -l < err.txt)" -ne 1 ] || ! grep -q 'diverged at epoch 1 step 2: .*nan.*keeps step 1' err.txt; then
  echo "NaN run: expected one line saying where it diverged:"; cat err.txt; exit 1
fi
test ! -f nan/best.safetensors
grep -q '"event":"final","status":"diverged"' nan/run.jsonl || fail "no diverged final line"
$PYTHON - nan/last.safetensors <<'EOF'
import json, struct, sys
import numpy as np
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    data = f.read()
meta = header.pop("__metadata__")
assert meta["state.global_step"] == "1", meta
for name, h in header.items():
    if h["dtype"] == "F32":
        x = np.frombuffer(data[h["data_offsets"][0]:h["data_offsets"][1]], np.float32)
        assert np.isfinite(x).all(), "%s is not finite in the kept checkpoint" % name
print("kept checkpoint: step 1, %d tensors, all finite" % len(header))
EOF

# ---- usage errors: exit 2, one line naming the flag
expect_fail 2 "--loss 'foo'" -- "${base[@]}" --out u --loss foo
expect_fail 2 "--batch '0'" -- "${base[@]}" --out u --batch 0
expect_fail 2 "--lr 'abc'" -- "${base[@]}" --out u --lr abc
expect_fail 2 "--arch 'resnet19'" -- "${base[@]}" --out u --arch resnet19
expect_fail 2 "--threshold 'middle'" -- "${base[@]}" --out u --threshold middle
expect_fail 2 "--delta-rel '-1'" -- "${base[@]}" --out u --delta-rel -1
expect_fail 2 "--optimizer 'rmsprop'" -- "${base[@]}" --out u --optimizer rmsprop
expect_fail 2 "--head 'mlp'" -- "${base[@]}" --out u --head mlp
expect_fail 2 "unknown option '--frobnicate'" -- "${base[@]}" --out u --frobnicate
expect_fail 2 "--epochs: missing value" -- "${base[@]}" --out u --epochs
expect_fail 2 "--out is required" -- "${base[@]}"
expect_fail 2 "--freeze-backbone needs" -- "${base[@]}" --out u --freeze-backbone
expect_fail 2 "--reference-quirks only" -- "${base[@]}" --out u --loss an --reference-quirks
test ! -e u/last.safetensors

# ---- runtime errors: exit 1, one line naming the file
expect_fail 1 "no-such-store" -- "${base[@]}" --out u --store no-such-store
wsml-ingest --format fashion-mosaic --size 16 --train-count 20 --test-count 4 --out store16 --quiet
expect_fail 1 "16x16 images.*\[32, 8192\]" -- "${base[@]}" --out u --store store16
wsml-train "${base[@]}" --out done --epochs 1
expect_fail 1 "finished run.*--force" -- "${base[@]}" --out done --epochs 1
wsml-train "${base[@]}" --out done --epochs 1 --force
wsml-train "${base[@]}" --out part --epochs 2 --max-steps 2
expect_fail 1 "unfinished run.*--resume" -- "${base[@]}" --out part --epochs 2

# ---- SIGTERM: finish the step, save, exit non-zero; --resume finishes the run
wsml-train --store $store --arch resnet18 --width-mult 0.25 --batch 8 --threads 2 --out sig \
  --epochs 40 --trace --save-every 0 2> sig.err &
pid=$!
for _ in $(seq 1 2000); do
  if grep -q '"step":3,' sig/run.jsonl 2>/dev/null; then break; fi
  sleep 0.005
done
kill -TERM $pid
set +e
wait $pid
rc=$?
set -e
[ $rc -eq 1 ] || { echo "SIGTERM: exit $rc, expected 1"; cat sig.err; exit 1; }
grep -q "interrupted at epoch .* continue with --resume" sig.err || { cat sig.err; exit 1; }
test -f sig/last.safetensors
if grep -q '"event"' sig/run.jsonl; then fail "an interrupted run must not look finished"; fi
wsml-train --store $store --out sig --resume --epochs 2 --quiet
grep -q '"event":"final"' sig/run.jsonl

# ---- --help
wsml-train --help > help.txt
grep -q "Examples:" help.txt || fail "wsml-train --help has no Examples:"
grep -q -- "--recipe paper" help.txt || fail "wsml-train --help does not show --recipe paper"
echo "all error cases behaved"
