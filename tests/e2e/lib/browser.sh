# Headless Chromium for the results-page tests (sourced by an e2e script after
# lib/common.sh): browser ARGS... runs it with a fresh profile (chromium.log keeps its
# stderr); check_page_images DIR N opens DIR/index.html with a script appended that
# reports every image's naturalWidth, and fails unless exactly N images loaded, each at
# its PNG's width, and an image missing on purpose did not.
browser() {
  local ud rc=0
  ud=$(mktemp -d)
  timeout 60 chromium --headless --no-sandbox --disable-gpu --disable-quic --no-first-run \
    --disable-background-networking --disable-component-update --disable-sync \
    --user-data-dir="$ud" --hide-scrollbars "$@" 2>>chromium.log || rc=$?
  rm -rf "$ud"
  return $rc
}

check_page_images() {
  local dir=$1 want=$2
  cp "$dir/index.html" "$dir/check.html"
  cat >> "$dir/check.html" <<'EOS'
<img src="missing-on-purpose.png" alt="">
<script>
window.addEventListener('load', function () {
  var out = [];
  for (var i = 0; i < document.images.length; i++)
    out.push(document.images[i].getAttribute('src') + ' ' + document.images[i].naturalWidth);
  var pre = document.createElement('pre');
  pre.id = 'image-check';
  pre.textContent = out.join('\n');
  document.body.appendChild(pre);
});
</script>
EOS
  browser --dump-dom "file://$(cd "$dir" && pwd)/check.html" > dom.html ||
    { rm -f "$dir/check.html"; tail chromium.log; fail "chromium --dump-dom of $dir"; }
  rm -f "$dir/check.html"
  "$PYTHON" - "$dir" "$want" <<'EOS' || fail "$dir: the images did not all load in chromium"
import re, sys
from PIL import Image
d, want = sys.argv[1], int(sys.argv[2])
m = re.search(r'<pre id="image-check">(.*?)</pre>', open("dom.html").read(), re.S)
assert m, "the check script did not run"
seen = dict(l.rsplit(" ", 1) for l in m.group(1).strip().splitlines())
assert seen.pop("missing-on-purpose.png") == "0", "a missing image must not load"
assert len(seen) == want, (want, seen)
for src, width in seen.items():
    assert int(width) == Image.open(d + "/" + src).width, (src, width)
print("ok: chromium loaded the %d images of %s/index.html at their PNG widths" % (len(seen), d))
EOS
}
