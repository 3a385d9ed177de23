# wsml-train and wsml-eval on a store of JPEG records (wsml-ingest's default encoding),
# and without libvips: they decode records with libjpeg alone (common/image_core.c), so
# that they run on GPU machines that have no libvips (docs/benchmarks.md). Checks: neither
# executable links libvips; a run trains on the JPEG store to the end with finite losses;
# wsml-eval scores its test split as the run did. (That libjpeg alone decodes the pixels
# of PIL and of the libvips path: tests/unit/test_image.c.)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
"$PYTHON" "$WSML_TESTS/fixtures/make_fixtures.py" fx voc
root=fx/voc/VOCdevkit/VOC2012
for exe in wsml-train wsml-eval; do
    n=$(ldd "$(command -v $exe)" | grep -c vips || true)
    [ "$n" = 0 ] || { echo "FAIL: $exe links libvips"; ldd "$(command -v $exe)"; exit 1; }
done
wsml-ingest --format voc --root $root --out j.store --size 32 --encoding jpeg --quality 90 \
    --val-frac 0.25 --jobs 2 --quiet
wsml-store info j.store --json | "$PYTHON" -c "
import json, sys
d = json.load(sys.stdin); d = d.get('info', d)
assert d['encoding'] == 'jpeg', d['encoding']"

wsml-train --store j.store --out run --arch resnet18 --width-mult 0.25 --batch 4 --threads 2 \
    --epochs 2 --quiet
"$PYTHON" - <<'PYEOF'
import json, math
steps = [json.loads(l) for l in open("run/run.jsonl")]
losses = [j["train_loss"] for j in steps if "train_loss" in j]
assert len(losses) == 2 and all(math.isfinite(x) for x in losses), losses
final = [j for j in steps if j.get("event") == "final"]
assert final and final[0]["epochs_run"] == 2, "the run did not finish"
print("ok: epoch losses", losses, "test mAP", final[0]["test_map"])
PYEOF
test -f run/best.safetensors
wsml-eval --store j.store --model run/best.safetensors --split test --out ev --threads 2 --quiet
"$PYTHON" - <<'PYEOF'
import json
m = json.load(open("ev/metrics.json"))
final = [json.loads(l) for l in open("run/run.jsonl") if '"event"' in l][0]
# the run scored best.safetensors on the test split at its end, through the same decoder
assert abs(m["map"] - final["test_map"]) < 1e-6, (m["map"], final["test_map"])
print("ok: wsml-eval test mAP", m["map"], "= the run's")
PYEOF
echo "train_jpeg_store: all ok"
