#!/bin/sh
# pipelines/gpu-slot.sh LOCKDIR COMMAND... — runs COMMAND --device G on the first GPU G
# of $GPUS ("0 1 2 3") that no other command started this way holds, waiting (polling
# once a second) until one is free. A GPU is held by an exclusive flock on LOCKDIR/G.lock
# for as long as COMMAND runs (the kernel drops the lock when the process ends, also on
# a kill), so `make -jN` with GPUS never puts two runs on one GPU at the same time.
# Exit status: COMMAND's; 2 when GPUS is empty or LOCKDIR cannot be made.
lockdir=$1
shift
[ -n "$GPUS" ] || { echo "gpu-slot: GPUS is empty" >&2; exit 2; }
mkdir -p "$lockdir" || { echo "gpu-slot: cannot create $lockdir" >&2; exit 2; }
while :; do
    for g in $GPUS; do
        exec 9>>"$lockdir/$g.lock"
        if flock -n 9; then
            "$@" --device "$g"
            exit $?
        fi
        exec 9>&-
    done
    sleep 1
done
