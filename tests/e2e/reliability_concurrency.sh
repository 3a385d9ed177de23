# Reliability (issue 7): concurrency on one store.
#  - 3 x wsml-store verify, 2 x wsml-eval --store and 2 x wsml-train read one store at
#    the same time: all succeed; each evaluation equals a lone evaluation's metrics, and
#    each trainer ends with the weights of a lone run with the same options.
#  - wsml-ingest --force into a store that a reader (a running wsml-train) holds open is
#    refused with one error line, and the store is left intact; once the reader is gone
#    the same command replaces it.
#  - while wsml-ingest writes a store, a reader is refused (never sees a half store).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
wsml-ingest --format fashion-mosaic --size 32 --train-count 400 --test-count 100 --out store --quiet
wsml-store info store --json | grep -v '"path"' > info_ref.json
train=(--arch resnet18 --width-mult 0.25 --batch 32 --threads 1 --no-early-stop --quiet)
wsml-train --store store --out run "${train[@]}" --epochs 1 --max-steps 4
wsml-eval --store store --model run/last.safetensors --json --quiet --threads 1 > eval_ref.json

pids=()
for i in 1 2 3; do wsml-store verify store --quiet > v$i.out 2>&1 & pids+=($!); done
for i in 1 2; do
  wsml-eval --store store --model run/last.safetensors --json --quiet --threads 1 > e$i.json 2> e$i.err &
  pids+=($!)
done
for i in 1 2; do wsml-train --store store --out t$i "${train[@]}" --epochs 1 --max-steps 4 2> t$i.err & pids+=($!); done
failed=0
for p in "${pids[@]}"; do wait "$p" || failed=$((failed + 1)); done
[ $failed -eq 0 ] || { echo "FAIL: $failed of ${#pids[@]} concurrent readers failed:"; cat v*.out e*.err t*.err; exit 1; }
cmp eval_ref.json e1.json || fail "the first concurrent evaluator differs from a lone run"
cmp eval_ref.json e2.json || fail "the second concurrent evaluator differs from a lone run"
$PYTHON - run/last.safetensors t1/last.safetensors t2/last.safetensors <<'EOF'
import json, struct, sys
def tensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        h = json.loads(f.read(n))
        data = f.read()
    h.pop("__metadata__", None)
    return {k: data[v["data_offsets"][0]:v["data_offsets"][1]] for k, v in h.items()}
lone = tensors(sys.argv[1])
assert len(lone) > 0
for path in sys.argv[2:]:
    got = tensors(path)
    assert got.keys() == lone.keys(), path
    bad = [k for k in lone if got[k] != lone[k]]
    assert not bad, "%s: %d of %d tensors differ from the lone run's (%s)" % (path, len(bad), len(lone), bad[0])
print("concurrent trainers: both equal the lone run in all %d tensors" % len(lone))
EOF
echo "ok: 3 verify + 2 eval + 2 train on one store at once all succeeded, results as a lone run's"

# An ingest into a store held open by a reader is refused; the store stays intact.
wsml-train --store store --out long "${train[@]}" --epochs 50 --trace &
reader=$!
for _ in $(seq 1 600); do
  if grep -q '"step"' long/run.jsonl 2>/dev/null; then break; fi
  sleep 0.05
done
grep -q '"step"' long/run.jsonl || { echo "FAIL: the reader did not start"; kill -9 $reader; exit 1; }
rc=0
wsml-ingest --format fashion-mosaic --size 32 --train-count 40 --test-count 10 --out store --force \
  --quiet 2> err.txt || rc=$?
kill -9 $reader 2>/dev/null || true
wait $reader 2>/dev/null || true
if [ $rc -ne 1 ] || [ "$(wc -l < err.txt)" -ne 1 ] || ! grep -q "store" err.txt; then
  echo "FAIL: ingest --force into a store being read: exit $rc:"; cat err.txt; exit 1
fi
echo "ok: refused: $(cat err.txt)"
wsml-store verify store --quiet
wsml-store info store --json | grep -v '"path"' | cmp - info_ref.json
wsml-eval --store store --model run/last.safetensors --json --quiet --threads 1 | cmp - eval_ref.json
echo "ok: the store is intact after the refused ingest"

# With the reader gone, the same ingest replaces the store.
wsml-ingest --format fashion-mosaic --size 32 --train-count 40 --test-count 10 --out store --force --quiet
[ "$(wsml-store info store --json | grep -c '"train": 32')" -eq 1 ] || { echo "FAIL: the store was not replaced"; exit 1; }
echo "ok: replaced once the reader was gone"

# While wsml-ingest writes a store, every reader is refused with one error line. The
# writer is frozen (SIGSTOP) as soon as its data.mdb exists (it holds the store's lock
# from before creating it), so that the readers surely run mid-write; then it resumes
# and finishes a store that verifies.
wsml-ingest --format fashion-mosaic --size 32 --train-count 3000 --test-count 500 --out big --quiet &
writer=$!
exec 9<> <(:) # read -t on it is a sleep without a fork
for _ in $(seq 1 20000); do
  if [ -e big/data.mdb ]; then break; fi
  kill -0 $writer 2>/dev/null || break
  read -r -t 0.001 -u 9 || true
done
kill -STOP $writer
refused=0
for cmd in "wsml-store info big" "wsml-store verify big" "wsml-store export big --split test --what ids --out ids.txt" \
           "wsml-eval --store big --model run/last.safetensors --quiet" \
           "wsml-train --store big --out t3 ${train[*]} --epochs 1"; do
  rc=0
  $cmd > /dev/null 2> err.txt || rc=$?
  if [ $rc -ne 1 ] || [ "$(wc -l < err.txt)" -ne 1 ] || ! grep -q big err.txt; then
    kill -CONT $writer
    echo "FAIL: '$cmd' while the store is being written: exit $rc:"; cat err.txt; exit 1
  fi
  refused=$((refused + 1))
done
test ! -e ids.txt
kill -CONT $writer
wait $writer
wsml-store verify big --quiet
echo "ok: $refused readers refused while the store was being written: $(cat err.txt)"
