# wsml-ingest --format npy on formatted_*.npy files (<U string arrays with non-ASCII
# paths, float64 labels), with simulated observed labels, and a variant whose
# labels_obs files are imported as given; --classes names the classes.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$WSML_TESTS/fixtures/ingest_lib.sh"
"$PYTHON" "$FIXTURES/make_fixtures.py" fx npy
wsml-ingest --format npy --root fx/npy --out a.store --size 24 --encoding raw --quiet
check --format npy --root fx/npy --store a.store --size 24 --pixels
printf 'c%d\n' 0 1 2 3 4 5 6 7 8 > classes.txt
wsml-ingest --format npy --root fx/npy_obs --classes classes.txt --out b.store --size 16 --quiet
check --format npy --root fx/npy_obs --classes classes.txt --store b.store --size 16
wsml-store info b.store --json | grep -q '"imported"'

# paths relative to <root>/Flickr (the reference's image root for NUS-WIDE): found
# without --images
mkdir strip
ln -s "$PWD/fx/npy/Flickr" strip/Flickr
"$PYTHON" -c "
import numpy as np
for p in ('train', 'val'):
    im = np.load('fx/npy/formatted_%s_images.npy' % p)
    np.save('strip/formatted_%s_images.npy' % p, np.array([s[len('Flickr/'):] for s in im]))
    np.save('strip/formatted_%s_labels.npy' % p, np.load('fx/npy/formatted_%s_labels.npy' % p))"
wsml-ingest --format npy --root strip --out s.store --size 16 --encoding raw --quiet
check --format npy --root strip --images strip/Flickr --store s.store --size 16 --pixels
wsml-store info s.store --json | grep -q '"image_root": "strip/Flickr"'

printf 'c%d\n' 0 1 2 > short.txt
expect_fail "short.txt: 3 class names, but the labels have 9 columns" \
    wsml-ingest --format npy --root fx/npy --classes short.txt --out c.store --quiet
cp -r fx/npy bad
"$PYTHON" -c "
import numpy as np
l = np.load('fx/npy/formatted_val_labels.npy'); l[2, 1] = 0.5
np.save('bad/formatted_val_labels.npy', l)"
expect_fail "formatted_val_labels.npy: entry \[2, 1\] is 0.5" \
    wsml-ingest --format npy --root bad --out c.store --quiet
head -c 60 fx/npy/formatted_val_labels.npy > bad/formatted_val_labels.npy
expect_fail "formatted_val_labels.npy" wsml-ingest --format npy --root bad --out c.store --quiet
rm bad/formatted_train_images.npy
expect_fail "formatted_train_images.npy" wsml-ingest --format npy --root bad --out c.store --quiet
echo "ingest_npy: all ok"
