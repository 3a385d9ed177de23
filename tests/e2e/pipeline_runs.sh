# make table1 / table2 as a real reproduction uses them (pipelines/runs.mk), on the
# fixture datasets with a tiny network and one epoch:
#   1. `make -n table1` ends with the plan summary: runs per method, images x epochs,
#      GPU-hours ("unknown" without a GPU benchmark, else from its images/s), the disk of
#      each store; the numbers recomputed here from the official counts / the stores;
#   2. SEEDS="1 2" runs every setting twice; the table shows mean ± std over the seeds
#      (numbers recomputed with Python's statistics from the runs' run.jsonl) and n;
#   3. changing a grid adds only the new settings' runs, changing one method's own flags
#      (FLAGS_ll-ct) only that method's; changing TRAIN_FLAGS makes new runs beside the
#      old (a new identity), never reusing them; a finished run whose
#      config.json differs from what is asked stops make with the differing flag named;
#   4. the paper columns of table1 and table2 equal the supplement's Tables 1 and 2
#      (tests/fixtures/paper_tables.txt, the supplement's lines verbatim) and the
#      difference column is ours − paper;
#   5. SCHEME=linearinit: a frozen-backbone phase from the ImageNet weights, then a
#      fine-tune of its best checkpoint (--init); the table is of the fine-tunes;
#   6. GPUS="0 1" with make -j2 and a WSML_LAUNCH wrapper that records every command: each
#      training ran through the wrapper with --device 0 or 1, its config.json records that
#      device, and no two runs held one GPU at the same time (while runs did overlap).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
. "$WSML_TESTS/e2e/lib/pipeline.sh"
"$PYTHON" "$WSML_TESTS/fixtures/make_fixtures.py" fx voc cub openimages > /dev/null
mkdir data
mv fx/voc/VOCdevkit data/VOCdevkit
mv fx/cub data/cub
mv fx/openimages data/openimages

# The "ImageNet" weights: a tiny ResNet-18 trained for one epoch on a few fashion items.
wsml-ingest --format fashion-items --size 32 --train-count 64 --test-count 16 --val-frac 0.25 \
    --out items --quiet
wsml-train --store items --out pre --loss full --arch resnet18 --width-mult 0.125 --epochs 1 \
    --batch 16 --threads 1 --quiet

pipeline_bin eval store
NET="--arch resnet18 --width-mult 0.125 --epochs 1 --batch 5 --threads 1 --quiet"
MAKE_ARGS+=(DATA="$PWD/data" PRETRAINED="$PWD/pre/best.safetensors"
    "TABLE1_FLAGS=$NET" "TABLE2_FLAGS=$NET" DELTA_REL_GRID=0.1 TABLE2_DELTA_REL=0.01
    R0_GRID=1.0 DELTA_ABS_GRID=0.1 "INGEST_FLAGS=--size 32 --jobs 1 --quiet"
    STORES="$PWD/stores" RUNS="$PWD/runs" RESULTS="$PWD/results" GPU_BENCH="$PWD/gpu-bench.jsonl")
M() { make "${MAKE_ARGS[@]}" "$@"; }
trained() { grep -c '^wsml-train ' calls.txt 2> /dev/null || true; }

# ---- 1. the plan summary --------------------------------------------------------------
M -n table1 TABLE1_DATASETS="voc cub" SEEDS="1 2" > plan.txt 2>&1 || fail "make -n: $(tail -5 plan.txt)"
[ "$(grep -c 'wsml-train --store' plan.txt)" = 28 ] || fail "SEEDS=\"1 2\": $(grep -c 'wsml-train --store' plan.txt) runs planned, expected 28"
M -n table1 TABLE1_DATASETS="voc cub" SEEDS=1 > plan1.txt 2>&1
[ "$(grep -c 'wsml-train --store' plan1.txt)" = 14 ] || fail "SEEDS=1: expected 14 runs"
# a seed given twice is one run (and one seed of the table)
M -n table1 TABLE1_DATASETS="voc cub" SEEDS="1 1" > plan11.txt 2>&1
[ "$(grep -c 'wsml-train --store' plan11.txt)" = 14 ] || fail "SEEDS=\"1 1\": expected 14 runs"
M -s table1-list TABLE1_DATASETS="voc cub" SEEDS="1 2 1" > list121.txt
[ "$(sort -u list121.txt | wc -l)" = 28 ] && [ "$(wc -l < list121.txt)" = 28 ] ||
    fail "SEEDS=\"1 2 1\": $(wc -l < list121.txt) runs listed, expected 28 distinct"
[ "$(tail -n 8 plan.txt | head -n 1)" = "== plan summary: make table1" ] || fail "make -n does not end with the summary: $(tail -n 9 plan.txt)"
[ ! -e stores ] && [ ! -e runs ] && [ ! -e results ] || fail "make -n wrote files"
"$PYTHON" - plan.txt <<'EOF'
import sys
text = open(sys.argv[1]).read().split("== plan summary: make table1\n")[1]
# 2 seeds x (AN 1 + LL-R/Ct/Cp x (1 relative + 1 absolute)) per dataset, 2 datasets
assert "runs per method (still to run / all): an 4/4, ll-r 8/8, ll-ct 8/8, ll-cp 8/8\n" in text, text
assert "runs: 28 still to run of 28\n" in text, text
# before ingest: the official train counts less the 20% validation carve (DATASETS.md:
# VOC 5,717 train + 5,823 test; CUB 5,994 train + 5,794 test); one epoch per run
work = 14 * 4574 + 14 * 4795
assert "images x epochs to train: %.4g\n" % work in text, (work, text)
assert "GPU-hours: unknown (no GPU benchmark yet" in text, text
for ds, n in (("voc", 5717 + 5823), ("cub", 5994 + 5794)):
    want = "  %s: %d images; raw %.1f MB;" % (ds, n, n * 32 * 32 * 3 / 1e6)
    assert want in text, (want, text)
print("ok: plan summary of make -n table1 (28 runs, %d images x epochs)" % work)
EOF
# with a GPU benchmark: GPU-hours from wsml's tf32 batch-16 row
printf '%s\n' '{"tool": "torch", "precision": "tf32", "batch": 16, "images_per_s": 999.0}' \
  '{"tool": "wsml", "backend": "cuda", "precision": "tf32", "algo": "x", "arch": "resnet50", "size": 448, "batch": 16, "classes": 80, "images_per_s": 250.00}' \
  '{"tool": "wsml", "backend": "cuda", "precision": "bf16", "algo": "x", "arch": "resnet50", "size": 448, "batch": 16, "classes": 80, "images_per_s": 500.00}' > gpu-bench.jsonl
M -n table1 TABLE1_DATASETS="voc cub" SEEDS="1 2" > plan-b.txt 2>&1
want=$("$PYTHON" -c "print('GPU-hours: %.1f at 250.00 images/s' % ((14 * 4574 + 14 * 4795) / 250 / 3600))")
grep -qF "$want" plan-b.txt || fail "expected '$want': $(grep GPU-hours plan-b.txt)"
grep -qF "(wsml tf32, batch 16, resnet50 at 448px, from" plan-b.txt || fail "the benchmark's model: $(grep GPU-hours plan-b.txt)"
echo "ok: $want"
# datasets whose train split is unknown before ingest: never "0.0 GPU-hours"
M -n table2 > plan2.txt 2>&1
tail -n 8 plan2.txt | grep -qx "== plan summary: make table2" || fail "make -n table2: no summary at the end"
grep -qx "  openimages: unknown until ingested" plan2.txt || fail "table2 summary: $(tail -n 8 plan2.txt)"
grep -qx "GPU-hours: unknown (openimages: train split unknown until ingested)" plan2.txt ||
  fail "table2 with a benchmark: $(grep GPU-hours plan2.txt)"
M -n table1 TABLE1_DATASETS="voc nuswide" SEEDS=1 > plan3.txt 2>&1
grep -q "^GPU-hours: at least [0-9.]* at 250.00 images/s .*; not counted: nuswide$" plan3.txt ||
  fail "a dataset of unknown size must not look counted: $(grep GPU-hours plan3.txt)"
rm gpu-bench.jsonl

# bad knobs: one line naming the knob and the value, nothing made
for bad in 'METHODS=an bogus|METHODS: unknown method .bogus.' 'SCHEME=linear|SCHEME must be end-to-end or linearinit' \
    'SEEDS=1 x2|SEEDS: .x2. is not a seed' 'THRESHOLDS=relative abs|THRESHOLDS:' \
    'GNUPLOT=/nonexistent/gnuplot|/nonexistent/gnuplot not found: the results page'; do
  if M table1 "${bad%%|*}" > bad.txt 2>&1; then fail "make table1 ${bad%%|*} succeeded"; fi
  grep -q "make table1: ${bad#*|}" bad.txt || fail "${bad%%|*}: $(cat bad.txt)"
done
[ ! -e stores ] && [ ! -e runs ] || fail "a refused make wrote files"
echo "ok: bad METHODS, SCHEME, SEEDS, THRESHOLDS and a missing gnuplot stop make with one line"

# ---- 2. SEEDS="1 2": twice the runs, mean ± std -----------------------------------------
G=(TABLE1_DATASETS=voc METHODS="an ll-ct" THRESHOLDS=relative)
M "${G[@]}" SEEDS="1 2" table1 > seeds.txt 2>&1 || { cat seeds.txt; fail "make table1 SEEDS=\"1 2\""; }
[ "$(trained)" = 4 ] || fail "SEEDS=\"1 2\": $(trained) trainings, expected 4"
ls -d runs/table1/voc/an_lr1e-5_s1_* runs/table1/voc/an_lr1e-5_s2_* > /dev/null || fail "no per-seed run dirs"
grep -q "mean ± std over n = 2 seeds" results/table1.md || fail "no 'n = 2 seeds' in the title: $(head -1 results/table1.md)"
"$PYTHON" - <<'EOF'
import csv, glob, json, statistics
rows = {r["method"]: r for r in csv.DictReader(open("results/table1.csv"))}
md = open("results/table1.md").read()
for row, stem in (("Naive AN", "an_lr1e-5"), ("LL-Ct", "ll-ct_drel0.1_lr1e-5")):
    tests = []
    for s in (1, 2):
        (d,) = glob.glob("runs/table1/voc/%s_s%d_*" % (stem, s))
        final = [json.loads(l) for l in open(d + "/run.jsonl")][-1]
        assert final["event"] == "final" and json.load(open(d + "/config.json"))["seed"] == s
        tests.append(final["test_map"])
    assert abs(float(rows[row]["voc"]) - statistics.mean(tests)) < 1e-4, (row, rows[row], tests)
    cell = "| %s | %.1f ± %.1f |" % (row, statistics.mean(tests), statistics.stdev(tests))
    assert cell in md, (cell, md)
print("ok: SEEDS=\"1 2\": 4 runs, cells = mean ± stdev of the two seeds")
EOF

# the plan once the store exists: its own train split (counted from its records)
M -n "${G[@]}" SEEDS="5 6 7" table1 > plan-s.txt 2>&1
wsml-store export stores/voc --split train --what ids --out ids.txt --quiet
n=$(wc -l < ids.txt)
grep -qx "images x epochs to train: $("$PYTHON" -c "print('%.4g' % (6 * $n))")" plan-s.txt ||
  fail "after ingest, expected 6 runs x $n train images: $(grep 'images x' plan-s.txt)"
echo "ok: the plan after ingest counts the store's $n train images"

# ---- 3. what a changed flag reruns ------------------------------------------------------
md5sum runs/table1/voc/*/run.jsonl > sums.txt
rm calls.txt
M "${G[@]}" SEEDS="1 2" DELTA_REL_GRID="0.1 0.2" table1 > grid.txt 2>&1 || { cat grid.txt; fail "grid"; }
[ "$(trained)" = 2 ] || fail "a new delta-rel: $(trained) trainings, expected 2 (ll-ct drel0.2, 2 seeds)"
grep -c -- '--delta-rel 0.2' calls.txt | grep -qx 2 || fail "the new runs are not the drel0.2 ones: $(cat calls.txt)"
md5sum -c --quiet sums.txt || fail "a finished run changed"
rm calls.txt
M "${G[@]}" SEEDS="1 2" FLAGS_ll-ct="--lr-mult 5" table1 > mflags.txt 2>&1 || { cat mflags.txt; fail "FLAGS_ll-ct"; }
[ "$(trained)" = 2 ] || fail "FLAGS_ll-ct: $(trained) trainings, expected 2 (ll-ct, 2 seeds)"
[ "$(grep -c -- '--loss ll-ct .*--lr-mult 5' calls.txt)" = 2 ] || fail "not the ll-ct runs: $(cat calls.txt)"
md5sum -c --quiet sums.txt || fail "a finished run changed"
rm calls.txt
M "${G[@]}" SEEDS="1 2" TRAIN_FLAGS="--no-flip" table1 > flip.txt 2>&1 || { cat flip.txt; fail "no-flip"; }
[ "$(trained)" = 4 ] || fail "TRAIN_FLAGS changed: $(trained) trainings, expected 4 new runs"
md5sum -c --quiet sums.txt || fail "an old run changed"
[ "$(ls -d runs/table1/voc/an_lr1e-5_s1_* | wc -l)" = 2 ] || fail "expected the old and the new an_lr1e-5_s1 beside each other"
"$PYTHON" - <<'EOF'
import csv, json
for r in csv.DictReader(open("results/table1.picks.csv")):
    for d in r["run_dirs"].split(";"):
        assert json.load(open(d + "/config.json"))["flip"] is False, (r["method"], d)
print("ok: the table after TRAIN_FLAGS=--no-flip is made of the new runs only")
EOF
# a finished run whose config.json says another lr: make stops, naming the flag
d=$(dirname "$(awk '/an_lr1e-5_s2_/ { print $2 }' sums.txt)")  # a run of the flags asked for below
cp "$d/config.json" config.saved
"$PYTHON" - "$d/config.json" <<'EOF'
import json, sys
c = json.load(open(sys.argv[1])); c["lr"] = 0.001
json.dump(c, open(sys.argv[1], "w"), indent=2)
EOF
rm calls.txt
if M "${G[@]}" SEEDS="1 2" table1 > bad.txt 2>&1; then fail "a run with another lr was reused"; fi
grep -q "$d/config.json: --lr 1e-05 differs from the run's 0.001" bad.txt || fail "no line naming --lr: $(cat bad.txt)"
grep -q "made with other settings" bad.txt || fail "no advice: $(cat bad.txt)"
[ ! -e calls.txt ] || fail "make trained although a run was in the way"
cp config.saved "$d/config.json"
echo "ok: a new grid value or a method's own FLAGS_ll-ct trains only the runs they change; new TRAIN_FLAGS make new runs; a changed config.json stops make naming --lr"

# ---- 3b. a store made with other ingest flags is never reused -----------------------------
ok_before=$(cat stores/voc.ok)
case "$ok_before" in *"--size 32"*) ;; *) fail "stores/voc.ok does not record the ingest flags: '$ok_before'" ;; esac
for dry in "" -n; do
  if M $dry "${G[@]}" "INGEST_FLAGS=--size 24 --jobs 1 --quiet" table1 > reingest.txt 2>&1; then
    fail "make $dry table1 with other INGEST_FLAGS reused stores/voc"
  fi
  grep -q 'store .*stores/voc was ingested with ".*--size 32.*" but is asked for with ".*--size 24.*"' reingest.txt ||
    fail "make $dry: no line naming both ingest flags: $(tail -3 reingest.txt)"
done
[ "$(cat stores/voc.ok)" = "$ok_before" ] || fail "a refused make changed stores/voc.ok"
echo "ok: a store ingested with other flags stops make, naming both"
# ... and runs trained on a store that was then removed and ingested again with other
# flags (same path) are not reused: make stops, naming what differs
mv stores/voc stores/voc.saved
mv stores/voc.ok stores/voc.ok.saved
M "${G[@]}" "INGEST_FLAGS=--size 40 --jobs 1 --quiet" "$PWD/stores/voc.ok" > reingest-voc.txt 2>&1 ||
  fail "re-ingest: $(tail -3 reingest-voc.txt)"
rm -f calls.txt
if M "${G[@]}" "INGEST_FLAGS=--size 40 --jobs 1 --quiet" table1 > reingest2.txt 2>&1; then
  fail "runs trained on the old store were reused with the re-ingested one"
fi
grep -q "the run was trained on 20 classes of 32x32 images, the store .*stores/voc now holds 20 classes of 40x40 images" reingest2.txt ||
  fail "no line naming the store's difference: $(tail -3 reingest2.txt)"
[ ! -e calls.txt ] || fail "make trained on the re-ingested store: $(cat calls.txt)"
rm -rf stores/voc stores/voc.ok
mv stores/voc.saved stores/voc
mv stores/voc.ok.saved stores/voc.ok
echo "ok: runs of a store ingested again with other flags stop make, naming the difference"

# ---- 4. the paper columns ---------------------------------------------------------------
rm -f calls.txt
M TABLE1_DATASETS="voc cub" METHODS="an ll-r" table1 > paper1.txt 2>&1 || { cat paper1.txt; fail "table1 voc cub"; }
M METHODS="an ll-r" table2 > paper2.txt 2>&1 || { cat paper2.txt; fail "table2"; }
grep -q "^Table 1 of the supplement" results/table1.md || fail "table1.md title: $(head -1 results/table1.md)"
"$PYTHON" - "$WSML_TESTS/fixtures/paper_tables.txt" <<'EOF'
import csv, sys
# the supplement's lines: "Naive AN\t85.1\t64.1\t42.0\t19.1", "LL-R _{abs} (Ours)\t..."
paper, table = {}, None
for line in open(sys.argv[1]):
    line = line.rstrip("\n")
    if line.startswith("["):
        table = line.strip("[]")
    elif table and line and not line.startswith("#"):
        name, *vals = line.split("\t")
        row = {"Naive AN": "Naive AN", "LL-relative (Ours)": "LL-relative (best of R/Ct/Cp)"}.get(name)
        if row is None:  # "LL-R _{abs} (Ours)" -> "LL-R abs"
            row = name.split(" _{abs}")[0] + " abs"
        paper[table, row] = [float(v) for v in vals]
checked = 0
for table, f, cols in (("table1", "results/table1.csv", ["voc", "cub"]),
                       ("table2", "results/table2.csv", ["G1", "G2", "G3", "G4", "G5", "all"])):
    all_cols = {"voc": 0, "coco": 1, "nuswide": 2, "cub": 3, "G1": 0, "G2": 1, "G3": 2, "G4": 3, "G5": 4, "all": 5}
    rows = list(csv.DictReader(open(f)))
    assert {"Naive AN", "LL-relative (best of R/Ct/Cp)", "LL-R abs"} <= {r["method"] for r in rows}
    for r in rows:
        for c in cols:
            want = paper.get((table, r["method"]))
            got = r[c + "_paper"]
            if want is None:  # LL-R (relative alone) is not a row of the supplement
                assert got == "" and r[c + "_diff"] == "", (table, r["method"], c, got)
                continue
            assert abs(float(got) - want[all_cols[c]]) < 1e-9, (table, r["method"], c, got, want)
            assert abs(float(r[c + "_diff"]) - (float(r[c]) - want[all_cols[c]])) < 2e-4, (r, c)
            checked += 1
assert checked == 3 * 2 + 3 * 6, checked
print("ok: %d paper cells equal the supplement's, diff = ours - paper" % checked)
EOF

# ---- 5. SCHEME=linearinit -------------------------------------------------------------
rm -f calls.txt
cp results/table1.md e2e-table1.md
L=(TABLE1_DATASETS=voc METHODS="an role" SCHEME=linearinit LINEARINIT_EPOCHS=2 LINEARINIT_FT_EPOCHS=1)
M "${L[@]}" table1 > li.txt 2>&1 || { cat li.txt; fail "make table1 SCHEME=linearinit"; }
[ "$(trained)" = 4 ] || fail "linearinit: $(trained) trainings, expected 2 frozen + 2 fine-tunes"
"$PYTHON" - "$PWD" <<'EOF'
import csv, glob, json, os, sys
pre = os.path.join(sys.argv[1], "pre/best.safetensors")
rows = {r["method"]: r for r in csv.DictReader(open("results/table1-linearinit.picks.csv"))}
assert sorted(rows) == ["Naive AN", "ROLE"], sorted(rows)
for m, stem in (("Naive AN", "an_lr1e-5_s1_"), ("ROLE", "role_lr1e-5_s1_")):
    (ft,) = rows[m]["run_dirs"].split(";")
    assert os.path.basename(ft).startswith(stem) and "/linear/" not in ft, ft
    fc = json.load(open(ft + "/config.json"))
    # the frozen run: same name, its own hash (without the fine-tune's settings)
    lin = os.path.dirname(fc["init"])
    assert os.path.dirname(lin) == os.path.join(os.path.dirname(ft), "linear"), (lin, ft)
    assert os.path.basename(lin).startswith(stem), lin
    lc = json.load(open(lin + "/config.json"))
    assert lc["freeze_backbone"] is True and lc["pretrained"] == pre and lc["epochs"] == 2, lc
    assert lc["flip"] is False, lc  # Cole et al.'s features are of unflipped images
    assert lc["early_stop"] is False, lc  # nor has their linear phase an early stop
    assert fc["freeze_backbone"] is False and fc["pretrained"] == "" and fc["epochs"] == 1, fc
    assert fc["flip"] is True, fc
    assert fc["init"] == lin + "/best.safetensors", (fc["init"], lin)
    assert fc["loss"] == lc["loss"] and fc["lr"] == lc["lr"] and fc["seed"] == lc["seed"]
print("ok: linearinit: frozen phase (2 epochs from the ImageNet weights), fine-tune --init its best")
EOF
grep -q "^| ROLE |" results/table1-linearinit.md || fail "no ROLE row in the LinearInit table"
# its own files, without the supplement's (End-to-end) paper columns; table1.md untouched
head -n 3 results/table1-linearinit.csv | grep -qx "method,voc" ||
    fail "LinearInit table with paper columns: $(head -n 1 results/table1-linearinit.csv)"
cmp results/table1.md e2e-table1.md || fail "SCHEME=linearinit overwrote results/table1.md"
# the frozen phase runs without early stop (Cole et al.'s linear phase has none)
M -n "${L[@]}" SEEDS=9 table1 > li-s9.txt 2>&1 || fail "make -n: $(tail -5 li-s9.txt)"
[ "$(grep 'wsml-train --store' li-s9.txt | grep -c -- '--freeze-backbone --no-flip --no-early-stop')" = 2 ] ||
    fail "frozen runs without --no-early-stop: $(grep 'wsml-train --store' li-s9.txt)"
# another LINEARINIT_FT_EPOCHS makes new fine-tunes only: the frozen runs are kept
M -n "${L[@]}" LINEARINIT_FT_EPOCHS=2 table1 > li-ft2.txt 2>&1 || fail "make -n: $(tail -5 li-ft2.txt)"
[ "$(grep -c 'wsml-train --store' li-ft2.txt)" = 2 ] && [ "$(grep 'wsml-train --store' li-ft2.txt | grep -c -- '--init ')" = 2 ] ||
    fail "LINEARINIT_FT_EPOCHS=2 plans other than 2 fine-tunes: $(grep 'wsml-train --store' li-ft2.txt)"
for lin in runs/table1/voc/linear/*/; do
  grep -qF -- "--init $PWD/$lin" li-ft2.txt || grep -qF -- "--init $PWD/${lin%/}/" li-ft2.txt ||
      fail "no fine-tune of the kept frozen run $lin: $(grep 'wsml-train --store' li-ft2.txt)"
done
echo "ok: linearinit: own table files, frozen runs kept when LINEARINIT_FT_EPOCHS changes"

# ---- 6. GPUS and WSML_LAUNCH (seeds 2-4: cub's seed-1 runs exist from step 4) ---------
cat > launch.sh <<'EOF'
#!/bin/bash
# a fake cluster launcher: logs "start|end TIME DEVICE OUT" around each command
dev=-; out=-; prev=
for a in "$@"; do
  [ "$prev" = --device ] && dev=$a
  [ "$prev" = --out ] && out=$a
  prev=$a
done
echo "start $(date +%s.%N) $dev $out $(basename "$1")" >> "$(dirname "$0")/launch.log"
sleep 1
"$@"; rc=$?
echo "end $(date +%s.%N) $dev $out $(basename "$1")" >> "$(dirname "$0")/launch.log"
exit $rc
EOF
chmod +x launch.sh
rm -f calls.txt
M -j2 TABLE1_DATASETS=cub METHODS="an ll-r" THRESHOLDS=relative SEEDS="2 3 4" GPUS="0 1" \
  WSML_LAUNCH="$PWD/launch.sh" table1 > gpus.txt 2>&1 || { cat gpus.txt; fail "make -j2 GPUS"; }
[ "$(trained)" = 6 ] || fail "GPUS: $(trained) trainings, expected 6"
"$PYTHON" - <<'EOF'
import json
ev = [l.split() for l in open("launch.log")]
train = [e for e in ev if e[4] == "wsml-train"]
assert [e[0] for e in train].count("start") == 6 and [e[0] for e in train].count("end") == 6, ev
spans = {}
for kind, t, dev, out, _ in train:
    assert dev in ("0", "1"), ("no --device 0/1", dev, out)
    spans.setdefault(out, {})[kind] = float(t)
    spans[out]["dev"] = dev
    assert json.load(open(out + "/config.json"))["device"] == int(dev), out
runs = sorted(spans.items(), key=lambda kv: kv[1]["start"])
overlap = 0
for i, (a, x) in enumerate(runs):
    for b, y in runs[i + 1:]:
        both = x["start"] < y["end"] and y["start"] < x["end"]
        assert not (both and x["dev"] == y["dev"]), ("GPU %s shared" % x["dev"], a, b)
        overlap += both
assert overlap > 0, "no two runs ran at the same time: the check proves nothing"
print("ok: GPUS=\"0 1\" -j2: 6 runs through WSML_LAUNCH, devices in config.json, %d overlapping pairs, never on one GPU" % overlap)
EOF
# the ingests go through WSML_LAUNCH too (WSML_LAUNCH_INGEST's default): a plan with
# stores still to make
M -n TABLE1_DATASETS=cub STORES="$PWD/stores-new" WSML_LAUNCH="$PWD/launch.sh" table1 > plan-l.txt 2>&1
grep -q "^$PWD/launch.sh .*/wsml-ingest --format cub" plan-l.txt ||
  fail "ingest without the launcher: $(grep wsml-ingest plan-l.txt)"
[ ! -e stores-new ] || fail "make -n made a store"
echo "ok: wsml-ingest runs under WSML_LAUNCH"
echo "pipeline_runs: all ok"
