# make table1 / make table2 end to end on the fixture datasets (tests/fixtures, laid out
# under DATA with the folder names the README gives), with a tiny network, one epoch and
# one value per grid, so that a broken stage (ingest, train, the run bookkeeping, the
# table) fails CI:
#   - `make -n table1` prints the whole plan (4 ingests, 28 runs) and runs nothing;
#   - a run stopped early (--max-steps) fails make, and the next make resumes it;
#   - the tables have every method row and every dataset / group column, and their
#     cells equal what a Python reading of the runs' run.jsonl picks (best val mAP);
#   - a second make trains nothing (finished runs are never redone, even without their
#     done file); `make -j2` gives the same runs bit for bit as the serial make;
#   - both makes end with the results page of the tables that have runs.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
. "$WSML_TESTS/e2e/lib/pipeline.sh"
"$PYTHON" "$WSML_TESTS/fixtures/make_fixtures.py" fx voc coco cub openimages npy
mkdir data
mv fx/voc/VOCdevkit data/VOCdevkit
mv fx/coco data/coco
mv fx/npy data/nuswide
mv fx/cub data/cub
mv fx/openimages data/openimages

# The "ImageNet" weights: a tiny ResNet-18 trained for one epoch on a few fashion items.
wsml-ingest --format fashion-items --size 32 --train-count 64 --test-count 16 --val-frac 0.25 \
    --out items --quiet
wsml-train --store items --out pre --loss full --arch resnet18 --width-mult 0.125 --epochs 1 \
    --batch 16 --threads 1 --quiet

pipeline_bin eval
MAKE_ARGS+=(DATA="$PWD/data" PRETRAINED="$PWD/pre/best.safetensors"
    "TABLE1_FLAGS=--arch resnet18 --width-mult 0.125 --epochs 1 --batch 5 --threads 1 --quiet"
    "TABLE2_FLAGS=--arch resnet18 --width-mult 0.125 --epochs 1 --batch 5 --threads 1 --quiet"
    DELTA_REL_GRID=0.1 TABLE2_DELTA_REL=0.01 R0_GRID=1.0 DELTA_ABS_GRID=0.1
    "INGEST_FLAGS=--size 32 --jobs 1 --quiet")
M() { make "${MAKE_ARGS[@]}" "$@"; }
A=(STORES="$PWD/stores" RUNS="$PWD/runs" RESULTS="$PWD/results")

# 1. the plan: every store and run, nothing done
M "${A[@]}" -n table1 > plan.txt
[ "$(grep -c 'wsml-ingest --format' plan.txt)" = 4 ] || { echo "FAIL: plan lacks the 4 ingests"; cat plan.txt; exit 1; }
[ "$(grep -c 'wsml-train --store' plan.txt)" = 28 ] || { echo "FAIL: plan: $(grep -c 'wsml-train --store' plan.txt) runs, expected 28"; exit 1; }
for ds in voc coco nuswide cub; do
  for r in an_lr1e-5_s1 ll-r_drel0.1_lr1e-5_s1 ll-ct_r0-1.0_dabs0.1_lr1e-5_s1 ll-cp_drel0.1_lr1e-5_s1; do
    grep -Eq "runs/table1/$ds/${r}_[0-9a-f]{6} " plan.txt || { echo "FAIL: plan lacks $ds/$r"; exit 1; }
  done
done
[ ! -e stores ] && [ ! -e runs ] && [ ! -e results ] || { echo "FAIL: make -n wrote files"; exit 1; }
echo "ok: make -n table1 prints 4 ingests and 28 runs and runs nothing"

# 1b. missing ImageNet weights: make table1 stops before anything runs; make -n warns
# and still shows the plan
if M "${A[@]}" table1 PRETRAINED="$PWD/none.safetensors" > nopre.txt 2>&1; then
  echo "FAIL: make table1 ran without PRETRAINED"; exit 1
fi
grep -q "ImageNet weights not found: PRETRAINED=$PWD/none.safetensors" nopre.txt || { cat nopre.txt; exit 1; }
M "${A[@]}" -n table1 PRETRAINED="$PWD/none.safetensors" > nopre-plan.txt 2>&1
grep -q "ImageNet weights not found.*the plan is shown anyway" nopre-plan.txt
[ "$(grep -c 'wsml-train --store' nopre-plan.txt)" = 28 ]
[ ! -e stores ] && [ ! -e runs ] && [ ! -e results ] || { echo "FAIL: a refused make wrote files"; exit 1; }
echo "ok: without ImageNet weights make table1 stops at once, make -n warns and shows the plan"

# 2. runs stopped early (--max-steps 1 of 2): make fails, nothing is marked done...
if M "${A[@]}" -k table1 TABLE1_DATASETS=voc TRAIN_FLAGS="--max-steps 1" > stop.txt 2>&1; then
  echo "FAIL: make succeeded with runs stopped by --max-steps"; exit 1
fi
grep -q "wsml-train stopped before the end" stop.txt
n=$(ls runs/table1/voc/*/last.safetensors | wc -l)
[ "$n" = 7 ] || { echo "FAIL: $n stopped runs with last.safetensors, expected 7"; exit 1; }
if ls runs/table1/voc/*/done 2>/dev/null; then fail "a stopped run is marked done"; fi
echo "ok: 7 runs stopped by --max-steps, none marked done"

# 3. ...and the next make resumes them (and does the other datasets from scratch)
rm calls.txt
M "${A[@]}" table1 > make1.txt 2>&1 || { cat make1.txt; exit 1; }
[ "$(grep '^wsml-train ' calls.txt | grep -c -- '--resume$')" = 7 ] || {
  echo "FAIL: expected 7 resumed runs"; cat calls.txt; exit 1; }
[ "$(grep '^wsml-train ' calls.txt | grep -c -- '--force$')" = 21 ] || {
  echo "FAIL: expected 21 new runs"; cat calls.txt; exit 1; }
[ "$(calls ingest)" = 3 ] || { echo "FAIL: expected 3 more ingests"; cat calls.txt; exit 1; }
for d in runs/table1/voc/*/; do
  "$PYTHON" - "$d" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1] + "/run.jsonl")]
cfg = json.load(open(sys.argv[1] + "/config.json"))
assert lines[-1]["event"] == "final" and lines[-1]["steps"] == 2, lines[-1]
assert [l["epoch"] for l in lines[:-1]] == [1], lines   # one epoch, not restarted
EOF
done
echo "ok: the 7 stopped runs resumed and finished (2 steps each)"

# 4. the table: every method row and dataset column; cells = the val-picked test mAP
cat results/table1.md
"$PYTHON" - runs/table1 results/table1.csv <<'EOF'
import csv, glob, json, os, sys
runs, table = sys.argv[1], sys.argv[2]
rows = {r["method"]: r for r in csv.DictReader(open(table))}
want = ["Naive AN", "LL-R", "LL-Ct", "LL-Cp", "LL-relative (best of R/Ct/Cp)",
        "LL-R abs", "LL-Ct abs", "LL-Cp abs"]
assert sorted(rows) == sorted(want), sorted(rows)
def final(d):
    for l in open(os.path.join(d, "run.jsonl")):
        j = json.loads(l)
        if j.get("event") == "final":
            return j
    raise SystemExit("no final line in " + d)
for ds in ["voc", "coco", "nuswide", "cub"]:
    # run names: METHOD_SETTINGS_sSEED_ID (ID: the hash of the other flags)
    f = {os.path.basename(d).rsplit("_", 1)[0]: final(d) for d in glob.glob(os.path.join(runs, ds, "*"))}
    assert len(f) == 7, (ds, sorted(f))
    expect = {"Naive AN": "an_lr1e-5_s1",
              "LL-R": "ll-r_drel0.1_lr1e-5_s1", "LL-Ct": "ll-ct_drel0.1_lr1e-5_s1",
              "LL-Cp": "ll-cp_drel0.1_lr1e-5_s1", "LL-R abs": "ll-r_r0-1.0_dabs0.1_lr1e-5_s1",
              "LL-Ct abs": "ll-ct_r0-1.0_dabs0.1_lr1e-5_s1", "LL-Cp abs": "ll-cp_r0-1.0_dabs0.1_lr1e-5_s1"}
    # ties go to the first description in sorted order: LL-Cp, LL-Ct, LL-R
    rel = [expect[m] for m in ("LL-Cp", "LL-Ct", "LL-R")]
    best = max(rel, key=lambda r: (f[r]["best_val_map"], -rel.index(r)))
    expect["LL-relative (best of R/Ct/Cp)"] = best
    for m, r in expect.items():
        got = float(rows[m][ds])
        assert abs(got - f[r]["test_map"]) < 1e-4, (ds, m, got, f[r]["test_map"])
print("ok: table1.csv has 8 method rows x 4 datasets, each = the test mAP of the val pick")
EOF

# 5. a second make trains and ingests nothing, even for a run whose done file was lost
#    (make killed between wsml-train's end and the touch)
md5sum runs/table1/*/*/run.jsonl > sums.txt
lost=$(echo runs/table1/cub/ll-cp_drel0.1_lr1e-5_s1_*)
rm "$lost/done"
rm calls.txt
M "${A[@]}" table1 > make2.txt 2>&1 || { cat make2.txt; exit 1; }
[ ! -e calls.txt ] || { echo "FAIL: the second make ran:"; cat calls.txt; exit 1; }
md5sum -c --quiet sums.txt
[ -f "$lost/done" ]
M "${A[@]}" -n table1 > plan2.txt
if grep -q 'wsml-train\|wsml-ingest' plan2.txt; then fail "plan after a full make not empty: $(cat plan2.txt)"; fi
echo "ok: a second make trains nothing; finished runs untouched"

# 6. make -j2 from scratch on two datasets: the same runs, bit for bit
M STORES="$PWD/stores2" RUNS="$PWD/runs2" RESULTS="$PWD/results2" -j2 table1 \
    TABLE1_DATASETS="voc cub" > makej.txt 2>&1 || { cat makej.txt; exit 1; }
for d in runs2/table1/*/*/; do
  r=${d#runs2/}
  cmp "$d/best.safetensors" "runs/$r/best.safetensors" || { echo "FAIL: -j2 run $r differs"; exit 1; }
  tail -n 1 "$d/run.jsonl" | cmp - <(tail -n 1 "runs/$r/run.jsonl")
done
[ "$(ls -d runs2/table1/*/*/ | wc -l)" = 14 ]
echo "ok: make -j2 gives the same 14 runs as the serial make"

# 7. make table2 on the OpenImages fixture: groups G1..G5 and all
M "${A[@]}" table2 > make3.txt 2>&1 || { cat make3.txt; exit 1; }
cat results/table2.md
"$PYTHON" - results/table2.csv <<'EOF'
import csv, sys
rd = csv.DictReader(open(sys.argv[1]))
rows = {r["method"]: r for r in rd}
assert sorted(rows) == sorted(["Naive AN", "LL-R", "LL-Ct", "LL-Cp",
    "LL-relative (best of R/Ct/Cp)", "LL-R abs", "LL-Ct abs", "LL-Cp abs"]), sorted(rows)
cols = [c for c in rd.fieldnames[1:] if not c.endswith(("_paper", "_diff"))]
assert cols == ["G1", "G2", "G3", "G4", "G5", "all"], cols
for m, r in rows.items():
    for c in cols:
        v = r[c].rstrip("*")
        if v not in ("", "—", "-"):
            assert 0 <= float(v) <= 100, (m, c, v)
    assert r["all"] not in ("", "—", "-"), (m, r)
    assert any(r[c].rstrip("*") not in ("", "—", "-") for c in cols[:5]), ("no group mAP", m, r)
print("ok: table2.csv has 8 method rows x G1..G5 + all, each with a group mAP")
EOF
# 8. both makes ended with the results page (pipelines/report.mk): Table 1's curves and
#    diagnostics per dataset, Table 2's curves and group bars (OpenImages knows no hidden
#    positive: no diagnostics), every image a file
"$PYTHON" - results/report <<'EOF'
import os, re, sys
rep = sys.argv[1]
imgs = re.findall(r'<img src="([^"]+)"', open(os.path.join(rep, "index.html")).read())
want = {"plots/table-1-%s-%s.png" % (d, k) for d in ("voc", "coco", "nuswide", "cub")
        for k in ("map", "loss", "ll")}
want |= {"plots/table-2-openimages-%s.png" % k for k in ("map", "loss", "groups")}
assert set(imgs) == want, sorted(set(imgs) ^ want)
for src in imgs:
    assert os.path.getsize(os.path.join(rep, src)) > 0, src
print("ok: results/report/index.html shows both tables with %d plots" % len(imgs))
EOF
# the same page in a real browser: every plot loads (4 datasets x 3 + 3, as above)
. "$WSML_TESTS/e2e/lib/browser.sh"
check_page_images results/report 15
echo "pipeline_tables: all ok"
