#!/bin/sh
# Makes sure Debian packages are installed (make deps, deps-test, deps-demo).
#
#   sh tools/deps.sh TARGET PACKAGE...
#
# Quiet when every package is installed. Missing ones are installed with apt-get only when
# running as root on a Debian system (dpkg-query and apt-get present); anyone else gets
# the exact list and the command to run, and the exit status 1. On a system without
# dpkg-query the list is printed as a reminder and nothing fails: the build's own probe
# (tools/config.sh) and the tests say what is really missing there. WSML_DEPS=skip does
# the same on Debian for a user whose libraries come from elsewhere (modules, conda, pip).
set -u
target=$1
shift
packages=$(printf '%s\n' "$@" | sort -u | tr '\n' ' ')
if ! command -v dpkg-query > /dev/null 2>&1; then
  echo "wsml: make $target: not a Debian system (no dpkg-query); make sure the equivalents of these Debian packages are installed (docs/build.md): $packages" >&2
  exit 0
fi
missing=""
for p in $packages; do
  dpkg-query -W -f='${Status}\n' "$p" 2> /dev/null | grep -q 'ok installed' || missing="$missing $p"
done
[ -z "$missing" ] && exit 0
if [ "${WSML_DEPS:-}" = skip ]; then
  echo "wsml: make $target: not installed as Debian packages:$missing; going on (WSML_DEPS=skip: the build's probe and the tests say what is really missing)" >&2
  exit 0
fi
if [ "$(id -u)" -eq 0 ] && command -v apt-get > /dev/null 2>&1; then
  echo "wsml: make $target: installing missing Debian packages:$missing"
  # shellcheck disable=SC2086 # a word list
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $missing > /dev/null ||
    { echo "wsml: make $target: apt-get install failed for:$missing" >&2; exit 1; }
  exit 0
fi
{
  echo "wsml: make $target: missing Debian packages:$missing"
  echo "wsml:   as root: make $target   (runs apt-get install -y$missing)"
  echo "wsml:   or, with these installed another way (modules, conda, pip): make ... WSML_DEPS=skip"
} >&2
exit 1
