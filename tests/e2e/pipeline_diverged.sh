# make table1 with a run that diverges (SGD at lr 1e20 on the VOC fixture): wsml-train
# ends it as a finished run with "status": "diverged" and exit status 3; the pipeline
# accepts that, the table still renders, the pick skips the diverged setting and a
# footnote counts it; a second make (even with the run's done file lost) trains nothing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
. "$WSML_TESTS/e2e/lib/pipeline.sh"
"$PYTHON" "$WSML_TESTS/fixtures/make_fixtures.py" fx voc > /dev/null
mkdir data
mv fx/voc/VOCdevkit data/VOCdevkit
wsml-ingest --format fashion-items --size 32 --train-count 64 --test-count 16 --val-frac 0.25 \
    --out items --quiet
wsml-train --store items --out pre --loss full --arch resnet18 --width-mult 0.125 --epochs 1 \
    --batch 16 --threads 1 --quiet

pipeline_bin eval
MAKE_ARGS+=(DATA="$PWD/data" PRETRAINED="$PWD/pre/best.safetensors" TABLE1_DATASETS=voc METHODS=an
    "TABLE1_FLAGS=--arch resnet18 --width-mult 0.125 --epochs 2 --batch 5 --threads 1 --quiet"
    "TRAIN_FLAGS=--optimizer sgd" LR_GRID="1e-5 1e20" "INGEST_FLAGS=--size 32 --jobs 1 --quiet"
    STORES="$PWD/stores" RUNS="$PWD/runs" RESULTS="$PWD/results")
M() { make "${MAKE_ARGS[@]}" "$@"; }

M table1 > make1.txt 2>&1 || { cat make1.txt; fail "make table1 stopped at a diverged run"; }
bad=$(echo runs/table1/voc/an_lr1e20_s1_*)
[ -f "$bad/done" ] || fail "the diverged run is not marked done"
"$PYTHON" - "$bad" <<'EOF'
import json, sys
final = [json.loads(l) for l in open(sys.argv[1] + "/run.jsonl")][-1]
assert final["event"] == "final" and final["status"] == "diverged", final
EOF
cat results/table1.md
grep -q "^| Naive AN | [0-9.]*† |" results/table1.md || fail "the AN cell lacks the † mark"
grep -q "^† diverged: 1 run of 1 setting ended with a NaN/Inf" results/table1.md || fail "no footnote"
grep -q "$bad" results/table1.md || fail "the footnote does not name the run"
grep -q "^Naive AN,voc,lr=1e-05," results/table1.picks.csv || fail "the pick is not lr 1e-5: $(cat results/table1.picks.csv)"
# the results page (written at the end of make table1) shows the run as diverged
[ -f results/report/index.html ] || fail "make table1 wrote no results/report/index.html"
"$PYTHON" - "$bad" results/report/index.html <<'EOF'
import re, sys
run = sys.argv[1].split("/")[-1]
rows = [r for r in re.findall(r"<tr>(.*?)</tr>", open(sys.argv[2]).read(), re.S) if run in r]
assert rows, "the page has no row for " + run
assert any('<td class="text">diverged</td>' in r for r in rows), rows
EOF
echo "ok: a diverged run is finished, skipped by the pick and counted in the footnote"

rm -f calls.txt "$bad/done"
M table1 > make2.txt 2>&1 || { cat make2.txt; fail "second make"; }
[ ! -e calls.txt ] || fail "the second make trained: $(cat calls.txt)"

# SCHEME=linearinit: the frozen phase at lr 1e20 diverges before its first epoch ends (no
# best.safetensors); its fine-tune ends diverged too ("init run diverged", exit 3), so
# make finishes, the table renders and the footnote counts the setting (batch 2 in the
# frozen phase: more steps in epoch 1 than the 2 that lr 1e20 takes to overflow).
rm -f calls.txt
cp results/table1.md e2e-table1.md
LI=(SCHEME=linearinit LINEARINIT_EPOCHS=2 LINEARINIT_FT_EPOCHS=1
    "LINEARINIT_FROZEN_FLAGS=--freeze-backbone --no-flip --batch 2")
M "${LI[@]}" table1 > li.txt 2>&1 ||
    { cat li.txt; fail "make table1 SCHEME=linearinit stopped at a diverged frozen run"; }
lin=$(echo runs/table1/voc/linear/an_lr1e20_s1_*)
ft=  # the fine-tune: the lr 1e20 run that is not the end-to-end one ($bad)
for d in runs/table1/voc/an_lr1e20_s1_*; do [ "$d" = "$bad" ] || ft=$d; done
[ -n "$ft" ] || fail "no fine-tune directory of the diverged frozen run"
[ ! -e "$lin/best.safetensors" ] || fail "the frozen run at lr 1e20 wrote best.safetensors"
[ -f "$ft/done" ] || fail "the fine-tune of the diverged frozen run is not done"
"$PYTHON" - "$ft" <<'EOF'
import json, sys
final = [json.loads(l) for l in open(sys.argv[1] + "/run.jsonl")][-1]
assert final["event"] == "final" and final["status"] == "diverged", final
assert "init run diverged" in final["diverged_reason"], final
assert final["test_map"] is None and final["epochs_run"] == 0, final
EOF
# its own table files, without the paper columns; the end-to-end table is left as it was
LT=results/table1-linearinit.md
cmp results/table1.md e2e-table1.md || fail "SCHEME=linearinit overwrote results/table1.md"
head -n 3 $LT | grep -q "^| method | voc |$" || { cat $LT; fail "linearinit: paper columns"; }
grep -q "^† diverged: 1 run of 1 setting ended with a NaN/Inf" $LT || { cat $LT; fail "linearinit: no footnote"; }
grep -q "$ft" $LT || fail "linearinit: the footnote does not name the fine-tune"
grep -q "^Naive AN,voc,lr=1e-05," ${LT%.md}.picks.csv || fail "linearinit: the pick is not lr 1e-5"
echo "ok: linearinit: a frozen run that diverged makes a diverged fine-tune; the table renders"
rm -f calls.txt "$ft/done"
M "${LI[@]}" table1 > li2.txt 2>&1 || { cat li2.txt; fail "second linearinit make"; }
[ ! -e calls.txt ] || fail "the second linearinit make trained: $(cat calls.txt)"
echo "pipeline_diverged: all ok"
