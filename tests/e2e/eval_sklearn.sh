# wsml-eval --scores/--labels against scikit-learn's average_precision_score (the docs/methods.md §4
# oracle): random and heavily tied scores, float32/float64, int8/int64/float labels,
# all-negative classes, masked (-1) entries, a class with no known label, groups; then
# bad inputs (truncated .npy, shape mismatch, bad label, usage errors).
# Runs in a fresh temp dir (tests/run-e2e.sh).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

"$PYTHON" - <<'EOF'
import numpy as np
rng = np.random.RandomState(7)

def write_case(name, n, c, tie_decimals, score_dtype, label_dtype):
    s = rng.rand(n, c)
    if tie_decimals is not None:
        s = np.round(s, tie_decimals)
    s = s.astype(score_dtype)
    y = (rng.rand(n, c) < 0.2).astype(np.int64)
    y[rng.rand(n, c) < 0.25] = -1          # masked entries
    y[:, 1] = np.where(y[:, 1] == -1, -1, 0)  # no positive among known entries -> AP 0
    y[:, 2] = 0                              # all negative -> AP 0
    y[:, 3] = -1                             # nothing known -> skipped
    y[:, 4] = np.where(rng.rand(n) < 0.5, -1, 1)  # only positives known -> AP 1
    np.save(name + "_scores.npy", s)
    np.save(name + "_labels.npy", y.astype(label_dtype))

write_case("rand", 1000, 30, None, np.float32, np.int8)
write_case("tie1", 800, 25, 1, np.float32, np.int64)   # scores rounded to 1 decimal
write_case("tie2", 600, 20, 2, np.float64, np.float32)
write_case("tiny", 3, 6, 0, np.float32, np.float64)     # scores 0/1 only, 3 images
# groups: 5 groups over the 30 classes of "rand"
import json
json.dump([list(range(k, 30, 5)) for k in range(5)], open("groups.json", "w"))
open("classes.txt", "w").write("".join("class, \"%d\"\n" % k for k in range(30)))
EOF

for name in rand tie1 tie2 tiny; do
  extra=()
  if [ "$name" = rand ]; then extra=(--groups groups.json --classes classes.txt); fi
  wsml-eval --scores ${name}_scores.npy --labels ${name}_labels.npy --out out_$name "${extra[@]}" \
    > out_$name.txt
  wsml-eval --scores ${name}_scores.npy --labels ${name}_labels.npy --json --quiet \
    "${extra[@]}" > out_$name.json
done

"$PYTHON" - <<'EOF'
import csv, json, math
import numpy as np
from sklearn.metrics import average_precision_score

def reference(s, y):
    aps = []
    for k in range(y.shape[1]):
        known = y[:, k] != -1
        if not known.any():
            aps.append(None)                       # skipped
        elif not (y[known, k] == 1).any():
            aps.append(0.0)                        # reference convention
        else:
            aps.append(average_precision_score(y[known, k] == 1, s[known, k]))
    used = [a for a in aps if a is not None]
    return aps, 100.0 * sum(used) / len(used)

worst = 0.0
for name in ["rand", "tie1", "tie2", "tiny"]:
    s = np.load(name + "_scores.npy")
    y = np.load(name + "_labels.npy").astype(np.int64)
    aps, want_map = reference(s, y)
    rows = list(csv.DictReader(open("out_%s/per_class.csv" % name)))
    assert len(rows) == y.shape[1], (name, len(rows))
    for k, (row, want) in enumerate(zip(rows, aps)):
        assert int(row["class"]) == k
        known = y[:, k] != -1
        assert int(row["num_pos"]) == int((y[known, k] == 1).sum()), (name, k, row)
        assert int(row["num_known"]) == int(known.sum()), (name, k, row)
        if want is None:
            assert row["ap"] == "", (name, k, row)
        else:
            err = abs(float(row["ap"]) - want)
            worst = max(worst, err)
            assert err <= 1e-9, (name, k, float(row["ap"]), want)
    if name == "rand":
        assert rows[7]["name"] == 'class, "7"', rows[7]
    for path in ["out_%s/metrics.json" % name, "out_%s.json" % name]:
        m = json.load(open(path))
        assert len(m["ap"]) == y.shape[1], (path, len(m["ap"]), y.shape[1])
        assert abs(m["map"] - want_map) <= 1e-9, (name, m["map"], want_map)
        assert m["num_included"] == sum(a is not None for a in aps)
        assert m["ap"][3] is None
        for a, b in zip(m["ap"], aps):
            assert (a is None) == (b is None) and (a is None or abs(a - b) <= 1e-9)
    if name == "rand":
        for g in range(5):
            used = [aps[k] for k in range(g, 30, 5) if aps[k] is not None]
            want = 100.0 * sum(used) / len(used)
            assert abs(m["groups"]["G%d" % (g + 1)] - want) <= 1e-9, (g, m["groups"], want)
    summary = open("out_%s.txt" % name).read()
    assert summary.startswith("mAP %.2f" % want_map), summary
print("eval_sklearn: per-class AP and mAP equal sklearn, worst |diff| = %.3g" % worst)
EOF

# ---- bad inputs: one line on stderr naming the file, exit 1 (runtime) or 2 (usage) --------
expect_fail() { # expect_fail STATUS PATTERN CMD...
  local want=$1 pattern=$2; shift 2
  set +e; "$@" >/dev/null 2>err.txt; local got=$?; set -e
  [ "$got" -eq "$want" ] || { echo "expected exit $want, got $got: $*"; cat err.txt; exit 1; }
  [ "$(wc -l < err.txt)" -eq 1 ] || { echo "expected one error line: $*"; cat err.txt; exit 1; }
  grep -q -- "$pattern" err.txt || { echo "error lacks '$pattern': $*"; cat err.txt; exit 1; }
}
head -c 100 rand_scores.npy > truncated.npy
expect_fail 1 truncated.npy wsml-eval --scores truncated.npy --labels rand_labels.npy
expect_fail 1 "shape mismatch" wsml-eval --scores rand_scores.npy --labels tie1_labels.npy
"$PYTHON" -c "
import numpy as np
y = np.load('rand_labels.npy'); y[5, 2] = 2; np.save('bad_labels.npy', y)
s = np.load('rand_scores.npy'); s[9, 4] = np.nan; np.save('nan_scores.npy', s)
np.save('cube.npy', np.zeros((2, 3, 4), np.float32))
np.save('empty_s.npy', np.zeros((0, 3), np.float32)); np.save('empty_l.npy', np.zeros((0, 3), np.int8))"
expect_fail 1 "row 5, class 2" wsml-eval --scores rand_scores.npy --labels bad_labels.npy
expect_fail 1 "row 9, class 4" wsml-eval --scores nan_scores.npy --labels rand_labels.npy
expect_fail 1 "no rows" wsml-eval --scores empty_s.npy --labels empty_l.npy
expect_fail 1 "cube.npy" wsml-eval --scores cube.npy --labels rand_labels.npy
expect_fail 1 "classes.txt" wsml-eval --scores tie1_scores.npy --labels tie1_labels.npy --classes classes.txt
expect_fail 1 "groups.json" wsml-eval --scores tie1_scores.npy --labels tie1_labels.npy --groups groups.json
expect_fail 1 "nonexistent.npy" wsml-eval --scores nonexistent.npy --labels rand_labels.npy
expect_fail 2 "labels" wsml-eval --scores rand_scores.npy
expect_fail 2 "bogus" wsml-eval --bogus
wsml-eval --help > help.txt
grep -q "Examples" help.txt || fail "wsml-eval --help has no Examples"
echo "eval_sklearn: bad inputs rejected"
