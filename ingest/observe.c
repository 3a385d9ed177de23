// Partial-label simulation, validation carve and frequency groups (docs/methods.md §1, §4).
//
// Reference: Cole et al., preproc/generate_observed_labels.py and datasets.py
// (elijahcole/single-positive-multi-label, reused unchanged by LargeLossMatters):
//  - observed labels are generated on each *official* split file (formatted_train_*,
//    formatted_val_*) before any carving, with a fresh np.random.RandomState(seed) per
//    split; so wsml's val images keep the observed labels drawn for them inside the
//    official train split, and test gets its own generator;
//  - the val carve is generate_split(N, val_frac, RandomState(split_seed)).
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/ingest.h"

// One image (observe_uniform's loop body):
//   idx_pos = nonzero(row == +1); rng.shuffle(idx_pos); keep idx_pos[:num_pos]
//   idx_neg = nonzero(row == -1); rng.shuffle(idx_neg); keep idx_neg[:num_neg]
// The reference's row is -1/+1 (absent = -1), i.e. our full value 0. The negatives are
// shuffled even when num_neg = 0: that consumes random numbers, and skipping it would
// change every later image. num_* = -1 keeps all.
// full: (C) in {0,1}; obs: (C) out in {-1,0,1}; pos_buf, neg_buf: (C) scratch.
void ingest_observe_row(const int8_t *full, int C, int num_pos, int num_neg, wsml_rng *rng,
                        int64_t *pos_buf, int64_t *neg_buf, int8_t *obs) {
    size_t np_ = 0, nn = 0;
    for (int c = 0; c < C; c++) {
        obs[c] = 0;
        if (full[c] == 1)
            pos_buf[np_++] = c;
        else if (full[c] == 0)
            neg_buf[nn++] = c;
    }
    wsml_rng_shuffle(rng, pos_buf, np_, sizeof(int64_t));
    size_t kp = num_pos < 0 || (size_t)num_pos > np_ ? np_ : (size_t)num_pos;
    for (size_t k = 0; k < kp; k++)
        obs[pos_buf[k]] = 1;
    wsml_rng_shuffle(rng, neg_buf, nn, sizeof(int64_t));
    size_t kn = num_neg < 0 || (size_t)num_neg > nn ? nn : (size_t)num_neg;
    for (size_t k = 0; k < kn; k++)
        obs[neg_buf[k]] = -1;
}

int ingest_simulate_observed(ingest_dataset *ds, int num_pos, int num_neg, uint32_t seed,
                             wsml_err *err) {
    int C = ds->num_classes;
    int8_t *full = malloc((size_t)C), *obs = malloc((size_t)C);
    int64_t *pos = malloc(sizeof(int64_t) * (size_t)C), *neg = malloc(sizeof(int64_t) * (size_t)C);
    uint32_t *entries = malloc(sizeof(uint32_t) * (size_t)C);
    wsml_rng *rng = malloc(sizeof *rng);
    int rc = 0;
    if (!full || !obs || !pos || !neg || !entries || !rng) {
        rc = wsml_errf(err, WSML_ENOMEM, "out of memory simulating observed labels");
        goto done;
    }
    for (int s = 0; s < WSML_NUM_SPLITS && !rc; s++) {
        ingest_list *l = &ds->official[s];
        if (l->has_observed || l->n == 0)
            continue;
        wsml_rng_seed(rng, seed); // a fresh RandomState(seed) per official split
        for (size_t i = 0; i < l->n; i++) {
            if ((i & 4095) == 0 && ingest_interrupted) {
                rc = wsml_errf(err, WSML_ESTATE, "interrupted by signal");
                break;
            }
            ingest_item *it = &l->items[i];
            ingest_item_full(ds, it, full);
            for (int c = 0; c < C; c++)
                if (full[c] != 0 && full[c] != 1) {
                    rc = wsml_errf(err, WSML_EFORMAT,
                                   "%s: image %s: unknown full label for class %d; cannot "
                                   "simulate observed labels",
                                   wsml_split_name((wsml_split)s), ingest_str_at(ds, it->id), c);
                    goto done;
                }
            ingest_observe_row(full, C, num_pos, num_neg, rng, pos, neg, obs);
            uint32_t n = 0;
            for (int c = 0; c < C; c++)
                if (obs[c])
                    entries[n++] = INGEST_ENTRY(c, obs[c]);
            // The observed entries go to the end of the pool; the item points at them.
            if (ds->obs_len + n > ds->obs_cap) {
                size_t cap = ds->obs_cap ? ds->obs_cap : 1024;
                while (cap < ds->obs_len + n)
                    cap *= 2;
                uint32_t *p = realloc(ds->obs_pool, cap * sizeof(uint32_t));
                if (!p) {
                    rc = wsml_errf(err, WSML_ENOMEM, "out of memory simulating observed labels");
                    goto done;
                }
                ds->obs_pool = p;
                ds->obs_cap = cap;
            }
            if (n) // obs_pool is still NULL while no image had an entry (UBSan, fuzzing)
                memcpy(ds->obs_pool + ds->obs_len, entries, n * sizeof(uint32_t));
            it->obs_off = ds->obs_len;
            it->n_obs = n;
            ds->obs_len += n;
        }
        l->has_observed = 1;
    }
done:
    free(full);
    free(obs);
    free(pos);
    free(neg);
    free(entries);
    free(rng);
    return rc;
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

int ingest_carve_val(size_t n, double val_frac, uint32_t split_seed, uint32_t **train_idx,
                     size_t *n_train, uint32_t **val_idx, size_t *n_val, wsml_err *err) {
    // n_2 = int(np.round(frac * num_ex)): numpy rounds half to even, as nearbyint does
    // in the default rounding mode.
    double r = nearbyint(val_frac * (double)n);
    size_t nv = r <= 0 ? 0 : (size_t)r;
    if (nv > n)
        nv = n;
    size_t nt = n - nv;
    int64_t *perm = malloc(sizeof(int64_t) * (n ? n : 1));
    uint32_t *t = malloc(sizeof(uint32_t) * (nt ? nt : 1));
    uint32_t *v = malloc(sizeof(uint32_t) * (nv ? nv : 1));
    wsml_rng *rng = malloc(sizeof *rng);
    if (!perm || !t || !v || !rng) {
        free(perm);
        free(t);
        free(v);
        free(rng);
        return wsml_errf(err, WSML_ENOMEM, "out of memory carving the validation split");
    }
    wsml_rng_seed(rng, split_seed);
    wsml_rng_permutation(rng, perm, n);
    // idx_1 = sort(idx_rand[:n_1]); idx_2 = sort(idx_rand[-n_2:]). (With n_2 = 0 the
    // reference's idx_rand[-0:] would be everything; wsml makes val empty instead.)
    for (size_t i = 0; i < nt; i++)
        t[i] = (uint32_t)perm[i];
    for (size_t i = 0; i < nv; i++)
        v[i] = (uint32_t)perm[nt + i];
    qsort(t, nt, sizeof(uint32_t), cmp_u32);
    qsort(v, nv, sizeof(uint32_t), cmp_u32);
    free(perm);
    free(rng);
    *train_idx = t;
    *n_train = nt;
    *val_idx = v;
    *n_val = nv;
    return 0;
}

typedef struct {
    uint64_t count;
    int cls;
} class_count;

static int cmp_class_count(const void *a, const void *b) {
    const class_count *x = a, *y = b;
    if (x->count != y->count)
        return x->count < y->count ? -1 : 1;
    return (x->cls > y->cls) - (x->cls < y->cls);
}

// docs/methods.md §4: classes sorted ascending by their number of positive training labels (ties
// by class index: a stable sort), cut into five groups of equal size; when C is not a
// multiple of 5 the first C%5 groups get one extra class (numpy.array_split).
int ingest_frequency_groups(ingest_dataset *ds, const ingest_list *train, wsml_err *err) {
    int C = ds->num_classes;
    class_count *cc = calloc((size_t)C, sizeof *cc);
    ds->groups = calloc(5, sizeof(int *));
    if (!cc || !ds->groups) {
        free(cc);
        return wsml_errf(err, WSML_ENOMEM, "out of memory computing frequency groups");
    }
    for (int c = 0; c < C; c++)
        cc[c].cls = c;
    for (size_t i = 0; i < train->n; i++) {
        const ingest_item *it = &train->items[i];
        for (uint32_t k = 0; k < it->n_full; k++) {
            uint32_t e = ds->full_pool[it->full_off + k];
            if (INGEST_ENTRY_VALUE(e) == 1)
                cc[INGEST_ENTRY_CLASS(e)].count++;
        }
    }
    qsort(cc, (size_t)C, sizeof *cc, cmp_class_count);
    int at = 0;
    for (int g = 0; g < 5; g++) {
        int len = C / 5 + (g < C % 5 ? 1 : 0);
        ds->groups[g] = malloc(sizeof(int) * (size_t)(len ? len : 1));
        if (!ds->groups[g]) {
            free(cc);
            return wsml_errf(err, WSML_ENOMEM, "out of memory computing frequency groups");
        }
        for (int k = 0; k < len; k++)
            ds->groups[g][k] = cc[at++].cls;
        ds->group_len[g] = len;
    }
    free(cc);
    return 0;
}
