// Average precision, mAP and group mAP (docs/methods.md §4); see common/metrics.h for the rules.
//
// How AP is computed: for one class the known entries are split into positives and
// negatives, each turned into order-preserving 64-bit keys of their score and
// radix-sorted (stable, deterministic, linear time). A merge walk from the highest
// score down visits each distinct score once (a tie is one threshold, as in
// scikit-learn's _binary_clf_curve) and adds (tp gained / P) · precision there.
// Radix-sorting the two sides separately needs no label payload beside the keys.
#include "common/metrics.h"

#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// ---- keys -------------------------------------------------------------------------------

// Maps a finite double to a uint64 whose unsigned order is the order of the doubles.
// -0.0 and +0.0 compare equal (as in numpy), so both map to the key of +0.0.
static inline uint64_t score_key(double score) {
    if (score == 0.0)
        score = 0.0;
    uint64_t bits;
    memcpy(&bits, &score, sizeof(bits));
    return (bits >> 63) ? ~bits : (bits | (1ull << 63));
}

// Sorts keys ascending. a: (n), tmp: (n) scratch. LSD radix sort over bytes, skipping
// the byte positions where every key agrees (the low three bytes of a float32 widened
// to double are always zero, and scores in [0, 1] share their top byte).
static void radix_sort_u64(uint64_t *a, uint64_t *tmp, int64_t n) {
    if (n < 2)
        return;
    if (n <= 32) { // insertion sort: cheaper than eight histograms for a few keys
        for (int64_t i = 1; i < n; i++) {
            uint64_t v = a[i];
            int64_t j = i - 1;
            while (j >= 0 && a[j] > v) {
                a[j + 1] = a[j];
                j--;
            }
            a[j + 1] = v;
        }
        return;
    }
    // Byte positions where some key differs from the first: only those need a pass.
    uint64_t differs = 0;
    for (int64_t i = 1; i < n; i++)
        differs |= a[i] ^ a[0];
    int passes[8], num_passes = 0;
    for (int b = 0; b < 8; b++)
        if ((differs >> (8 * b)) & 255)
            passes[num_passes++] = b;
    uint32_t hist[8][256]; // n < 2^32 (checked by the callers)
    memset(hist, 0, sizeof(hist[0]) * (size_t)num_passes);
    for (int64_t i = 0; i < n; i++) {
        uint64_t v = a[i];
        for (int p = 0; p < num_passes; p++)
            hist[p][(v >> (8 * passes[p])) & 255]++;
    }
    uint64_t *src = a, *dst = tmp;
    for (int p = 0; p < num_passes; p++) {
        uint32_t *h = hist[p];
        int shift = 8 * passes[p];
        uint32_t offset = 0;
        for (int d = 0; d < 256; d++) {
            uint32_t count = h[d];
            h[d] = offset;
            offset += count;
        }
        for (int64_t i = 0; i < n; i++) {
            uint64_t v = src[i];
            dst[h[(v >> shift) & 255]++] = v;
        }
        uint64_t *swap = src;
        src = dst;
        dst = swap;
    }
    if (src != a)
        memcpy(a, src, (size_t)n * sizeof(*a));
}

// AP from the sorted keys of the positives (pos, num_pos) and negatives (neg, num_neg),
// both ascending. Walks the distinct scores from the highest down; at each threshold the
// recall step is (positives at this score) / P and the precision is tp / (tp + fp) with
// all entries scoring >= the threshold counted.
static double ap_from_sorted_keys(const uint64_t *pos, int64_t num_pos, const uint64_t *neg,
                                  int64_t num_neg) {
    if (num_pos == 0)
        return 0.0; // reference convention (common/metrics.h)
    int64_t i = num_pos - 1, j = num_neg - 1;
    int64_t tp = 0, fp = 0;
    double sum = 0.0; // Σ (tp gained at threshold) · precision
    while (i >= 0) {  // once every positive is counted, recall no longer changes
        uint64_t threshold = pos[i];
        if (j >= 0 && neg[j] > threshold)
            threshold = neg[j];
        int64_t gained = 0;
        while (i >= 0 && pos[i] == threshold) {
            i--;
            gained++;
        }
        while (j >= 0 && neg[j] == threshold) {
            j--;
            fp++;
        }
        tp += gained;
        if (gained)
            sum += (double)gained * ((double)tp / (double)(tp + fp));
    }
    return sum / (double)num_pos;
}

// ---- gathering -----------------------------------------------------------------

typedef enum { SCORES_F32, SCORES_F64 } score_type;

static inline double score_at(const void *scores, score_type type, int64_t idx) {
    return type == SCORES_F32 ? (double)((const float *)scores)[idx]
                              : ((const double *)scores)[idx];
}

// Keys per gathering pass: a block of classes is gathered in one row-major sweep
// (column-at-a-time access would touch every row's cache line once per class); a small
// block keeps the key buffer in cache and its page faults few (2 MiB).
#define GATHER_BUDGET_KEYS ((int64_t)1 << 18)

// Gathers the keys of classes c0 .. c0+width-1 in one row-major sweep: the keys of class
// c0+k go to keys[k*n .. (k+1)*n), positives from the front, negatives from the back;
// counts[2k], counts[2k+1] receive their numbers. Inlined per score type so that the
// type test leaves the inner loop.
static inline __attribute__((always_inline)) int
gather_block(const void *scores, score_type type, const int8_t *labels, int64_t n, int c, int c0,
             int width, uint64_t *keys, int64_t *counts, wsml_err *err) {
    for (int64_t r = 0; r < n; r++) {
        const int8_t *label_row = labels + r * c + c0;
        for (int k = 0; k < width; k++) {
            double s = score_at(scores, type, r * c + c0 + k);
            int8_t label = label_row[k];
            if (!isfinite(s))
                return wsml_errf(err, WSML_EARG,
                                 "score at row %lld, class %d is %s (must be finite)", (long long)r,
                                 c0 + k, isnan(s) ? "NaN" : "infinite");
            uint64_t *class_keys = keys + (int64_t)k * n;
            if (label == 1)
                class_keys[counts[2 * k]++] = score_key(s);
            else if (label == 0)
                class_keys[n - 1 - counts[2 * k + 1]++] = score_key(s);
            else if (label != -1)
                return wsml_errf(err, WSML_EARG,
                                 "label at row %lld, class %d is %d (must be 1, 0 or -1)",
                                 (long long)r, c0 + k, label);
        }
    }
    return 0;
}

// ---- whole matrix -----------------------------------------------------------------------

void wsml_metrics_free(wsml_metrics *m) {
    if (!m)
        return;
    free(m->ap);
    free(m->num_pos);
    free(m->num_known);
    free(m->included);
    free(m->group_map);
    free(m->group_included);
    memset(m, 0, sizeof(*m));
}

// Mean AP in points over the included classes in list (or all classes when list is NULL).
static double mean_ap_points(const wsml_metrics *m, const int *list, int count, int *num_included) {
    double sum = 0.0;
    int used = 0;
    for (int k = 0; k < count; k++) {
        int c = list ? list[k] : k;
        if (!m->included[c])
            continue;
        sum += m->ap[c];
        used++;
    }
    *num_included = used;
    return used ? 100.0 * sum / used : NAN;
}

static int metrics_compute(const void *scores, score_type type, const int8_t *labels, int64_t n,
                           int c, const wsml_groups *groups, wsml_metrics *out, wsml_err *err) {
    memset(out, 0, sizeof(*out));
    if (n < 0 || n > (int64_t)UINT32_MAX || c < 1) // the sort counts in uint32
        return wsml_errf(err, WSML_EARG, "metrics: bad shape (%lld, %d)", (long long)n, c);
    if (groups) {
        for (int g = 0; g < groups->num_groups; g++)
            for (int k = groups->offsets[g]; k < groups->offsets[g + 1]; k++)
                if (groups->classes[k] < 0 || groups->classes[k] >= c)
                    return wsml_errf(err, WSML_EARG, "group G%d lists class %d, outside [0, %d)",
                                     g + 1, groups->classes[k], c);
    }
    wsml_metrics m = {0};
    m.num_images = n;
    m.num_classes = c;
    m.ap = malloc((size_t)c * sizeof(*m.ap));
    m.num_pos = malloc((size_t)c * sizeof(*m.num_pos));
    m.num_known = malloc((size_t)c * sizeof(*m.num_known));
    m.included = malloc((size_t)c);
    // At least 16 classes per sweep: one 64-byte line of float32 scores per row, so the
    // sweeps together read the matrix about once even when N is large (OpenImages).
    int64_t block = n > 0 ? GATHER_BUDGET_KEYS / n : c;
    if (block < 16)
        block = 16;
    if (block > c)
        block = c;
    uint64_t *keys = malloc((size_t)(block * n + n + 1) * sizeof(uint64_t));
    int64_t *counts = malloc((size_t)block * 2 * sizeof(int64_t)); // [block][pos, neg]
    if (!m.ap || !m.num_pos || !m.num_known || !m.included || !keys || !counts) {
        free(keys);
        free(counts);
        wsml_metrics_free(&m);
        return wsml_errf(err, WSML_ENOMEM, "metrics: out of memory for %lld x %d scores",
                         (long long)n, c);
    }
    uint64_t *scratch = keys + block * n;
    int rc = 0;
    for (int c0 = 0; c0 < c && !rc; c0 += (int)block) {
        int width = (int)(c - c0 < block ? c - c0 : block);
        memset(counts, 0, (size_t)width * 2 * sizeof(int64_t));
        rc = type == SCORES_F32
                 ? gather_block(scores, SCORES_F32, labels, n, c, c0, width, keys, counts, err)
                 : gather_block(scores, SCORES_F64, labels, n, c, c0, width, keys, counts, err);
        for (int k = 0; k < width && !rc; k++) {
            uint64_t *class_keys = keys + (int64_t)k * n;
            int64_t np = counts[2 * k], nn = counts[2 * k + 1];
            uint64_t *neg = class_keys + (n - nn);
            radix_sort_u64(class_keys, scratch, np);
            radix_sort_u64(neg, scratch, nn);
            int cls = c0 + k;
            m.num_pos[cls] = np;
            m.num_known[cls] = np + nn;
            m.included[cls] = (np + nn) > 0;
            m.ap[cls] = m.included[cls] ? ap_from_sorted_keys(class_keys, np, neg, nn) : NAN;
        }
    }
    free(keys);
    free(counts);
    if (rc) {
        wsml_metrics_free(&m);
        return rc;
    }
    m.map = mean_ap_points(&m, NULL, c, &m.num_included);
    if (groups && groups->num_groups > 0) {
        m.num_groups = groups->num_groups;
        m.group_map = malloc((size_t)m.num_groups * sizeof(*m.group_map));
        m.group_included = malloc((size_t)m.num_groups * sizeof(*m.group_included));
        if (!m.group_map || !m.group_included) {
            wsml_metrics_free(&m);
            return wsml_errf(err, WSML_ENOMEM, "metrics: out of memory");
        }
        for (int g = 0; g < m.num_groups; g++) {
            int begin = groups->offsets[g], end = groups->offsets[g + 1];
            m.group_map[g] =
                mean_ap_points(&m, groups->classes + begin, end - begin, &m.group_included[g]);
        }
    }
    *out = m;
    return 0;
}

int wsml_metrics_compute(const float *scores, const int8_t *labels, int64_t n, int c,
                         const wsml_groups *groups, wsml_metrics *out, wsml_err *err) {
    return metrics_compute(scores, SCORES_F32, labels, n, c, groups, out, err);
}

int wsml_metrics_compute_f64(const double *scores, const int8_t *labels, int64_t n, int c,
                             const wsml_groups *groups, wsml_metrics *out, wsml_err *err) {
    return metrics_compute(scores, SCORES_F64, labels, n, c, groups, out, err);
}

int wsml_average_precision_f32(const float *scores, const int8_t *labels, int64_t n, int64_t stride,
                               uint64_t *work, double *ap, int64_t *num_pos, int64_t *num_known,
                               wsml_err *err) {
    if (n < 0 || n > (int64_t)UINT32_MAX || stride < 1 || stride > INT32_MAX)
        return wsml_errf(err, WSML_EARG, "average precision: n=%lld stride=%lld", (long long)n,
                         (long long)stride);
    // One column of an (n, stride) matrix is a block of width 1.
    int64_t counts[2] = {0, 0};
    int rc = gather_block(scores, SCORES_F32, labels, n, (int)stride, 0, 1, work, counts, err);
    if (rc)
        return rc;
    uint64_t *neg = work + (n - counts[1]);
    radix_sort_u64(work, work + n, counts[0]);
    radix_sort_u64(neg, work + n, counts[1]);
    *ap = ap_from_sorted_keys(work, counts[0], neg, counts[1]);
    if (num_pos)
        *num_pos = counts[0];
    if (num_known)
        *num_known = counts[0] + counts[1];
    return 0;
}

int wsml_mean_average_precision(const float *scores, const int8_t *labels, int64_t n, int c,
                                double *map, wsml_err *err) {
    wsml_metrics m;
    int rc = wsml_metrics_compute(scores, labels, n, c, NULL, &m, err);
    if (rc)
        return rc;
    *map = m.map;
    wsml_metrics_free(&m);
    return 0;
}

int wsml_metrics_map_groups(const float *scores, const int8_t *labels, int64_t n, int c,
                            const char *store_info_json, double *map, double *group_maps,
                            int *num_groups, wsml_err *err) {
    wsml_groups groups = {0};
    *num_groups = 0;
    if (store_info_json) {
        int rc = wsml_groups_parse_json(store_info_json, c, "store info", &groups, err);
        if (rc)
            return rc;
        if (groups.num_groups > WSML_METRICS_MAX_GROUPS) {
            wsml_groups_free(&groups);
            return wsml_errf(err, WSML_EARG, "store info: %d frequency groups (at most %d)",
                             groups.num_groups, WSML_METRICS_MAX_GROUPS);
        }
    }
    wsml_metrics m;
    int rc = wsml_metrics_compute(scores, labels, n, c, &groups, &m, err);
    wsml_groups_free(&groups);
    if (rc)
        return rc;
    *map = m.map;
    *num_groups = m.num_groups;
    for (int g = 0; g < m.num_groups; g++)
        group_maps[g] = m.group_map[g];
    wsml_metrics_free(&m);
    return 0;
}

// ---- groups -----------------------------------------------------------------------------

void wsml_groups_free(wsml_groups *g) {
    if (!g)
        return;
    free(g->offsets);
    free(g->classes);
    memset(g, 0, sizeof(*g));
}

int wsml_groups_parse_json(const char *json_text, int num_classes, const char *what,
                           wsml_groups *out, wsml_err *err) {
    memset(out, 0, sizeof(*out));
    json_error_t jerr;
    json_t *root = json_loads(json_text, 0, &jerr);
    if (!root)
        return wsml_errf(err, WSML_EFORMAT, "%s: line %d: %s", what, jerr.line, jerr.text);
    json_t *list = root;
    if (json_is_object(root)) {
        list = json_object_get(root, "groups");
        if (!list || json_is_null(list)) {
            json_decref(root);
            return 0; // no groups: a dataset without frequency groups
        }
    }
    int rc = 0;
    if (!json_is_array(list)) {
        rc = wsml_errf(err, WSML_EFORMAT,
                       "%s: \"groups\" must be an array of arrays of class "
                       "indices",
                       what);
        goto done;
    }
    size_t num_groups = json_array_size(list), total = 0;
    for (size_t g = 0; g < num_groups; g++) {
        json_t *group = json_array_get(list, g);
        if (!json_is_array(group)) {
            rc = wsml_errf(err, WSML_EFORMAT, "%s: group %zu is not an array of class indices",
                           what, g + 1);
            goto done;
        }
        total += json_array_size(group);
    }
    out->num_groups = (int)num_groups;
    out->offsets = malloc((num_groups + 1) * sizeof(int));
    out->classes = malloc((total + 1) * sizeof(int));
    if (!out->offsets || !out->classes) {
        rc = wsml_errf(err, WSML_ENOMEM, "%s: out of memory", what);
        goto done;
    }
    size_t k = 0;
    out->offsets[0] = 0;
    for (size_t g = 0; g < num_groups; g++) {
        json_t *group = json_array_get(list, g);
        for (size_t i = 0; i < json_array_size(group); i++) {
            json_t *v = json_array_get(group, i);
            json_int_t cls = json_is_integer(v) ? json_integer_value(v) : -1;
            if (!json_is_integer(v) || cls < 0 || cls >= num_classes) {
                rc = wsml_errf(err, WSML_EFORMAT,
                               "%s: group %zu, entry %zu: expected a class index in [0, %d)", what,
                               g + 1, i, num_classes);
                goto done;
            }
            out->classes[k++] = (int)cls;
        }
        out->offsets[g + 1] = (int)k;
    }
done:
    json_decref(root);
    if (rc)
        wsml_groups_free(out);
    return rc;
}
