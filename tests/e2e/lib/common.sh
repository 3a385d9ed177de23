# Sourced first by every e2e script (after its `set -euo pipefail`): the environment that
# tests/run-e2e.sh sets, so that a script also runs on its own (`bash tests/e2e/NAME.sh`
# from anywhere: it then works in a new temp dir), and the helpers fail and skip.
WSML_TESTS=${WSML_TESTS:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
WSML_BUILD=${WSML_BUILD:-$(cd "$WSML_TESTS/.." && pwd)/build}
PYTHON=${PYTHON:-/usr/bin/python3}
export WSML_TESTS WSML_BUILD PYTHON
case ":$PATH:" in
  *":$WSML_BUILD:"*) ;;
  *) export PATH="$WSML_BUILD:$PATH" ;;
esac
if [ -z "${WSML_E2E_RUNNER:-}" ]; then
  cd "$(mktemp -d /tmp/wsml-e2e-alone.XXXXXX)"
  echo "(running alone in $PWD)"
fi

# fail MESSAGE: the check failed.
fail() {
  echo "FAIL: $*"
  exit 1
}

# skip REASON: the test cannot run here. tests/run-e2e.sh prints SKIP with the reason and
# counts it; it fails instead when the test is listed in WSML_E2E_REQUIRE.
WSML_E2E_SKIP=77
skip() {
  echo "SKIP: $*"
  exit $WSML_E2E_SKIP
}

# optional_part REASON: a part of the test cannot run here and is left out; the rest goes
# on. tests/run-e2e.sh names the part on the test's PASS line and counts it; a test
# listed in WSML_E2E_REQUIRE fails instead (CI requires the parts it can run).
optional_part() {
  case " ${WSML_E2E_REQUIRE:-} " in
    *" $(basename "$0" .sh) "*) fail "$* (WSML_E2E_REQUIRE requires $(basename "$0" .sh) in full)" ;;
  esac
  echo "SKIPPED PART: $*"
}
