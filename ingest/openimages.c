// OpenImages V3, real partial labels (DATASETS.md; SPEC §1 "Real partial labels").
// --root holds:
//   2017_11/classes-trainable.txt           one MID a line: the classes, in that order
//   2017_11/class-descriptions.csv          "MID,display name" (class names)
//   2017_11/{train,validation,test}/annotations-human.csv
//        header "ImageID,Source,LabelName,Confidence" (streamed: millions of rows)
//   images_{train,val,test}/<ImageID>.jpg
// Confidence 1 -> positive, 0 -> negative; rows of non-trainable classes are ignored;
// every other (image, class) pair is unknown (full label -1, observed 0). When rows
// disagree about a pair, a positive wins. A split's images are those with at least one
// trainable verified label, sorted by ImageID. train -> wsml train, validation -> val,
// test -> test (the release's own validation split: nothing is carved). The frequency
// groups G1..G5 (SPEC §4) are computed from the train split by main.c.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "ingest/ingest.h"

typedef struct {
    uint32_t image; // index in the split's id table
    uint32_t entry; // INGEST_ENTRY(class, 1 or 0)
} oi_label;

typedef struct {
    char **ids;
    size_t n_ids, cap_ids;
    oi_label *labels;
    size_t n_labels, cap_labels;
    ingest_strmap map;
} oi_split;

static void oi_split_free(oi_split *s) {
    for (size_t i = 0; i < s->n_ids; i++)
        free(s->ids[i]);
    free(s->ids);
    free(s->labels);
    ingest_strmap_free(&s->map);
}

static int find_col(char **f, int nf, const char *name) {
    for (int i = 0; i < nf; i++)
        if (!strcmp(f[i], name))
            return i;
    return -1;
}

static int read_annotations(const char *path, const ingest_strmap *classes, oi_split *s,
                            wsml_err *err) {
    ingest_lines lr;
    int rc = ingest_lines_open(&lr, path, err);
    if (rc)
        return rc;
    int c_id = -1, c_label = -1, c_conf = -1, ncols = 0;
    while ((rc = ingest_lines_next(&lr, err)) == 1) {
        if (lr.len == 0)
            continue;
        char *f[16];
        int nf = ingest_csv_split(lr.line, path, lr.lineno, f, 16, err);
        if (nf < 0) {
            rc = nf;
            break;
        }
        if (ncols == 0) {
            c_id = find_col(f, nf, "ImageID");
            c_label = find_col(f, nf, "LabelName");
            c_conf = find_col(f, nf, "Confidence");
            if (c_id < 0 || c_label < 0 || c_conf < 0) {
                rc = wsml_errf(err, WSML_EFORMAT,
                               "%s: line %ld: expected the header "
                               "ImageID,Source,LabelName,Confidence",
                               path, lr.lineno);
                break;
            }
            ncols = nf;
            continue;
        }
        if (nf != ncols) {
            rc = wsml_errf(err, WSML_EFORMAT, "%s: line %ld: %d fields, the header has %d", path,
                           lr.lineno, nf, ncols);
            break;
        }
        double conf;
        if (wsml_parse_double(f[c_conf], 0, 1, &conf) || (conf != 0 && conf != 1)) {
            rc = wsml_errf(err, WSML_EFORMAT, "%s: line %ld: Confidence \"%s\", expected 0 or 1",
                           path, lr.lineno, f[c_conf]);
            break;
        }
        int64_t cls = ingest_strmap_get(classes, f[c_label], strlen(f[c_label]));
        if (cls < 0)
            continue; // not a trainable class
        size_t idlen = strlen(f[c_id]);
        if (idlen == 0) {
            rc = wsml_errf(err, WSML_EFORMAT, "%s: line %ld: empty ImageID", path, lr.lineno);
            break;
        }
        int64_t img = ingest_strmap_get(&s->map, f[c_id], idlen);
        if (img < 0) {
            if (s->n_ids == s->cap_ids) {
                size_t cap = s->cap_ids ? s->cap_ids * 2 : 4096;
                char **q = realloc(s->ids, cap * sizeof(char *));
                if (!q) {
                    rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
                    break;
                }
                s->ids = q;
                s->cap_ids = cap;
            }
            img = (int64_t)s->n_ids;
            if (!(s->ids[s->n_ids] = strdup(f[c_id])) ||
                ingest_strmap_put(&s->map, f[c_id], idlen, img) < 0) {
                free(s->ids[s->n_ids]);
                rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
                break;
            }
            s->n_ids++;
            if (s->n_ids >= UINT32_MAX) {
                rc = wsml_errf(err, WSML_EFORMAT, "%s: too many images", path);
                break;
            }
        }
        if (s->n_labels == s->cap_labels) {
            size_t cap = s->cap_labels ? s->cap_labels * 2 : 65536;
            oi_label *q = realloc(s->labels, cap * sizeof *q);
            if (!q) {
                rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
                break;
            }
            s->labels = q;
            s->cap_labels = cap;
        }
        s->labels[s->n_labels].image = (uint32_t)img;
        s->labels[s->n_labels].entry = INGEST_ENTRY(cls, conf == 1 ? 1 : 0);
        s->n_labels++;
        if ((lr.lineno & 65535) == 0 && ingest_interrupted) {
            rc = wsml_errf(err, WSML_ESTATE, "interrupted by signal");
            break;
        }
    }
    if (rc == 0 && ncols == 0)
        rc = wsml_errf(err, WSML_EFORMAT, "%s: empty file (expected a header line)", path);
    ingest_lines_close(&lr);
    return rc < 0 ? rc : 0;
}

static char **sort_ids_base; // qsort has no context argument
static int cmp_id_index(const void *a, const void *b) {
    return strcmp(sort_ids_base[*(const uint32_t *)a], sort_ids_base[*(const uint32_t *)b]);
}

static int cmp_u32(const void *a, const void *b) {
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int build_split(ingest_dataset *ds, oi_split *s, const char *image_dir, ingest_list *out,
                       wsml_err *err) {
    size_t n = s->n_ids;
    uint32_t *order = malloc(sizeof(uint32_t) * (n ? n : 1));
    uint32_t *rank = malloc(sizeof(uint32_t) * (n ? n : 1));
    size_t *start = calloc(n + 1, sizeof(size_t));
    uint32_t *sorted = malloc(sizeof(uint32_t) * (s->n_labels ? s->n_labels : 1));
    uint32_t *full = malloc(sizeof(uint32_t) * (size_t)ds->num_classes);
    uint32_t *obs = malloc(sizeof(uint32_t) * (size_t)ds->num_classes);
    int rc = 0;
    if (!order || !rank || !start || !sorted || !full || !obs) {
        rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++)
        order[i] = (uint32_t)i;
    sort_ids_base = s->ids;
    qsort(order, n, sizeof(uint32_t), cmp_id_index);
    for (size_t r = 0; r < n; r++)
        rank[order[r]] = (uint32_t)r;
    // counting sort of the label rows by image rank
    for (size_t k = 0; k < s->n_labels; k++)
        start[rank[s->labels[k].image] + 1]++;
    for (size_t r = 0; r < n; r++)
        start[r + 1] += start[r];
    for (size_t k = 0; k < s->n_labels; k++) {
        uint32_t r = rank[s->labels[k].image];
        sorted[start[r]++] = s->labels[k].entry;
    }
    for (size_t r = n; r > 0; r--)
        start[r] = start[r - 1];
    start[0] = 0;
    for (size_t r = 0; r < n && rc == 0; r++) {
        uint32_t *e = sorted + start[r];
        size_t m = start[r + 1] - start[r];
        qsort(e, m, sizeof(uint32_t), cmp_u32); // by class, negative (0) before positive (1)
        uint32_t nf = 0;
        for (size_t k = 0; k < m; k++) {
            // entries of one class are adjacent: keep the last, a positive if there is one
            if (nf && INGEST_ENTRY_CLASS(full[nf - 1]) == INGEST_ENTRY_CLASS(e[k]))
                full[nf - 1] = e[k];
            else
                full[nf++] = e[k];
        }
        for (uint32_t k = 0; k < nf; k++)
            obs[k] = INGEST_ENTRY(INGEST_ENTRY_CLASS(full[k]),
                                  INGEST_ENTRY_VALUE(full[k]) == 1 ? 1 : -1);
        char rel[512];
        int len = snprintf(rel, sizeof rel, "%s/%s.jpg", image_dir, s->ids[order[r]]);
        if (len >= (int)sizeof rel) {
            rc = wsml_errf(err, WSML_EFORMAT, "ImageID too long: %.64s...", s->ids[order[r]]);
            break;
        }
        rc = ingest_add_item_sparse(ds, out, rel, rel, full, nf, obs, nf, 0, err);
    }
    out->has_observed = 1;
done:
    free(order);
    free(rank);
    free(start);
    free(sorted);
    free(full);
    free(obs);
    return rc;
}

int ingest_read_openimages(ingest_dataset *ds, const ingest_opts *o, wsml_err *err) {
    static const char *const ann_dirs[3] = {"train", "validation", "test"};
    static const char *const img_dirs[3] = {"images_train", "images_val", "images_test"};
    static const wsml_split target[3] = {WSML_SPLIT_TRAIN, WSML_SPLIT_VAL, WSML_SPLIT_TEST};
    ds->full_label_default = -1;
    ds->observed_real = 1;
    ds->has_official_val = 1;
    char *meta = ingest_join(o->root, "2017_11");
    char *p_classes = meta ? ingest_join(meta, "classes-trainable.txt") : NULL;
    char *p_desc = meta ? ingest_join(meta, "class-descriptions.csv") : NULL;
    char *p_ann[3] = {0}, *p_img[3] = {0};
    char **mids = NULL, **names = NULL;
    int n_mids = 0;
    ingest_strmap classes;
    ingest_strmap_init(&classes);
    oi_split splits[3];
    memset(splits, 0, sizeof splits);
    ingest_lines lr = {0};
    int rc = 0;
    if (!meta || !p_classes || !p_desc) {
        rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
        goto done;
    }
    for (int k = 0; k < 3; k++) {
        char rel[96];
        snprintf(rel, sizeof rel, "%s/annotations-human.csv", ann_dirs[k]);
        p_ann[k] = ingest_join(meta, rel);
        p_img[k] = ingest_join(o->root, img_dirs[k]);
        if (!p_ann[k] || !p_img[k]) {
            rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
            goto done;
        }
    }
    if ((rc = ingest_require_file(p_classes, err)) || (rc = ingest_require_file(p_desc, err)))
        goto done;
    for (int k = 0; k < 3; k++)
        if ((rc = ingest_require_file(p_ann[k], err)) ||
            (rc = ingest_require_dir(p_img[k], "OpenImages image folder", err)))
            goto done;
    ds->image_root = strdup(o->root);
    if (!ds->image_root) {
        rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
        goto done;
    }

    if ((rc = ingest_read_class_file(p_classes, &mids, &n_mids, err)))
        goto done;
    for (int c = 0; c < n_mids; c++) {
        int r = ingest_strmap_put(&classes, mids[c], strlen(mids[c]), c);
        if (r == 1) {
            rc = wsml_errf(err, WSML_EFORMAT, "%s: class %s listed twice", p_classes, mids[c]);
            goto done;
        }
        if (r < 0) {
            rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
            goto done;
        }
    }
    // display names; a class without a description keeps its MID as name
    names = calloc((size_t)n_mids, sizeof(char *));
    if (!names) {
        rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = ingest_lines_open(&lr, p_desc, err)))
        goto done;
    while ((rc = ingest_lines_next(&lr, err)) == 1) {
        if (lr.len == 0)
            continue;
        char *f[2];
        int nf = ingest_csv_split(lr.line, p_desc, lr.lineno, f, 2, err);
        if (nf < 0) {
            rc = nf;
            break;
        }
        if (nf != 2) {
            rc = wsml_errf(err, WSML_EFORMAT, "%s: line %ld: expected \"MID,display name\"", p_desc,
                           lr.lineno);
            break;
        }
        int64_t c = ingest_strmap_get(&classes, f[0], strlen(f[0]));
        if (c < 0 || names[c])
            continue;
        if (!(names[c] = strdup(f[1]))) {
            rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
            break;
        }
    }
    ingest_lines_close(&lr);
    if (rc < 0)
        goto done;
    {
        // display names are not unique: a repeated one gets its MID appended
        ingest_strmap seen;
        ingest_strmap_init(&seen);
        for (int c = 0; c < n_mids && rc == 0; c++) {
            if (!names[c] && !(names[c] = strdup(mids[c]))) {
                rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
                break;
            }
            int r = ingest_strmap_put(&seen, names[c], strlen(names[c]), c);
            if (r == 1) {
                size_t len = strlen(names[c]) + strlen(mids[c]) + 4;
                char *q = malloc(len);
                if (!q) {
                    rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
                    break;
                }
                snprintf(q, len, "%s (%s)", names[c], mids[c]);
                free(names[c]);
                names[c] = q;
            } else if (r < 0) {
                rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
            }
        }
        ingest_strmap_free(&seen);
        if (rc)
            goto done;
    }
    if ((rc = ingest_set_classes(ds, names, n_mids, err)))
        goto done;

    for (int k = 0; k < 3; k++) {
        if ((rc = read_annotations(p_ann[k], &classes, &splits[k], err)))
            goto done;
        if ((rc = build_split(ds, &splits[k], img_dirs[k], &ds->official[target[k]], err)))
            goto done;
        oi_split_free(&splits[k]);
        memset(&splits[k], 0, sizeof splits[k]);
    }
done:
    if (lr.f)
        ingest_lines_close(&lr);
    for (int k = 0; k < 3; k++) {
        oi_split_free(&splits[k]);
        free(p_ann[k]);
        free(p_img[k]);
    }
    ingest_strmap_free(&classes);
    ingest_free_names(mids, n_mids);
    ingest_free_names(names, names ? n_mids : 0);
    free(meta);
    free(p_classes);
    free(p_desc);
    return rc;
}
