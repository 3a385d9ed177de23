"""The summary of bench/gpu.sh, rewritten after every stage: one JSON document with each
stage's status (steps, parity tests, end-to-end runs, benchmark rows, sanitizer), and on
stdout one line per stage; once benchmark rows exist, docs/benchmarks.md's comparison lines

  train-gpu: ours=… peer=… ratio=…x (higher is better)  [what was compared]

and a table with images/s, step time, peak memory and the share of the GPU's peak FLOP
rate.

Usage: gpu_summary.py --work DIR --bench BENCH.jsonl --out OUT.json [--out ...] [--final]
  DIR holds what gpu.sh leaves: steps.jsonl (one line per step: status, seconds),
  parity.log (the CUDA unit tests' output), train.json (bench/gpu_train_check.py),
  sanitizer.log, describe.txt, nvidia-smi.txt. BENCH.jsonl: the JSON rows of
  wsml-gpubench (tool "wsml") and bench/gpu_torch.py (tools "pytorch", "flops",
  "versions"); other lines are ignored. Missing files mean "not run yet".
Exit status 0 when every stage that ran passed (with --final: and every stage ran).
"""
import argparse
import json
import os
import re

# Dense datasheet peaks in TFLOP/s (no sparsity): fp32 = CUDA cores, tf32/bf16 = tensor
# cores. Leads only: clocks and power limits of a given card differ.
PEAKS = {
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0},
    "H100 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.0},
    "H100 SXM / H200": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4},
    "A100": {"fp32": 19.5, "tf32": 156.0, "bf16": 312.0},
}
STAGES = ("parity", "train", "bench", "sanitizer", "extra")


def peak_for(gpu_name):
    name = gpu_name or ""
    for key, table in (("PCIe", "H100 PCIe"), ("NVL", "H100 NVL"), ("H100", "H100 SXM / H200"),
                       ("H200", "H100 SXM / H200"), ("A100", "A100")):
        if key in name and (key not in ("PCIe", "NVL") or "H100" in name):
            return table, PEAKS[table]
    return None, None


def read_jsonl(path):
    rows = []
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line.startswith("{"):
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError:
                        pass
    except OSError:
        pass
    return rows


def read_text(path):
    try:
        with open(path, errors="replace") as f:
            return f.read()
    except OSError:
        return None


def parity(text):
    """The shim runner's lines: [PASS]/[FAIL]/[SKIP] suite/name, then the Synthesis line."""
    if text is None or not text.strip():
        return {"status": "not run"}
    tests = {}
    for m in re.finditer(r"^\[(PASS|FAIL|SKIP)\] (\S+?):?(?: \(([\d.]+) s\)|: (.*))?$", text, re.M):
        tests[m.group(2)] = {"result": m.group(1).lower(),
                             "seconds": float(m.group(3)) if m.group(3) else None,
                             "note": m.group(4)}
    failed = sorted(k for k, v in tests.items() if v["result"] == "fail")
    skipped = sorted(k for k, v in tests.items() if v["result"] == "skip")
    worst = dict(re.findall(r"^(cuda/\S+): worst gpu-vs-cpu error (.*)$", text, re.M))
    synthesis = re.search(r"Synthesis: .*", text)
    # On the GPU machine a skipped test (no device, library not loaded) is a failure: the
    # stage exists to run them. So is a run that never printed its synthesis (killed).
    ok = bool(tests) and not failed and not skipped and synthesis is not None
    return {"status": "passed" if ok else "FAILED", "failed": failed, "skipped": skipped,
            "passed": sum(v["result"] == "pass" for v in tests.values()), "tests": tests,
            "worst_errors": worst, "synthesis": synthesis.group(0) if synthesis else None}


def sanitizer(text):
    if text is None:
        return {"status": "not run"}
    # one ERROR SUMMARY per process (each test runs in its own)
    counts = [int(n) for n in re.findall(r"ERROR SUMMARY: (\d+) error", text)]
    errors = sum(counts) if counts else None
    return {"status": "passed" if errors == 0 else "FAILED", "errors": errors,
            "processes": len(counts),
            "tail": text.strip().splitlines()[-12:]}


def bench(rows):
    ours = [r for r in rows if r.get("tool") == "wsml"]
    peer_all = [r for r in rows if r.get("tool") == "pytorch"]
    peer = [r for r in peer_all if "error" not in r]
    errors = [r for r in peer_all if "error" in r]
    flops = next((r["train_flops_per_image"] for r in rows if r.get("tool") == "flops"), None)
    versions = next((r for r in rows if r.get("tool") == "versions"), {})
    gpu = versions.get("gpu") or (ours[0]["device"] if ours else "")
    peak_name, peaks = peak_for(gpu)
    for r in ours + peer:
        ok = flops and peaks and r.get("precision") in peaks
        r["percent_of_peak"] = (100.0 * flops * r["images_per_s"] / (peaks[r["precision"]] * 1e12)
                                if ok else None)

    def find_ours(batch, precision, optimizer="device", algo="heuristic"):
        # (the cpu backend of a dry run has no algorithm choice: "-")
        return next((r for r in ours if r["batch"] == batch and r["precision"] == precision
                     and r["optimizer"] == optimizer
                     and (r["algo"] == algo or (r["algo"] == "-" and algo == "heuristic"))),
                    None)

    def find_peer(batch, mode):
        return next((r for r in peer if r["batch"] == batch and r["mode"] == mode), None)

    pairs = [  # (our precision, optimizer, algo, peer mode, what)
        ("tf32", "device", "heuristic", "tf32", "tf32 vs PyTorch eager tf32 (NCHW)"),
        ("tf32", "device", "heuristic", "tf32-cl", "tf32 vs PyTorch eager tf32 channels_last"),
        ("fp32", "device", "heuristic", "fp32", "fp32 vs PyTorch eager fp32"),
        ("bf16", "device", "heuristic", "bf16-cl", "bf16 vs PyTorch channels_last+bf16 autocast"),
        ("tf32", "device", "find", "tf32-cl", "tf32 cudnnFind vs PyTorch tf32 channels_last"),
        ("tf32", "host", "heuristic", "tf32", "tf32, host Adam, vs PyTorch tf32"),
        ("fp32", "host", "heuristic", "fp32", "dry run: cpu backend vs PyTorch on the cpu"),
    ]
    comparisons = []
    for batch in sorted({r["batch"] for r in ours} | {r["batch"] for r in peer}):
        for prec, optim, algo, mode, what in pairs:
            o, p = find_ours(batch, prec, optim, algo), find_peer(batch, mode)
            if o and p:
                comparisons.append({
                    "batch": batch, "what": what, "arch": o["arch"], "size": o["size"],
                    "ours": o["images_per_s"], "peer": p["images_per_s"],
                    "ratio": o["images_per_s"] / p["images_per_s"],
                    "ours_peak_alloc_mib": o["peak_alloc_mib"],
                    "peer_peak_alloc_mib": p["peak_alloc_mib"],
                    "ours_percent_of_peak": o["percent_of_peak"],
                    "peer_percent_of_peak": p["percent_of_peak"]})
    status = "not run" if not rows else "passed" if comparisons and not errors else "FAILED"
    return {"status": status, "gpu": gpu, "peak_table": peak_name, "peaks_tflops": peaks,
            "train_flops_per_image": flops, "versions": versions, "ours": ours, "peer": peer,
            "peer_errors": errors, "comparisons": comparisons}


def print_bench(b):
    for c in b["comparisons"]:
        print(f"train-gpu: ours={c['ours']:.1f} peer={c['peer']:.1f} ratio={c['ratio']:.2f}x "
              f"(higher is better)  [{c['arch']} {c['size']}x{c['size']} batch {c['batch']}, "
              f"{c['what']}, img/s]")
    if not (b["ours"] or b["peer"]):
        return
    flops = b["train_flops_per_image"]
    print(f"GPU: {b['gpu']}; peak table: {b['peak_table'] or 'unknown GPU, no %-of-peak'}; "
          f"training FLOPs/image: {flops / 1e9 if flops else float('nan'):.1f} G")
    print(f"{'who':8} {'mode':28} {'batch':>5} {'img/s':>8} {'step ms':>8} "
          f"{'peak alloc MiB':>14} {'dev used MiB':>12} {'% peak':>7}")
    num = lambda x, f: f % x if isinstance(x, (int, float)) else "-"
    for r in sorted(b["ours"] + b["peer"], key=lambda r: (r["batch"], r["tool"])):
        mode = (f"{r['precision']} {r['algo']} opt={r['optimizer']}" if r["tool"] == "wsml"
                else r["mode"] + (" bench" if r.get("cudnn_benchmark") else ""))
        print(f"{r['tool']:8} {mode:28} {r['batch']:5d} {r['images_per_s']:8.1f} "
              f"{r['step_ms']:8.1f} {num(r.get('peak_alloc_mib'), '%14.0f'):>14} "
              f"{num(r.get('device_used_mib'), '%12.0f'):>12} "
              f"{num(r.get('percent_of_peak'), '%6.1f%%'):>7}")
    for e in b["peer_errors"]:
        print(f"pytorch {e.get('mode')} batch {e.get('batch')}: {e['error']}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", required=True)
    ap.add_argument("--bench", required=True)
    ap.add_argument("--out", action="append", default=[])
    ap.add_argument("--final", action="store_true")
    a = ap.parse_args()
    w = a.work.rstrip("/") + "/"
    steps = read_jsonl(w + "steps.jsonl")
    try:
        with open(w + "train.json") as f:
            train = json.load(f)
    except (OSError, ValueError):
        train = None
    stages = {
        "parity": parity(read_text(w + "parity.log")),
        "train": ({"status": "passed" if train["passed"] else "FAILED", **train} if train
                  else {"status": "not run"}),
        "bench": bench([r for r in read_jsonl(a.bench)]),
        "sanitizer": sanitizer(read_text(w + "sanitizer.log")),
    }
    extra = [s for s in steps if "cudnnFind" in s["step"] or "host optimizer" in s["step"]]
    stages["extra"] = {"status": "not run" if not extra else
                       "passed" if all(s["status"] == "passed" for s in extra) else "FAILED"}
    # a step that failed fails its stage; one that timed out or was skipped for time
    # leaves it incomplete
    for s in steps:
        stage = (s["step"] if s["step"] in STAGES else
                 "train" if s["step"].startswith(("train", "sweep")) else
                 "sanitizer" if s["step"].startswith("sanitizer") else
                 "extra" if s in extra else
                 "bench" if s["step"].startswith(("wsml", "pytorch")) else None)
        if not stage or stages[stage]["status"] == "FAILED":
            continue
        if s["status"] == "failed":
            stages[stage]["status"] = "FAILED"
            stages[stage]["failed_step"] = s["step"]
        elif s["status"] in ("timed out", "skipped"):
            stages[stage]["status"] = f"incomplete ({s['step']}: {s['status']})"
    doc = {"benchmark": "train-gpu", "describe": (read_text(w + "describe.txt") or "").strip(),
           "nvidia_smi": (read_text(w + "nvidia-smi.txt") or "").strip(),
           "elapsed_s": max((s["at_s"] for s in steps), default=0), "steps": steps,
           "stages": stages}
    for path in a.out:
        with open(path + ".tmp", "w") as f:
            json.dump(doc, f, indent=1)
        os.replace(path + ".tmp", path)
    if stages["bench"]["status"] != "not run":
        print_bench(stages["bench"])
    for name in STAGES:
        st = stages[name]
        more = ""
        if name == "parity" and st["status"] != "not run":
            more = (f": {st['passed']} passed, failed {st['failed'] or 'none'}, "
                    f"skipped {st['skipped'] or 'none'}")
        elif name == "train" and train:
            more = f": {', '.join(train['failures']) or 'all checks passed'}"
        elif name == "sanitizer" and st.get("errors") is not None:
            more = f": {st['errors']} errors"
        print(f"stage {name}: {st['status']}{more}")
    ran = [stages[n]["status"] for n in STAGES if stages[n]["status"] != "not run"]
    bad = [s for s in ran if s != "passed"]
    return 1 if bad or (a.final and len(ran) < len(STAGES)) else 0


if __name__ == "__main__":
    raise SystemExit(main())
