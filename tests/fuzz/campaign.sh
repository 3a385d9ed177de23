#!/usr/bin/env bash
# The fuzzing campaign behind `make fuzz`: every libFuzzer target in build/fuzz for
# FUZZ_SECONDS each, FUZZ_JOBS targets at a time, seeded with tests/fuzz/corpus/<name>
# (read-only here; new inputs go to $BUILD/fuzz/new/<name>). A target that crashes,
# leaks or hangs stops with its input saved as $BUILD/fuzz/crash-<name>-*; the others
# go on. At the end a table (target, seconds, executions, exec/s, corpus, result) is
# written to $BUILD/fuzz/summary.md and printed; the exit status is 1 if any target
# failed.
#
#   bash tests/fuzz/campaign.sh [name...]     (default: every tests/fuzz/fuzz_*.c)
set -u
BUILD=${BUILD:-build}
SECONDS_EACH=${FUZZ_SECONDS:-600}
JOBS=${FUZZ_JOBS:-1}
cd "$(dirname "$0")/../.."

if [ $# -gt 0 ]; then names=("$@"); else
  names=(); for f in tests/fuzz/fuzz_*.c; do n=${f#tests/fuzz/fuzz_}; names+=("${n%.c}"); done
fi
logs=$BUILD/fuzz/logs
mkdir -p "$logs"

run_one() { # NAME: one target, its log in $logs/NAME.log, its result in $logs/NAME.rc
  local n=$1 rc
  mkdir -p "$BUILD/fuzz/new/$n" "tests/fuzz/corpus/$n"
  "$BUILD/fuzz/fuzz_$n" -max_total_time="$SECONDS_EACH" -timeout=30 -rss_limit_mb=2048 \
    -print_final_stats=1 -artifact_prefix="$BUILD/fuzz/crash-$n-" \
    "$BUILD/fuzz/new/$n" "tests/fuzz/corpus/$n" > "$logs/$n.log" 2>&1
  rc=$?
  echo $rc > "$logs/$n.rc"
  echo "fuzz $n: exit $rc, $(grep -m1 -o 'stat::number_of_executed_units: [0-9]*' "$logs/$n.log" | cut -d' ' -f2) executions"
}

echo "fuzz campaign: ${#names[@]} targets x ${SECONDS_EACH}s, $JOBS at a time (logs in $logs)"
for n in "${names[@]}"; do
  [ -x "$BUILD/fuzz/fuzz_$n" ] || { echo "fuzz: $BUILD/fuzz/fuzz_$n missing (make fuzz builds it)" >&2; exit 2; }
  rm -f "$logs/$n.rc"
  while [ "$(jobs -rp | wc -l)" -ge "$JOBS" ]; do wait -n; done
  run_one "$n" &
done
wait

failed=0 total=0
{
  echo "| target | seconds | executions | exec/s | corpus (seed + new) | result |"
  echo "|---|---:|---:|---:|---:|---|"
  for n in "${names[@]}"; do
    log=$logs/$n.log
    ex=$(grep -m1 -o 'stat::number_of_executed_units: [0-9]*' "$log" | cut -d' ' -f2)
    secs=$(grep -m1 -o 'Done [0-9]* runs in [0-9]* second' "$log" | awk '{print $5}')
    ex=${ex:-0} secs=${secs:-$SECONDS_EACH}
    rate=$(( secs > 0 ? ex / secs : 0 ))
    seeds=$(find "tests/fuzz/corpus/$n" -type f | wc -l) new=$(find "$BUILD/fuzz/new/$n" -type f | wc -l)
    rc=$(cat "$logs/$n.rc" 2>/dev/null || echo 99)
    if [ "$rc" = 0 ]; then res="no crash"; else
      failed=$((failed + 1))
      res="FAILED (exit $rc: $(grep -m1 -o 'ERROR: [A-Za-z]*Sanitizer: [a-z-]*\|ERROR: libFuzzer: [a-z-]*\|runtime error: .*' "$log" | head -c 100))"
    fi
    total=$((total + ex))
    echo "| $n | $secs | $ex | $rate | $seeds + $new | $res |"
  done
  echo
  echo "${#names[@]} targets, $total executions in all, $failed failed ($(date -u +%Y-%m-%dT%H:%MZ), $(nproc) cores, $JOBS at a time)"
} > "$BUILD/fuzz/summary.md"
cat "$BUILD/fuzz/summary.md"
[ $failed -eq 0 ]
