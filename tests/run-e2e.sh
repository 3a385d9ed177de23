#!/usr/bin/env bash
# Runs every end-to-end script in tests/e2e (or those named) against the built
# executables in $WSML_BUILD, each in its own temp dir, and prints a summary line.
# A script that cannot run here (tests/e2e/lib/common.sh's skip: exit 77 with a reason)
# is reported as [SKIP] and counted; a skip of a test named in WSML_E2E_REQUIRE (space-
# separated names, e.g. "reliability_diskfull train_diskfull") counts as a failure.
set -u
here=$(cd "$(dirname "$0")" && pwd)
export WSML_BUILD=${WSML_BUILD:-$here/../build}
export PYTHON=${PYTHON:-/usr/bin/python3}
export WSML_TESTS=$here
export WSML_E2E_RUNNER=1
export PATH="$WSML_BUILD:$PATH"
required=" ${WSML_E2E_REQUIRE:-} "
scripts=("$@")
[ ${#scripts[@]} -eq 0 ] && scripts=("$here"/e2e/*.sh)
pass=0; fail=0; skipped=0; failed=()
for s in "${scripts[@]}"; do
  [ -f "$s" ] || s="$here/e2e/$s"
  [ -f "$s" ] || s="$s.sh"
  name=$(basename "$s" .sh)
  tmp=$(mktemp -d /tmp/wsml-e2e-$name.XXXXXX)
  start=$(date +%s)
  rc=0
  (cd "$tmp" && bash "$s") >"$tmp.log" 2>&1 || rc=$?
  took="$(( $(date +%s) - start ))s"
  if [ $rc -eq 0 ]; then
    pass=$((pass+1)); echo "[PASS] $name ($took)"
    rm -rf "$tmp" "$tmp.log"
  elif [ $rc -eq 77 ] && [ "${required#* $name }" = "$required" ]; then
    skipped=$((skipped+1))
    echo "[SKIP] $name: $(sed -n 's/^SKIP: //p' "$tmp.log" | tail -n 1)"
    rm -rf "$tmp" "$tmp.log"
  else
    fail=$((fail+1)); failed+=("$name")
    if [ $rc -eq 77 ]; then
      echo "[FAIL] $name ($took): skipped, but WSML_E2E_REQUIRE requires it: $(sed -n 's/^SKIP: //p' "$tmp.log" | tail -n 1)"
    else
      echo "[FAIL] $name ($took) — last lines of $tmp.log:"
      tail -n 30 "$tmp.log" | sed 's/^/    /'
    fi
  fi
done
echo "e2e: $pass passed, $fail failed, $skipped skipped"
[ $fail -eq 0 ]
