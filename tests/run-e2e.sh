#!/usr/bin/env bash
# Runs every end-to-end script in tests/e2e (or those named) against the built
# executables in $WSML_BUILD, each in its own temp dir, and prints a summary line.
# A script that cannot run here (tests/e2e/lib/common.sh's skip: exit 77 with a reason)
# is reported as [SKIP] and counted; a skip of a test named in WSML_E2E_REQUIRE (space-
# separated names, e.g. "reliability_diskfull train_diskfull") counts as a failure. A part
# left out of a passing script (lib/common.sh's optional_part) is named on its PASS line
# and counted; under WSML_E2E_REQUIRE optional_part fails the script itself.
set -u
here=$(cd "$(dirname "$0")" && pwd)
export WSML_BUILD=${WSML_BUILD:-$here/../build}
export PYTHON=${PYTHON:-/usr/bin/python3}
export WSML_TESTS=$here
export WSML_E2E_RUNNER=1
export PATH="$WSML_BUILD:$PATH"
if [ "${1:-}" = --self-test ]; then
  # optional_part (tests/fixtures/e2e/part_skip.sh): a PASS naming the part, or, when the
  # test is required, a failure
  fx=$here/fixtures/e2e/part_skip.sh
  out=$(WSML_E2E_REQUIRE= bash "$0" "$fx") || { echo "run-e2e self-test: part_skip failed: $out" >&2; exit 1; }
  grep -q "^\[PASS\] part_skip (.*part skipped: the fixture's optional part)" <<< "$out" ||
    { echo "run-e2e self-test: the PASS line does not name the part: $out" >&2; exit 1; }
  if out=$(WSML_E2E_REQUIRE="x part_skip" bash "$0" "$fx"); then
    echo "run-e2e self-test: a required test passed with a part skipped: $out" >&2; exit 1
  fi
  echo "run-e2e self-test: a skipped part is named on the PASS line, and fails a required test"
  exit 0
fi
required=" ${WSML_E2E_REQUIRE:-} "
scripts=("$@")
[ ${#scripts[@]} -eq 0 ] && scripts=("$here"/e2e/*.sh)
pass=0; fail=0; skipped=0; parts=0; failed=()
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
    part=$(sed -n 's/^SKIPPED PART: //p' "$tmp.log" | paste -sd ';' -)
    if [ -n "$part" ]; then
      parts=$((parts+1)); echo "[PASS] $name ($took; part skipped: $part)"
    else
      echo "[PASS] $name ($took)"
    fi
    pass=$((pass+1))
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
echo "e2e: $pass passed ($parts with a part skipped), $fail failed, $skipped skipped"
[ $fail -eq 0 ]
