# wsml-ingest --format fashion-mosaic / fashion-items from the Debian Fashion-MNIST files:
# ids, labels, observed labels and exact pixels against a numpy redraw of the documented
# procedure (ingest/fashion.c); the hidden-positive fraction; an interrupted ingest
# (SIGINT, SIGKILL) leaves no complete store; a corrupt IDX file is named.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$WSML_TESTS/fixtures/ingest_lib.sh"
wsml-ingest --format fashion-mosaic --out m.store --train-count 400 --test-count 80 --quiet
"$PYTHON" "$ORACLE" fashion --format fashion-mosaic --store m.store --train-count 400 --test-count 80
wsml-ingest --format fashion-mosaic --out m2.store --train-count 200 --test-count 50 \
    --tile-prob 0.3 --mosaic-seed 5 --quiet
"$PYTHON" "$ORACLE" fashion --format fashion-mosaic --store m2.store --train-count 200 \
    --test-count 50 --tile-prob 0.3 --mosaic-seed 5
wsml-ingest --format fashion-items --out i.store --train-count 200 --test-count 50 \
    --val-frac 0.1 --quiet
"$PYTHON" "$ORACLE" fashion --format fashion-items --store i.store --train-count 200 \
    --test-count 50 --val-frac 0.1
# the default for items: every item in train, no val
wsml-ingest --format fashion-items --out i2.store --train-count 30 --test-count 5 --quiet
wsml-store info i2.store --json | "$PYTHON" -c "
import json, sys
d = json.load(sys.stdin); d = d.get('info', d)
assert d['counts'] == {'train': 30, 'val': 0, 'test': 5}, d['counts']
assert (d['height'], d['width'], d['encoding']) == (56, 56, 'raw'), d"

# interrupted: SIGINT and SIGKILL in the middle of a big ingest
for sig in INT KILL; do
    wsml-ingest --format fashion-mosaic --out big$sig.store --train-count 100000 --quiet \
        --jobs 1 2>sig.txt &
    pid=$!
    for _ in $(seq 50); do
        if [ -e big$sig.store/data.mdb ]; then break; fi
        sleep 0.1
    done
    sleep 0.5
    kill -$sig $pid
    if wait $pid; then echo "FAIL: ingest finished despite SIG$sig"; exit 1; fi
    expect_incomplete big$sig.store
    rm -rf big$sig.store
done

mkdir idx
cp /usr/share/datasets/fashion-mnist/*.gz idx/
printf 'not an IDX file' | gzip > idx/t10k-labels-idx1-ubyte.gz
expect_fail "idx/t10k-labels-idx1-ubyte.gz: IDX magic 0x6e6f7420, expected 0x00000801" \
    wsml-ingest --format fashion-mosaic --root idx --out x.store --quiet
gzip -dc /usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz | head -c 5000 | gzip \
    > idx/t10k-labels-idx1-ubyte.gz
expect_fail "idx/t10k-labels-idx1-ubyte.gz: truncated IDX data (4992 of 10000 bytes)" \
    wsml-ingest --format fashion-mosaic --root idx --out x.store --quiet
head -c 1000 /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz > idx/train-images-idx3-ubyte.gz
expect_fail "idx/train-images-idx3-ubyte.gz: truncated IDX data" \
    wsml-ingest --format fashion-mosaic --root idx --out x.store --quiet
cp /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz idx/
rm idx/t10k-labels-idx1-ubyte.gz
expect_fail "idx/t10k-labels-idx1-ubyte.gz" wsml-ingest --format fashion-items --root idx --out x.store --quiet
echo "ingest_fashion: all ok"
