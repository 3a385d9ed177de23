#!/usr/bin/python3
"""PyTorch oracle for train/resnet.c (tests/unit/test_net.c).

  net_ref.py forward --arch resnet18 --base 64 --classes 5 --height 64 --width 64 \
      --batch 3 --head linear --alpha 5 --seed 1 --out DIR
      Builds the torchvision model (random weights, random BN affine parameters and
      running statistics), writes DIR/weights.safetensors (torchvision state_dict names,
      F32, num_batches_tracked I64) and DIR/expected.safetensors:
        input           (B, H, W, 3)  the batch, NHWC (wsml's layout)
        R               (B, C)        loss = sum(logits * R), so dlogits = R
        logits_eval     (B, C)        eval-mode forward with the loaded running stats
        logits_train    (B, C)        train-mode forward (batch statistics)
        grad.<param>    PyTorch layout, after backward of sum(logits_train * R)
        after.<buffer>  running_mean/var after the train forward
      Reference values are computed in float64 from the float32 weights and input.
  net_ref.py replay --arch ... --out DIR
      The train-mode forward and backward again, in float64, but with every decision of
      the network taken from wsml's own forward (DIR/decisions.safetensors: the unit
      outputs act.<bn name> (NHWC) whose sign is each ReLU's mask, the stem max pool's
      argmax, BoostLU's CAM whose sign picks the boost; each must have torchvision's
      shape, which for odd input sizes checks the floor rule layer by layer, else exit
      status 1 naming the layer). Writes DIR/replay.safetensors
      (logits_train, grad.*, after.*) and, as metadata, how many decisions differ from
      float64's own and the largest margin |v| / max|v| among those (near-ties only
      when wsml's forward is right to float32 rounding), and torch32_err.<tensor>:
      PyTorch's own float32 error (same decisions) against the float64 values.
      If DIR/ckpt.safetensors exists (a checkpoint wsml saved), also ckpt_logits_eval:
      that file loaded into torchvision as `eval` does, eval mode, float64.
      Why: a gradient is discontinuous at ReLU/max-pool decision boundaries; in a deep
      net some pre-activations lie within float32 rounding of 0, and flipping one
      changes a late-layer weight gradient by O(1/rows) — PyTorch's own float32 run of
      a tiny ResNet-50 differs from its float64 run by up to 40% that way. Taking the
      decisions from the run under test makes the comparison measure the arithmetic.
  net_ref.py names --arch resnet18,resnet101 --classes 3
      Prints "# arch", then "name shape" per state_dict entry of torchvision's model.
  net_ref.py init --arch resnet18 --base 8 --classes 3 --seed 7 --out DIR
      DIR/init.safetensors: wsml_net_init's documented draws (numpy RandomState).
  net_ref.py eval --ckpt FILE --arch resnet18 --base 64 --classes 5 --input FILE
      Loads a checkpoint written by wsml into torchvision (load_state_dict, strict; only
      tensors named optim.* are dropped first) and
      writes eval-mode logits of expected.safetensors' input to stdout as float32.

Width scaling (wsml's --width-mult): torchvision's ResNet hard-codes 64 stem channels and
stage widths 64·2^i; ScaledResNet below is torchvision's ResNet with `base` in place of 64
(built with torchvision's own BasicBlock/Bottleneck and _make_layer, so names, strides
and the v1.5 bottleneck are torchvision's). With base 64 it is checked to have exactly
the state_dict of torchvision.models.resnetXX.

The safetensors format is written/read with struct + json (no safetensors module here).
"""
import argparse
import json
import struct
import sys

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision
from torchvision.models import resnet as tvr

LAYERS = {
    "resnet18": (tvr.BasicBlock, [2, 2, 2, 2]),
    "resnet34": (tvr.BasicBlock, [3, 4, 6, 3]),
    "resnet50": (tvr.Bottleneck, [3, 4, 6, 3]),
    "resnet101": (tvr.Bottleneck, [3, 4, 23, 3]),
}


class ScaledResNet(tvr.ResNet):
    def __init__(self, block, layers, base, num_classes):
        nn.Module.__init__(self)
        self._norm_layer = nn.BatchNorm2d
        self.inplanes = base
        self.dilation = 1
        self.groups = 1
        self.base_width = 64  # Bottleneck inner width = planes
        self.conv1 = nn.Conv2d(3, base, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(base)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(block, base, layers[0])
        self.layer2 = self._make_layer(block, base * 2, layers[1], stride=2)
        self.layer3 = self._make_layer(block, base * 4, layers[2], stride=2)
        self.layer4 = self._make_layer(block, base * 8, layers[3], stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.fc = nn.Linear(base * 8 * block.expansion, num_classes)
        for m in self.modules():  # torchvision's init
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)


def make_model(arch, base, classes):
    block, layers = LAYERS[arch]
    if base == 64:
        model = getattr(torchvision.models, arch)(num_classes=classes)
        scaled = ScaledResNet(block, layers, 64, classes)
        a = [(k, tuple(v.shape)) for k, v in model.state_dict().items()]
        b = [(k, tuple(v.shape)) for k, v in scaled.state_dict().items()]
        assert a == b, "ScaledResNet(base=64) differs from torchvision"
        return model
    return ScaledResNet(block, layers, base, classes)


class BoostLU(nn.Module):
    """Transcription of BoostLU's forward (Kim et al. 2023, models.py): a 1x1 conv over
    the last feature map with the classifier's weights, positives boosted by alpha,
    global average pool."""

    def __init__(self, model, alpha):
        super().__init__()
        self.features = nn.Sequential(*list(model.children())[:-2])
        self.fc = model.fc
        self.alpha = alpha

    def forward(self, x):
        feats = self.features(x)
        cam = F.conv2d(feats, self.fc.weight[:, :, None, None], self.fc.bias)
        cam = torch.where(cam > 0, cam * self.alpha, cam)
        return F.adaptive_avg_pool2d(cam, 1).squeeze(-1).squeeze(-1)


DTYPES = {np.dtype("float32"): "F32", np.dtype("float64"): "F64", np.dtype("int64"): "I64"}


def write_safetensors(path, tensors, metadata=None):
    header, blobs, offset = {}, [], 0
    for name, arr in tensors.items():
        arr = np.ascontiguousarray(arr)
        data = arr.tobytes()
        header[name] = {"dtype": DTYPES[arr.dtype], "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    if metadata:
        header["__metadata__"] = {k: str(v) for k, v in metadata.items()}
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    types = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32,
             "U8": np.uint8}
    for name, h in header.items():
        if name == "__metadata__":
            continue
        b, e = h["data_offsets"]
        out[name] = np.frombuffer(data[b:e], dtype=types[h["dtype"]]).reshape(h["shape"])
    return out


def randomise(model, gen):
    """Random BN affine parameters and running statistics, so that eval mode and the BN
    backward see non-trivial values (torchvision's init has weight 1, bias 0)."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                c = m.num_features
                m.weight.copy_(torch.rand(c, generator=gen) + 0.5)
                m.bias.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_mean.copy_(torch.randn(c, generator=gen) * 0.2)
                m.running_var.copy_(torch.rand(c, generator=gen) + 0.5)
                m.num_batches_tracked.fill_(int(torch.randint(0, 100, (1,), generator=gen)))


def build(args):
    model = make_model(args.arch, args.base, args.classes)
    return BoostLU(model, args.alpha) if args.head == "boostlu" else model, model


def run(args, state, x, R, dtype):
    net, model = build(args)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    net = net.to(dtype)
    xin = torch.from_numpy(x).to(dtype)
    net.eval()
    with torch.no_grad():
        logits_eval = net(xin)
    net.train()
    logits = net(xin)
    (logits * torch.from_numpy(R).to(dtype)).sum().backward()
    out = {"logits_eval": logits_eval, "logits_train": logits.detach()}
    for k, p in model.named_parameters():
        out["grad." + k] = p.grad
    for k, b in model.named_buffers():
        out["after." + k] = b
    return {k: v.detach().numpy() for k, v in out.items()}


def cmd_forward(args):
    torch.manual_seed(args.seed)
    gen = torch.Generator().manual_seed(args.seed)
    _, model = build(args)
    randomise(model, gen)
    state = {k: v.detach().numpy().copy() for k, v in model.state_dict().items()}
    x = torch.randn(args.batch, 3, args.height, args.width, generator=gen).numpy()
    R = torch.randn(args.batch, args.classes, generator=gen).numpy()
    ref = run(args, state, x, R, torch.float64)
    write_safetensors(args.out + "/weights.safetensors", state)
    expected = {"input": x.transpose(0, 2, 3, 1).copy(), "R": R}
    for k, v in ref.items():
        expected[k] = v.astype(np.float32) if v.dtype == np.float64 else v.astype(np.int64)
    write_safetensors(args.out + "/expected.safetensors", expected)


def check_shape(name, ours, ref):
    """wsml's activation shapes must be torchvision's for any input size (floor rule)."""
    if tuple(ours.shape) != tuple(ref.shape):
        sys.exit("net_ref.py: %s has shape %s in wsml, %s in torchvision (NCHW)"
                 % (name, tuple(ours.shape), tuple(ref.shape)))


class Decisions:
    """Forward hooks that replace each ReLU by multiplication with wsml's mask, the stem
    max pool by a gather at wsml's argmax, and count disagreements with float64."""

    def __init__(self, model, dec):
        self.dec = dec
        self.flips = 0
        self.margin = 0.0
        for m in model.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False
        self.hook_relu(model.relu, ["bn1"])
        for li in range(1, 5):
            for bi, blk in enumerate(getattr(model, "layer%d" % li)):
                k = 3 if isinstance(blk, tvr.Bottleneck) else 2
                self.hook_relu(blk.relu, ["layer%d.%d.bn%d" % (li, bi, j + 1) for j in range(k)])
        model.maxpool.register_forward_hook(self.maxpool_hook)

    def nchw(self, name):
        return torch.from_numpy(self.dec[name].transpose(0, 3, 1, 2).copy())

    def note(self, natural, ours, value, scale):
        diff = natural != ours
        if diff.any():
            self.flips += int(diff.sum())
            self.margin = max(self.margin, float(value[diff].abs().max() / scale))

    def hook_relu(self, module, names):
        calls = [0]

        def hook(mod, inp, out):
            name = names[calls[0] % len(names)]
            calls[0] += 1
            x = inp[0]
            mask = self.nchw("act." + name) > 0
            check_shape(name, mask, x)
            self.note(x > 0, mask, x.detach(), x.detach().abs().max())
            return x * mask.to(x.dtype)

        module.register_forward_hook(hook)

    def maxpool_hook(self, mod, inp, out):
        x = inp[0]
        n, c, h, w = out.shape
        ours = self.nchw("maxpool.argmax").long()
        check_shape("maxpool", ours, out)
        natural = F.max_pool2d(x.detach(), 3, 2, 1, return_indices=True)[1]
        picked = x.flatten(2).gather(2, ours.flatten(2)).view(n, c, h, w)
        gap = out.detach() - picked.detach()  # >= 0; > 0 only where ours is not the max
        self.note(natural, ours, gap, x.detach().abs().max())
        return picked

    def boost(self, cam, alpha):
        mask = self.nchw("cam") > 0
        check_shape("cam", mask, cam)
        self.note(cam > 0, mask, cam.detach(), cam.detach().abs().max())
        return torch.where(mask, cam * alpha, cam)


def replay(args, state, exp, dec, dtype):
    net, model = build(args)
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()})
    net = net.to(dtype).train()
    d = Decisions(model, dec)
    x = torch.from_numpy(exp["input"].transpose(0, 3, 1, 2).copy()).to(dtype)
    if args.head == "boostlu":
        feats = net.features(x)
        cam = F.conv2d(feats, net.fc.weight[:, :, None, None], net.fc.bias)
        logits = F.adaptive_avg_pool2d(d.boost(cam, net.alpha), 1).flatten(1)
    else:
        logits = net(x)
    (logits * torch.from_numpy(exp["R"]).to(dtype)).sum().backward()
    out = {"logits_train": logits.detach().numpy()}
    for k, p in model.named_parameters():
        out["grad." + k] = p.grad.numpy()
    for k, b in model.named_buffers():
        if b.dtype == dtype:
            out["after." + k] = b.numpy()
    return out, d


def cmd_replay(args):
    state = read_safetensors(args.out + "/weights.safetensors")
    exp = read_safetensors(args.out + "/expected.safetensors")
    dec = read_safetensors(args.out + "/decisions.safetensors")
    ref, d = replay(args, state, exp, dec, torch.float64)
    # PyTorch's own float32 error on this instance, with the same decisions: the scale
    # of float32 rounding after it is amplified through the network.
    f32, _ = replay(args, state, exp, dec, torch.float32)
    meta = {"flips": d.flips, "flip_margin": "%.3g" % d.margin}
    for k, v in ref.items():
        scale = np.abs(v).max()
        err = np.abs(f32[k].astype(np.float64) - v).max() / scale if scale > 0 else 0.0
        meta["torch32_err." + k] = "%.3g" % err
    try:
        ref["ckpt_logits_eval"] = eval_checkpoint(args, args.out + "/ckpt.safetensors",
                                                  exp["input"])
    except FileNotFoundError:
        pass
    write_safetensors(args.out + "/replay.safetensors",
                      {k: v.astype(np.float32) for k, v in ref.items()}, meta)


def cmd_names(args):
    for arch in args.arch.split(","):
        print("#", arch)
        model = make_model(arch, args.base, args.classes)
        for k, v in model.state_dict().items():
            print(k, " ".join(str(s) for s in v.shape) if v.dim() else "-")


def cmd_init(args):
    """wsml_net_init's documented draws, with numpy's RandomState(seed): tensors in
    state_dict order; conv weights std·standard_normal() with std = sqrt(2 / fan_out),
    elements in PyTorch (OIHW) order; fc.weight then fc.bias U(-1/sqrt(F), 1/sqrt(F));
    BN weight 1, bias 0, running_mean 0, running_var 1, num_batches_tracked 0."""
    model = make_model(args.arch, args.base, args.classes)
    rs = np.random.RandomState(args.seed)
    out = {}
    feat = model.fc.in_features
    for k, v in model.state_dict().items():
        shape = tuple(v.shape)
        if k.startswith("fc."):
            bound = 1.0 / np.sqrt(feat)
            out[k] = rs.uniform(-bound, bound, size=shape).astype(np.float32)
        elif v.dim() == 4:
            std = np.sqrt(2.0 / (shape[0] * shape[2] * shape[3]))
            out[k] = (std * rs.standard_normal(size=shape)).astype(np.float32)
        elif k.endswith("num_batches_tracked"):
            out[k] = np.zeros((), np.int64)
        else:
            fill = 1.0 if k.endswith(".weight") or k.endswith("running_var") else 0.0
            out[k] = np.full(shape, fill, np.float32)
    write_safetensors(args.out + "/init.safetensors", out)


def eval_checkpoint(args, path, x_nhwc):
    net, model = build(args)
    state = read_safetensors(path)
    # wsml may store more than the network in a checkpoint (optimizer state, label state);
    # everything else must be exactly torchvision's state_dict (strict).
    state = {k: v for k, v in state.items() if not k.startswith("optim.")}
    model.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in state.items()},
                          strict=True)
    x = x_nhwc.transpose(0, 3, 1, 2).copy()
    net = net.double().eval()
    with torch.no_grad():
        return net(torch.from_numpy(x).double()).numpy()


def cmd_eval(args):
    logits = eval_checkpoint(args, args.ckpt, read_safetensors(args.input)["input"])
    sys.stdout.buffer.write(logits.astype(np.float32).tobytes())


def main():
    p = argparse.ArgumentParser()
    p.add_argument("cmd", choices=["forward", "replay", "names", "init", "eval"])
    p.add_argument("--arch", default="resnet18")
    p.add_argument("--base", type=int, default=64)
    p.add_argument("--classes", type=int, default=5)
    p.add_argument("--height", type=int, default=64)
    p.add_argument("--width", type=int, default=64)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--head", default="linear", choices=["linear", "boostlu"])
    p.add_argument("--alpha", type=float, default=5.0)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--out", default=".")
    p.add_argument("--ckpt")
    p.add_argument("--input")
    args = p.parse_args()
    torch.set_num_threads(1)
    {"forward": cmd_forward, "replay": cmd_replay, "names": cmd_names, "init": cmd_init,
     "eval": cmd_eval}[args.cmd](args)


if __name__ == "__main__":
    main()
