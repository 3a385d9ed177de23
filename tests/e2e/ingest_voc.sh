# wsml-ingest --format voc on a fixture written like the VOC2012 release (padded flags,
# difficult 0s, unsorted lines, images without positives, a greyscale JPEG): counts,
# class order, ids, labels and observed labels against a numpy transcription of the
# reference scripts (format_pascal.py, generate_observed_labels.py, generate_split),
# pixels against PIL, CRCs; then the bad-input cases of issue 3.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$WSML_TESTS/fixtures/ingest_lib.sh"
"$PYTHON" "$FIXTURES/make_fixtures.py" fx voc
root=fx/voc/VOCdevkit/VOC2012

wsml-ingest --format voc --root $root --out a.store --size 32 --encoding raw --jobs 2 --quiet
check --format voc --root $root --store a.store --size 32 --pixels

# other seeds, counts and JPEG encoding; --num-neg > 0 exercises observed negatives
wsml-ingest --format voc --root $root --out b.store --size 20 --encoding jpeg --quality 90 \
    --seed 7 --split-seed 3 --val-frac 0.3 --num-pos 2 --num-neg 3 --jobs 1 --quiet
check --format voc --root $root --store b.store --size 20 --seed 7 --split-seed 3 \
    --val-frac 0.3 --num-pos 2 --num-neg 3 --pixels --pixel-tol 16

# an existing --out is refused, replaced with --force
expect_fail "a.store: exists" wsml-ingest --format voc --root $root --out a.store --quiet
wsml-ingest --format voc --root $root --out a.store --size 16 --force --quiet
[ "$(wsml-store info a.store --json | "$PYTHON" -c 'import json,sys; d=json.load(sys.stdin); print(d.get("info", d)["height"])')" = 16 ]

# missing label list, missing image folder, malformed line: one error naming the file
cp -r fx/voc bad
mv bad/VOCdevkit/VOC2012/ImageSets/Main/cow_val.txt cow_val.txt
expect_fail "ImageSets/Main/cow_val.txt" \
    wsml-ingest --format voc --root bad/VOCdevkit/VOC2012 --out c.store --quiet
mv cow_val.txt bad/VOCdevkit/VOC2012/ImageSets/Main/cow_val.txt
echo "2008_000001 maybe" >> bad/VOCdevkit/VOC2012/ImageSets/Main/dog_train.txt
n=$(wc -l < bad/VOCdevkit/VOC2012/ImageSets/Main/dog_train.txt)
expect_fail "dog_train.txt: line $n:" \
    wsml-ingest --format voc --root bad/VOCdevkit/VOC2012 --out c.store --quiet
expect_fail "ImageSets/Main" wsml-ingest --format voc --root fx/voc/VOCdevkit --out c.store --quiet
mv bad/VOCdevkit/VOC2012/JPEGImages bad/VOCdevkit/VOC2012/images
expect_fail "VOC2012/JPEGImages" \
    wsml-ingest --format voc --root bad/VOCdevkit/VOC2012 --out c.store --quiet
[ ! -e c.store ] || { echo "FAIL: c.store created by a failed ingest"; exit 1; }

# a corrupt image is skipped and listed (store info + summary); --strict makes it fatal
cp -r fx/voc cor
victim=$(ls cor/VOCdevkit/VOC2012/JPEGImages | sort | sed -n 5p)
head -c 300 fx/voc/VOCdevkit/VOC2012/JPEGImages/$victim > cor/VOCdevkit/VOC2012/JPEGImages/$victim
wsml-ingest --format voc --root cor/VOCdevkit/VOC2012 --out d.store --size 16 --quiet 2> warn.txt
grep -q "skipped 1 unreadable image" warn.txt
grep -q "$victim" warn.txt
wsml-store info d.store --json | "$PYTHON" -c "
import json, sys
d = json.load(sys.stdin); d = d.get('info', d)
sk = d['skipped']
assert len(sk) == 1 and sk[0]['path'] == '$victim' and sk[0]['reason'], sk
assert d['skipped_total'] == 1
print('ok: skipped listed:', sk[0])"
expect_fail "$victim" wsml-ingest --format voc --root cor/VOCdevkit/VOC2012 --out e.store \
    --strict --quiet
expect_incomplete e.store

# usage errors exit 2
for args in "--format voc" "--format nope --root x --out y" "--format voc --root x --out y --size 0" \
            "--format voc --root x --out y --encoding png" "--format voc --root x --out y --val-frac 2"; do
    if wsml-ingest $args 2>/dev/null; then echo "FAIL: accepted $args"; exit 1; else rc=$?; fi
    [ $rc -eq 2 ] || { echo "FAIL: exit $rc for $args"; exit 1; }
done
wsml-ingest --help | grep -q -- "--format csv"
echo "ingest_voc: all ok"
