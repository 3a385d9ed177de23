#!/usr/bin/env bash
# LinearInit (supplement §A, Cole et al.'s linear_init; docs/methods.md §3):
#  1. the frozen phase (--freeze-backbone) trains as PyTorch does Cole et al.'s linear
#     phase (tests/oracles/train_ref.py steps --frozen: backbone in eval mode, no gradient
#     through it, fc alone in Adam): per-step losses within 1e-4 relative;
#  2. it leaves every backbone tensor, BN running statistics included, byte-identical to
#     the weights it started from (only fc.* change);
#  3. a ROLE fine-tune with --init takes over the frozen run's best label estimates
#     (role.estimator_logits in its best.safetensors) through Cole et al.'s probability
#     round trip (sigmoid, clip to [1e-5, 1-1e-5], logit), checked with NumPy; from a
#     checkpoint without estimates, ROLE starts afresh and says so.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
store=store
wsml-ingest --format fashion-mosaic --size 32 --train-count 40 --test-count 8 --out $store --quiet
loud=(--store $store --arch resnet18 --width-mult 0.25 --batch 8 --threads 1)
base=("${loud[@]}" --quiet)

# a "pretrained" network with non-trivial BN statistics (the frozen phase must keep them)
wsml-train "${base[@]}" --out pre --loss full --epochs 2 --lr 1e-2 || fail "pretraining"

# ---- 1. the frozen phase against PyTorch (no shuffle, no flips: the oracle's order)
wsml-train "${base[@]}" --out fz-oracle --loss ll-ct --delta-rel 10 --init pre/best.safetensors \
  --freeze-backbone --no-shuffle --no-flip --lr 1e-3 --max-steps 10 --trace --no-early-stop \
  --epochs 3 || fail "frozen run"
$PYTHON -W ignore $WSML_TESTS/oracles/train_ref.py steps --store $store --init pre/best.safetensors \
  --arch resnet18 --base 16 --batch 8 --steps 10 --lr 1e-3 --loss ll-ct --delta-rel 10 --frozen \
  > torch-frozen.json || fail "oracle"
$PYTHON - fz-oracle/run.jsonl torch-frozen.json <<'EOF'
import json, sys
ours = [json.loads(l) for l in open(sys.argv[1]) if '"step"' in l]
ref = json.load(open(sys.argv[2]))
assert len(ours) == 10, "expected 10 trace lines, got %d" % len(ours)
worst = 0.0
for i, (o, l, m) in enumerate(zip(ours, ref["losses"], ref["modified"])):
    rel = abs(o["loss"] - l) / abs(l)
    worst = max(worst, rel)
    assert o["modified"] == m, "step %d: %d modified entries, PyTorch %d" % (i + 1, o["modified"], m)
    assert rel <= 1e-4, "step %d: loss %r, PyTorch %r (rel %.2e)" % (i + 1, o["loss"], l, rel)
assert ref["losses"][0] != ref["losses"][-1], "the head did not learn: the test would prove nothing"
print("frozen phase vs PyTorch: worst relative loss error %.2e over 10 steps" % worst)
EOF

# ---- 2. the ROLE frozen phase from --pretrained, then its backbone against the start
wsml-train "${base[@]}" --out fz --loss role --pretrained pre/best.safetensors --freeze-backbone \
  --no-flip --epochs 3 --lr 1e-2 || fail "frozen ROLE run"
cat > st.py <<'EOF'
import json, struct
import numpy as np
def read_st(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    header.pop("__metadata__", None)
    out = {}
    for k, h in header.items():
        raw = data[h["data_offsets"][0]:h["data_offsets"][1]]
        dt = {"F32": np.float32, "I64": np.int64, "I32": np.int32}.get(h["dtype"], np.uint8)
        out[k] = (raw, np.frombuffer(raw, dt).reshape(h["shape"]) if dt is not np.uint8 else None)
    return out
EOF
$PYTHON - pre/best.safetensors fz/best.safetensors fz/last.safetensors <<'EOF'
import sys
sys.path.insert(0, ".")
from st import read_st
pre = read_st(sys.argv[1])
for path in sys.argv[2:]:
    run = read_st(path)
    backbone = [k for k in pre if not k.startswith("fc.")]
    assert any("running_mean" in k for k in backbone) and any("num_batches_tracked" in k for k in backbone)
    changed = [k for k in backbone if run[k][0] != pre[k][0]]
    assert not changed, "%s: the frozen phase changed %s" % (path, changed[:5])
    assert run["fc.weight"][0] != pre["fc.weight"][0], "%s: fc did not train" % path
    print("%s: %d backbone tensors byte-identical to the start, fc trained" % (path, len(backbone)))
assert "role.estimator_logits" in read_st(sys.argv[2]), "best.safetensors lacks ROLE's estimates"
EOF

# ---- 3. the fine-tune takes the estimates over: after one step (batch 8 of 32 images)
# every row outside that batch still holds the carried value exactly
wsml-train "${loud[@]}" --out ft --loss role --init fz/best.safetensors --epochs 1 --lr 1e-4 \
  --max-steps 1 2> ft.err || fail "fine-tune: $(cat ft.err)"
$PYTHON - fz/best.safetensors ft/last.safetensors <<'EOF'
import sys
import numpy as np
sys.path.insert(0, ".")
from st import read_st
best = read_st(sys.argv[1])["role.estimator_logits"][1]
now = read_st(sys.argv[2])["role.estimator_logits"][1]
# Cole et al.: get_estimated_labels() = sigmoid(G) (float32), then inverse_sigmoid
p = (1 / (1 + np.exp(-best.astype(np.float32)))).astype(np.float32)
p = np.clip(p, np.float32(1e-5), np.float32(1 - 1e-5))
expected = np.log(p / (1 - p)).astype(np.float32)
same = np.all(np.isclose(now, expected, rtol=1e-5, atol=1e-5), axis=1)
n, batch = len(now), 8
assert same.sum() >= n - batch, "only %d of %d rows hold the carried estimates" % (same.sum(), n)
assert same.sum() < n, "the first step changed no row: the check of the others proves less"
fresh_like = np.abs(best).max() <= np.log(0.6 / 0.4) + 1e-6
assert not fresh_like, "the frozen run's estimates look untrained"
print("fine-tune: %d of %d rows hold the carried estimates (%d updated by step 1)"
      % (same.sum(), n, n - same.sum()))
EOF
grep -q "carried over" ft.err || fail "no line about the carried estimates: $(cat ft.err)"

# from a checkpoint without estimates (the pretraining run), ROLE starts afresh and says so
wsml-train "${loud[@]}" --out ft2 \
  --loss role --init pre/best.safetensors --epochs 1 --max-steps 1 2> ft2.err || fail "$(cat ft2.err)"
grep -q "holds no ROLE label estimates: they start afresh" ft2.err || fail "no such line: $(cat ft2.err)"

# --recipe paper with --init (a LinearInit fine-tune) starts from trained weights: the
# recipe's warning names the image size only, never "random weights"
wsml-train "${loud[@]}" --out ft3 --recipe paper --loss an --init pre/best.safetensors --batch 8 \
  --max-steps 1 2> ft3.err || fail "$(cat ft3.err)"
grep -q "this run uses the weights of --init on 32x32" ft3.err || fail "recipe warning: $(cat ft3.err)"
if grep -q "random weights" ft3.err; then fail "--init taken for random weights: $(cat ft3.err)"; fi
echo "LinearInit behaved"
