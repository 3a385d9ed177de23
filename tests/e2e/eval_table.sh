# wsml-eval table on synthetic run directories: validation-based selection over a grid,
# seeds averaged, the derived "LL-relative" row, absolute-threshold rows, unfinished and
# unreadable runs listed as missing (never fatal), the by-group layout (Table 2) from
# metrics.json and from the final line's test_groups. Expected values are set by
# construction below (the pick is the highest mean val mAP).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

"$PYTHON" - <<'EOF'
import json, os

def run(path, config, epochs, final=None, metrics=None, tail=""):
    os.makedirs(path, exist_ok=True)
    json.dump(config, open(path + "/config.json", "w"))
    with open(path + "/run.jsonl", "w") as f:
        for k, v in enumerate(epochs, 1):
            f.write(json.dumps({"epoch": k, "train_loss": 0.1, "val_map": v}) + "\n")
        if final is not None:
            f.write(json.dumps(dict(event="final", **final)) + "\n")
        f.write(tail)
    if metrics is not None:
        json.dump(metrics, open(path + "/metrics.json", "w"))

def cfg(loss, ds, lr, seed=1, **kw):
    return dict(loss=loss, dataset=ds, lr=lr, seed=seed, **kw)

R = "runs"
# voc: AN grid over lr -> pick lr 1e-5 (val 82) -> test 69
run(R + "/voc/an-lr1e-4", cfg("an", "voc", 1e-4), [78, 80], dict(best_epoch=2, best_val_map=80, test_map=70))
run(R + "/voc/an-lr1e-5", cfg("an", "voc", 1e-5), [82, 81], dict(best_epoch=1, best_val_map=82, test_map=69))
# LL-R relative: delta 0.1 with two seeds (val mean 85, test 75/77) beats delta 0.2 (84.5)
for seed, (v, t) in [(1, (84, 75)), (2, (86, 77))]:
    run(R + "/voc/ll-r-rel0.1-lr1e-5-s%d" % seed,
        cfg("ll-r", "voc", 1e-5, seed, threshold="relative", delta_rel=0.1),
        [v], dict(best_epoch=1, best_val_map=v, test_map=t))
run(R + "/voc/ll-r-rel0.2-lr1e-5", cfg("ll-r", "voc", 1e-5, threshold="relative", delta_rel=0.2),
    [84.5], dict(best_epoch=1, best_val_map=84.5, test_map=80))
# LL-Ct relative: val 85.5 -> also the LL-relative pick (85.5 > 85)
run(R + "/voc/ll-ct-rel0.2-lr1e-5", cfg("ll-ct", "voc", 1e-5, threshold="relative", delta_rel=0.2),
    [85.5], dict(best_epoch=1, best_val_map=85.5, test_map=74))
# LL-Cp relative: unfinished, its last line cut by a kill -> missing
run(R + "/voc/ll-cp-rel0.3-lr1e-5", cfg("ll-cp", "voc", 1e-5, threshold="relative", delta_rel=0.3),
    [90], None, tail='{"epoch": 2, "val_m')
# coco: AN, one run without "dataset" in its config (named after the parent directory)
run(R + "/coco/an-lr1e-5", cfg("an", "coco", 1e-5), [60], dict(best_epoch=1, best_val_map=60, test_map=64.1))
# wsml-train's layout: flags under "options", the dataset from the store path's basename
c = cfg("an", "coco", 1e-3); del c["dataset"]; c["store"] = "data/stores/coco"
run(R + "/coco/an-lr1e-3", {"options": c, "wsml_version": "0.1.0"}, [61],
    dict(best_epoch=1, best_val_map=61, test_map=65))
# no dataset, no store: named after the parent directory
c = cfg("an", "coco", 1e-2); del c["dataset"]
run(R + "/coco/an-lr1e-2", c, [50], dict(best_epoch=1, best_val_map=50, test_map=50))
run(R + "/coco/ll-r-abs1.0-0.1", cfg("ll-r", "coco", 1e-5, threshold="absolute", r0=1.0, delta_abs=0.1),
    [70], dict(best_epoch=1, best_val_map=70, test_map=70.3))
os.makedirs(R + "/coco/broken", exist_ok=True)
open(R + "/coco/broken/config.json", "w").write("{not json")
# openimages: groups from metrics.json and from the final line
run("oi/an", cfg("an", "openimages", 2e-5), [80], dict(best_epoch=1, best_val_map=80, test_map=82.0),
    metrics={"map": 82.0, "groups": {"G1": 77.1, "G2": 78.7, "G3": 81.5, "G4": 84.1, "G5": 88.8}})
run("oi/ll-r", cfg("ll-r", "openimages", 2e-5, threshold="relative", delta_rel=0.005), [81],
    dict(best_epoch=1, best_val_map=81, test_map=82.6, test_groups=[77.7, 79.3, 82.1, 84.7, 89.4]))
EOF

wsml-eval table runs/voc/*/ runs/coco/*/ --by dataset --out t1 2> t1.err
wsml-eval table runs/voc/*/ runs/coco/* > t1_stdout.md 2>/dev/null
cmp t1.md t1_stdout.md
wsml-eval table oi/an oi/ll-r --by group --out t2 --quiet
wsml-eval table runs/voc/*/ runs/coco/*/ --epochs --quiet > t1_epochs.md
cat t1.md t2.md
grep -q "2 of 12 runs missing" t1.err
grep -q "ll-cp-rel0.3-lr1e-5: unfinished" t1.err
grep -q "broken: config.json" t1.err
# a run directory given twice (same realpath) counts once: the same table
wsml-eval table runs/voc/*/ runs/coco/*/ runs/voc/* ./runs/coco/*/ --by dataset --out t1dup 2> t1dup.err
cmp t1.md t1dup.md || fail "a run given twice changed the table: $(diff t1.md t1dup.md)"
grep -q "2 of 12 runs missing" t1dup.err || fail "a run given twice is counted twice: $(cat t1dup.err)"

"$PYTHON" - <<'EOF'
import csv
rows = list(csv.reader(open("t1.csv")))
assert rows[0] == ["method", "voc", "coco"], rows[0]
got = {r[0]: r[1:] for r in rows[1:]}
want = {
    "Naive AN": ["69.0000", "65.0000"],
    "LL-R": ["76.0000", ""],
    "LL-Ct": ["74.0000", ""],
    "LL-Cp": ["", ""],
    "LL-relative (best of R/Ct/Cp)": ["74.0000", ""],
    "LL-R abs": ["", "70.3000"],
}
assert got == want, got
assert [r[0] for r in rows[1:]] == list(want), "row order"
picks = {(r["method"], r["dataset"]): r for r in csv.DictReader(open("t1.picks.csv"))}
p = picks[("LL-R", "voc")]
assert p["picked"] == "delta_rel=0.1 lr=1e-05" and p["seeds"] == "2", p
assert abs(float(p["test_map_std"]) - 1.4142) < 1e-3 and p["val_map"] == "85.0000", p
assert p["run_dirs"] == "runs/voc/ll-r-rel0.1-lr1e-5-s1;runs/voc/ll-r-rel0.1-lr1e-5-s2", p
p = picks[("LL-relative (best of R/Ct/Cp)", "voc")]
assert p["picked"] == "LL-Ct delta_rel=0.2 lr=1e-05" and p["complete_grid"] == "0", p
assert picks[("LL-R abs", "coco")]["picked"] == "r0=1 delta_abs=0.1 lr=1e-05"
assert picks[("Naive AN", "coco")]["picked"] == "lr=0.001"
md = open("t1.md").read()
assert "| LL-R | 76.0 ± 1.4 | — |" in md, md
# a cell with fewer seeds than the title's n says its n
assert "mean ± std over n = 2 seeds (a cell with fewer says its n)" in md, md
assert "| LL-relative (best of R/Ct/Cp) | 74.0 (n=1)* | — |" in md, md
assert "Missing runs (not counted): 2 of 12" in md, md

rows = list(csv.reader(open("t2.csv")))
assert rows[0] == ["method", "G1", "G2", "G3", "G4", "G5", "all"], rows[0]
got = {r[0]: r[1:] for r in rows[1:]}
assert got["Naive AN"] == ["77.1000", "78.7000", "81.5000", "84.1000", "88.8000", "82.0000"], got
assert got["LL-R"] == ["77.7000", "79.3000", "82.1000", "84.7000", "89.4000", "82.6000"], got
assert got["LL-relative (best of R/Ct/Cp)"] == got["LL-R"], got
# --epochs: per-epoch val mAP of each pick, mean over its seeds (LL-R: (84 + 86) / 2)
ep = open("t1_epochs.md").read()
assert "Validation mAP per epoch of the pick (voc):\n\n| method | 1 | 2 |" in ep, ep
assert "| Naive AN | 82.0 | 81.0 |" in ep and "| LL-R | 85.0 |  |" in ep, ep
assert "Validation mAP per epoch of the pick (coco):\n\n| method | 1 |" in ep, ep
print("eval_table: selections, rows and missing runs as constructed")
EOF

# Nothing finished at all is still a table (all cells empty), not a crash.
mkdir -p empty/run
echo '{"loss": "an", "dataset": "x", "lr": 0.1}' > empty/run/config.json
wsml-eval table empty/run --quiet > empty.md 2>/dev/null
grep -q "| Naive AN | — |" empty.md
# Usage errors exit 2.
set +e; wsml-eval table --by nothing runs/voc/an-lr1e-4 2>/dev/null; s1=$?; wsml-eval table 2>/dev/null; s2=$?; set -e
[ "$s1" -eq 2 ] || fail "exit $s1, expected 2"
[ "$s2" -eq 2 ] || fail "exit $s2, expected 2"
