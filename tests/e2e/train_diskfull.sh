# Disk full during training (issue 7): the run directory lives on a 15 MiB tmpfs; the
# first checkpoint (8.5 MB) fits, the next one does not fit beside it. wsml-train must
# stop with one line naming the file and the cause, exit 1, leave no temporary file,
# and keep the previous last.safetensors intact (the run resumes from it elsewhere).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
store=store
wsml-ingest --format fashion-mosaic --size 32 --train-count 200 --test-count 16 --out $store --quiet
mkdir -p full
if ! mount -t tmpfs -o size=15m tmpfs full 2>/dev/null; then
  skip "cannot mount a tmpfs here (needs root)"
fi
trap 'umount full 2>/dev/null || true' EXIT
set +e
wsml-train --store $store --out full/run --arch resnet18 --width-mult 0.25 --batch 16 \
  --threads 2 --loss ll-cp --save-every 3 --epochs 2 --quiet 2> err.txt
rc=$?
set -e
cat err.txt
[ $rc -eq 1 ] || { echo "exit $rc, expected 1"; exit 1; }
[ "$(wc -l < err.txt)" -eq 1 ] || { echo "expected one line on stderr"; exit 1; }
grep -q "full/run/last.safetensors.*No space left on device" err.txt
ls full/run
if ls full/run | grep -q '\.tmp\.'; then fail "a temporary file was left behind"; fi
if grep -q '"event"' full/run/run.jsonl; then fail "a failed run must not look finished"; fi
$PYTHON - full/run/last.safetensors <<'PY'
import json, struct, sys
with open(sys.argv[1], "rb") as f:
    n = struct.unpack("<Q", f.read(8))[0]
    header = json.loads(f.read(n))
    size = 8 + n + max(v["data_offsets"][1] for k, v in header.items() if k != "__metadata__")
    f.seek(0, 2)
    assert f.tell() == size, "last.safetensors is truncated"
print("previous checkpoint intact at step", header["__metadata__"]["state.global_step"])
PY
# The kept checkpoint resumes on a disk with room.
cp -r full/run run
umount full
trap - EXIT
wsml-train --store $store --out run --resume --quiet
grep -q '"event":"final"' run/run.jsonl
