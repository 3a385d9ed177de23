# wsml-eval --store --model: inference over a store split, against PyTorch and sklearn.
# A tiny OpenImages-format store (verified labels: -1 unknown entries and frequency
# groups) and a torchvision ResNet-18 with random weights saved as safetensors. Checks:
# scores.npy = sigmoid(torchvision model(x)) on the exported test images (linear head and
# BoostLU's CAM head, docs/methods.md §2); per-class AP / mAP / group mAP of metrics.json equal
# sklearn's on those scores over the verified entries; the error for a checkpoint
# whose class count differs from the store's.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

"$PYTHON" "$WSML_TESTS/fixtures/make_fixtures.py" fx openimages
wsml-ingest --format openimages --root fx/openimages --out oi.store --size 64 --encoding raw --quiet
wsml-store export oi.store --split test --what labels --out test_labels.npy
n=$("$PYTHON" -c "import numpy as np; print(np.load('test_labels.npy').shape[0])")
wsml-store export oi.store --split test --what images --range 0:$n --out test_images
wsml-store info oi.store --json > info.json

"$PYTHON" - <<'EOF'
import json, struct
import numpy as np, torch, torchvision

C = np.load("test_labels.npy").shape[1]
torch.manual_seed(3)
model = torchvision.models.resnet18(num_classes=C)
with torch.no_grad():  # non-trivial BN statistics and a bias that spreads the scores
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2); m.running_var.uniform_(0.5, 2.0)
            m.weight.uniform_(0.5, 1.5); m.bias.uniform_(-0.2, 0.2)
    model.fc.bias.uniform_(-2, 2)

def save_safetensors(path, tensors, metadata):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        a = t.detach().cpu().numpy()
        dtype = {np.float32: "F32", np.int64: "I64"}[a.dtype.type]
        b = a.tobytes()
        header[name] = {"dtype": dtype, "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b); offset += len(b)
    header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h))); f.write(h)
        for b in blobs: f.write(b)

save_safetensors("model.safetensors", model.state_dict(), {"format": "test"})
# the head named by the checkpoint's metadata, as wsml-train writes it
save_safetensors("boost.safetensors", model.state_dict(), {"head": "boostlu", "alpha": "5"})
wrong = torchvision.models.resnet18(num_classes=C + 1)
save_safetensors("wrong.safetensors", wrong.state_dict(), {})
torch.save(model.state_dict(), "model.pt")
EOF

wsml-eval --store oi.store --model model.safetensors --out ev --threads 2 --batch 4 --quiet > ev.txt
wsml-eval --store oi.store --model model.safetensors --head boostlu --alpha 5 --out evb --threads 2 --quiet > evb.txt
wsml-eval --store oi.store --model boost.safetensors --out evm --threads 2 --quiet > evm.txt

"$PYTHON" - <<'EOF'
import csv, glob, json
import numpy as np, torch, torchvision
from PIL import Image
from sklearn.metrics import average_precision_score

labels = np.load("test_labels.npy").astype(np.int64)
N, C = labels.shape
files = sorted(glob.glob("test_images/*.png"))
assert len(files) == N, (len(files), N)
x = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in files]).astype(np.float32) / 255
x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
model = torchvision.models.resnet18(num_classes=C)
model.load_state_dict(torch.load("model.pt"))
model.eval()
with torch.no_grad():
    want_linear = torch.sigmoid(model(x)).numpy()
    body = torch.nn.Sequential(*list(model.children())[:-2])
    f = body(x)                                                   # (N, 512, h, w)
    cam = torch.einsum("nkhw,ck->nchw", f, model.fc.weight) + model.fc.bias[None, :, None, None]
    want_boost = torch.sigmoid(torch.where(cam > 0, 5 * cam, cam).mean(dim=(2, 3))).numpy()

info = json.load(open("info.json"))
groups = info.get("groups") or info.get("info", {}).get("groups")
assert groups, "the OpenImages store should have frequency groups"

def check(out, want, what):
    s = np.load(out + "/scores.npy")
    assert s.shape == (N, C) and s.dtype == np.float32, (s.shape, s.dtype)
    err = np.abs(s - want).max()
    assert err <= 1e-4, (what, "scores differ from PyTorch by", err)
    # metrics on OUR scores against sklearn, verified entries only (docs/methods.md §4)
    aps = []
    for k in range(C):
        known = labels[:, k] != -1
        if not known.any():
            aps.append(None)
        elif not (labels[known, k] == 1).any():
            aps.append(0.0)
        else:
            aps.append(average_precision_score(labels[known, k] == 1, s[known, k]))
    m = json.load(open(out + "/metrics.json"))
    rows = list(csv.DictReader(open(out + "/per_class.csv")))
    assert len(rows) == C and len(m["ap"]) == C, (what, len(rows), len(m["ap"]), C)
    for k, (a, row) in enumerate(zip(aps, rows)):
        if a is None:
            assert row["ap"] == "" and m["ap"][k] is None, (what, k)
        else:
            assert abs(float(row["ap"]) - a) <= 1e-9, (what, k, row["ap"], a)
    used = [a for a in aps if a is not None]
    assert abs(m["map"] - 100 * np.mean(used)) <= 1e-9, (what, m["map"])
    for g, cls in enumerate(groups):
        gu = [aps[k] for k in cls if aps[k] is not None]
        if gu:
            assert abs(m["groups"]["G%d" % (g + 1)] - 100 * np.mean(gu)) <= 1e-9, (what, g)
    assert rows[0]["name"] == info.get("classes", info.get("info", {}).get("classes", [""]))[0]
    print("eval_store: %s: max |score - torch| = %.2g, mAP %.4f over %d verified classes"
          % (what, err, m["map"], len(used)))

check("ev", want_linear, "linear head")
check("evb", want_boost, "BoostLU head")
check("evm", want_boost, "BoostLU head from the checkpoint's metadata")
EOF

set +e
wsml-eval --store oi.store --model wrong.safetensors --quiet 2> err.txt; s=$?
set -e
[ "$s" -eq 1 ] || fail "a model with the wrong class count: exit $s, expected 1"
grep -q "wrong.safetensors has .* classes but store" err.txt || fail "no error naming the class counts: $(cat err.txt)"
[ "$(wc -l < err.txt)" -eq 1 ] || fail "expected one error line: $(cat err.txt)"
set +e; wsml-eval --store oi.store --quiet 2>/dev/null; s=$?; set -e
[ "$s" -eq 2 ] || fail "--store without --model: exit $s, expected 2"
