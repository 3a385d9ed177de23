# The raw store's pixels are PIL's, byte for byte, end to end (README: "PIL's, byte for
# byte"): wsml-ingest --format csv --encoding raw on images PIL wrote, in the formats
# ingest decodes with libjpeg (baseline and progressive JPEG, 4:2:0 and 4:4:4 chroma,
# grayscale) and through libvips (PNG: RGB, RGBA, grayscale, palette), shrunk and
# enlarged, at two sizes. Every record, exported losslessly with `wsml-store export
# --what images`, must equal Image.open(f).convert('RGB').resize((S, S), BILINEAR) in
# every value. (CMYK JPEGs, which go through libvips, are not covered.)
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

"$PYTHON" - <<'EOF'
import os
import numpy as np
from PIL import Image
rng = np.random.RandomState(17)
os.makedirs("photos")
def photo(w, h):
    # smooth gradients plus noise and edges: what resampling and chroma subsampling see
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    img = np.stack([128 + 100 * np.sin(x / (7 + c) + y / (11 - c)) for c in range(3)], -1)
    img += rng.normal(0, 20, img.shape)
    img[h // 3:h // 2, w // 4:w // 2] = rng.randint(0, 256, 3)
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
rows = []
def add(name, im, **save):
    im.save("photos/" + name, **save)
    rows.append(name)
add("base420.jpg", photo(500, 375), quality=90)
add("base444.jpg", photo(333, 517), quality=95, subsampling=0)
add("progressive.jpg", photo(240, 180), quality=85, progressive=True)
add("gray.jpg", photo(200, 150).convert("L"), quality=90)
add("tiny.jpg", photo(17, 9), quality=92)
add("rgb.png", photo(300, 200))
add("rgba.png", photo(120, 90).convert("RGBA"))
add("gray.png", photo(64, 200).convert("L"))
add("palette.png", photo(150, 150).convert("P"))
add("tiny.png", photo(5, 7))
with open("train.csv", "w") as f:
    f.write("path,labels\n" + "".join("%s,%s\n" % (r, "a|b" if i % 2 else "a")
                                      for i, r in enumerate(rows)))
with open("test.csv", "w") as f:
    f.write("path,labels\n%s,b\n" % rows[0])
with open("names.txt", "w") as f:
    f.write("\n".join(rows) + "\n")
EOF

for size in 24 61; do
  wsml-ingest --format csv --root . --images photos --out s$size --size $size --encoding raw \
    --val-frac 0 --quiet
  wsml-store export s$size --split train --what ids --out ids$size.txt --quiet
  wsml-store export s$size --split train --what images --out img$size --quiet
  "$PYTHON" - "$size" <<'EOF'
import glob, os, sys
import numpy as np
from PIL import Image
size = int(sys.argv[1])
ids = open("ids%d.txt" % size).read().split()
files = sorted(glob.glob("img%d/*.png" % size), key=lambda p: int(os.path.basename(p)[:-4]))
assert sorted(ids) == sorted(open("names.txt").read().split()), ids
assert len(files) == len(ids), (len(files), len(ids))
for name, path in zip(ids, files):
    ours = np.asarray(Image.open(path))
    ref = np.asarray(Image.open("photos/" + name).convert("RGB").resize((size, size), Image.BILINEAR))
    assert ours.shape == ref.shape, (name, ours.shape, ref.shape)
    diff = int((ours != ref).sum())
    assert diff == 0, "%s at %d: %d of %d values differ from PIL (max %d)" % (
        name, size, diff, ref.size, np.abs(ours.astype(int) - ref).max())
print("ingest_pixels_pil: %d images at %dx%d equal PIL's in every value" % (len(ids), size, size))
EOF
done
