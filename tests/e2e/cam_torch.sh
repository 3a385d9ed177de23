# wsml-cam against PyTorch and matplotlib (docs/methods.md §5). A tiny csv store (96x96 JPEG, five
# classes, one test image without any positive) and two torchvision ResNet-18s with
# random weights as safetensors, one in a run-dir layout with the BoostLU head in its
# metadata. Checks:
#  - the CAMs (--cams) equal the reference's get_cam transcribed in PyTorch:
#    F.conv2d(features, fc.weight[..., None, None]) (no bias, although fc.bias is large),
#    F.interpolate(bilinear, align_corners=False), relu, / max, within 1e-4; a class whose
#    fc row is negative everywhere gives an all-zero map (the reference would give NaN);
#  - the rows: --count N takes the first N images with a positive, classes in index order;
#    --ids keeps the given order and skips (with a warning) an image without positives;
#  - each --each overlay = (matplotlib jet(CAM) + image + 1) // 2 exactly, named
#    ROW_ID_CLASS_NAME.png; the figure is (models+1) x (header + rows) tiles and its model
#    tiles are PIL's bilinear resize of those overlays;
#  - byte-identical PNGs on a rerun, and an image's maps do not depend on the others chosen;
#  - errors: class-count mismatch, missing checkpoint/store, unknown id -> exit 1 with one
#    line and no output file; usage errors -> exit 2.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

"$PYTHON" - <<'EOF'
import json, os, struct
import numpy as np, torch, torchvision
from PIL import Image

rng = np.random.RandomState(5)
os.makedirs("data/photos", exist_ok=True)
classes = ["cat", "dog", "car & bus", "tree", "sky"]
open("classes.txt", "w").write("\n".join(classes) + "\n")

def img(name):  # smooth photo-like content, 96x80 (the store resizes to 96x96)
    y, x = np.mgrid[0:80, 0:96]
    base = rng.randint(0, 255, 3)
    a = np.stack([(base[c] + (c + 1) * x + 2 * y + 40 * np.sin(x / (5.0 + c) + y / 7.0)) % 256
                  for c in range(3)], -1)
    Image.fromarray(a.astype(np.uint8)).save("data/photos/" + name, quality=95)

for split, labels in (("train", ["cat", "dog|sky", "tree", "car & bus|cat", "sky|tree", "dog"]),
                      ("test", ["", "cat|sky", "dog", "car & bus|tree|cat", "sky", "dog|tree"])):
    with open("data/%s.csv" % split, "w") as f:
        f.write("path,labels\n")
        for i, lab in enumerate(labels):
            name = "%s%d.jpg" % (split[:2], i)
            img(name)
            f.write("photos/%s,%s\n" % (name, lab))

def save_safetensors(path, tensors, metadata):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        a = t.detach().cpu().numpy()
        b = a.tobytes()
        header[name] = {"dtype": {np.float32: "F32", np.int64: "I64"}[a.dtype.type],
                        "shape": list(a.shape), "data_offsets": [offset, offset + len(b)]}
        blobs.append(b)
        offset += len(b)
    header["__metadata__"] = metadata
    h = json.dumps(header).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)

def model(seed, C=5):
    torch.manual_seed(seed)
    m = torchvision.models.resnet18(num_classes=C)
    with torch.no_grad():  # non-trivial BN statistics; a bias that would change the maps
        for mod in m.modules():
            if isinstance(mod, torch.nn.BatchNorm2d):
                mod.running_mean.uniform_(-0.2, 0.2); mod.running_var.uniform_(0.5, 2.0)
                mod.weight.uniform_(0.5, 1.5); mod.bias.uniform_(-0.2, 0.2)
        m.fc.bias.uniform_(-2, 2)
    return m

a = model(11)
with torch.no_grad():
    a.fc.weight[3] = -a.fc.weight[3].abs() - 1e-3  # "tree": CAM <= 0 everywhere
b = model(12)
save_safetensors("m_a.safetensors", a.state_dict(), {"format": "test"})
os.makedirs("runB", exist_ok=True)
save_safetensors("runB/best.safetensors", b.state_dict(), {"head": "boostlu", "alpha": "5"})
save_safetensors("wrong.safetensors", model(13, C=6).state_dict(), {})
torch.save({"a": a.state_dict(), "b": b.state_dict()}, "models.pt")
EOF

wsml-ingest --format csv --root data --classes classes.txt --out s.store --size 96 --quiet
wsml-store export s.store --split test --what ids --out ids.txt
wsml-store export s.store --split test --what labels --out labels.npy
wsml-store export s.store --split test --what images --out test_images --quiet
# (a file, not a pipe into grep -q: under pipefail a long font list would end fc-list with
# SIGPIPE and read as "no fonts"). The fonts are a test dependency (fonts-dejavu-core in
# the GNUmakefile's DEB_RUN, installed by make deps-test): without them the label checks
# below cannot pass, and this names the cause (it was a silent skip of those checks).
fc-list > fontlist.txt 2>/dev/null || true
[ -s fontlist.txt ] || fail "fc-list finds no fonts: install fonts-dejavu-core (make deps-test)"

t0=$(date +%s.%N)
wsml-cam --store s.store --model m_a.safetensors --model runB/best.safetensors --count 3 \
  --out fig.png --each each --cams cams.npy --size 48 --threads 2 --quiet
t1=$(date +%s.%N)
echo "cam_torch: wsml-cam, 3 images x 2 models: $(awk "BEGIN { print $t1 - $t0 }") s"
# the same inputs give the same bytes
wsml-cam --store s.store --model m_a.safetensors --model runB/best.safetensors --count 3 \
  --out fig2.png --each each2 --size 48 --threads 2 --quiet
cmp fig.png fig2.png
[ "$(ls each | wc -l)" -eq 12 ]
for f in each/*.png; do cmp "$f" "each2/$(basename "$f")"; done
# --ids: given order, an image without positives skipped with a warning
wsml-cam --store s.store --model m_a.safetensors --ids photos/te4.jpg,photos/te0.jpg \
  --ids photos/te1.jpg --out ids.png --cams ids_cams.npy --size 32 --threads 2 2> ids_err.txt
grep -q "photos/te0.jpg has no positive label" ids_err.txt

"$PYTHON" - <<'EOF'
import glob, os, re
import numpy as np, torch, torchvision
import torch.nn.functional as F
from PIL import Image
from matplotlib import cm

labels = np.load("labels.npy")
ids = open("ids.txt").read().split("\n")[:-1]
classes = open("classes.txt").read().split("\n")[:-1]
N, C = labels.shape
files = sorted(glob.glob("test_images/*.png"))
images = np.stack([np.asarray(Image.open(p).convert("RGB")) for p in files])  # (N, 96, 96, 3)
H, W = images.shape[1:3]
x = images.astype(np.float32) / 255
x = (x - np.array([0.485, 0.456, 0.406], np.float32)) / np.array([0.229, 0.224, 0.225], np.float32)
x = torch.from_numpy(x).permute(0, 3, 1, 2).contiguous()
state = torch.load("models.pt")

nets = {}
for key in ("a", "b"):
    nets[key] = torchvision.models.resnet18(num_classes=C)
    nets[key].load_state_dict(state[key])
    nets[key].eval()

def get_cam(key, image, cls):  # the reference's get_cam, one (image, class)
    m = nets[key]
    body = torch.nn.Sequential(*list(m.children())[:-2])
    with torch.no_grad():
        feats = body(x[image:image + 1])
        cam = F.conv2d(feats, m.fc.weight[cls:cls + 1, :, None, None])  # no bias
        cam = F.interpolate(cam, size=(H, W), mode="bilinear", align_corners=False)
        cam = F.relu(cam)[0, 0].numpy()
    top = cam.max()
    return cam / top if top > 0 else np.zeros_like(cam)  # the reference: 0/0 = NaN

def rows_of(images_chosen):
    return [(i, c) for i in images_chosen for c in range(C) if labels[i, c] == 1]

# --count 3: the first three test images with a positive (image 0 has none)
assert labels[0].sum() == 0 and all(labels[i].sum() > 0 for i in (1, 2, 3))
rows = rows_of([1, 2, 3])
cams = np.load("cams.npy")
assert cams.shape == (len(rows), 2, H, W) and cams.dtype == np.float32, cams.shape
worst = 0.0
for r, (i, c) in enumerate(rows):
    for m, key in enumerate(("a", "b")):
        want = get_cam(key, i, c)
        err = np.abs(cams[r, m] - want).max()
        worst = max(worst, err)
        assert err <= 1e-4, (r, i, c, key, err)
tree = [r for r, (i, c) in enumerate(rows) if c == 3]
assert tree and all(not cams[r, 0].any() for r in tree), "negative fc row: all-zero map expected"
assert all(cams[r, 1].max() == 1.0 for r in range(len(rows)))  # divided by its maximum
print("cam_torch: %d rows x 2 models, max |CAM - PyTorch| = %.2g" % (len(rows), worst))

# --ids order: te4, (te0 skipped), te1
ids_cams = np.load("ids_cams.npy")
rows_ids = rows_of([ids.index("photos/te4.jpg"), ids.index("photos/te1.jpg")])
assert ids_cams.shape == (len(rows_ids), 1, H, W), ids_cams.shape
for r, (i, c) in enumerate(rows_ids):
    assert np.abs(ids_cams[r, 0] - get_cam("a", i, c)).max() <= 1e-4, (r, i, c)
    if (i, c) in rows:  # the same image alone or among others: the same bits
        assert (ids_cams[r, 0] == cams[rows.index((i, c)), 0]).all(), (r, i, c)

# --each: (jet + image + 1) // 2 on our CAMs, with the documented file names
def sanitise(s):
    return re.sub(r"[^A-Za-z0-9.\-]", "_", s)
names = ["m_a", "runB"]  # default column names: file stem; run dir for RUN/best.safetensors
overlays = {}
for r, (i, c) in enumerate(rows):
    for m in range(2):
        path = "each/%03d_%s_%s_%s.png" % (r, sanitise(ids[i]), sanitise(classes[c]), names[m])
        got = np.asarray(Image.open(path))
        heat = cm.jet(cams[r, m], bytes=True)[..., :3].astype(np.int32)
        want = ((heat + images[i].astype(np.int32) + 1) // 2).astype(np.uint8)
        assert got.shape == want.shape and (got == want).all(), (path, np.abs(got.astype(int) - want).max())
        overlays[r, m] = got

# the figure: (models + 1) x (header + rows) tiles; model tiles = PIL bilinear resize
fig = np.asarray(Image.open("fig.png").convert("RGB"))
tile = 48
font = min(28, max(10, tile // 14))
header = 2 * font
assert fig.shape == (header + len(rows) * tile, 3 * tile, 3), fig.shape
for r, (i, c) in enumerate(rows):
    y = header + r * tile
    for m in range(2):
        want = np.asarray(Image.fromarray(overlays[r, m]).resize((tile, tile), Image.BILINEAR))
        got = fig[y:y + tile, (m + 1) * tile:(m + 2) * tile]
        assert (got == want).all(), ("figure tile", r, m)
    # the input tile below the label box at its top (image id and class: two lines of
    # font + pad rows, then pad; pad = font // 4 + 1, cam/figure.c)
    pad = font // 4 + 1
    box = 2 * (font + pad) + pad
    want = np.asarray(Image.fromarray(images[i]).resize((tile, tile), Image.BILINEAR))
    assert (fig[y + box:y + tile, :tile] == want[box:]).all(), ("input tile", r)
    second = slice(pad + font + pad, box - pad)  # the class line, under the id line
    assert not (fig[y + second.start:y + second.stop, :tile] == want[second]).all(), ("one-line label", r)
assert (fig[:header] != 255).any(), "fonts are installed but the header has no text"
assert (fig[header:header + 4, :tile] == 0).any(), "no class-name box on the first row"
ids_fig = Image.open("ids.png")
assert ids_fig.size == (2 * 32, 2 * 10 + len(rows_ids) * 32), ids_fig.size
print("cam_torch: figure %dx%d, overlays exact, %d --each files" % (fig.shape[1], fig.shape[0], len(overlays)))
EOF

# errors: exit status, one line naming the problem, nothing written
expect_fail() { # STATUS PATTERN ARGS...
  local want=$1 pattern=$2 s
  shift 2
  set +e
  wsml-cam "$@" 2> err.txt
  s=$?
  set -e
  [ "$s" -eq "$want" ] || { echo "exit $s, expected $want: wsml-cam $*"; cat err.txt; return 1; }
  grep -q -- "$pattern" err.txt || { echo "no '$pattern' in:"; cat err.txt; return 1; }
  [ "$(wc -l < err.txt)" -eq 1 ] || { echo "more than one line:"; cat err.txt; return 1; }
  [ ! -e bad.png ] || { echo "bad.png was written"; return 1; }
}
expect_fail 1 "wrong.safetensors has 6 classes but the store has 5" \
  --store s.store --model m_a.safetensors --model wrong.safetensors --count 1 --out bad.png
expect_fail 1 "nothere.safetensors" --store s.store --model nothere.safetensors --count 1 --out bad.png
expect_fail 1 "no-store" --store no-store --model m_a.safetensors --count 1 --out bad.png
expect_fail 1 "--ids photos/nope.jpg: no image with this id" \
  --store s.store --model m_a.safetensors --ids photos/te1.jpg,photos/nope.jpg --out bad.png
expect_fail 2 "either --ids or --count" --store s.store --model m_a.safetensors --out bad.png
expect_fail 2 "either --ids or --count" --store s.store --model m_a.safetensors --count 1 \
  --ids photos/te1.jpg --out bad.png
expect_fail 2 "one --name per --model" --store s.store --model m_a.safetensors \
  --model m_a.safetensors --name x --count 1 --out bad.png
expect_fail 2 "--out" --store s.store --model m_a.safetensors --count 1
expect_fail 2 "--size" --store s.store --model m_a.safetensors --count 1 --size 0 --out bad.png
wsml-cam --help > help.txt
grep -q "Examples" help.txt || fail "wsml-cam --help has no Examples"
