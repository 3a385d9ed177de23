# make cam-figure end to end on the COCO fixture (a few images): ingest, the AN, ROLE and
# LL-Ct run grids (tiny: ResNet-18, 64 px, one epoch, two delta-rel values), the
# validation picks and the figure image | Naive AN | ROLE | LL-Ct. A second make does
# nothing; make -n prints the plan and runs nothing.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"

repo=$(cd "$WSML_TESTS/.." && pwd)
"$PYTHON" "$WSML_TESTS/fixtures/make_fixtures.py" fx coco
# "ImageNet weights": a torchvision ResNet-18 with random weights, as safetensors
"$PYTHON" - <<'EOF'
import json, struct
import numpy as np, torch, torchvision
torch.manual_seed(0)
header, blobs, offset = {}, [], 0
for name, t in torchvision.models.resnet18().state_dict().items():
    a = t.numpy()
    header[name] = {"dtype": {np.float32: "F32", np.int64: "I64"}[a.dtype.type],
                    "shape": list(a.shape), "data_offsets": [offset, offset + a.nbytes]}
    blobs.append(a.tobytes())
    offset += a.nbytes
h = json.dumps(header).encode()
h += b" " * (-len(h) % 8)
with open("resnet18.safetensors", "wb") as f:
    f.write(struct.pack("<Q", len(h)) + h + b"".join(blobs))
EOF
knobs=(BUILD="$WSML_BUILD" DATA="$PWD/fx" STORES="$PWD/stores" RUNS="$PWD/runs"
  CAM_FIGURE="$PWD/fig.png" PRETRAINED="$PWD/resnet18.safetensors"
  TABLE1_FLAGS="--arch resnet18 --epochs 1 --batch 4 --threads 2 --quiet"
  INGEST_FLAGS="--size 64 --encoding raw --quiet" DELTA_REL_GRID="0.1 0.2"
  CAM_COUNT=2 CAM_SIZE=64 CAM_THREADS=2)

# the plan, before anything exists: ingest, the runs, the picks, the figure
make -s -n -C "$repo" cam-figure "${knobs[@]}" > plan.txt
grep -q "wsml-ingest --format coco" plan.txt
for r in an_lr1e-5_s1 role_lr1e-5_s1 ll-ct_drel0.1_lr1e-5_s1 ll-ct_drel0.2_lr1e-5_s1; do
  grep -Eq -- "--out $PWD/runs/table1/coco/${r}_[0-9a-f]{6} " plan.txt
done
grep -q -- "--loss role --lr 1e-5 --seed 1 --arch resnet18 .* --pretrained $PWD/resnet18.safetensors" plan.txt
grep -q "wsml-eval table" plan.txt
grep -q "wsml-cam --store $PWD/stores/coco --split test --count 2" plan.txt
if [ -e stores ] || [ -e runs ] || [ -e fig.png ]; then fail "make -n wrote stores, runs or the figure"; fi
# GPUS: wsml-cam takes a free GPU of the list like the training runs (never one a run holds)
make -s -n -C "$repo" cam-figure "${knobs[@]}" GPUS="0 1" > plan-gpus.txt
grep -q "gpu-slot.sh $PWD/runs/.gpus .*wsml-cam --store" plan-gpus.txt ||
  fail "GPUS: wsml-cam does not run under gpu-slot.sh: $(grep wsml-cam plan-gpus.txt)"

make -s -C "$repo" cam-figure "${knobs[@]}" > make1.txt 2>&1 || { cat make1.txt; exit 1; }
[ -f fig.png ]
grep -q "^Naive AN,coco," runs/cam-figure/picks.picks.csv
grep -q "^ROLE,coco," runs/cam-figure/picks.picks.csv
grep -q "^LL-Ct,coco,delta_rel=" runs/cam-figure/picks.picks.csv
# rows = the positives of the first two test images (every COCO test image has one)
wsml-store export stores/coco --split test --what labels --range 0:2 --out l.npy --quiet
"$PYTHON" - <<'EOF'
import numpy as np
from PIL import Image
rows = int((np.load("l.npy") == 1).sum())
fig = Image.open("fig.png")
assert fig.size == (4 * 64, 2 * 10 + rows * 64), (fig.size, rows)
print("cam_pipeline: figure %dx%d, %d rows, 4 columns" % (fig.size + (rows,)))
EOF

# nothing left to do: no run, no figure redone
before=$(stat -c %Y fig.png)
make -s -C "$repo" cam-figure "${knobs[@]}" > make2.txt 2>&1 || { cat make2.txt; exit 1; }
if grep -q "wsml-train\|wsml-cam\|wsml-ingest" make2.txt; then fail "the second make ran: $(cat make2.txt)"; fi
[ "$(stat -c %Y fig.png)" = "$before" ] || fail "the second make redid the figure"
make -s -n -C "$repo" cam-figure "${knobs[@]}" > plan2.txt
if grep -q "wsml-train\|wsml-cam" plan2.txt; then fail "the plan after a full make is not empty: $(cat plan2.txt)"; fi

# without DATA: a usage error naming the knob
set +e
make -s -j1 -C "$repo" cam-figure BUILD="$WSML_BUILD" STORES="$PWD/stores2" RUNS="$PWD/runs2" \
  CAM_FIGURE="$PWD/fig2.png" DATA= 2> err.txt; s=$?
set -e
[ "$s" -ne 0 ] || fail "make cam-figure without DATA exited 0"
grep -q "set DATA=DIR" err.txt || fail "no usage error naming DATA: $(cat err.txt)"
if [ -e stores2 ] || [ -e runs2 ]; then fail "make cam-figure without DATA wrote stores or runs"; fi
