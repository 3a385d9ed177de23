# The build as a cluster user: no root, maybe no Debian tools.
#  - `make build/wsml-store` in a copy of the tree (no .git), as an unprivileged user made
#    for the test (as this user when the test does not run as root), with the libraries
#    installed and one Debian package missing (a fake dpkg-query says so): it builds, the
#    executable runs (--version says "git unknown"), and neither apt-get nor sudo is ever
#    called (fakes first on PATH record any call). wsml-store is
#    the smallest executable that shows the mechanism (config.mk, common/, one module)
#    without compiling the CUDA backend.
#  - a hidden library (pkg-config pointing nowhere, lmdb.h hidden from the compiler) stops
#    the build before compiling, with the exact Debian package list and `make deps`, no
#    config.mk and no apt-get call;
#  - `make deps` with a package missing (a fake dpkg-query says so): as the user, the list
#    and exit 1, no apt-get; as root (when the test is root), apt-get install with exactly
#    the missing package.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
repo=$(cd "$WSML_TESTS/.." && pwd)
chmod 755 "$PWD"

# the tree as committed plus new files, without build/ or .git
mkdir src
git -C "$repo" ls-files -co --exclude-standard -z | tar -C "$repo" --null -T - -cf - | tar xf - -C src
[ -f src/GNUmakefile ] && [ ! -e src/build ] && [ ! -e src/.git ] || fail "copy of the tree"

# fakes that record being called
mkdir fake
for tool in apt-get apt sudo; do
  printf '#!/bin/sh\necho "%s $*" >> %s/calls.txt\nexit 0\n' "$tool" "$PWD" > fake/$tool
done
# a Debian system where one run-time package (fonts-dejavu-core) is missing: a build
# that wanted to install packages would try here
printf '#!/bin/sh\ncase "$*" in *fonts-dejavu-core*) exit 1;; esac\necho "install ok installed"\n' > fake/dpkg-query
chmod 755 fake/*
touch calls.txt
chmod 666 calls.txt

as_user=()
if [ "$(id -u)" = 0 ]; then
  user=wsmlb$$
  useradd --system --no-create-home --shell /bin/sh "$user" || fail "useradd $user"
  trap 'userdel "$user" 2> /dev/null || true' EXIT
  chown -R "$user" src
  as_user=(setpriv --reuid="$(id -u "$user")" --regid="$(id -g "$user")" --clear-groups)
  echo "building as $user (uid $(id -u "$user"))"
else
  echo "building as $(id -un) (not root: no user to make)"
fi
# run_user ENV... -- CMD...: CMD as the build user, PATH with the fakes first, HOME nowhere
run_user() {
  local envs=()
  while [ "$1" != -- ]; do envs+=("$1"); shift; done
  shift
  "${as_user[@]}" env -i PATH="$PWD/fake:/usr/local/bin:/usr/bin:/bin" HOME=/nonexistent \
    OPENBLAS_CORETYPE="${OPENBLAS_CORETYPE:-}" "${envs[@]}" "$@"
}

# ---- with the libraries: builds, never installs --------------------------------------
if ! run_user -- make -C src -j2 build/wsml-store > build.log 2>&1; then
  tail -n 20 build.log
  fail "make build/wsml-store as a user"
fi
if [ -s calls.txt ]; then fail "the build called: $(cat calls.txt)"; fi
[ "$(stat -c %U src/build/wsml-store)" = "$(run_user -- id -un)" ] || fail "built by someone else"
run_user -- src/build/wsml-store --version > v.txt || fail "the user's wsml-store does not run"
grep -q '^wsml-store .* (git unknown)$' v.txt || fail "--version outside git: $(head -n1 v.txt)"
echo "ok: built build/wsml-store as a user, no apt-get/sudo call: $(head -n1 v.txt)"

# ---- a library hidden: the exact package list, nothing written -------------------------
# cc that cannot see lmdb.h (as on a machine without liblmdb-dev)
printf '#!/bin/sh\nfor a; do case $a in *.c) grep -q "<lmdb.h>" "$a" && { echo "$a: fatal error: lmdb.h: No such file or directory" >&2; exit 1; };; esac; done\nexec cc "$@"\n' > fake/cc-nolmdb
chmod 755 fake/cc-nolmdb
mkdir empty-pc
rm -rf src/build
set +e
run_user PKG_CONFIG_PATH= PKG_CONFIG_LIBDIR="$PWD/empty-pc" -- make -C src CC=cc-nolmdb build/wsml-store > hidden.log 2>&1
rc=$?
set -e
cat hidden.log
[ $rc -ne 0 ] || fail "the build went on without lmdb"
# vips needs pkg-config (its headers need glib's flags); the others are found by header
grep -qx 'wsml: cannot build: these libraries were not found (pkg-config, or header + -l): lmdb vips' hidden.log ||
  fail "the missing libraries are not named exactly"
grep -qx 'wsml: Debian/Ubuntu packages: liblmdb-dev libvips-dev' hidden.log || fail "no exact package list"
grep -q 'as root: make deps   (runs apt-get install -y liblmdb-dev libvips-dev)' hidden.log || fail "no 'make deps'"
[ ! -e src/build/config.mk ] || fail "config.mk written although a library is missing"
# no pkg-config program at all: libvips cannot be found, and the list says why
mkdir nopc
ln -s /usr/bin/* nopc/ || fail "cannot link /usr/bin's programs"
rm -f nopc/pkg-config nopc/pkgconf nopc/*-pkg-config
rc=0
PATH="$PWD/nopc" sh src/tools/config.sh nopc.mk /nonexistent/nvcc -- \
  lmdb:lmdb.h:lmdb:liblmdb-dev vips:vips/vips.h:vips:libvips-dev > nopc.log 2>&1 || rc=$?
cat nopc.log
[ $rc -ne 0 ] || fail "config.sh without pkg-config exited 0"
grep -qx 'wsml: Debian/Ubuntu packages: pkg-config libvips-dev' nopc.log ||
  fail "without the pkg-config program the list must name it: $(cat nopc.log)"
if grep -q ' -c ' hidden.log; then fail "compiled although a library is missing"; fi
if [ -s calls.txt ]; then fail "called: $(cat calls.txt)"; fi
echo "ok: a hidden library stops the build with its package list"

# ---- make deps: a package missing (the fake dpkg-query) ---------------------------------
set +e
run_user -- make -C src deps > deps.log 2>&1
rc=$?
set -e
cat deps.log
[ $rc -ne 0 ] || fail "make deps as a user with a package missing must fail"
grep -q 'missing Debian packages: fonts-dejavu-core$' deps.log || fail "make deps: no exact list"
grep -q 'as root: make deps' deps.log || fail "make deps: no advice"
if [ -s calls.txt ]; then fail "make deps as a user called: $(cat calls.txt)"; fi
grep -q 'WSML_DEPS=skip' deps.log || fail "make deps: no word of WSML_DEPS=skip"
# the libraries from elsewhere: WSML_DEPS=skip goes on with the list as a reminder
run_user -- make -C src deps WSML_DEPS=skip > skip.log 2>&1 || { cat skip.log; fail "WSML_DEPS=skip failed"; }
grep -q 'not installed as Debian packages: fonts-dejavu-core; going on' skip.log ||
  fail "WSML_DEPS=skip: no reminder: $(cat skip.log)"
if [ -s calls.txt ]; then fail "WSML_DEPS=skip called: $(cat calls.txt)"; fi
if [ "$(id -u)" = 0 ]; then
  PATH="$PWD/fake:$PATH" make -C src deps > rootdeps.log 2>&1 || { cat rootdeps.log; fail "make deps as root"; }
  grep -qx 'apt-get install -y -qq fonts-dejavu-core' calls.txt || fail "root's apt-get calls: $(cat calls.txt)"
  echo "ok: make deps as root runs: $(grep install calls.txt)"
fi
echo "ok: make deps names the missing package to a user and installs it only as root"
