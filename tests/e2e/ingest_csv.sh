# wsml-ingest --format csv (the user's format): quoted paths with commas, CRLF, empty
# and space-padded label lists, a PNG among JPEGs, class names from the union or from
# --classes; a variant with val.csv and an observed column imported as given.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$WSML_TESTS/fixtures/ingest_lib.sh"
"$PYTHON" "$FIXTURES/make_fixtures.py" fx csv
wsml-ingest --format csv --root fx/csv --images fx/csv/photos --out a.store --size 24 \
    --encoding raw --quiet
check --format csv --root fx/csv --images fx/csv/photos --store a.store --size 24 --pixels
wsml-ingest --format csv --root fx/csv_obs --images fx/csv_obs/photos --out b.store --size 16 --quiet
check --format csv --root fx/csv_obs --images fx/csv_obs/photos --store b.store --size 16
printf 'sky\ndog\ncar\napple\nzebra\nunused\n' > classes.txt
wsml-ingest --format csv --root fx/csv --images fx/csv/photos --classes classes.txt \
    --out c.store --size 16 --quiet
check --format csv --root fx/csv --images fx/csv/photos --classes classes.txt --store c.store --size 16

printf 'sky\ndog\n' > few.txt
expect_fail "line 2: unknown class \"car\" (not in few.txt)" wsml-ingest --format csv --root fx/csv --images fx/csv/photos \
    --classes few.txt --out d.store --quiet
mkdir bad
printf 'path,labels\nx.jpg,a\n"y.jpg,b\n' > bad/train.csv
expect_fail "train.csv: line 3: unterminated quote" \
    wsml-ingest --format csv --root bad --out d.store --quiet
printf 'file,labels\nx.jpg,a\n' > bad/train.csv
expect_fail "train.csv: line 1:" wsml-ingest --format csv --root bad --out d.store --quiet
printf 'path,labels\nx.jpg,a,b\n' > bad/train.csv
expect_fail "train.csv: line 2: 3 fields" wsml-ingest --format csv --root bad --out d.store --quiet
rm bad/train.csv
expect_fail "train.csv" wsml-ingest --format csv --root bad --out d.store --quiet
# a missing image file is skipped with its reason
mkdir miss
printf 'path,labels\nimg01.jpg,a\nnothere.jpg,b\nimg01.jpg,b|a\n' > miss/train.csv
cp fx/csv/photos/sub/img01.jpg miss/
wsml-ingest --format csv --root miss --out e.store --size 8 --val-frac 0 --quiet 2> warn.txt
grep -q "nothere.jpg" warn.txt
[ "$(wsml-store info e.store --json | "$PYTHON" -c 'import json,sys; d=json.load(sys.stdin); d=d.get("info", d); print(d["counts"]["train"], d["skipped"][0]["path"])')" = "2 nothere.jpg" ]
echo "ingest_csv: all ok"
