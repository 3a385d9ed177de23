# Reliability (issue 7): damaged inputs give an error naming the file and what is wrong
# (exit 1, one error line), never a crash or a wrong number.
#  - store: 100 records damaged by one flipped byte each (found in data.mdb by their
#    bytes, read with python3-lmdb): `wsml-store verify` lists exactly those 100
#    (split, index) pairs; export and wsml-eval --store refuse a damaged record, naming it;
#    data.mdb truncated at 7 sizes and flipped at 30 random bytes: every command exits 0
#    or 1, and an exit 0 means every record's CRC and the meta are as before.
#  - checkpoint (best.safetensors / last.safetensors, with wsml's checksum): truncated
#    at 6 sizes and flipped at 12 bytes (header and weights; fixed seed): wsml-eval
#    --model refuses all 18, naming the file; wsml-train --resume / --init refuse a
#    truncated and a flipped one.
#  - .npy (scores / labels of wsml-eval): 8 truncated and 16 header-flipped copies (fixed
#    positions): wsml-eval refuses all 24, naming the file. A flip inside an .npy's data
#    cannot be detected (the format has no checksum) and is not tried.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
wsml-ingest --format fashion-mosaic --size 32 --train-count 400 --test-count 100 --out clean --quiet

# one_error RC_WANT FILE CMD...: CMD exits RC_WANT with one stderr line naming FILE
one_error() {
  local want=$1 file=$2 rc=0
  shift 2
  "$@" >out.txt 2>err.txt || rc=$?
  if [ $rc -ne "$want" ] || [ "$(wc -l < err.txt)" -ne 1 ] || ! grep -qF -- "$file" err.txt; then
    echo "FAIL: '$*': exit $rc (want $want), stderr:"; cat err.txt; exit 1
  fi
}

# flip_byte FILE POS MASK: XORs one byte in place (od + dd: no interpreter per flip)
flip_byte() {
  local b
  b=$(od -An -tu1 -j"$2" -N1 "$1" | tr -d ' ')
  printf "$(printf '\\%03o' $(( b ^ $3 )))" | dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

info_of() { wsml-store info "$1" --json | grep -v '"path"'; } # the whole meta, less the path
info_of clean > clean.info

# damaged_store STORE WHAT: verify and info exit 0 or 1, never a crash; exit 1 with one
# error line naming the store; exit 0 only when the damage changed nothing: verify
# checked every record's CRC and key, and the meta (info --json) is the clean store's.
detected=0 harmless=0
damaged_store() {
  local rc=0
  wsml-store verify "$1" --quiet >out.txt 2>err.txt || rc=$?
  if [ $rc -eq 0 ]; then
    info_of "$1" > dmg.info && cmp -s clean.info dmg.info || { echo "FAIL: $2: verify passed but the meta differs"; exit 1; }
    harmless=$((harmless + 1))
    return
  fi
  if [ $rc -ne 1 ] || ! grep -qF -- "$1" err.txt || [ "$(grep -c 'error' err.txt)" -ne 1 ]; then
    echo "FAIL: $2: wsml-store verify exit $rc:"; cat err.txt; exit 1
  fi
  rc=0
  wsml-store info "$1" >/dev/null 2>err2.txt || rc=$?
  [ $rc -le 1 ] || { echo "FAIL: $2: wsml-store info: exit $rc"; cat err2.txt; exit 1; }
  detected=$((detected + 1))
}

# ---- 100 damaged records: verify finds exactly them
cp -r clean rec100
$PYTHON - rec100 > damaged.txt <<'EOF'
import random, sys
import lmdb
path = sys.argv[1]
env = lmdb.open(path, readonly=True, lock=False, max_dbs=8, subdir=True)
records = []
with env.begin() as t:
    for split in ("train", "val", "test"):
        db = env.open_db(split.encode(), txn=t, create=False)
        records += [(split, int.from_bytes(k, "big"), bytes(v)) for k, v in t.cursor(db)]
env.close()
random.seed(7)
chosen = random.sample(records, 100)
data = bytearray(open(path + "/data.mdb", "rb").read())
for split, index, value in chosen:
    # LMDB stores a value contiguously; copy-on-write may leave stale copies of its page
    # in free pages, so every copy gets the same flip (only the live one matters).
    pos, mask, at, copies = random.randrange(len(value)), random.randrange(1, 256), 0, 0
    while (at := data.find(value, at)) >= 0:
        data[at + pos] ^= mask
        at += 1
        copies += 1
    assert copies >= 1, (split, index)
    print(split, index)
open(path + "/data.mdb", "r+b").write(data)
EOF
rc=0
wsml-store verify rec100 --quiet > bad.txt 2> err.txt || rc=$?
[ $rc -eq 1 ] || { echo "FAIL: verify of 100 damaged records: exit $rc"; cat err.txt; exit 1; }
sort damaged.txt > want.txt
sed 's/:.*//' bad.txt | sort > found.txt
cmp want.txt found.txt || { echo "FAIL: verify's bad records differ from the damaged ones:"; diff want.txt found.txt | head; exit 1; }
[ "$(wc -l < err.txt)" -eq 1 ] && grep -q "(100 bad records in all)" err.txt || { echo "FAIL: verify's summary:"; cat err.txt; exit 1; }
echo "ok: verify lists exactly the 100 damaged records: $(cat err.txt)"
one_error 1 "test record" wsml-store export rec100 --split test --what labels --out x.npy
test ! -e x.npy
echo "ok: export refuses a damaged record: $(cat err.txt)"

# ---- truncated data.mdb
size=$(stat -c %s clean/data.mdb)
for cut in 0 100 4096 12288 $((size / 2)) $((size - 4096)) $((size - 1)); do
  rm -rf trunc
  cp -r clean trunc
  truncate -s $cut trunc/data.mdb
  damaged_store trunc "data.mdb truncated to $cut of $size bytes"
done
echo "ok: 7 truncated stores: $detected refused, $harmless unharmed"

# ---- one flipped byte anywhere in data.mdb (30 random positions)
RANDOM=11
for trial in $(seq 1 30); do
  rm -rf flip
  cp -r clean flip
  pos=$(( (RANDOM * 32768 + RANDOM) % size ))
  flip_byte flip/data.mdb $pos $((1 << (trial % 8)))
  damaged_store flip "byte $pos flipped"
done
echo "ok: truncated and flipped stores: $detected refused, $harmless unharmed (every CRC and the meta as before), 0 crashes"

# ---- checkpoints
wsml-train --store clean --out run --arch resnet18 --width-mult 0.25 --epochs 1 --batch 32 \
  --threads 2 --no-early-stop --quiet
test -f run/best.safetensors -a -f run/last.safetensors
one_error 1 rec100 wsml-eval --store rec100 --model run/best.safetensors --quiet
grep -q "record .*CRC mismatch" err.txt || fail "wsml-eval --store: not a damaged record: $(cat err.txt)"
echo "ok: wsml-eval refuses a store with damaged records: $(cat err.txt)"
wsml-eval --store clean --model run/best.safetensors --json --quiet > eval_ref.json # undamaged: accepted
ck=$(stat -c %s run/best.safetensors)
hdr=$($PYTHON -c "import struct; print(struct.unpack('<Q', open('run/best.safetensors','rb').read(8))[0] + 8)")
n_ck=0
for cut in 0 7 100 $((hdr - 1)) $((hdr + 1000)) $((ck - 1)); do
  head -c $cut run/best.safetensors > bad.safetensors
  one_error 1 bad.safetensors wsml-eval --store clean --model bad.safetensors --quiet
  n_ck=$((n_ck + 1))
done
RANDOM=5
for trial in $(seq 1 12); do
  # half in the JSON header, half in the weights
  if [ $((trial % 2)) -eq 0 ]; then pos=$((RANDOM % hdr)); else pos=$((hdr + (RANDOM * 32768 + RANDOM) % (ck - hdr))); fi
  cp run/best.safetensors bad.safetensors
  flip_byte bad.safetensors $pos $((1 << (trial % 8)))
  one_error 1 bad.safetensors wsml-eval --store clean --model bad.safetensors --quiet
  n_ck=$((n_ck + 1))
done
[ $n_ck -eq 18 ] || fail "$n_ck damaged checkpoints tried, expected 18"
echo "ok: 18 of 18 damaged checkpoints refused by wsml-eval: $(cat err.txt)"
# resume from a damaged last.safetensors, start from a damaged --init
cp -r run run2
# without its final line (a finished run's --resume reads nothing: it is a no-op)
sed -i '/"event":"final"/d' run2/run.jsonl
head -c $((hdr + 5000)) run/last.safetensors > run2/last.safetensors
one_error 1 last.safetensors wsml-train --out run2 --resume --quiet
cp run/last.safetensors run2/last.safetensors
flip_byte run2/last.safetensors $((hdr + 4321)) 4
one_error 1 last.safetensors wsml-train --out run2 --resume --quiet
grep -q checksum err.txt || { echo "FAIL: a flipped weight must be named a checksum mismatch: $(cat err.txt)"; exit 1; }
one_error 1 bad.safetensors wsml-train --store clean --out run3 --init bad.safetensors --epochs 1 --quiet
echo "ok: wsml-train refuses damaged --resume and --init checkpoints: $(cat err.txt)"

# ---- .npy inputs of wsml-eval
wsml-store export clean --split test --what labels --out labels.npy --quiet
$PYTHON -c "
import numpy as np
np.save('scores.npy', np.random.RandomState(0).rand(*np.load('labels.npy').shape).astype(np.float32))"
wsml-eval --scores scores.npy --labels labels.npy --json --quiet > npy_ref.json # undamaged: accepted
# bad_args FILE: wsml-eval's arguments with bad.npy in place of FILE.npy
bad_args() {
  if [ "$1" = scores ]; then args=(--scores bad.npy --labels labels.npy); else args=(--scores scores.npy --labels bad.npy); fi
}
n_npy=0
for f in scores labels; do
  for cut in 0 9 100 $(( $(stat -c %s $f.npy) - 1 )); do
    head -c $cut $f.npy > bad.npy
    bad_args $f
    one_error 1 bad.npy wsml-eval "${args[@]}" --quiet
    n_npy=$((n_npy + 1))
  done
  for pos in 0 6 8 12 25 40 55 70; do
    cp $f.npy bad.npy
    flip_byte bad.npy $pos $((1 << (pos % 8)))
    bad_args $f
    one_error 1 bad.npy wsml-eval "${args[@]}" --quiet
    n_npy=$((n_npy + 1))
  done
done
[ $n_npy -eq 24 ] || fail "$n_npy damaged .npy files tried, expected 24"
echo "ok: .npy: 24 of 24 damaged files refused: $(cat err.txt)"
echo "damaged inputs: store 100/100 flipped records found; $detected stores refused, $harmless unharmed; $n_ck checkpoints, $n_npy npy files refused"
