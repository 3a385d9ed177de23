# make demo end to end at toy size (a few hundred 32x32 mosaics, a 1/8-width ResNet-18,
# 1 pretraining epoch, 2 fine-tuning epochs, 2 seeds): ingest both fashion stores,
# pretrain the backbone, fine-tune the five methods from it, print the table with the
# per-epoch val mAP, draw the CAM figure; then check that the table's cells are the
# seeds' mean test mAP read from run.jsonl, that LL runs did modify labels, that a second
# make does nothing and that `make demo-clean` keeps the stores and the backbone.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
. "$WSML_TESTS/e2e/lib/pipeline.sh"
pipeline_bin eval cam
MAKE_ARGS+=(DEMO_DIR="$PWD/demo" "${DEMO_SMALL[@]}")
M() { make "${MAKE_ARGS[@]}" "$@"; }

# without gnuplot (the page at the end needs it) make demo stops before any work
rc=0
M demo GNUPLOT=/nonexistent/gnuplot > nogp.txt 2>&1 || rc=$?
[ $rc -ne 0 ] || fail "make demo without gnuplot exited 0"
grep -q '/nonexistent/gnuplot not found: the results page' nogp.txt || fail "no gnuplot line: $(cat nogp.txt)"
[ ! -s calls.txt ] || fail "make demo without gnuplot started work: $(cat calls.txt)"
[ ! -e demo ] || fail "make demo without gnuplot wrote $PWD/demo"

M demo > demo1.txt 2>&1 || { cat demo1.txt; exit 1; }
cat demo1.txt
[ "$(calls ingest)" = 2 ] && [ "$(calls train)" = 11 ] || {
  echo "FAIL: expected 2 ingests and 11 trainings (pretrain + 5 methods x 2 seeds)"; cat calls.txt; exit 1; }
for row in "Full labels" "Naive AN" "LL-R" "LL-Ct" "LL-Cp" "LL-relative (best of R/Ct/Cp)"; do
  grep -q "^| $row |" demo1.txt || { echo "FAIL: no row '$row' in the demo's table"; exit 1; }
done
grep -q "Validation mAP per epoch" demo1.txt
grep -q "^| method | 1 | 2 |" demo1.txt || { echo "FAIL: no per-epoch table with epochs 1 and 2"; exit 1; }

"$PYTHON" - demo <<'EOF'
import csv, json, os, statistics, sys
d = sys.argv[1]
def lines(r):
    return [json.loads(l) for l in open(os.path.join(d, "runs", r, "run.jsonl"))]
rows = {r["method"]: r for r in csv.DictReader(open(os.path.join(d, "table.csv")))}
col = [c for c in next(iter(rows.values())) if c != "method"]
assert col == ["fashion-mosaic"], col
names = {"full": "Full labels", "an": "Naive AN", "ll-r": "LL-R", "ll-ct": "LL-Ct", "ll-cp": "LL-Cp"}
for m, row in names.items():
    test = [lines("%s-s%d" % (m, s))[-1]["test_map"] for s in (1, 2)]
    got = float(rows[row]["fashion-mosaic"])
    assert abs(got - statistics.mean(test)) < 1e-4, (m, got, test)
    cfg = json.load(open(os.path.join(d, "runs", m + "-s1", "config.json")))
    assert cfg["pretrained"].endswith("demo/backbone.safetensors"), cfg["pretrained"]
    assert cfg["loss"] == m and cfg["lr_mult"] == 10 and cfg["width_mult"] == 0.125
    if m.startswith("ll-"):
        ep = lines(m + "-s1")
        assert ep[0]["modified"] == 0 and ep[1]["modified"] > 0, ep  # epoch 2 rejects
print("ok: table cells = mean test mAP of 2 seeds; LL runs modified labels in epoch 2")
EOF

# the CAM figure (wsml-cam is always built: pipeline_bin requires it)
grep -q "CAM figure (Naive AN vs LL-" demo1.txt || fail "make demo did not draw the CAM figure"
"$PYTHON" -c "
from PIL import Image
im = Image.open('demo/cam.png'); im.load()
assert im.format == 'PNG' and im.width == 3 * 224 and im.height > 2 * 224, (im.format, im.size)  # input, AN, LL columns
print('ok: CAM figure', im.size)"

# a second make does nothing but print the table
rm -f calls.txt
M demo > demo2.txt 2>&1 || { cat demo2.txt; exit 1; }
[ ! -e calls.txt ] || { echo "FAIL: the second make demo ran:"; cat calls.txt; exit 1; }
grep -q "^| Naive AN |" demo2.txt

# demo-clean keeps the stores and the backbone: only the fine-tuning runs again
M demo-clean > /dev/null
[ -f demo/backbone.safetensors ] || fail "demo-clean removed the backbone"
[ -f demo/stores/mosaic.ok ] || fail "demo-clean removed the store"
if [ -e demo/runs ]; then fail "demo-clean left the runs"; fi
M demo DEMO_METHODS="an ll-r" DEMO_SEEDS=3 > demo3.txt 2>&1 || { cat demo3.txt; exit 1; }
if [ "$(calls ingest)" != 0 ] || [ "$(calls train)" != 2 ]; then
  echo "FAIL: after demo-clean:"; cat calls.txt; exit 1
fi
grep -q -- "--seed 3" calls.txt
echo "pipeline_demo: all ok"
