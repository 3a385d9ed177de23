#!/bin/sh
# pipelines/plan-summary.sh TABLE STORES GPU_BENCH INGEST_FLAGS WSML_BIN "STORE..." "METHOD..." RUN...
# The summary at the end of `make -n TABLE` (pipelines/runs.mk): runs per method, the
# images x epochs still to train, an estimate of GPU-hours from the GPU benchmark's
# images/s, and the disk each store needs (raw vs JPEG). Each RUN is
# DATASET:METHOD:EPOCHS:TODO:COUNT (TODO 1 = still to run; COUNT runs of that kind). Train-split sizes come from the
# store when it exists (wsml-store info), else from the official counts with the 20%
# validation carve (supp. §A) for VOC, COCO and CUB; other datasets: unknown.
table=$1 stores=$2 bench=$3 ingest_flags=$4 bin=$5 store_names=$6 methods=$7
shift 7

# image side: the last --size of INGEST_FLAGS, else wsml-ingest's default 448
size=$(printf '%s\n' "$ingest_flags" | awk '{ s = 448; for (i = 1; i < NF; i++) if ($i == "--size") s = $(i + 1);
  for (i = 1; i <= NF; i++) if ($i ~ /^--size=/) { s = $i; sub(/^--size=/, "", s) } print s }')

# "NAME TRAIN ALL MEASURED_BYTES ENCODING" per store; unknown numbers are "-"
counts=""
for s in $store_names; do
    line=""
    if [ -d "$stores/$s" ] && [ -x "$bin/wsml-store" ]; then
        line=$("$bin/wsml-store" info "$stores/$s" --json 2>/dev/null | awk -v n="$s" '
          /"counts"/ { c = 1 } c && /"train"/ { gsub(/[^0-9]/, ""); tr = $0 }
          c && /"val"/ { gsub(/[^0-9]/, ""); va = $0 } c && /"test"/ { gsub(/[^0-9]/, ""); te = $0; c = 0 }
          /"data_bytes"/ { gsub(/[^0-9]/, ""); b = $0 }
          /"encoding"/ && !e { e = $0; gsub(/.*: *"|".*/, "", e) }
          END { if (tr != "") print n, tr, tr + va + te, b == "" ? "-" : b, e == "" ? "-" : e }')
    fi
    if [ -z "$line" ]; then
        case $s in
        voc) line="voc 4574 11540 - -" ;;          # 5,717 train (20% carved for val) + 5,823 test
        coco) line="coco 65665 122218 - -" ;;      # 82,081 train + 40,137 test
        cub) line="cub 4795 11788 - -" ;;          # 5,994 train + 5,794 test
        *) line="$s - - - -" ;;
        esac
    fi
    counts="$counts$line
"
done

# images/s of wsml's own benchmark row (tf32, batch 16), the closest to the paper's recipe
ips="" bench_model=""
if [ -f "$bench" ]; then
    row=$(grep '"tool": "wsml"' "$bench" | grep '"precision": "tf32"' | grep '"batch": 16,' | tail -n 1)
    ips=$(printf '%s\n' "$row" | sed -n 's/.*"images_per_s": \([0-9.]*\).*/\1/p')
    # the model it measured (the plan's runs may use another: the estimate scales with it)
    bench_model=$(printf '%s\n' "$row" | sed -n 's/.*"arch": "\([^"]*\)".*"size": \([0-9]*\).*/\1 at \2px/p')
fi

printf '%s\n' "$@" | awk -v table="$table" -v size="$size" -v ips="$ips" -v bench="$bench" \
    -v bench_model="${bench_model:-model unknown}" \
    -v counts="$counts" -v methods="$methods" '
function gb(bytes) { return bytes >= 1e9 ? sprintf("%.1f GB", bytes / 1e9) : sprintf("%.1f MB", bytes / 1e6) }
BEGIN {
    n = split(counts, lines, "\n")
    for (i = 1; i <= n; i++) {
        if (split(lines[i], f, " ") < 5) continue
        train[f[1]] = f[2]; all[f[1]] = f[3]; measured[f[1]] = f[4]; enc[f[1]] = f[5]; order[++ns] = f[1]
    }
    nm = split(methods, morder, " ")  # the methods in METHODS order; others as they come
    for (i = 1; i <= nm; i++) seen[morder[i]] = 1
}
NF {
    split($0, r, ":"); ds = r[1]; m = r[2]; ep = r[3]; todo = r[4]; k = r[5]
    runs[m] += k; left[m] += todo * k; if (!(m in seen)) { seen[m] = 1; morder[++nm] = m }
    total += k; totleft += todo * k
    if (todo) {
        if (train[ds] == "" || train[ds] == "-") unknown[ds] = 1
        else work += train[ds] * ep * k
    }
}
END {
    printf "\n== plan summary: make %s\n", table
    printf "runs per method (still to run / all):"
    sep = ""
    for (i = 1; i <= nm; i++) if (morder[i] in runs) { printf "%s %s %d/%d", sep, morder[i], left[morder[i]], runs[morder[i]]; sep = "," }
    printf "\nruns: %d still to run of %d\n", totleft, total
    u = ""
    for (d in unknown) u = u (u == "" ? "" : ", ") d
    printf "images x epochs to train: %.4g%s\n", work, u == "" ? "" : " (plus " u ": train split unknown until ingested)"
    if (ips != "" && ips > 0 && work == 0 && u != "")
        printf "GPU-hours: unknown (%s: train split unknown until ingested)\n", u
    else if (ips != "" && ips > 0)
        printf "GPU-hours: %s%.1f at %s images/s (wsml tf32, batch 16, %s, from %s; training steps only)%s\n", u == "" ? "" : "at least ", work / ips / 3600, ips, bench_model, bench, u == "" ? "" : "; not counted: " u
    else
        printf "GPU-hours: unknown (no GPU benchmark yet: bench/gpu.sh writes %s)\n", bench
    printf "disk per store (%dx%d images):\n", size, size
    for (i = 1; i <= ns; i++) {
        d = order[i]
        if (all[d] == "-") { printf "  %s: unknown until ingested\n", d; continue }
        raw = all[d] * size * size * 3
        if (measured[d] != "-")
            printf "  %s: %d images; raw %s; this store (%s): %s\n", d, all[d], gb(raw), enc[d], gb(measured[d])
        else
            printf "  %s: %d images; raw %s; JPEG q95 (the default): typically 0.1-0.15 of that for photos\n", d, all[d], gb(raw)
    }
}'
