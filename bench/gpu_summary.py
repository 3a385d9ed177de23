"""Summary of bench/gpu.sh: reads the JSON lines of wsml-gpubench (ours) and
bench/gpu_torch.py (peer), prints docs/benchmarks.md's comparison lines

  train-gpu: ours=… peer=… ratio=…x (higher is better)  [what was compared]

and a table with images/s, step time, peak memory and the share of the GPU's peak FLOP
rate, and writes everything as one JSON document.

Usage: gpu_summary.py OURS.jsonl PEER.jsonl OUT.json [OUT2.json ...]
"""
import json
import sys

# Dense datasheet peaks in TFLOP/s (no sparsity): fp32 = CUDA cores, tf32/bf16 = tensor
# cores. Leads only (METHOD.md): clocks and power limits of a given card differ.
PEAKS = {
    "H100 PCIe": {"fp32": 51.2, "tf32": 378.0, "bf16": 756.0},
    "H100 NVL": {"fp32": 60.0, "tf32": 417.5, "bf16": 835.0},
    "H100 SXM / H200": {"fp32": 66.9, "tf32": 494.7, "bf16": 989.4},
}


def peak_for(gpu_name):
    name = gpu_name or ""
    if "PCIe" in name:
        return "H100 PCIe", PEAKS["H100 PCIe"]
    if "NVL" in name:
        return "H100 NVL", PEAKS["H100 NVL"]
    if "H100" in name or "H200" in name:
        return "H100 SXM / H200", PEAKS["H100 SXM / H200"]
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


def main():
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    ours = [r for r in read_jsonl(sys.argv[1]) if r.get("tool") == "wsml"]
    peer_all = read_jsonl(sys.argv[2])
    peer = [r for r in peer_all if r.get("tool") == "pytorch" and "error" not in r]
    errors = [r for r in peer_all if r.get("tool") == "pytorch" and "error" in r]
    flops = next((r["train_flops_per_image"] for r in peer_all if r.get("tool") == "flops"), None)
    versions = next((r for r in peer_all if r.get("tool") == "versions"), {})
    gpu = versions.get("gpu") or (ours[0]["device"] if ours else "")
    peak_name, peaks = peak_for(gpu)

    def pct_peak(r):
        if not flops or not peaks or r.get("precision") not in peaks:
            return None
        return 100.0 * flops * r["images_per_s"] / (peaks[r["precision"]] * 1e12)

    for r in ours + peer:
        r["percent_of_peak"] = pct_peak(r)

    def find_ours(batch, precision, optimizer="device", algo="heuristic"):
        return next((r for r in ours if r["batch"] == batch and r["precision"] == precision
                     and r["optimizer"] == optimizer and r["algo"] == algo), None)

    def find_peer(batch, mode):
        return next((r for r in peer if r["batch"] == batch and r["mode"] == mode), None)

    comparisons = []
    batches = sorted({r["batch"] for r in ours} | {r["batch"] for r in peer})
    pairs = [  # (our precision, our optimizer, our algo, peer mode, what)
        ("tf32", "device", "heuristic", "tf32", "tf32 vs PyTorch eager tf32 (NCHW)"),
        ("tf32", "device", "heuristic", "tf32-cl", "tf32 vs PyTorch eager tf32 channels_last"),
        ("fp32", "device", "heuristic", "fp32", "fp32 vs PyTorch eager fp32"),
        ("tf32", "device", "find", "tf32-cl", "tf32 cudnnFind vs PyTorch tf32 channels_last"),
        ("tf32", "host", "heuristic", "tf32", "tf32, wsml-train's host Adam, vs PyTorch tf32"),
        ("tf32", "device", "heuristic", "bf16-cl",
         "ours tf32 vs PyTorch channels_last+bf16 autocast (not equal precision)"),
        ("bf16", "device", "heuristic", "bf16-cl", "bf16 vs PyTorch channels_last+bf16 autocast"),
    ]
    for batch in batches:
        for prec, optim, algo, mode, what in pairs:
            o, p = find_ours(batch, prec, optim, algo), find_peer(batch, mode)
            if not o or not p:
                continue
            ratio = o["images_per_s"] / p["images_per_s"]
            comparisons.append({"batch": batch, "what": what, "ours": o["images_per_s"],
                                "peer": p["images_per_s"], "ratio": ratio,
                                "ours_peak_alloc_mib": o["peak_alloc_mib"],
                                "peer_peak_alloc_mib": p["peak_alloc_mib"]})
            print(f"train-gpu: ours={o['images_per_s']:.1f} peer={p['images_per_s']:.1f} "
                  f"ratio={ratio:.2f}x (higher is better)  "
                  f"[{o['arch']} {o['size']}x{o['size']} batch {batch}, {what}, img/s]")

    print()
    print(f"GPU: {gpu}; peak table: {peak_name or 'unknown GPU, no %-of-peak'}; "
          f"training FLOPs/image: {flops / 1e9 if flops else float('nan'):.1f} G")
    print(f"{'who':8} {'mode':28} {'batch':>5} {'img/s':>8} {'step ms':>8} "
          f"{'peak alloc MiB':>14} {'dev used MiB':>12} {'% peak':>7}")
    for r in sorted(ours + peer, key=lambda r: (r["batch"], r["tool"])):
        if r["tool"] == "wsml":
            mode = f"{r['precision']} {r['algo']} opt={r['optimizer']}"
        else:
            mode = r["mode"] + (" bench" if r.get("cudnn_benchmark") else "")
        pp = r.get("percent_of_peak")
        print(f"{r['tool']:8} {mode:28} {r['batch']:5d} {r['images_per_s']:8.1f} "
              f"{r['step_ms']:8.1f} {r['peak_alloc_mib']:14.0f} {r['device_used_mib']:12.0f} "
              f"{pp if pp is not None else float('nan'):6.1f}%")
    for e in errors:
        print(f"pytorch {e['mode']} batch {e['batch']}: {e['error']}")
    doc = {"benchmark": "train-gpu", "gpu": gpu, "peak_table": peak_name,
           "peaks_tflops": peaks, "train_flops_per_image": flops, "versions": versions,
           "wsml_device": ours[0]["device"] if ours else None, "ours": ours, "peer": peer,
           "peer_errors": errors, "comparisons": comparisons}
    for path in sys.argv[3:]:
        with open(path, "w") as f:
            json.dump(doc, f, indent=1)
    return 0 if comparisons else 1


if __name__ == "__main__":
    sys.exit(main())
