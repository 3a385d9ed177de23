# Reliability (issue 7): a full disk during ingest and export (training: train_diskfull.sh).
# On a 1 MiB tmpfs: wsml-ingest stops with exit 1 and one error line naming the store
# and "No space left on device"; the partial store never opens as complete; a complete
# store already on that disk is untouched; wsml-store export / wsml-eval --out into the
# full disk fail naming the file and leave no partial output. Skipped (with a reason)
# where mount is not permitted.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
mkdir -p full
if ! mount -t tmpfs -o size=1m tmpfs full 2>/dev/null; then
  skip "cannot mount a tmpfs here (needs root)"
fi
trap 'umount full 2>/dev/null || true' EXIT

# a small complete store on the disk first (about 0.2 MiB), and one elsewhere to export
wsml-ingest --format fashion-mosaic --size 16 --train-count 40 --test-count 10 --out full/small --quiet
wsml-store verify full/small --quiet
wsml-store info full/small --json | grep -v '"path"' > small.info
wsml-ingest --format fashion-mosaic --size 32 --train-count 400 --test-count 100 --out big --quiet

# expect_full CMD...: exit 1, one error line naming a path under full/ and the cause
expect_full() {
  local rc=0
  "$@" >out.txt 2>err.txt || rc=$?
  local errs
  errs=$(grep -c 'error' err.txt || true)
  if [ $rc -ne 1 ] || [ "$errs" -ne 1 ] || ! grep -q "full/.*No space left on device" err.txt; then
    echo "FAIL: '$*' on a full disk: exit $rc:"; cat err.txt; exit 1
  fi
  echo "ok: $(grep error err.txt)"
}

expect_full wsml-ingest --format fashion-mosaic --size 32 --train-count 400 --test-count 100 --out full/store --quiet
rc=0
wsml-store info full/store > /dev/null 2> err.txt || rc=$?
[ $rc -eq 1 ] && grep -q incomplete err.txt || { echo "FAIL: the partial store opens: exit $rc $(cat err.txt)"; exit 1; }
echo "ok: the partial store does not open: $(cat err.txt)"
# the store already there is as it was
wsml-store verify full/small --quiet
wsml-store info full/small --json | grep -v '"path"' | cmp - small.info
echo "ok: the complete store on the full disk is intact"

# Outputs into the full disk: an error naming the file, nothing partial left.
rm -rf full/store
cat /dev/zero > full/filler 2>/dev/null || true # fills the disk to the last byte
expect_full wsml-store export big --split train --what labels --out full/labels.npy --quiet
test ! -e full/labels.npy
if ls full | grep -q '\.tmp'; then fail "a temporary file was left in full/: $(ls full)"; fi
expect_full wsml-store export big --split train --what ids --out full/ids.txt --quiet
test ! -e full/ids.txt
wsml-store export big --split test --what labels --out labels.npy --quiet
$PYTHON -c "
import numpy as np
np.save('scores.npy', np.random.RandomState(0).rand(*np.load('labels.npy').shape).astype(np.float32))"
expect_full wsml-eval --scores scores.npy --labels labels.npy --out full/ev --quiet
test ! -e full/ev/metrics.json
if ls full full/ev 2>/dev/null | grep -q '\.tmp'; then fail "a temporary file was left in full/"; fi
# A few KiB free (not 0): one page, where per_class.csv still fits but metrics.json does
# not; the out dir must hold neither afterwards (a complete per_class.csv was left before).
rm -rf full/ev full/filler
cat /dev/zero > full/filler 2>/dev/null || true
truncate -s -4K full/filler
free_kib=$(df -k --output=avail full | tail -1 | tr -d ' ')
[ "$free_kib" -gt 0 ] || fail "no space freed on full/ (df: $free_kib KiB available)"
expect_full wsml-eval --scores scores.npy --labels labels.npy --out full/ev --quiet
test ! -e full/ev/per_class.csv || fail "eval with $free_kib KiB free left full/ev/per_class.csv"
test ! -e full/ev/metrics.json || fail "eval with $free_kib KiB free left full/ev/metrics.json"
if ls full/ev | grep -q '\.tmp'; then fail "a temporary file was left in full/ev: $(ls full/ev)"; fi
echo "ok: with $free_kib KiB free, full/ev holds no per_class.csv or metrics.json"
echo "disk full: ingest, export and eval stopped with the path and the cause; nothing partial looks complete"
