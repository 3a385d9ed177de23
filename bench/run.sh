#!/usr/bin/env bash
# `make bench`: runs each CPU benchmark (bench/<row>.sh), each of which times wsml
# against its peer in the same run and prints
#   name: ours=… peer=… ratio=…x (higher is better)
# and writes $WSML_BUILD/bench/<row>.json. `make bench BENCH="eval ingest"` picks rows.
set -u
here=$(cd "$(dirname "$0")" && pwd)
export WSML_BUILD=${WSML_BUILD:-$here/../build}
export PYTHON=${PYTHON:-/usr/bin/python3}
mkdir -p "$WSML_BUILD/bench"
rows=("$@")
if [ ${#rows[@]} -eq 0 ]; then
  for f in "$here"/*.sh; do
    n=$(basename "$f" .sh)
    case "$n" in run|gpu) continue ;; esac
    rows+=("$n")
  done
fi
status=0
for r in "${rows[@]}"; do
  echo "== bench $r"
  bash "$here/$r.sh" 2>&1 | tee "$WSML_BUILD/bench/$r.txt"
  [ "${PIPESTATUS[0]}" -eq 0 ] || { echo "bench $r: FAILED" >&2; status=1; }
done
echo "== summary"
for r in "${rows[@]}"; do grep -h "ratio=" "$WSML_BUILD/bench/$r.txt"; done 2>/dev/null || true
exit $status
