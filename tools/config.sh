#!/bin/sh
# Writes $(BUILD)/config.mk, the compiler and linker flags of the libraries wsml builds
# against (run by the GNUmakefile; never installs anything, never needs root).
#
#   sh tools/config.sh OUT NVCC -- NAME:HEADER:LIB:DEBIAN ... [-- optional ...]
#
# Each NAME:HEADER:LIB:DEBIAN is a library: its pkg-config name, a header it installs, its
# -l name and the Debian package that holds it. A library is found through pkg-config
# (PKG_CONFIG_PATH), else when HEADER compiles and -lLIB links with $CC $EXTRA_CFLAGS
# $EXTRA_LDFLAGS (a library installed by hand without a .pc file). The libraries after
# the second -- are optional (the unit tests' Criterion): missing, they get -lLIB and the
# test build fails later with the compiler's message. When a required library is
# missing, nothing is written and the exact package list is printed (exit 1).
# OUT is rewritten only when its text changes, since every object depends on it.
set -u
out=$1 nvcc=$2
shift 3
CC=${CC:-cc}
EXTRA_CFLAGS=${EXTRA_CFLAGS:-}
EXTRA_LDFLAGS=${EXTRA_LDFLAGS:-}
probe=$(mktemp -d "${TMPDIR:-/tmp}/wsml-config.XXXXXX") || exit 1
trap 'rm -rf "$probe"' EXIT

# found NAME HEADER LIB: sets cflags/libs of the library, or returns 1.
found() {
  if pkg-config --exists "$1" 2>/dev/null; then
    cflags=$(pkg-config --cflags "$1") && libs=$(pkg-config --libs "$1") && return 0
  fi
  printf '#include <stdio.h>\n#include <%s>\nint main(void) { return 0; }\n' "$2" > "$probe/p.c"
  # shellcheck disable=SC2086 # flags are word lists
  if $CC $EXTRA_CFLAGS "$probe/p.c" -o "$probe/p" $EXTRA_LDFLAGS "-l$3" 2>/dev/null; then
    cflags="" libs="-l$3"
    return 0
  fi
  return 1
}

all_cflags="" all_libs="" missing_names="" missing_debs="" optional=0 vips_libs="" criterion_libs=""
for spec in "$@"; do
  if [ "$spec" = -- ]; then optional=1; continue; fi
  name=${spec%%:*} rest=${spec#*:}
  header=${rest%%:*} rest=${rest#*:}
  lib=${rest%%:*} deb=${rest#*:}
  if found "$name" "$header" "$lib"; then
    :
  elif [ $optional = 1 ]; then
    cflags="" libs="-l$lib"
  else
    missing_names="$missing_names $name" missing_debs="$missing_debs $deb"
    continue
  fi
  case $name in
    vips) vips_libs=$libs; all_cflags="$all_cflags $cflags" ;;
    criterion) criterion_libs=$libs ;; # its cflags are only for its own static build
    *) all_cflags="$all_cflags $cflags"; all_libs="$all_libs $libs" ;;
  esac
done

# libvips (and glib below it) is found through pkg-config only: without the tool, say so
if [ -n "$missing_names" ] && ! command -v pkg-config > /dev/null 2>&1; then
  missing_names="$missing_names (and the pkg-config program)" missing_debs=" pkg-config$missing_debs"
fi
if [ -n "$missing_names" ]; then
  {
    echo "wsml: cannot build: these libraries were not found (pkg-config, or header + -l):$missing_names"
    echo "wsml: Debian/Ubuntu packages:$missing_debs"
    echo "wsml:   as root: make deps   (runs apt-get install -y$missing_debs)"
    echo "wsml: elsewhere: install them (docs/build.md lists versions) and point PKG_CONFIG_PATH,"
    echo "wsml:   or EXTRA_CFLAGS=-I... EXTRA_LDFLAGS='-L... -Wl,-rpath,...', at them"
  } >&2
  exit 1
fi

have_cuda=""
[ -x "$nvcc" ] && have_cuda=1
# MPI (data-parallel training, common/comm.h) is optional: Open MPI's pkg-config file,
# else the compiler wrapper's flags; without it wsml-train runs one process.
mpi_cflags="" mpi_libs="" have_mpi=""
if pkg-config --exists ompi-c 2>/dev/null; then
  mpi_cflags=$(pkg-config --cflags ompi-c) mpi_libs=$(pkg-config --libs ompi-c) have_mpi=1
elif command -v mpicc > /dev/null 2>&1 && mpicc --showme:compile > /dev/null 2>&1; then
  mpi_cflags=$(mpicc --showme:compile) mpi_libs=$(mpicc --showme:link) have_mpi=1
fi
# NCCL's header (the CUDA backend's gradient all-reduce): NCCL_HOME/include when NCCL_HOME
# is set (e.g. pip's wheel, site-packages/nvidia/nccl), else CUDA's include directory.
have_nccl="" nccl_cflags=""
cuda_home=$(dirname "$(dirname "$nvcc")")
if [ -n "$have_cuda" ] && [ -n "$have_mpi" ]; then
  if [ -n "${NCCL_HOME:-}" ]; then
    if [ -f "$NCCL_HOME/include/nccl.h" ]; then
      have_nccl=1 nccl_cflags="-I$NCCL_HOME/include"
    else
      echo "wsml: NCCL_HOME=$NCCL_HOME has no include/nccl.h: building without NCCL" >&2
    fi
  elif [ -f "$cuda_home/include/nccl.h" ]; then
    have_nccl=1
  fi
fi
# collapse runs of blanks so that the file reads well
squeeze() { echo "$*" | tr -s ' ' | sed 's/^ //; s/ $//'; }
{
  echo "# written by tools/config.sh; delete it (or run make clean) to probe again"
  echo "PKG_CFLAGS := $(squeeze "$all_cflags")"
  echo "VIPS_LIBS := $(squeeze "$vips_libs")"
  echo "BASE_LIBS := $(squeeze "$EXTRA_LDFLAGS $all_libs") -lm -ldl"
  echo "CRITERION_LIBS := $(squeeze "$criterion_libs")"
  echo "HAVE_CUDA := $have_cuda"
  echo "HAVE_MPI := $have_mpi"
  echo "MPI_CFLAGS := $(squeeze "$mpi_cflags")"
  echo "MPI_LIBS := $(squeeze "$mpi_libs")"
  echo "HAVE_NCCL := $have_nccl"
  echo "NCCL_CFLAGS := $nccl_cflags"
} > "$out.tmp" || exit 1
if cmp -s "$out.tmp" "$out"; then rm -f "$out.tmp"; else mv "$out.tmp" "$out"; fi
