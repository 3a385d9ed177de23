# wsml-ingest --format openimages on a fixture written like OpenImages V3 2017_11
# (classes-trainable order, quoted and repeated display names, non-trainable rows, an
# image with only non-trainable labels, conflicting rows): real partial labels (unknown
# = -1 in full labels, 0 in observed), splits train/validation/test, groups G1..G5.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$WSML_TESTS/fixtures/ingest_lib.sh"
"$PYTHON" "$FIXTURES/make_fixtures.py" fx openimages
wsml-ingest --format openimages --root fx/openimages --out a.store --size 24 --encoding raw --quiet
check --format openimages --root fx/openimages --store a.store --size 24 --pixels
# groups: classes sorted ascending by positive train labels (ties by index), 5 groups
wsml-store info a.store --json | "$PYTHON" -c "
import json, sys, numpy as np
d = json.load(sys.stdin); d = d.get('info', d)
assert d['full_label_default'] == -1
sys.path.insert(0, '$WSML_TESTS/oracles')
import ingest_ref
names, off = ingest_ref.read_openimages('fx/openimages')
pos = (off['train'][1] == 1).sum(0)
order = sorted(range(len(names)), key=lambda c: (pos[c], c))
want = [list(map(int, g)) for g in np.array_split(order, 5)]
assert d['groups'] == want, (d['groups'], want)
print('ok: groups', want)"
cp -r fx/openimages bad
sed -i '3s/,[01]$/,0.5/' bad/2017_11/validation/annotations-human.csv
expect_fail "validation/annotations-human.csv: line 3: Confidence" \
    wsml-ingest --format openimages --root bad --out c.store --quiet
rm -r bad/images_test
expect_fail "images_test" wsml-ingest --format openimages --root bad --out c.store --quiet
echo "ingest_openimages: all ok"
