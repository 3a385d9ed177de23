#!/usr/bin/env bash
# EPR/ROLE's expected positives per image (issue 14): Cole et al.'s constant is keyed by
# the dataset the store's info records (its format, or its ingest --name for a generic
# format), never by the store's directory name; an unknown dataset gets one warning line
# naming the default used, the train split's mean positives per image (checked against
# the store read independently by tests/oracles/train_ref.py's reader).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
net=(--arch resnet18 --width-mult 0.25 --batch 8 --threads 1 --epochs 1 --max-steps 1)
epr_k() { $PYTHON -c 'import json,sys; print(json.load(open(sys.argv[1]))["epr_k"])' "$1/config.json"; }

# a mosaic store in a directory called "coco": not COCO's 2.9, a warning and the mean
wsml-ingest --format fashion-mosaic --size 32 --train-count 40 --test-count 8 --out coco --quiet
wsml-train --store coco --out a "${net[@]}" --loss epr --quiet 2> a.err || fail "$(cat a.err)"
[ "$(wc -l < a.err)" -eq 1 ] || fail "expected one warning line: $(cat a.err)"
grep -q "dataset 'fashion-mosaic' (format fashion-mosaic) has no expected-positives constant.*using the train split's mean positives per image, [0-9.]* (--epr-k sets it)" a.err ||
  fail "the warning does not name the dataset and the default: $(cat a.err)"
mean=$($PYTHON - coco <<'EOF'
import sys
sys.path.insert(0, __import__("os").environ["WSML_TESTS"] + "/oracles")
from train_ref import read_store
_, _, full = read_store(sys.argv[1], "train")
print(repr(float((full == 1).sum()) / len(full)))
EOF
)
$PYTHON -c "import sys; a, b = float(sys.argv[1]), float(sys.argv[2]); assert abs(a - b) < 1e-12, (a, b)" \
  "$(epr_k a)" "$mean" || fail "epr_k $(epr_k a), the store's mean positives per image $mean"
k=$(epr_k a)
[ "$k" != 2.9 ] || fail "the directory name picked COCO's constant"
grep -q "mean positives per image, $($PYTHON -c "print('%.4g' % $mean)") " a.err || fail "the warning's value"

# the same images ingested as --name NUS-WIDE (a store directory called "mystore"): 1.9
wsml-ingest --format fashion-mosaic --name NUS-WIDE --size 32 --train-count 40 --test-count 8 \
  --out mystore --quiet
wsml-train --store mystore --out b "${net[@]}" --loss role --quiet 2> b.err || fail "$(cat b.err)"
[ ! -s b.err ] || fail "a known dataset must not warn: $(cat b.err)"
[ "$(epr_k b)" = 1.9 ] || fail "NUS-WIDE: epr_k $(epr_k b), expected 1.9"

# --epr-k given: no warning, its value
wsml-train --store coco --out c "${net[@]}" --loss epr --epr-k 3 --quiet 2> c.err || fail "$(cat c.err)"
[ ! -s c.err ] || fail "--epr-k given must not warn: $(cat c.err)"
[ "$(epr_k c)" = 3.0 ] || fail "--epr-k 3: epr_k $(epr_k c)"
echo "ok: epr_k $(epr_k a) (mean, warned) / $(epr_k b) (NUS-WIDE) / $(epr_k c) (given)"
