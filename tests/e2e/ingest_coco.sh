# wsml-ingest --format coco on a fixture written like the 2014 release (gapped category
# ids, a \u-escaped name, images without annotations, RLE and polygon segmentations,
# ids whose string order differs from their numeric order): checked against a numpy
# transcription of format_coco.py + generate_observed_labels.py + generate_split;
# then truncated / malformed JSON (error with byte offset) and a missing file.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$WSML_TESTS/fixtures/ingest_lib.sh"
"$PYTHON" "$FIXTURES/make_fixtures.py" fx coco

wsml-ingest --format coco --root fx/coco --out a.store --size 24 --encoding raw --quiet
check --format coco --root fx/coco --store a.store --size 24 --pixels
wsml-ingest --format coco --root fx/coco --out b.store --size 16 --seed 99 --val-frac 0.5 --quiet
check --format coco --root fx/coco --store b.store --size 16 --seed 99 --val-frac 0.5

ann=fx/coco/annotations/instances_train2014.json
cp -r fx/coco bad
badann=bad/annotations/instances_train2014.json
# truncated in the middle of the annotations array
size=$(stat -c %s $ann)
head -c $((size * 2 / 3)) $ann > $badann
expect_fail "instances_train2014.json: byte $((size * 2 / 3)): unexpected end of file" \
    wsml-ingest --format coco --root bad --out c.store --quiet
# a malformed token: the offset names the byte
"$PYTHON" - "$ann" "$badann" <<'PY'
import sys
s = open(sys.argv[1], 'rb').read()
k = s.index(b'"category_id": ') + len(b'"category_id": ')
open(sys.argv[2], 'wb').write(s[:k] + b'x' + s[k + 1:])
open('offset.txt', 'w').write(str(k))
PY
expect_fail "instances_train2014.json: byte $(cat offset.txt): expected a digit, found 'x'" \
    wsml-ingest --format coco --root bad --out c.store --quiet
# a category id that categories[] does not list
"$PYTHON" - "$ann" "$badann" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d['annotations'][0]['category_id'] = 4
json.dump(d, open(sys.argv[2], 'w'))
PY
expect_fail "category_id 4 is not in categories" wsml-ingest --format coco --root bad --out c.store --quiet
# train and val disagree on the categories
"$PYTHON" - "$ann" "$badann" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
d['categories'][3]['name'] = 'plane'
json.dump(d, open(sys.argv[2], 'w'))
PY
expect_fail "list different categories" wsml-ingest --format coco --root bad --out c.store --quiet
rm $badann
expect_fail "annotations/instances_train2014.json" wsml-ingest --format coco --root bad --out c.store --quiet
cp $ann $badann
rm -r bad/val2014
expect_fail "val2014" wsml-ingest --format coco --root bad --out c.store --quiet
[ ! -e c.store ] || { echo "FAIL: c.store created by a failed ingest"; exit 1; }
echo "ingest_coco: all ok"
