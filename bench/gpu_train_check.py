"""Checks the end-to-end `wsml-train` runs of bench/gpu.sh (its `train` stage), and makes
the CPU reference they are compared with (`bash bench/gpu.sh --prepare`). Standard
library only (the GPU machine's Python has no numpy of ours).

  gpu_train_check.py check ROOT --backend cuda --reference REF.jsonl --json OUT.json
                     --runs RUNS.jsonl
  gpu_train_check.py merge ROOT OUT.jsonl --key KEY

ROOT (check) holds, as gpu.sh leaves them:
  <loss>-<head>/        the sweep: every loss x both heads, tf32, seed 1   (+ .rc files)
  precision-fp32/, precision-bf16/, solo/   ll-cp linear at fp32, bf16, tf32 alone
  <run>.rc              each run's exit status
  stopped-at-50/        the run stopped by --max-steps 50 (a copy, before the resume)
  stopped/              the same run after --resume;  stopped.rc, stopped.resume.rc
Every run must exit 0 with three epoch lines (--no-early-stop), finite train losses that
fall from the first epoch to the last, the final line, and (cuda) a gpu_idle_frac in
[0, 1] on every epoch line. Resume: the stopped run must have exited 0 leaving
last.safetensors at global step 50 and no final line (otherwise the resume would test
nothing); the resumed run must end equal to the solo run, bit for bit: tensors of
best/last.safetensors, their metadata, run.jsonl (wall-clock fields and gpu_idle_frac
aside). Determinism (reported, not required): the solo run against the sweep's ll-cp
linear. Reference: each sweep run's test mAP against the CPU's seed 1; the root mean
square of the differences must be at most twice the CPU's own seed-to-seed one (seed 1
vs 2 over the same 18 configurations), and their mean at most 3 standard errors of such
a mean: the GPU must look like another seed at most, and not be better or worse overall.

ROOT (merge) holds s1/ and s2/ sweeps; OUT gets one line per run (seed, run, epoch
losses, val and test mAP) tagged with KEY (what the reference was made from).
Exit status 0 when everything passes, 1 otherwise; one line per run on stdout.
"""
import argparse
import json
import math
import os
import struct
import sys

LOSSES = ["full", "an", "an-ls", "wan", "epr", "role", "ll-r", "ll-ct", "ll-cp"]
HEADS = ["linear", "boostlu"]
SWEEP = [f"{l}-{h}" for h in HEADS for l in LOSSES]
WALL_CLOCK = ("time_s", "images_per_s", "step_s", "gpu_idle_frac")
META_VARIES = ("state.train_seconds", "state.jsonl_bytes", "wsml.crc32")
RESUME_STEP = 50


def read_lines(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def read_rc(path):
    try:
        return open(path).read().strip()
    except OSError:
        return "missing"


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    tensors = {k: (v["dtype"], data[v["data_offsets"][0]:v["data_offsets"][1]])
               for k, v in header.items()}
    return tensors, meta


def run_summary(root, name, backend, rc_file=None):
    """Checks one run directory; returns (ok, problems, summary dict)."""
    d = os.path.join(root, name)
    rc = read_rc(rc_file or d + ".rc")
    problems = [] if rc == "0" else [f"exit status {rc}"]
    try:
        lines = read_lines(os.path.join(d, "run.jsonl"))
    except (OSError, ValueError) as e:
        return False, [f"run.jsonl: {e}"], {"run": name}
    epochs = [l for l in lines if "epoch" in l and "train_loss" in l]
    final = [l for l in lines if l.get("event") == "final"]
    losses = [l["train_loss"] for l in epochs]
    idle = [l.get("gpu_idle_frac") for l in epochs]
    if len(epochs) != 3:
        problems.append(f"{len(epochs)} epoch lines, expected 3")
    if not final:
        problems.append("no final line")
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for x in losses):
        problems.append("non-finite train loss")
    elif len(losses) >= 2 and not losses[-1] < losses[0]:
        problems.append(f"train loss did not fall ({losses[0]:.4f} -> {losses[-1]:.4f})")
    if backend == "cuda" and not all(isinstance(x, (int, float)) and 0 <= x <= 1 for x in idle):
        problems.append(f"gpu_idle_frac missing or outside [0, 1]: {idle}")
    s = {"run": name, "train_loss": losses, "val_map": [l.get("val_map") for l in epochs],
         "gpu_idle_frac": idle if backend == "cuda" else None,
         "images_per_s": [l.get("images_per_s") for l in epochs],
         "test_map": final[0].get("test_map") if final else None,
         "best_val_map": final[0].get("best_val_map") if final else None}
    return not problems, problems, s


def fmt(xs, f):
    return " ".join(f % x if isinstance(x, (int, float)) else str(x) for x in xs)


def print_run(s, problems):
    print(f"train {s['run']}: {'ok' if not problems else 'FAILED: ' + '; '.join(problems)}"
          f" | loss {fmt(s.get('train_loss', []), '%.4f')}"
          f" | val mAP {fmt(s.get('val_map', []), '%.2f')}"
          + (f" | gpu_idle_frac {fmt(s['gpu_idle_frac'], '%.3f')}" if s.get("gpu_idle_frac") else "")
          + (f" | img/s {fmt(s.get('images_per_s', []), '%.0f')}" if s.get("images_per_s") else "")
          + (f" | test mAP {s['test_map']:.2f}" if isinstance(s.get("test_map"), (int, float)) else ""))


def same_run(a, b):
    """Bit-for-bit comparison of two run directories; returns a list of differences."""
    diffs = []
    for name in ("best.safetensors", "last.safetensors"):
        try:
            ta, ma = read_safetensors(os.path.join(a, name))
            tb, mb = read_safetensors(os.path.join(b, name))
        except (OSError, ValueError, struct.error) as e:
            diffs.append(f"{name}: {e}")
            continue
        if sorted(ta) != sorted(tb):
            diffs.append(f"{name}: tensor names differ")
            continue
        differ = [k for k in ta if ta[k] != tb[k]]
        if differ:
            worst = max((max_rel_diff(ta[k], tb[k]), k) for k in differ)
            diffs.append(f"{name}: {len(differ)} of {len(ta)} tensors differ (largest "
                         f"relative difference {worst[0]:.3g} in {worst[1]})")
        for k in META_VARIES:
            ma.pop(k, None), mb.pop(k, None)
        if ma != mb:
            keys = sorted(k for k in set(ma) | set(mb) if ma.get(k) != mb.get(k))
            diffs.append(f"{name}: metadata differs: {', '.join(keys[:6])}")
    try:
        la, lb = ([{k: v for k, v in l.items() if k not in WALL_CLOCK}
                   for l in read_lines(os.path.join(d, "run.jsonl"))] for d in (a, b))
        if la != lb:
            diffs.append("run.jsonl differs")
    except (OSError, ValueError) as e:
        diffs.append(f"run.jsonl: {e}")
    return diffs


def max_rel_diff(a, b):
    (da, xa), (_, xb) = a, b
    if da != "F32" or len(xa) != len(xb):
        return float("inf")
    n = len(xa) // 4
    fa, fb = struct.unpack(f"<{n}f", xa), struct.unpack(f"<{n}f", xb)
    scale = max((abs(x) for x in fb), default=0) or 1
    return max((abs(x - y) for x, y in zip(fa, fb)), default=0) / scale


def check_resume(root):
    """The stop must have left a checkpoint at step RESUME_STEP and no final line; the
    resumed run must equal the solo run."""
    problems = []
    stopped = os.path.join(root, "stopped-at-50")
    rc = read_rc(os.path.join(root, "stopped.rc"))
    if rc != "0":
        problems.append(f"the run stopped by --max-steps exited {rc}")
    try:
        _, meta = read_safetensors(os.path.join(stopped, "last.safetensors"))
        step = int(meta.get("state.global_step", -1))
        if step != RESUME_STEP:
            problems.append(f"the stopped run's checkpoint is at step {step}, not {RESUME_STEP}")
    except (OSError, ValueError, struct.error) as e:
        problems.append(f"the stopped run left no readable last.safetensors ({e})")
    try:
        if any(l.get("event") == "final" for l in read_lines(os.path.join(stopped, "run.jsonl"))):
            problems.append("the stopped run wrote a final line: nothing was left to resume")
    except (OSError, ValueError) as e:
        problems.append(f"the stopped run's run.jsonl: {e}")
    rc = read_rc(os.path.join(root, "stopped.resume.rc"))
    if rc != "0":
        problems.append(f"the resumed run exited {rc}")
    diffs = [] if problems else same_run(os.path.join(root, "stopped"), os.path.join(root, "solo"))
    exact = not problems and not diffs
    print(f"resume: {'exact' if exact else 'FAILED'}"
          + (f": {'; '.join(problems + diffs)}" if not exact else
             f" (stopped at step {RESUME_STEP} with exit 0, resumed, equal to the solo run)"))
    return exact, {"exact": exact, "problems": problems, "differences": diffs}


def compare_reference(sweep, ref_path):
    try:
        ref = read_lines(ref_path)
    except (OSError, ValueError) as e:
        print(f"reference: FAILED: {ref_path}: {e}")
        return False, {"error": str(e)}
    cpu = {(r["seed"], r["run"]): r.get("test_map") for r in ref}
    rows, d_gpu, d_seed = [], [], []
    for name in SWEEP:
        g, c1, c2 = sweep.get(name, {}).get("test_map"), cpu.get((1, name)), cpu.get((2, name))
        num = all(isinstance(x, (int, float)) for x in (g, c1, c2))
        if num:
            d_gpu.append(g - c1)
            d_seed.append(c2 - c1)
        rows.append({"run": name, "gpu": g, "cpu_seed1": c1, "cpu_seed2": c2})
    if len(d_gpu) < len(SWEEP):
        print(f"reference: FAILED: only {len(d_gpu)} of {len(SWEEP)} runs have test mAPs on both sides")
        return False, {"rows": rows}
    rms = lambda xs: math.sqrt(sum(x * x for x in xs) / len(xs))
    n = len(d_gpu)
    rg, rs, mean = rms(d_gpu), rms(d_seed), sum(d_gpu) / n
    # scattered like another seed at most (rms), and no systematic shift: the mean of n
    # seed-like differences has a standard deviation of rs / sqrt(n); 3 of those
    ok = rg <= 2 * rs and abs(mean) <= 3 * rs / math.sqrt(n)
    print(f"reference: {'ok' if ok else 'FAILED'}: test mAP, GPU - CPU (seed 1): rms {rg:.2f}, "
          f"mean {mean:+.2f}, max |.| {max(map(abs, d_gpu)):.2f}; CPU seed 2 - seed 1: rms "
          f"{rs:.2f} (bounds: rms <= 2 x {rs:.2f}, |mean| <= 3 x {rs:.2f} / sqrt({n}) = "
          f"{3 * rs / math.sqrt(n):.2f})")
    for r, dg in zip(rows, d_gpu):
        print(f"   {r['run']:16} gpu {r['gpu']:6.2f}  cpu s1 {r['cpu_seed1']:6.2f}  "
              f"s2 {r['cpu_seed2']:6.2f}  gpu-cpu {dg:+6.2f}")
    return ok, {"rows": rows, "rms_gpu_minus_cpu": rg, "rms_seed2_minus_seed1": rs,
                "mean_gpu_minus_cpu": mean, "passed": ok}


def cmd_check(a):
    root, failures, runs = a.root, [], {}
    for name in SWEEP + ["precision-fp32", "precision-bf16", "solo"]:
        if not os.path.isdir(os.path.join(root, name)):
            if name == "precision-bf16" and a.backend == "cpu":
                continue  # the cpu backend refuses bf16
            failures.append(f"{name}: missing")
            print(f"train {name}: FAILED: missing")
            continue
        ok, problems, s = run_summary(root, name, a.backend)
        print_run(s, problems)
        s["problems"] = problems
        runs[name] = s
        if not ok:
            failures.append(f"{name}: {'; '.join(problems)}")
    resume_ok, resume = check_resume(root)
    if not resume_ok:
        failures.append("resume")
    det = same_run(os.path.join(root, "solo"), os.path.join(root, "ll-cp-linear"))
    print(f"determinism (solo vs the sweep's ll-cp-linear, reported only): "
          f"{'bit-identical' if not det else '; '.join(det)}")
    ref_ok, reference = compare_reference(runs, a.reference)
    if not ref_ok:
        failures.append("reference")
    doc = {"backend": a.backend, "passed": not failures, "failures": failures, "runs": runs,
           "resume": resume, "deterministic": not det, "determinism_differences": det,
           "reference": reference}
    if a.json:
        with open(a.json, "w") as f:
            json.dump(doc, f, indent=1)
    if a.runs:  # every run's lines, tagged, in one file
        with open(a.runs, "a") as out:
            for name in sorted(os.listdir(root)):
                path = os.path.join(root, name, "run.jsonl")
                if os.path.isfile(path):
                    for line in read_lines(path):
                        out.write(json.dumps({"run": name, **line}) + "\n")
    print(f"train stage: {'passed' if not failures else 'FAILED: ' + ', '.join(failures)}")
    return 0 if not failures else 1


def cmd_merge(a):
    out, failures = [], []
    for seed in (1, 2):
        for name in SWEEP:
            ok, problems, s = run_summary(os.path.join(a.root, f"s{seed}"), name, "cpu")
            print_run(s, problems)
            if not ok:
                failures.append(f"s{seed}/{name}")
            out.append({"key": a.key, "seed": seed, **s})
    if failures:
        print(f"CPU reference: {len(failures)} runs failed: {', '.join(failures)}")
        return 1
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        for r in out:
            f.write(json.dumps(r) + "\n")
    os.replace(tmp, a.out)
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    c = sub.add_parser("check")
    c.add_argument("root")
    c.add_argument("--backend", default="cuda", choices=["cuda", "cpu"])
    c.add_argument("--reference", required=True)
    c.add_argument("--json")
    c.add_argument("--runs")
    m = sub.add_parser("merge")
    m.add_argument("root")
    m.add_argument("out")
    m.add_argument("--key", required=True)
    a = ap.parse_args()
    return cmd_check(a) if a.cmd == "check" else cmd_merge(a)


if __name__ == "__main__":
    sys.exit(main())
