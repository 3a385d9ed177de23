# wsml-eval table on synthetic run directories (expected values set by construction):
#   - a diverged run ("status": "diverged") is never picked, even with the best val mAP;
#     its cell gets "†" and a footnote counts and names it; picks.csv counts it;
#   - an early-stopped run (status "early-stopped", or the older "early_stopped": true)
#     is picked like any other and counted in a note;
#   - --reference-quirks: when every LL run has it the table keeps the paper's row names
#     (LL-relative included) and says "reference-quirks mode"; mixed with paper-mode LL
#     runs its rows get " (ref. quirks)" and stay out of LL-relative;
#   - --runs-from FILE adds the listed run dirs (same table as on the command line);
#   - check-config: 0 when config.json matches the flags, 1 naming the flag, 1 for a
#     missing config.json, 2 for a bad flag.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

"$PYTHON" - <<'EOF'
import json, os

def run(path, config, vals, final):
    os.makedirs(path, exist_ok=True)
    json.dump(config, open(path + "/config.json", "w"))
    with open(path + "/run.jsonl", "w") as f:
        for k, v in enumerate(vals, 1):
            f.write(json.dumps({"epoch": k, "val_map": v}) + "\n")
        f.write(json.dumps(dict(event="final", **final)) + "\n")

def cfg(loss, lr, seed=1, **kw):
    return dict(loss=loss, dataset="voc", lr=lr, seed=seed, **kw)

R = "runs"
# AN: lr 1e-2 diverged after a val mAP of 95 (never picked); lr 1e-3 diverged with a
# test mAP (a diverged run's best epoch may have one); lr 1e-5 (val 80, test 70) is the pick
run(R + "/an-1e-2", cfg("an", 1e-2), [95], dict(status="diverged", best_epoch=1, best_val_map=95, test_map=None))
run(R + "/an-1e-3", cfg("an", 1e-3), [90], dict(status="diverged", best_epoch=1, best_val_map=90, test_map=88))
run(R + "/an-1e-5", cfg("an", 1e-5), [80], dict(status="ok", best_epoch=1, best_val_map=80, test_map=70))
# LL-Ct: the early-stopped setting (val 85) beats the ok one (val 84); one more run in the
# old form ("early_stopped": true, no status)
run(R + "/llct-0.1", cfg("ll-ct", 1e-5, threshold="relative", delta_rel=0.1), [85, 81],
    dict(status="early-stopped", early_stopped=True, best_epoch=1, best_val_map=85, test_map=75))
run(R + "/llct-0.2", cfg("ll-ct", 1e-5, threshold="relative", delta_rel=0.2), [84],
    dict(status="ok", best_epoch=1, best_val_map=84, test_map=74))
run(R + "/llct-0.3", cfg("ll-ct", 1e-5, threshold="relative", delta_rel=0.3), [83, 79],
    dict(early_stopped=True, best_epoch=1, best_val_map=83, test_map=73))
# quirks: the same LL-Ct runs made with --reference-quirks
for d in (0.1, 0.2):
    run(R + "/q-llct-%g" % d, cfg("ll-ct", 1e-5, threshold="relative", delta_rel=d, reference_quirks=True),
        [86 - 10 * d], dict(status="ok", best_epoch=1, best_val_map=86 - 10 * d, test_map=60 + 10 * d))
EOF

wsml-eval table runs/an-1e-2 runs/an-1e-3 runs/an-1e-5 runs/llct-0.1 runs/llct-0.2 runs/llct-0.3 \
  --out t1 --quiet 2> t1.err || fail "table: $(cat t1.err)"
cat t1.md
grep -q "^| Naive AN | 70.0† |" t1.md || fail "the AN cell: $(grep 'Naive AN' t1.md | head -1)"
grep -q "^Naive AN,voc,lr=1e-05,80.0000,1,70.0000,0.0000,1,2,0," t1.picks.csv || fail "AN pick: $(cat t1.picks.csv)"
grep -q "^† diverged: 2 runs of 2 settings ended with a NaN/Inf loss or logit" t1.md || fail "no footnote"
grep -q "runs/an-1e-2" t1.md && grep -q "runs/an-1e-3" t1.md || fail "the footnote does not name the runs"
grep -q "^| LL-Ct | 75.0 |" t1.md || fail "the early-stopped setting is not the LL-Ct pick"
grep -q "^2 runs stopped early" t1.md || fail "no note on the 2 early-stopped runs"
[ ! -s t1.err ] || fail "diverged runs are not missing runs: $(cat t1.err)"
echo "ok: diverged runs skipped with † and a footnote; early-stopped runs picked and counted"

# Seeds: a setting with a diverged seed is left out of the pick whole (AN lr 1e-2: seed 1
# val 95, seeds 2 and 3 diverged; the stable lr 1e-4 with 3 seeds is the pick); a method
# all of whose settings diverged somewhere has no pick ("—†", ROLE); a cell with fewer
# seeds than the title's n says its n (LL-Ct: 2 seeds of 3).
"$PYTHON" - <<'EOF'
import json, os

def run(path, config, val, final):
    os.makedirs(path, exist_ok=True)
    json.dump(config, open(path + "/config.json", "w"))
    with open(path + "/run.jsonl", "w") as f:
        f.write(json.dumps({"epoch": 1, "val_map": val}) + "\n")
        f.write(json.dumps(dict(event="final", best_epoch=1, best_val_map=val, **final)) + "\n")

def ok(test):
    return dict(status="ok", test_map=test)

DIV = dict(status="diverged", test_map=None)
for s in (1, 2, 3):
    run("seeds/an-1e-2-s%d" % s, dict(loss="an", dataset="voc", lr=1e-2, seed=s), 95,
        ok(90) if s == 1 else DIV)
    run("seeds/an-1e-4-s%d" % s, dict(loss="an", dataset="voc", lr=1e-4, seed=s), 78 + 2 * s,
        ok(68 + 2 * s))
for s in (1, 2):
    run("seeds/llct-s%d" % s, dict(loss="ll-ct", dataset="voc", lr=1e-5, seed=s,
        threshold="relative", delta_rel=0.1), 85, ok(73 + 2 * s))
    run("seeds/role-s%d" % s, dict(loss="role", dataset="voc", lr=1e-5, seed=s), 90,
        ok(80) if s == 1 else DIV)
EOF
wsml-eval table seeds/* --out t5 --quiet 2> t5.err || fail "table: $(cat t5.err)"
cat t5.md
grep -q "n = 3 seeds (a cell with fewer says its n)" t5.md || fail "title: $(head -1 t5.md)"
grep -q "^| Naive AN | 72.0 ± 2.0† |" t5.md || fail "AN: a setting with diverged seeds was picked"
grep -q "^Naive AN,voc,lr=0.0001,82.0000,3,72.0000,2.0000,1,2,0," t5.picks.csv ||
    fail "AN pick: $(cat t5.picks.csv)"
grep -q "^| LL-Ct | 76.0 ± 1.4 (n=2) |" t5.md || fail "LL-Ct: no (n=2)"
grep -q "^| ROLE | —† |" t5.md || fail "ROLE: all settings diverged somewhere but the cell has a value"
echo "ok: settings with a diverged seed are not picked; a cell with other seeds than n says so"

# the quirks mode: every LL run has --reference-quirks
wsml-eval table runs/an-1e-5 runs/q-llct-0.1 runs/q-llct-0.2 --out q --quiet
head -n 1 q.md | grep -q "^Reference-quirks mode" || fail "title: $(head -n1 q.md)"
grep -q "^| LL-Ct | 61.0 |" q.md || fail "quirks rows renamed: $(cat q.md)"
grep -q "^| LL-relative (best of R/Ct/Cp) | 61.0 |" q.md || fail "no LL-relative row in quirks mode"
wsml-eval table runs/an-1e-5 runs/q-llct-0.1 runs/llct-0.2 --paper 1 --out qp --quiet
grep -q "^| LL-Ct (ref. quirks) | 61.0 |" qp.md || fail "mixed: $(cat qp.md)"
grep -q "^| LL-relative (best of R/Ct/Cp) | 74.0 | 89.2 | -15.2 |" qp.md || fail "mixed LL-relative: $(cat qp.md)"
echo "ok: quirks-only tables keep the paper's row names; mixed ones mark the quirks rows"

# --runs-from
printf '%s\n' runs/an-1e-3 "" runs/an-1e-5 runs/llct-0.1 runs/llct-0.2 runs/llct-0.3 > list.txt
wsml-eval table runs/an-1e-2 --runs-from list.txt --out t2 --quiet
cmp t1.csv t2.csv && cmp t1.picks.csv t2.picks.csv || fail "--runs-from gives another table"
if wsml-eval table --runs-from missing.txt --out t3 --quiet 2> t3.err; then fail "a missing list was accepted"; fi
grep -q "missing.txt" t3.err || fail "the error does not name the list: $(cat t3.err)"
[ ! -e t3.md ] || fail "a table was written without runs"
echo "ok: --runs-from"

# check-config
wsml-eval check-config runs/an-1e-5 -- --loss an --lr 1e-5 --store x || fail "check-config: a match refused"
set +e
wsml-eval check-config runs/an-1e-5 -- --loss an --lr 2e-5 --store x 2> c1.err; s1=$?
wsml-eval check-config runs/none -- --loss an 2> c2.err; s2=$?
wsml-eval check-config runs/an-1e-5 -- --loss nope 2> c3.err; s3=$?
wsml-eval check-config runs/an-1e-5 --loss an 2> c4.err; s4=$?
set -e
[ $s1 = 1 ] && grep -q "runs/an-1e-5/config.json: --lr 2e-05 differs from the run's 1e-05" c1.err || fail "mismatch: $s1 $(cat c1.err)"
[ $s2 = 1 ] && grep -q "runs/none/config.json" c2.err || fail "no config.json: $s2 $(cat c2.err)"
[ $s3 = 2 ] && grep -q -- "--loss" c3.err || fail "bad flag: $s3 $(cat c3.err)"
[ $s4 = 2 ] || fail "no '--': $s4 $(cat c4.err)"
echo "eval_table_status: all ok"
