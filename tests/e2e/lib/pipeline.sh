# Sourced by the pipeline e2e tests (pipeline_demo.sh, pipeline_tables.sh) in their temp
# dir: repo, B, the logging $(WSML) folder and make's arguments for running a pipeline
# against the executables already built.
repo=$(cd "$WSML_TESTS/.." && pwd)
B=$WSML_BUILD

# bin/, the pipelines' $(WSML): wsml-ingest and wsml-train are wrappers that log each call
# to calls.txt, so the test sees what make really ran (make prints the commands before
# the shell picks --resume/--force); the other executables named (eval, cam) are links,
# where built.
pipeline_bin() {
  mkdir bin
  for x in ingest train; do
    printf '#!/bin/bash\necho "wsml-%s $*" >> %s/calls.txt\nexec %s/wsml-%s "$@"\n' \
        $x "$PWD" "$B" $x > bin/wsml-$x
    chmod +x bin/wsml-$x
  done
  for x in "$@"; do # every executable is always built: a missing one fails the test
    [ -x "$B/wsml-$x" ] || fail "$B/wsml-$x is not built"
    ln -s "$B/wsml-$x" bin/wsml-$x
  done
}

# How many times make ran wsml-$1.
calls() { grep -c "^wsml-$1 " calls.txt 2>/dev/null || true; }

# make with the executables already built (-o: never rebuilt from inside a test); each
# test adds its pipeline's variables.
MAKE_ARGS=(-C "$repo" --no-print-directory BUILD="$B" WSML="$PWD/bin" -o "$B/config.mk")
for x in ingest train eval cam store; do MAKE_ARGS+=(-o "$B/wsml-$x"); done

# make demo at toy size (a few hundred 32x32 mosaics, a 1/8-width ResNet-18, 1 pretraining
# epoch, 2 fine-tuning epochs, 2 seeds): pipeline_demo.sh and report_page.sh add these to
# MAKE_ARGS.
DEMO_SMALL=(DEMO_SIZE=32 DEMO_WIDTH=0.125 DEMO_BATCH=25 DEMO_THREADS=1 DEMO_PRE_THREADS=1 DEMO_JOBS=2
    DEMO_ITEMS_TRAIN=400 DEMO_ITEMS_TEST=100 DEMO_MOSAIC_TRAIN=250 DEMO_MOSAIC_TEST=100
    DEMO_PRE_EPOCHS=1 DEMO_EPOCHS=2 DEMO_SEEDS="1 2" DEMO_CAM_COUNT=2)
