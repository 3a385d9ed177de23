# wsml-ingest --format cub on a fixture written like CUB-200-2011 (attributes.txt next
# to CUB_200_2011/, a label line with an extra field, an image without attributes),
# checked against a transcription of format_cub.py + the reference generator (which
# shuffles ~C negatives per image even with --num-neg 0).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$WSML_TESTS/fixtures/ingest_lib.sh"
"$PYTHON" "$FIXTURES/make_fixtures.py" fx cub
wsml-ingest --format cub --root fx/cub --out a.store --size 24 --encoding raw --quiet
check --format cub --root fx/cub --store a.store --size 24 --pixels
wsml-ingest --format cub --root fx/cub --out b.store --size 16 --num-neg -1 --num-pos -1 --quiet
check --format cub --root fx/cub --store b.store --size 16 --num-neg -1 --num-pos -1

cp -r fx/cub bad
lab=bad/CUB_200_2011/attributes/image_attribute_labels.txt
sed -i '7d' $lab
expect_fail "no label for image" wsml-ingest --format cub --root bad --out c.store --quiet
cp fx/cub/CUB_200_2011/attributes/image_attribute_labels.txt $lab
sed -i '9s/.*/3 9 2 1 0.5/' $lab
expect_fail "image_attribute_labels.txt: line 9:" wsml-ingest --format cub --root bad --out c.store --quiet
rm bad/attributes.txt
expect_fail "attributes.txt" wsml-ingest --format cub --root bad --out c.store --quiet
echo "ingest_cub: all ok"
