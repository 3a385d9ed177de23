#!/usr/bin/python3
"""PyTorch oracle for wsml-train (tests/e2e/train_torch_steps.sh, bench/train_cpu.sh).

  train_ref.py init --arch resnet18 --base 16 --classes 10 --seed 3 --out init.safetensors
      torchvision's model (ScaledResNet of net_ref.py for base != 64) with its own random
      initialisation, written with torchvision's state_dict names.
  train_ref.py steps --store STORE --init init.safetensors --arch resnet18 --base 16
          --batch 8 --steps 10 --lr 1e-3 --lr-mult 10 --loss ll-ct --delta-rel 10
      The training steps the reference code (LargeLossMatters train.py) takes on the
      store's train split in store order without flips (DataLoader(shuffle=False),
      ToTensor + Normalize): model.train(); zero_grad; logits; compute_batch_loss (the
      transcription in losses_ref.py); backward; Adam with the two parameter groups
      (backbone lr, fc lr_mult·lr); clean_rate -= delta_rel after each epoch. Prints one
      JSON line: {"losses": [...], "modified": [...]}. --double runs it in float64, to
      measure how far PyTorch's own float32 run drifts from exact arithmetic. --frozen:
      LinearInit's frozen phase as Cole et al. run it (backbone in eval mode, no
      gradients through it, only fc in the optimizer at lr_mult·lr).
  train_ref.py bench --arch resnet18 --base 64 --classes 10 --size 64 --batch 32
          --threads 2 --warmup 3 --steps 10
      Times torchvision training steps (Adam, BCE-with-logits) and prints JSON
      {"step_s": [...], "median_s": x, "images_per_s": y, "torch": version}.

The store is read with python3-lmdb and the record layout of store/record.c, not with
wsml's own reader, so the batches come from an independent path.
"""
import argparse
import json
import math
import os
import struct
import sys
import time
import zlib

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


# ---- the store, read independently (layout: store/record.c) ------------------------------

def read_store(store, split):
    """images (N, H, W, 3) uint8, observed (N, C) int8, full (N, C) int8."""
    import lmdb
    env = lmdb.open(store, readonly=True, lock=False, max_dbs=8, subdir=True)
    with env.begin() as txn:
        info = json.loads(bytes(txn.get(b"info", db=env.open_db(b"meta", txn=txn, create=False))))
        db = env.open_db(split.encode(), txn=txn, create=False)
        C = len(info["classes"])
        images, observed, full = [], [], []
        for i, (key, val) in enumerate(txn.cursor(db=db)):
            val = bytes(val)
            assert struct.unpack(">I", key)[0] == i, "keys out of order"
            assert val[:4] == b"WSR1", "bad record magic"
            assert zlib.crc32(val[:-4]) == struct.unpack("<I", val[-4:])[0], "bad CRC"
            enc, ch = val[4], val[5]
            h, w = struct.unpack("<HH", val[6:10])
            fld = 0 if val[10] == 0 else -1
            id_len, n_fp, n_fo, n_op, n_on, img_len = struct.unpack("<6I", val[12:36])
            off = 36 + id_len
            lists = []
            for n in (n_fp, n_fo, n_op, n_on):
                lists.append(np.frombuffer(val, dtype="<u4", count=n, offset=off))
                off += 4 * n
            f = np.full(C, fld, dtype=np.int8)
            f[lists[1]] = -1 if fld == 0 else 0
            f[lists[0]] = 1
            o = np.zeros(C, dtype=np.int8)
            o[lists[2]] = 1
            o[lists[3]] = -1
            payload = val[off:off + img_len]
            if enc == 0:
                img = np.frombuffer(payload, dtype=np.uint8).reshape(h, w, ch)
            else:
                import io
                from PIL import Image
                img = np.asarray(Image.open(io.BytesIO(payload)).convert("RGB"))
            images.append(img)
            observed.append(o)
            full.append(f)
    env.close()
    return np.stack(images), np.stack(observed), np.stack(full)


# ---- commands --------------------------------------------------------------------------------

def cmd_init(a):
    import torch
    from net_ref import make_model, write_safetensors
    torch.manual_seed(a.seed)
    model = make_model(a.arch, a.base, a.classes)
    tensors = {k: v.detach().numpy() for k, v in model.state_dict().items()}
    write_safetensors(a.out, tensors)


def load_model(a, classes):
    import torch
    from net_ref import make_model, read_safetensors
    model = make_model(a.arch, a.base, classes)
    state = read_safetensors(a.init)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()},
                          strict=True)
    return model


def cmd_steps(a):
    import torch
    import torchvision.transforms as T
    from losses_ref import ll_compute_batch_loss_paper
    torch.set_num_threads(a.threads)
    images, observed, _ = read_store(a.store, "train")
    n, C = observed.shape
    model = load_model(a, C)
    dtype = torch.float64 if a.double else torch.float32
    model = model.to(dtype)
    model.train()
    # LargeLossMatters train.py: two parameter groups, the head at lr_mult·lr.
    backbone = [p for name, p in model.named_parameters() if not name.startswith("fc.")]
    head = [p for name, p in model.named_parameters() if name.startswith("fc.")]
    groups = [{"params": backbone, "lr": a.lr}, {"params": head, "lr": a.lr_mult * a.lr}]
    if a.frozen:
        # Cole et al.'s linear phase (LinearInit): a linear classifier on features that the
        # pretrained network extracted once, i.e. in eval mode (BN on running statistics)
        # and without gradients; only fc is optimised.
        model.eval()
        for p in backbone:
            p.requires_grad_(False)
        groups = groups[1:]
    opt = torch.optim.Adam(groups, lr=a.lr)
    tx = T.Compose([T.ToTensor(), T.Normalize(mean=[0.485, 0.456, 0.406],
                                              std=[0.229, 0.224, 0.225])])
    scheme = {"ll-r": "LL-R", "ll-ct": "LL-Ct", "ll-cp": "LL-Cp", "an": "AN"}[a.loss]
    P = {"mod_scheme": scheme, "delta_rel": a.delta_rel / 100 if a.delta_rel != 0 else 0,
         "clean_rate": 1, "threshold": "relative", "epoch": 1}
    obs = observed.astype(np.float32)
    losses, modified = [], []
    step = 0
    while step < a.steps:
        for first in range(0, n, a.batch):  # DataLoader(shuffle=False, drop_last=False)
            if step >= a.steps:
                break
            idx = np.arange(first, min(first + a.batch, n))
            x = torch.stack([tx(images[i]) for i in idx]).to(dtype)
            y = torch.from_numpy(obs[idx]).to(dtype)
            opt.zero_grad()
            logits = model(x)
            loss, correction_idx, mod = ll_compute_batch_loss_paper(logits, y, P)
            loss.backward()
            opt.step()
            if scheme == "LL-Cp" and correction_idx is not None:  # methods.md: the paper's LL-Cp
                obs[idx[correction_idx[0].numpy()], correction_idx[1].numpy()] = 1.0
            losses.append(float(loss))
            modified.append(int(mod.sum()))
            step += 1
        P["clean_rate"] -= P["delta_rel"]
        P["epoch"] += 1
    print(json.dumps({"losses": losses, "modified": modified}))


def cmd_bench(a):
    import torch
    import torch.nn.functional as F
    from net_ref import make_model
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = make_model(a.arch, a.base, a.classes)
    model.train()
    opt = torch.optim.Adam([{"params": [p for n, p in model.named_parameters()
                                        if not n.startswith("fc.")], "lr": 1e-4},
                            {"params": model.fc.parameters(), "lr": 1e-3}])
    g = torch.Generator().manual_seed(1)
    x = torch.randn(a.batch, 3, a.size, a.size, generator=g)
    y = (torch.rand(a.batch, a.classes, generator=g) < 0.2).float()
    times = []
    for i in range(a.warmup + a.steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(model(x), y)
        loss.backward()
        opt.step()
        dt = time.perf_counter() - t0
        if i >= a.warmup:
            times.append(dt)
    med = float(np.median(times))
    print(json.dumps({"step_s": times, "median_s": med, "images_per_s": a.batch / med,
                      "torch": torch.__version__, "threads": torch.get_num_threads()}))


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    for name in ("init", "steps", "bench"):
        s = sub.add_parser(name)
        s.add_argument("--arch", default="resnet18")
        s.add_argument("--base", type=int, default=64)
        s.add_argument("--classes", type=int, default=10)
        s.add_argument("--threads", type=int, default=1)
        if name == "init":
            s.add_argument("--seed", type=int, default=0)
            s.add_argument("--out", required=True)
        if name == "steps":
            s.add_argument("--store", required=True)
            s.add_argument("--init", required=True)
            s.add_argument("--batch", type=int, required=True)
            s.add_argument("--steps", type=int, required=True)
            s.add_argument("--lr", type=float, required=True)
            s.add_argument("--lr-mult", type=float, default=10.0)
            s.add_argument("--loss", default="ll-ct")
            s.add_argument("--delta-rel", type=float, default=0.2)
            s.add_argument("--frozen", action="store_true",
                           help="LinearInit's frozen phase (backbone in eval mode, fc only)")
            s.add_argument("--double", action="store_true",
                           help="run in float64 (shows the scale of float32 drift)")
        if name == "bench":
            s.add_argument("--size", type=int, default=64)
            s.add_argument("--batch", type=int, default=32)
            s.add_argument("--warmup", type=int, default=3)
            s.add_argument("--steps", type=int, default=10)
    a = p.parse_args()
    {"init": cmd_init, "steps": cmd_steps, "bench": cmd_bench}[a.cmd](a)


if __name__ == "__main__":
    main()
