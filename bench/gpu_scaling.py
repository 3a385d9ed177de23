"""Data-parallel scaling model for wsml's training step (docs/benchmarks.md, "Multi-GPU
scaling model"): per-GPU compute time per step, plus the all-reduce of the gradients,
with and without overlap of communication and backward compute.

  step compute   T_c = batch_per_gpu / images_per_s_per_gpu
  all-reduce     T_ar = n_buckets * 2(N-1) * alpha + 2(N-1)/N * S / B
                 (ring all-reduce: every GPU sends and receives 2(N-1)/N of the S
                 gradient bytes over its link of bandwidth B; alpha = per-hop latency,
                 paid once per bucket)
  no overlap     T_step = T_c + T_ar
  overlap        T_step = T_c + max(T_ar - f_bwd * T_c, T_last)
                 (buckets are reduced while the rest of the backward pass runs, which is
                 f_bwd of the compute; the last bucket, the first layers' gradients, is
                 ready only when the backward ends: T_last = 2(N-1) * alpha
                 + 2(N-1)/N * bucket / B is always exposed)
  efficiency     T_c / T_step  (1 = perfect scaling; images/s = N * batch / T_step)

images_per_s_per_gpu defaults to an estimate: the MLPerf-class anchor (~6,000 img/s per
H100 at 224x224) scaled by the FLOPs ratio to the input size (x4 at 448x448). Replace it
with a measured figure (the bf16 rows of bench/gpu.sh's gpu.json: --measured) once the
GPU benchmark has run.

  python3 bench/gpu_scaling.py                       # the table of docs/benchmarks.md
  python3 bench/gpu_scaling.py --measured build/bench/gpu/gpu.json --precision bf16
  python3 bench/gpu_scaling.py --img-per-s 1200 --grad-bytes 2   # bf16 gradients
"""
import argparse
import json
import math
import sys

FABRICS = {  # name: (bandwidth GB/s per GPU per direction, per-hop latency in µs, what)
    "nvlink": (450.0, 2.0, "NVLink 4 within one 8-GPU H100 SXM node (NCCL practice)"),
    "ib": (50.0, 5.0, "InfiniBand NDR 400 Gb/s per GPU, every byte over the NIC"),
    "ib-rail": (400.0, 5.0, "8 NDR NICs per node, rail-optimised rings (NVLink inside the node)"),
}


def model(n, batch, ips, s_bytes, bw, alpha_us, bucket_bytes, f_bwd):
    t_c = batch / ips
    buckets = math.ceil(s_bytes / bucket_bytes)
    t_ar = (buckets * 2 * (n - 1) * alpha_us * 1e-6 + 2 * (n - 1) / n * s_bytes / (bw * 1e9)
            if n > 1 else 0.0)
    t_last = 2 * (n - 1) * alpha_us * 1e-6 + 2 * (n - 1) / n * min(bucket_bytes, s_bytes) / (bw * 1e9)
    exposed = max(t_ar - f_bwd * t_c, t_last) if n > 1 else 0.0
    return {"gpus": n, "batch_per_gpu": batch, "t_compute_ms": 1e3 * t_c,
            "t_allreduce_ms": 1e3 * t_ar, "eff_no_overlap": t_c / (t_c + t_ar),
            "eff_overlap": t_c / (t_c + exposed),
            "images_per_s_overlap": n * batch / (t_c + exposed)}


def measured_rates(path, precision):
    """images/s per GPU by batch from gpu.json's wsml rows (the device optimizer)."""
    with open(path) as f:
        doc = json.load(f)
    rows = doc.get("stages", {}).get("bench", {}).get("ours", [])
    return {r["batch"]: r["images_per_s"] for r in rows
            if r["precision"] == precision and r["optimizer"] == "device" and r["algo"] == "heuristic"}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--params", type=float, default=25.6e6, help="parameters (ResNet-50: 25.6M)")
    ap.add_argument("--grad-bytes", type=float, default=4, help="bytes per gradient (4 fp32, 2 bf16)")
    ap.add_argument("--anchor-img-per-s", type=float, default=6000,
                    help="images/s per GPU at --anchor-size (MLPerf-class H100 ResNet-50)")
    ap.add_argument("--anchor-size", type=int, default=224)
    ap.add_argument("--size", type=int, default=448, help="input side")
    ap.add_argument("--img-per-s", type=float, help="images/s per GPU (overrides the anchor)")
    ap.add_argument("--measured", help="gpu.json of bench/gpu.sh: images/s per batch from it")
    ap.add_argument("--precision", default="bf16", help="with --measured: which rows")
    ap.add_argument("--batches", default="16,64", help="per-GPU batch sizes")
    ap.add_argument("--gpus", default="8,32")
    ap.add_argument("--fabrics", default="nvlink,ib,ib-rail")
    ap.add_argument("--bucket-mb", type=float, default=25, help="gradient bucket (PyTorch DDP: 25)")
    ap.add_argument("--bwd-frac", type=float, default=2 / 3, help="backward share of the compute")
    a = ap.parse_args()
    s_bytes = a.params * a.grad_bytes
    scaled = a.anchor_img_per_s * (a.anchor_size / a.size) ** 2
    rates = measured_rates(a.measured, a.precision) if a.measured else {}
    batches = [int(b) for b in a.batches.split(",")]
    print(f"gradients: {a.params / 1e6:.1f}M x {a.grad_bytes:g} B = {s_bytes / 1e6:.1f} MB per step; "
          f"bucket {a.bucket_mb:g} MB; backward {a.bwd_frac:.2f} of the compute")
    print("| fabric | GPUs | batch/GPU | img/s/GPU | compute ms | all-reduce ms | "
          "efficiency, no overlap | efficiency, overlap | img/s total (overlap) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for fab in a.fabrics.split(","):
        bw, alpha, _ = FABRICS[fab]
        for n in (int(g) for g in a.gpus.split(",")):
            if fab == "nvlink" and n > 8:
                continue  # one NVLink domain is 8 GPUs in an H100 SXM node
            for b in batches:
                ips = rates.get(b) or a.img_per_s or scaled
                r = model(n, b, ips, s_bytes, bw, alpha, a.bucket_mb * 1e6, a.bwd_frac)
                print(f"| {fab} | {n} | {b} | {ips:.0f} | {r['t_compute_ms']:.2f} | "
                      f"{r['t_allreduce_ms']:.2f} | {100 * r['eff_no_overlap']:.1f}% | "
                      f"{100 * r['eff_overlap']:.1f}% | {r['images_per_s_overlap']:.0f} |")
    for fab in a.fabrics.split(","):
        bw, alpha, what = FABRICS[fab]
        print(f"{fab}: {what}; B = {bw:g} GB/s, alpha = {alpha:g} us per hop")
    return 0


if __name__ == "__main__":
    sys.exit(main())
