"""Oracle for train/loader.c (tests/unit/test_loader.c).

usage: loader_ref.py RAW N H W SEED EPOCHS
  RAW: N images, HWC uint8, back to back.
Writes to stdout, as raw little-endian arrays:
  for epoch in 1..EPOCHS: order int64 (N), flips uint8 (N)   -- shuffle + flip on
  images normalised without flip, float32 (N, 3, H, W)
  images normalised with a horizontal flip, float32 (N, 3, H, W)
The epoch draws follow train/loader.h: RandomState(epoch_seed).permutation(N), then
random_sample(N) < 0.5; the pixels go through torchvision's ToTensor + Normalize
with the ImageNet statistics, and the flip is torchvision's hflip.
"""
import sys

import numpy as np
import torch
import torchvision.transforms as T
import torchvision.transforms.functional as TF

MASK64 = (1 << 64) - 1


def epoch_seed(seed, epoch):
    # splitmix64 of (seed << 32 | epoch), low 32 bits (train/loader.h)
    z = (((seed << 32) | epoch) + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    z = z ^ (z >> 31)
    return z & 0xFFFFFFFF


def main():
    raw, n, h, w, seed, epochs = sys.argv[1], *map(int, sys.argv[2:7])
    out = sys.stdout.buffer
    for e in range(1, epochs + 1):
        rng = np.random.RandomState(epoch_seed(seed, e))
        order = rng.permutation(n).astype(np.int64)
        flips = (rng.random_sample(n) < 0.5).astype(np.uint8)
        out.write(order.tobytes())
        out.write(flips.tobytes())
    pixels = np.fromfile(raw, dtype=np.uint8).reshape(n, h, w, 3)
    tx = T.Compose([T.ToTensor(), T.Normalize(mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225])])
    plain = np.stack([tx(pixels[i]).numpy() for i in range(n)]).astype(np.float32)
    flipped = np.stack([TF.hflip(tx(pixels[i])).numpy() for i in range(n)]).astype(np.float32)
    out.write(plain.tobytes())
    out.write(flipped.tobytes())
    out.flush()


if __name__ == "__main__":
    main()
