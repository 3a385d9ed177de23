#!/usr/bin/env bash
# Runs every end-to-end script in tests/e2e (or those named) against the built
# executables in $WSML_BUILD, each in its own temp dir, and prints a summary line.
set -u
here=$(cd "$(dirname "$0")" && pwd)
export WSML_BUILD=${WSML_BUILD:-$here/../build}
export PYTHON=${PYTHON:-/usr/bin/python3}
export WSML_TESTS=$here
export PATH="$WSML_BUILD:$PATH"
scripts=("$@")
[ ${#scripts[@]} -eq 0 ] && scripts=("$here"/e2e/*.sh)
pass=0; fail=0; failed=()
for s in "${scripts[@]}"; do
  [ -f "$s" ] || s="$here/e2e/$s"
  [ -f "$s" ] || s="$s.sh"
  name=$(basename "$s" .sh)
  tmp=$(mktemp -d /tmp/wsml-e2e-$name.XXXXXX)
  start=$(date +%s)
  if (cd "$tmp" && bash -eu -o pipefail "$s") >"$tmp.log" 2>&1; then
    pass=$((pass+1)); echo "[PASS] $name ($(( $(date +%s) - start ))s)"
    rm -rf "$tmp" "$tmp.log"
  else
    fail=$((fail+1)); failed+=("$name"); echo "[FAIL] $name ($(( $(date +%s) - start ))s) — last lines of $tmp.log:"
    tail -n 30 "$tmp.log" | sed 's/^/    /'
  fi
done
echo "e2e: $pass passed, $fail failed"
[ $fail -eq 0 ]
