# wsml-store on a store written by wsml-ingest (VOC fixture), against an independent
# Python reader of the documented format (python3-lmdb + a transcription of the record
# layout in store/record.c + zlib.crc32): every id, full and observed label, pixel and
# CRC of every split must equal what `wsml-store export` writes; info agrees with the
# LMDB entry counts. Then damage: 7 records with a flipped payload byte are all listed
# by `verify` (exit 1, one error line naming the first); and the concurrency rule: an
# ingest into a store that a reader holds (shared flock on wsml.lock) is refused.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
source "$WSML_TESTS/fixtures/ingest_lib.sh"
"$PYTHON" "$FIXTURES/make_fixtures.py" fx voc
root=fx/voc/VOCdevkit/VOC2012
wsml-ingest --format voc --root $root --out s.store --size 12 --encoding raw --num-neg 2 --quiet

wsml-store info s.store | grep -q '^classes   20: aeroplane, bicycle'
wsml-store info s.store --json > info.json
wsml-store verify s.store --quiet
for split in train val test; do
    wsml-store export s.store --split $split --what labels --out $split.labels.npy --quiet
    wsml-store export s.store --split $split --what observed --out $split.observed.npy --quiet
    wsml-store export s.store --split $split --what ids --out $split.ids.txt --quiet
    n=$("$PYTHON" -c "import json; print(json.load(open('info.json'))['counts']['$split'])")
    wsml-store export s.store --split $split --what images --range 0:$n --out $split.images --quiet
done

"$PYTHON" - <<'EOF'
import glob, json, struct, zlib
import lmdb, numpy as np
from PIL import Image

info = json.load(open('info.json'))
C = len(info['classes'])
env = lmdb.open('s.store', readonly=True, lock=False, max_dbs=8, subdir=True)
meta = env.open_db(b'meta', create=False)
with env.begin() as txn:
    assert txn.get(b'version', db=meta) == b'1'
    assert txn.get(b'complete', db=meta) == b'1'
    assert json.loads(txn.get(b'info', db=meta))['classes'] == info['classes']

def decode(v):
    """The record layout of store/record.c, written out independently."""
    assert v[:4] == b'WSR1' and v[11] == 0
    assert zlib.crc32(v[:-4]) == struct.unpack_from('<I', v, len(v) - 4)[0]
    enc, ch = v[4], v[5]
    h, w = struct.unpack_from('<HH', v, 6)
    default = -1 if v[10] == 0xff else 0
    idl, nfp, nfo, nop, non, il = struct.unpack_from('<6I', v, 12)
    p = 36
    rid = v[p:p + idl].decode(); p += idl
    lists = []
    for n in (nfp, nfo, nop, non):
        lists.append(np.frombuffer(v, '<u4', n, p)); p += 4 * n
    img = v[p:p + il]; p += il
    assert p + 4 == len(v)
    full = np.full(C, default, np.int8)
    full[lists[0]] = 1
    full[lists[1]] = -1 if default == 0 else 0
    obs = np.zeros(C, np.int8)
    obs[lists[2]] = 1
    obs[lists[3]] = -1
    assert enc == 0 and len(img) == h * w * ch
    return rid, full, obs, np.frombuffer(img, np.uint8).reshape(h, w, ch)

total = 0
for split in ('train', 'val', 'test'):
    db = env.open_db(split.encode(), create=False)
    with env.begin() as txn:
        keys = [k for k, _ in txn.cursor(db=db)]
        n = info['counts'][split]
        assert keys == [struct.pack('>I', i) for i in range(n)], (split, len(keys), n)
        recs = [decode(bytes(txn.get(k, db=db))) for k in keys]
    ids = open(split + '.ids.txt', encoding='utf-8').read().split('\n')[:-1]
    labels, observed = np.load(split + '.labels.npy'), np.load(split + '.observed.npy')
    assert labels.dtype == np.int8 and labels.shape == (n, C), labels.shape
    assert observed.dtype == np.int8 and observed.shape == (n, C)
    assert ids == [r[0] for r in recs]
    assert (labels == np.array([r[1] for r in recs]).reshape(n, C)).all()
    assert (observed == np.array([r[2] for r in recs]).reshape(n, C)).all()
    pngs = sorted(glob.glob(split + '.images/*.png'))
    assert len(pngs) == n
    for (rid, _, _, img), png in zip(recs, pngs):
        assert (np.asarray(Image.open(png)) == img).all(), png
    assert (labels == 1).any() and (labels == 0).any() and (observed == -1).any()
    total += n
print('store_basic: %d records decoded independently and equal to wsml-store export' % total)
EOF

# Damage 7 train records: flip one payload byte in every copy of each record's bytes.
"$PYTHON" - <<'EOF'
import struct, lmdb, random
env = lmdb.open('s.store', readonly=True, lock=False, max_dbs=8, subdir=True)
db = env.open_db(b'train', create=False)
with env.begin() as txn:
    vals = {struct.unpack('>I', k)[0]: bytes(v) for k, v in txn.cursor(db=db)}
env.close()
data = bytearray(open('s.store/data.mdb', 'rb').read())
victims = sorted(random.Random(5).sample(sorted(vals), 7))
for i in victims:
    v = vals[i]
    pos, hits = data.find(v), 0
    while pos >= 0:
        data[pos + len(v) - 20] ^= 0x01  # inside the image payload
        hits += 1
        pos = data.find(v, pos + 1)
    assert hits >= 1, i
open('s.store/data.mdb', 'wb').write(data)
open('victims.txt', 'w').write(''.join('train %d\n' % i for i in victims))
EOF
rc=0
wsml-store verify s.store --quiet > bad.txt 2> err.txt || rc=$?
[ "$rc" -eq 1 ] || { echo "FAIL: verify exit $rc on a damaged store"; exit 1; }
cut -d: -f1 bad.txt > bad_ids.txt
diff bad_ids.txt victims.txt || { echo "FAIL: verify listed other records"; cat bad.txt; exit 1; }
[ "$(wc -l < err.txt)" -eq 1 ] || { echo "FAIL: expected one error line"; cat err.txt; exit 1; }
grep -q "s.store: train record $(head -n1 victims.txt | cut -d' ' -f2): CRC mismatch .*(7 bad records in all)" err.txt
expect_fail "train record $(head -n1 victims.txt | cut -d' ' -f2): CRC mismatch" \
    wsml-store export s.store --split train --what labels --out x.npy --quiet
echo "ok: verify listed the 7 damaged records: $(tr '\n' ' ' < victims.txt)"

# A reader holds the store (shared flock, as wsml_store_open takes it): ingest refused.
wsml-ingest --format voc --root $root --out t.store --size 12 --quiet
"$PYTHON" -c "
import fcntl, subprocess, sys
f = open('t.store/wsml.lock')
fcntl.flock(f, fcntl.LOCK_SH)
r = subprocess.run(['wsml-ingest', '--format', 'voc', '--root', '$root', '--out', 't.store',
                    '--size', '12', '--force', '--quiet'], stderr=subprocess.PIPE)
err = r.stderr.decode()
assert r.returncode == 1 and 'open in another process' in err, (r.returncode, err)
print('ok: refused while a reader holds it:', err.strip())"
wsml-store verify t.store --quiet
echo "store_basic: all ok"
