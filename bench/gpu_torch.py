"""The PyTorch peer of bench/gpu_step.c (docs/benchmarks.md, row train-gpu): the same training step
on the same GPU — torchvision ResNet, a random batch copied from pinned host memory to
the GPU every step (as wsml-gpubench does: same bytes, same transfer), BCE-with-logits on
random multi-hot labels, Adam with the backbone/head learning rates of docs/methods.md section 3 —
in PyTorch's usual modes:

  fp32      eager, NCHW, TF32 off for cuDNN and matmul
  tf32      eager, NCHW, TF32 on (torch.backends.{cudnn,cuda.matmul}.allow_tf32)
  tf32-cl   eager, channels_last (NHWC, like wsml), TF32 on
  bf16-cl   eager, channels_last, torch.autocast(bfloat16), TF32 on

cudnn.benchmark stays False (PyTorch's default, the counterpart of wsml's heuristic
algorithm choice) unless --cudnn-benchmark. Timing: --warmup untimed steps, then --steps
steps each bracketed by CUDA events; the median is reported. Peak memory:
torch.cuda.max_memory_allocated (tensors, the counterpart of wsml's peak allocation) and
the device's used memory (mem_get_info) after the run.

Also prints the model's training FLOPs per image (2 x multiply-adds of every conv and
linear layer, forward; x3 for forward + both backward passes) for the %-of-peak figures.

Runs on the GPU machine's Python (PyTorch 2.x); one JSON object per line on stdout.
--device cpu is a dry run of this script on a machine without a GPU (host clock, no
memory figures).
"""
import argparse
import json
import statistics
import sys
import time


def count_train_flops(torch, torchvision, arch, size, classes):
    """Training FLOPs per image: 3 x 2 x MACs of conv/linear layers in the forward pass."""
    model = getattr(torchvision.models, arch)(num_classes=classes)
    macs = [0]

    def conv_hook(m, inp, out):
        k = m.kernel_size[0] * m.kernel_size[1] * (m.in_channels // m.groups)
        macs[0] += out.numel() * k

    def linear_hook(m, inp, out):
        macs[0] += out.numel() * m.in_features

    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv2d):
            mod.register_forward_hook(conv_hook)
        elif isinstance(mod, torch.nn.Linear):
            mod.register_forward_hook(linear_hook)
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    return 3 * 2 * macs[0]


def run(torch, torchvision, device, arch, size, batch, classes, mode, warmup, steps, bench):
    dev = torch.device(device)
    cuda = device == "cuda"
    torch.backends.cudnn.benchmark = bench
    tf32 = mode != "fp32"
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    channels_last = mode.endswith("-cl")
    autocast = mode == "bf16-cl"
    torch.manual_seed(1)
    model = getattr(torchvision.models, arch)(num_classes=classes).to(dev)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    head = list(model.fc.parameters())
    head_ids = {id(p) for p in head}
    backbone = [p for p in model.parameters() if id(p) not in head_ids]
    opt = torch.optim.Adam([{"params": backbone, "lr": 1e-5}, {"params": head, "lr": 1e-4}])
    loss_fn = torch.nn.BCEWithLogitsLoss()
    # the batch in host memory, in the layout the model wants (NHWC for channels_last, as
    # wsml's), pinned, copied to the GPU in every step
    x_host = torch.randn(batch, 3, size, size).to(memory_format=fmt)
    if cuda:
        x_host = x_host.pin_memory()
    layout_kept = x_host.is_contiguous(memory_format=fmt)
    y = (torch.rand(batch, classes, device=dev) < 0.2).float()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()

    def step():
        x = x_host.to(dev, non_blocking=True).contiguous(memory_format=fmt)
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device, dtype=torch.bfloat16, enabled=autocast):
            out = model(x)
        loss = loss_fn(out.float(), y)
        loss.backward()
        opt.step()
        return loss

    t0 = time.time()
    first = None
    for _ in range(warmup):
        loss = step()
        if first is None:
            first = loss.item()
    if cuda:
        torch.cuda.synchronize()
    warm_s = time.time() - t0
    times = []
    for _ in range(steps):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            loss = step()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t = time.perf_counter()
            loss = step()
            times.append(1e3 * (time.perf_counter() - t))
    last = loss.item()
    ms = statistics.median(times)
    free, total = torch.cuda.mem_get_info() if cuda else (None, None)
    mib = lambda b: b / 2**20 if b is not None else None
    result = {
        "tool": "pytorch", "mode": mode, "precision": {"fp32": "fp32", "bf16-cl": "bf16"}.get(
            mode, "tf32"), "channels_last": channels_last, "cudnn_benchmark": bench,
        "arch": arch, "size": size, "batch": batch, "classes": classes, "optimizer": "adam",
        "warmup": warmup, "steps": steps, "step_ms": ms, "images_per_s": batch / (ms / 1e3),
        "warmup_s": warm_s, "first_loss": first, "last_loss": last,
        "peak_alloc_mib": mib(torch.cuda.max_memory_allocated()) if cuda else None,
        "device_used_mib": mib(total - free) if cuda else None, "device_total_mib": mib(total),
        "input": ("pinned host memory, copied every step" if cuda else "host memory")
                 + ("" if layout_kept else " (layout converted on the device)"),
    }
    del model, opt, x_host, y
    if cuda:
        torch.cuda.empty_cache()
    return result


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--arch", default="resnet50")
    ap.add_argument("--size", type=int, default=448)
    ap.add_argument("--batch", default="16,64", help="comma-separated batch sizes")
    ap.add_argument("--classes", type=int, default=20)
    ap.add_argument("--modes", default="fp32,tf32,tf32-cl,bf16-cl")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--cudnn-benchmark", action="store_true")
    ap.add_argument("--flops-only", action="store_true")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"],
                    help="cpu: a dry run without a GPU")
    args = ap.parse_args()
    import torch
    import torchvision

    flops = count_train_flops(torch, torchvision, args.arch, args.size, args.classes)
    print(json.dumps({"tool": "flops", "arch": args.arch, "size": args.size,
                      "train_flops_per_image": flops}), flush=True)
    if args.flops_only:
        return
    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        sys.exit("gpu_torch.py: no CUDA device visible to PyTorch")
    print(json.dumps({"tool": "versions", "torch": torch.__version__,
                      "torchvision": torchvision.__version__,
                      "cuda": torch.version.cuda, "cudnn": torch.backends.cudnn.version(),
                      "gpu": torch.cuda.get_device_name(0) if cuda else "cpu"}), flush=True)
    for batch in [int(b) for b in args.batch.split(",")]:
        for mode in args.modes.split(","):
            try:
                r = run(torch, torchvision, args.device, args.arch, args.size, batch,
                        args.classes, mode, args.warmup, args.steps, args.cudnn_benchmark)
            except RuntimeError as e:  # e.g. out of memory: record it, go on
                r = {"tool": "pytorch", "mode": mode, "batch": batch, "error": str(e)[:300]}
                if cuda:
                    torch.cuda.empty_cache()
            print(json.dumps(r), flush=True)


if __name__ == "__main__":
    main()
