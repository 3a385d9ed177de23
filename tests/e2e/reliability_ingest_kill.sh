# Reliability (issue 7): wsml-ingest killed with SIGKILL at random moments (a small CSV
# dataset of 800 generated JPEGs resized to 160, so that most of the run is decoding and
# writing records rather than start-up). After every
# kill the store must not open as complete (info, verify and export refuse it, exit 1,
# one error line); an ingest into the remains without --force is refused; a rerun with
# --force gives a store equal to an uninterrupted ingest's: exported full labels,
# observed labels and ids per split, and every record value byte for byte (image
# payload and its CRC included), read with python3-lmdb.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
$PYTHON - <<'PYEOF'
import os
import numpy as np
from PIL import Image
r = np.random.RandomState(3)
os.makedirs('data/img')
classes = ['cat', 'dog', 'car', 'sky', 'tree', 'boat']
rows = []
for i in range(800):
    Image.fromarray(r.randint(0, 255, (24, 32, 3)).astype(np.uint8)).save(
        'data/img/%04d.jpg' % i, quality=80)
    rows.append('img/%04d.jpg,%s' % (i, '|'.join(c for c in classes if r.rand() < 0.3)))
with open('data/train.csv', 'w') as f:
    f.write('path,labels\n' + '\n'.join(rows[:640]) + '\n')
with open('data/test.csv', 'w') as f:
    f.write('path,labels\n' + '\n'.join(rows[640:]) + '\n')
PYEOF
fmt=(--format csv --root data --size 160 --jobs 2 --quiet)

exec 9<> <(:) # read -t on it is a sleep without a fork
now_ms() { echo $(( $(date +%s%N) / 1000000 )); }
# wait_new_store PID: returns once kill/data.mdb exists and is not old.mdb (the killed
# store of the previous trial, hard-linked), i.e. the writer has started the new store
wait_new_store() {
  local i
  for i in $(seq 1 20000); do
    if [ -e kill/data.mdb ] && ! [ kill/data.mdb -ef old.mdb ]; then return 0; fi
    kill -0 "$1" 2>/dev/null || return 0
    read -r -t 0.001 -u 9 || true
  done
}

# The uninterrupted ingest, timed: start-up (listing, until data.mdb exists) and writing.
t0=$(now_ms)
wsml-ingest "${fmt[@]}" --out ref &
pid=$!
for _ in $(seq 1 20000); do
  if [ -e ref/data.mdb ]; then break; fi
  kill -0 $pid 2>/dev/null || break
  read -r -t 0.001 -u 9 || true
done
t1=$(now_ms)
wait $pid
t2=$(now_ms)
start_ms=$((t1 - t0)) write_ms=$((t2 - t1))
echo "uninterrupted ingest: ${start_ms} ms start-up, ${write_ms} ms writing the store"

cat > same.py <<'PYEOF'
import sys
import lmdb

def dump(path):
    env = lmdb.open(path, readonly=True, lock=False, max_dbs=8, subdir=True)
    out = {}
    with env.begin() as t:
        for name in (b'meta', b'train', b'val', b'test'):
            db = env.open_db(name, txn=t, create=False)
            out[name] = list(t.cursor(db))
    env.close()
    return out

a, b = dump(sys.argv[1]), dump(sys.argv[2])
for name in a:
    assert len(a[name]) == len(b[name]), '%s: %d vs %d records' % (name, len(a[name]), len(b[name]))
    for (ka, va), (kb, vb) in zip(a[name], b[name]):
        assert ka == kb and va == vb, '%s: record %s differs' % (name, ka.hex())
print('records identical: %s' % ', '.join('%s %d' % (n.decode(), len(a[n])) for n in a))
PYEOF

exports() { # STORE PREFIX
  for s in train val test; do
    wsml-store export "$1" --split $s --what labels --out "$2.$s.labels.npy" --quiet
    wsml-store export "$1" --split $s --what observed --out "$2.$s.observed.npy" --quiet
    wsml-store export "$1" --split $s --what ids --out "$2.$s.ids.txt" --quiet
  done
}
exports ref ref

refused() { # CMD...: must exit 1 with one error line naming the store
  local rc=0
  "$@" >/dev/null 2>err.txt || rc=$?
  if [ $rc -ne 1 ] || [ "$(wc -l < err.txt)" -ne 1 ] || ! grep -q "kill" err.txt; then
    echo "FAIL: '$*' on a killed ingest's store: exit $rc:"; cat err.txt; exit 1
  fi
}

RANDOM=7
interrupted=0 finished=0 early=0 trials=0
while [ $interrupted -lt 20 ] && [ $trials -lt 40 ]; do
  trials=$((trials + 1))
  rm -f old.mdb
  if [ -e kill/data.mdb ]; then ln kill/data.mdb old.mdb; fi
  # a start-up kill may land before --force removed the previous trial's killed store:
  # that store is cleared first, so what the kill leaves is this trial's
  if [ $((trials % 5)) -eq 0 ]; then rm -rf kill; fi
  wsml-ingest "${fmt[@]}" --out kill --force 2>/dev/null &
  pid=$!
  if [ $((trials % 5)) -eq 0 ]; then
    # every fifth kill lands at a random moment of the start-up
    delay_ms=$(( RANDOM % (start_ms > 1 ? start_ms : 1) )) when="of the start-up"
  else
    # the others at a random moment in the first 3/4 of the time the store takes to write
    wait_new_store $pid
    delay_ms=$(( RANDOM % (write_ms * 3 / 4 > 1 ? write_ms * 3 / 4 : 1) )) when="into writing"
  fi
  sleep "$(printf '%d.%03d' $((delay_ms / 1000)) $((delay_ms % 1000)))"
  kill -9 $pid 2>/dev/null || true
  wait $pid 2>/dev/null || true
  if [ ! -d kill ]; then
    early=$((early + 1))
    echo "trial $trials: killed at ${delay_ms} ms $when, before the store was created"
    continue
  fi
  if wsml-store info kill >/dev/null 2>&1; then
    # the kill came after the ingest had finished: then it must be the whole store
    finished=$((finished + 1))
    $PYTHON same.py ref kill >/dev/null
    echo "trial $trials: killed at ${delay_ms} ms $when: ingest had finished (store complete and equal)"
    rm -rf kill # so that the next trial's early kill cannot find a complete store
    continue
  fi
  if [ -e kill/data.mdb ] && [ kill/data.mdb -ef old.mdb ]; then
    fail "trial $trials: the store left is the previous trial's, not this ingest's"
  fi
  interrupted=$((interrupted + 1))
  refused wsml-store info kill
  refused wsml-store verify kill
  refused wsml-store export kill --split train --what labels --out x.npy
  test ! -e x.npy
  echo "trial $trials: killed at ${delay_ms} ms $when: store refused: $(cat err.txt)"
done
[ $interrupted -ge 20 ] || { echo "FAIL: only $interrupted of $trials kills interrupted the ingest"; exit 1; }

# An ingest into the killed store's directory without --force is refused.
set +e
wsml-ingest "${fmt[@]}" --out kill 2>err.txt
rc=$?
set -e
[ $rc -eq 1 ] && grep -q -- "--force" err.txt || { echo "FAIL: rerun without --force: exit $rc: $(cat err.txt)"; exit 1; }

# The rerun with --force equals the uninterrupted ingest.
wsml-ingest "${fmt[@]}" --out kill --force
wsml-store verify kill --quiet
exports kill kill
for s in train val test; do
  for w in labels.npy observed.npy ids.txt; do
    cmp ref.$s.$w kill.$s.$w || { echo "FAIL: $s $w differs after the rerun"; exit 1; }
  done
done
rm -f old.mdb
$PYTHON same.py ref kill
echo "ingest kill: $trials trials: $interrupted interrupted (store refused every time), $finished after the end, $early before the store existed; rerun identical"
