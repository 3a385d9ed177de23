# The results page of a toy make demo (pipeline_demo.sh's knobs, 3 epochs without early
# stop, so that LL-Cp's corrections of epoch 2 change the hidden positives epoch 3 sees):
#   - make demo ends with demo/report/index.html, and no half-made report folder is left;
#   - every <img> points to an existing, non-empty PNG below the report folder; no script;
#   - the plots' data files equal what a Python reading of the runs' run.jsonl gives for
#     the picks of the demo's table (mean, lowest, highest over seeds), and the
#     diagnostics' denominator is every hidden positive of the training split, counted
#     with numpy from the store's exported labels (the oracle for "recall");
#   - headless Chromium renders the page to a PNG, and a copy of the page with a check
#     script appended reports every image's naturalWidth through --dump-dom: all page
#     images load, and a deliberately missing image on the copy does not (the check can
#     fail);
#   - wsml-eval report refuses bad arguments with one line and leaves no page.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/lib/common.sh"
. "$WSML_TESTS/e2e/lib/pipeline.sh"
pipeline_bin eval cam
MAKE_ARGS+=(DEMO_DIR="$PWD/demo" "${DEMO_SMALL[@]}" DEMO_EPOCHS=3 TRAIN_FLAGS=--no-early-stop)
M() { make "${MAKE_ARGS[@]}" "$@"; }

M demo > demo.txt 2>&1 || { cat demo.txt; exit 1; }
grep -q "^report: $PWD/demo/report/index.html" demo.txt || { cat demo.txt; exit 1; }
grep -q "CAM figure (Naive AN vs LL-" demo.txt || { echo "FAIL: the CAM column is not named by method"; exit 1; }
[ ! -e demo/report.tmp ] || { echo "FAIL: demo/report.tmp left behind"; exit 1; }

wsml-store export demo/stores/mosaic --split train --what labels --out full.npy --quiet
wsml-store export demo/stores/mosaic --split train --what observed --out observed.npy --quiet

"$PYTHON" - demo <<'EOF'
import csv, json, math, os, re, sys
from html.parser import HTMLParser
import numpy as np
from PIL import Image

d = sys.argv[1]
rep = os.path.join(d, "report")

# 1. images: relative, existing, non-empty PNGs below the report folder
class Page(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.scripts = [], 0
    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.imgs.append(dict(attrs)["src"])
        self.scripts += tag == "script"
page = Page()
page.feed(open(os.path.join(rep, "index.html")).read())
assert page.scripts == 0, "the page must not need JavaScript"
want = {"plots/demo-fashion-mosaic-map.png", "plots/demo-fashion-mosaic-loss.png",
        "plots/demo-fashion-mosaic-ll.png", "cam-1.png"}
assert set(page.imgs) == want, page.imgs
for src in page.imgs:
    assert not os.path.isabs(src) and ".." not in src, src
    path = os.path.join(rep, src)
    assert os.path.getsize(path) > 0, path
    im = Image.open(path); im.load()
    assert im.format == "PNG" and im.width > 100 and im.height > 100, (src, im.format, im.size)
print("ok: %d images, all PNGs" % len(page.imgs))

# 2. the data files against run.jsonl
def epochs(run):
    lines = {}
    for l in open(os.path.join(run, "run.jsonl")):
        o = json.loads(l)
        if "epoch" in o and "val_map" in o:
            lines[o["epoch"]] = o
    return [lines[e] for e in sorted(lines)]

def blocks(path):
    out, name = {}, None
    for l in open(path):
        m = re.match(r"# block \d+: (.*) \(runs: (.*)\)$", l)
        if m:
            name = m.group(1); out[name] = {"runs": m.group(2).split(";"), "rows": []}
        elif l.strip() and not l.startswith("#"):
            out[name]["rows"].append([float(x) for x in l.split()])
    return out

def band(values):
    v = [x for x in values if x is not None and not math.isnan(x)]
    return (sum(v) / len(v), min(v), max(v)) if v else (math.nan,) * 3

def same(a, b):
    return (math.isnan(a) and math.isnan(b)) or abs(a - b) <= 1e-9 * max(1.0, abs(b))

picks = {r["method"]: r["run_dirs"].split(";") for r in csv.DictReader(open(os.path.join(d, "table.picks.csv")))}
curves = blocks(os.path.join(rep, "plots", "demo-fashion-mosaic-curves.dat"))
assert list(curves) == ["Full labels", "Naive AN", "LL-R", "LL-Ct", "LL-Cp"], list(curves)
for method, b in curves.items():
    assert b["runs"] == picks[method], (method, b["runs"])
    logs = [epochs(r) for r in b["runs"]]
    assert len(b["rows"]) == 3 and all(len(l) == 3 for l in logs), method
    for e, row in enumerate(b["rows"]):
        want = [e + 1, *band([l[e]["val_map"] for l in logs]),
                *band([l[e]["train_loss"] for l in logs]), len(logs)]
        assert all(same(x, y) for x, y in zip(row, want)), (method, e, row, want)

# the hidden positives of the training split (numpy on the store's labels)
full, obs = np.load("full.npy"), np.load("observed.npy")
H0 = int(((full == 1) & (obs == 0)).sum())
U0 = int((obs == 0).sum())
ll = blocks(os.path.join(rep, "plots", "demo-fashion-mosaic-ll.dat"))
assert list(ll) == ["Naive AN", "LL-R", "LL-Ct", "LL-Cp"], list(ll)
shrunk = False
for method, b in ll.items():
    logs = [epochs(r) for r in b["runs"]]
    for e, row in enumerate(b["rows"]):
        prec, rec, ctp, cor = [], [], [], []
        for l in logs:
            x = l[e]
            before = l[e - 1].get("corrected_true_pos_total", 0) if e else 0
            # hidden_pos counts the labels as trained: LL-Cp's earlier corrections are gone
            assert x["hidden_pos"] + before == H0, (method, e, x["hidden_pos"], before, H0)
            shrunk |= x["hidden_pos"] < H0
            prec.append(x["modified_precision"] if x["modified"] else None)
            rec.append((x["modified_hidden_pos"] + before) / H0)
            ctp.append(x.get("corrected_true_pos_total"))
            cor.append(x.get("corrected_total"))
        want = [e + 1, *band(prec), *band(rec), *band(ctp), *band(cor), len(logs)]
        assert all(same(x, y) for x, y in zip(row, want)), (method, e, row, want)
assert shrunk, "no LL-Cp correction of a hidden positive: the recall check tests nothing"
base = float(re.search(r"# base_rate ([0-9.eE+-]+)", open(os.path.join(rep, "plots", "demo-fashion-mosaic-ll.dat")).read()).group(1))
assert abs(base - H0 / U0) < 1e-12, (base, H0, U0)
print("ok: data files = run.jsonl (curves of 5 methods, diagnostics of 4; %d hidden positives)" % H0)
EOF

# 3. a real browser: the page renders, and every image loads
. "$WSML_TESTS/e2e/lib/browser.sh"
browser --window-size=1280,2400 --screenshot="$PWD/page.png" "file://$PWD/demo/report/index.html" ||
  { tail chromium.log; fail "chromium could not render the page"; }
"$PYTHON" - <<'EOF' || fail "the screenshot"
from PIL import Image
shot = Image.open("page.png"); shot.load()
assert shot.size == (1280, 2400), shot.size
assert len(set(shot.convert("L").getdata())) > 50, "the screenshot is (nearly) blank"
print("ok: chromium rendered the page")
EOF
check_page_images demo/report 4

# 4. make report (and make demo-report) redo the page from the runs that exist
rm -rf demo/report
M report > report.txt 2>&1 || { cat report.txt; exit 1; }
[ -f demo/report/index.html ] && [ -f demo/report/plots/demo-fashion-mosaic-ll.png ] || { cat report.txt; exit 1; }

# 5. bad arguments: one line, exit status 1 or 2, no page
if wsml-eval report demo/runs/an-s1 2> err.txt; then echo "FAIL: no --out accepted"; exit 1; fi
grep -q "give --out DIR" err.txt
if wsml-eval report --out bad --table T 2> err.txt; then echo "FAIL: an empty section accepted"; exit 1; fi
grep -q "section 'T' has no RUNDIR" err.txt
if wsml-eval report --out bad demo/runs/an-s1 --cam demo/table.csv 2> err.txt; then
  echo "FAIL: a CSV accepted as a CAM figure"; exit 1; fi
[ "$(wc -l < err.txt)" = 1 ] && grep -q "demo/table.csv: not a PNG" err.txt || { cat err.txt; exit 1; }
[ ! -e bad/index.html ] || { echo "FAIL: a refused report left bad/index.html"; exit 1; }
echo "report_page: all ok"
