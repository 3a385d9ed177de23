# What a cluster user relies on, on the real executables:
#  - --version on all five: the version, the git commit (git's HEAD), OpenBLAS, the CUDA side;
#  - thread counts follow the CPU affinity (taskset, as Slurm and cgroup cpusets set it):
#    `taskset -c 0` gives wsml-train 1 compute thread in config.json and wsml-ingest 1
#    decode thread, two CPUs give 2, --threads wins over the mask;
#  - every run directory keeps train.log: timestamped lines with the run's name, the
#    quoted command line, versions, CPUs, the run's own lines (also under --quiet), the
#    error that ended it and the exit status; --resume appends, --force starts afresh;
#  - stderr lines carry the time and the run name;
#  - wsml-ingest reads Fashion-MNIST from $WSML_FASHION_MNIST (a copy of the four files).
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

head=$(git -C "$WSML_TESTS/.." rev-parse --short=12 HEAD 2> /dev/null || true)
for x in ingest train eval cam store; do
  wsml-$x --version > v.txt 2> v.err || fail "wsml-$x --version exited $?"
  [ ! -s v.err ] || fail "wsml-$x --version wrote to stderr: $(cat v.err)"
  grep -Eq "^wsml-$x [0-9]+\.[0-9]+\.[0-9]+ \(git ([0-9a-f]{12}(-dirty)?|unknown)\)$" v.txt ||
    fail "wsml-$x --version: first line: $(head -n1 v.txt)"
  if [ -n "$head" ]; then grep -q "(git $head" v.txt || fail "wsml-$x: HEAD is $head: $(head -n1 v.txt)"; fi
  grep -q '^OpenBLAS 0\.' v.txt || fail "wsml-$x --version: no OpenBLAS line"
  grep -q '^CUDA backend' v.txt || fail "wsml-$x --version: no CUDA line"
done
echo "ok: --version on all five: $(head -n1 v.txt)"

# Fashion-MNIST from anywhere (no Debian package): $WSML_FASHION_MNIST
mkdir fmnist
cp /usr/share/datasets/fashion-mnist/*-ubyte.gz fmnist/
set +e
WSML_FASHION_MNIST=$PWD/no-such-dir wsml-ingest --format fashion-items --out x --quiet 2> fm.err
rc=$?
set -e
[ $rc = 1 ] && grep -q "$PWD/no-such-dir" fm.err || fail "WSML_FASHION_MNIST not read: exit $rc $(cat fm.err)"

ncpu=$(nproc)
WSML_FASHION_MNIST=$PWD/fmnist taskset -c 0 wsml-ingest --format fashion-mosaic --size 32 --train-count 40 --test-count 8 \
  --out st 2> ingest.err || fail "ingest: $(cat ingest.err)"
grep -Eq '^wsml-ingest: [0-9]{2}:[0-9]{2}:[0-9]{2} \[st\] wrote st: 48 images in .*, 1 decode thread\)$' \
  ingest.err || fail "taskset -c 0 wsml-ingest: $(cat ingest.err)"

threads() { "$PYTHON" -c 'import json, sys; print(json.load(open(sys.argv[1]))["threads"])' "$1/config.json"; }
base=(--store st --arch resnet18 --width-mult 0.25 --batch 8 --epochs 1 --no-early-stop)
taskset -c 0 wsml-train "${base[@]}" --out r1 --max-steps 2 --quiet || fail "taskset -c 0 wsml-train"
[ "$(threads r1)" = 1 ] || fail "taskset -c 0: config.json has $(threads r1) threads"
if [ "$ncpu" -ge 2 ]; then
  taskset -c 0,1 wsml-train "${base[@]}" --out r2 --max-steps 1 --quiet
  [ "$(threads r2)" = 2 ] || fail "taskset -c 0,1: config.json has $(threads r2) threads"
else
  echo "note: one CPU: the two-CPU case is not tried"
fi
taskset -c 0 wsml-train "${base[@]}" --out r3 --max-steps 1 --threads 3 --quiet
[ "$(threads r3)" = 3 ] || fail "--threads 3: config.json has $(threads r3) threads"
echo "ok: threads follow the affinity mask (taskset -c 0: 1; 0,1: 2) unless --threads"

# ---- the run log ----
stamp='^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} \[r1\] wsml-train: '
day0=$(date +%Y-%m-%d)
check_lines() { # every line is stamped and dated today (or the day the test began)
  bad=$(grep -Evc "$stamp" r1/train.log || true)
  [ "$bad" = 0 ] || fail "unstamped lines in r1/train.log: $(grep -Ev "$stamp" r1/train.log | head -3)"
  other=$(grep -Evc "^($day0|$(date +%Y-%m-%d)) " r1/train.log || true)
  [ "$other" = 0 ] || fail "lines not dated today: $(grep -Ev "^$day0 " r1/train.log | head -3)"
}
check_lines
grep -Eq "$stamp"'start \(time zone .*\): [^ ]*wsml-train --store st --arch resnet18 --width-mult 0.25 --batch 8 --epochs 1 --no-early-stop --out r1 --max-steps 2 --quiet$' r1/train.log ||
  fail "no command line in r1/train.log: $(head -n1 r1/train.log)"
grep -Eq "${stamp}version: wsml-train [0-9.]+ \(git " r1/train.log || fail "no version in the log"
grep -Eq "${stamp}version: OpenBLAS " r1/train.log || fail "no OpenBLAS version in the log"
grep -Eq "${stamp}version: CUDA backend" r1/train.log || fail "no CUDA line in the log"
grep -Eq "${stamp}cwd $PWD, host .*, CPUs: 1 usable \(affinity\) of $ncpu online$" r1/train.log ||
  fail "no CPU line: $(grep cwd r1/train.log)"
grep -Eq "${stamp}threads 1, backend cpu, device 0$" r1/train.log || fail "no threads line"
grep -Eq "${stamp}stopped after 2 steps \(--max-steps\)" r1/train.log || fail "--quiet must still log the run's lines"
[ "$(tail -n1 r1/train.log | sed -E "s/$stamp//")" = "exit status 0" ] || fail "last line: $(tail -n1 r1/train.log)"

# --resume appends a second invocation; its stderr lines carry the time and the run name
wsml-train --out r1 --resume 2> resume.err || fail "resume: $(cat resume.err)"
grep -Eq '^wsml-train: [0-9]{2}:[0-9]{2}:[0-9]{2} \[r1\] test mAP ' resume.err ||
  fail "stderr lines without time or run name: $(cat resume.err)"
check_lines
[ "$(grep -c ' wsml-train: start ' r1/train.log)" = 2 ] || fail "--resume must append"
grep -Eq "${stamp}test mAP " r1/train.log || fail "the resumed run's lines are not in the log"

# a refused invocation leaves its error and status at the end of the log
set +e
wsml-train "${base[@]}" --out r1 --quiet 2> refused.err
rc=$?
set -e
[ $rc = 1 ] || fail "a finished run in the way: exit $rc"
tail -n2 r1/train.log | head -n1 | grep -Eq "${stamp}error: r1 holds a finished run" ||
  fail "the error is not in the log: $(tail -n2 r1/train.log)"
tail -n1 r1/train.log | grep -Eq "${stamp}exit status 1$" || fail "no exit status 1"

# --force starts the log afresh with the run
taskset -c 0 wsml-train "${base[@]}" --out r1 --max-steps 1 --force --quiet
[ "$(grep -c ' wsml-train: start ' r1/train.log)" = 1 ] || fail "--force must start a new log"
check_lines
echo "ok: r1/train.log: $(wc -l < r1/train.log) stamped lines; resume appends, force restarts"
