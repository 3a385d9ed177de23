#!/usr/bin/env bash
# --device N on wsml-train, wsml-eval and wsml-cam: config.json and train.log record the
# device; the cpu backend accepts it with one info line saying it is ignored there; a
# resumed run may change it (it never changes numbers); bad values exit 2 with one line
# naming the flag; the default follows the launcher's local rank (OMPI_COMM_WORLD_LOCAL_RANK).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

wsml-ingest --format fashion-mosaic --size 32 --train-count 16 --test-count 8 --out store --quiet
base=(--store store --arch resnet18 --width-mult 0.25 --batch 8 --threads 1 --epochs 1)

json_get() { # json_get FILE KEY
  "$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1]))[sys.argv[2]])' "$1" "$2"
}

# ---- given: recorded, and one info line saying the cpu backend ignores it
wsml-train "${base[@]}" --out r1 --device 3 --max-steps 1 2> err.txt || fail "train --device 3 exited $?"
[ "$(json_get r1/config.json device)" = 3 ] || fail "config.json device: $(json_get r1/config.json device)"
[ "$(grep -c -- '--device 3 is ignored on the cpu backend' err.txt)" = 1 ] ||
  fail "expected one info line about --device on cpu: $(cat err.txt)"
grep -q 'backend cpu, device 3' r1/train.log || fail "train.log lacks the device: $(cat r1/train.log)"

# ---- resumed with another device: accepted (not a numbers option); the log says which
wsml-train --out r1 --resume --device 1 --quiet || fail "resume --device 1 exited $?"
grep -q 'backend cpu, device 1' r1/train.log || fail "train.log lacks the resumed device"
# resumed without --device: picked afresh (here: the launcher's local rank), not config.json's
OMPI_COMM_WORLD_LOCAL_RANK=2 wsml-train --out r1 --resume --epochs 2 --max-steps 3 --quiet ||
  fail "resume under local rank 2 exited $?"
last=$(awk '/: start \(time zone/ { s = "" } { s = s $0 "\n" } END { printf "%s", s }' r1/train.log)
grep -q 'backend cpu, device 2' <<< "$last" || fail "a resumed run kept the old device: $last"

# ---- default: 0 outside a launcher (no info line), the local rank under one
env -u OMPI_COMM_WORLD_LOCAL_RANK -u MPI_LOCALRANKID -u SLURM_LOCALID \
  wsml-train "${base[@]}" --out r0 --max-steps 1 2> err.txt || fail "train exited $?"
[ "$(json_get r0/config.json device)" = 0 ] || fail "default device: $(json_get r0/config.json device)"
if grep -q -- '--device' err.txt; then fail "an info line about a device nobody gave: $(cat err.txt)"; fi
OMPI_COMM_WORLD_LOCAL_RANK=2 wsml-train "${base[@]}" --out r2 --max-steps 1 --quiet ||
  fail "train under a local rank exited $?"
[ "$(json_get r2/config.json device)" = 2 ] || fail "local rank 2 gave device $(json_get r2/config.json device)"

# ---- bad values: exit 2, one line naming --device
expect_usage() { # expect_usage PROG PATTERN ARGS...
  local prog=$1 pattern=$2 rc=0; shift 2
  "$prog" "$@" > out.txt 2> err.txt || rc=$?
  [ $rc -eq 2 ] || fail "$prog $*: exit $rc, expected 2: $(cat err.txt)"
  [ "$(wc -l < err.txt)" -eq 1 ] || fail "$prog $*: expected one line: $(cat err.txt)"
  grep -q -e "$pattern" err.txt || fail "$prog $*: no '$pattern' in: $(cat err.txt)"
  echo "ok: $(cat err.txt)"
}
for v in -1 x 1.5 4096 ''; do
  expect_usage wsml-train "--device '$v'" "${base[@]}" --out bad --device "$v"
  expect_usage wsml-eval "--device expects an integer" --store store --model r1/last.safetensors --device "$v"
  expect_usage wsml-cam "--device expects an integer" --store store --model r1/last.safetensors \
    --count 1 --out cam.png --device "$v"
done
[ ! -e bad/config.json ] || fail "a refused run left config.json"

# ---- wsml-eval and wsml-cam accept it on the cpu backend and give the same results
wsml-eval --store store --model r1/last.safetensors --threads 1 --json > e0.json 2> /dev/null ||
  fail "eval exited $?"
wsml-eval --store store --model r1/last.safetensors --threads 1 --json --device 5 > e5.json 2> err.txt ||
  fail "eval --device 5 exited $?"
cmp e0.json e5.json || fail "eval --device changed the metrics"
grep -q -- '--device 5 is ignored on the cpu backend' err.txt || fail "eval: no info line: $(cat err.txt)"
wsml-cam --store store --model r1/last.safetensors --count 1 --out c0.png --threads 1 --quiet ||
  fail "cam exited $?"
wsml-cam --store store --model r1/last.safetensors --count 1 --out c1.png --threads 1 --device 1 \
  --quiet || fail "cam --device 1 exited $?"
cmp c0.png c1.png || fail "cam --device changed the figure"

# ---- --help documents it with an example
for p in wsml-train wsml-eval wsml-cam; do
  help=$("$p" --help) || fail "$p --help exited $?"
  grep -q -- '--device 1' <<< "$help" || fail "$p --help lacks --device's example"
done
echo "device flag: ok"
