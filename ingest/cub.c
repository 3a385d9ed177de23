// CUB-200-2011 attributes as classes (docs/datasets.md; reference: preproc/format_cub.py).
// --root holds CUB_200_2011/ and attributes.txt ("<id> <name>", ids 1..312 in order).
//   CUB_200_2011/images.txt                          "<image_id> <relative path>"
//   CUB_200_2011/train_test_split.txt                "<image_id> <is_train>"
//   CUB_200_2011/attributes/image_attribute_labels.txt
//       "<image_id> <attribute_id> <is_present> <certainty_id> <time>"; a few lines of
//       the release carry extra fields: only the first three are used.
// Images in images.txt order; is_train 1 -> wsml train (val carved from it), 0 -> test.
// Full label = is_present. Every (image, attribute) pair must be listed exactly once
// (the reference asserts 312 x 11,788 lines).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cli.h"
#include "ingest/ingest.h"

#define CUB_MAX_ID 100000000L

static int parse_id(const char *s, long *out) {
    int64_t v;
    if (wsml_parse_i64(s, 0, CUB_MAX_ID, &v))
        return -1;
    *out = (long)v;
    return 0;
}

// Image id -> position in images.txt, by binary search over the ids sorted: memory in
// proportion to the number of images, whatever the ids (a dense table indexed by id let
// one line "88888882 x.jpg" allocate 700 MB; found by fuzzing, tests/fuzz/regressions/cub).
typedef struct {
    long id, pos;
} cub_id_pos;

static int cmp_id_pos(const void *a, const void *b) {
    long x = ((const cub_id_pos *)a)->id, y = ((const cub_id_pos *)b)->id;
    return (x > y) - (x < y);
}

// Position of image id, or -1.
static long pos_of(const cub_id_pos *t, size_t n, long id) {
    size_t lo = 0, hi = n;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (t[mid].id < id)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo < n && t[lo].id == id ? t[lo].pos : -1;
}

#define BAD_LINE(lr, what)                                                                         \
    wsml_errf(err, WSML_EFORMAT, "%s: line %ld: expected %s", (lr).path, (lr).lineno, what)

int ingest_read_cub(ingest_dataset *ds, const ingest_opts *o, wsml_err *err) {
    char *base = ingest_join(o->root, "CUB_200_2011");
    char *p_images = base ? ingest_join(base, "images.txt") : NULL;
    char *p_split = base ? ingest_join(base, "train_test_split.txt") : NULL;
    char *p_labels = base ? ingest_join(base, "attributes/image_attribute_labels.txt") : NULL;
    char *p_attr = ingest_join(o->root, "attributes.txt");
    char *p_attr_alt = base ? ingest_join(base, "attributes/attributes.txt") : NULL;
    char **paths = NULL, **names = NULL;
    size_t n_img = 0, cap_img = 0;
    int n_names = 0, cap_names = 0;
    cub_id_pos *by_id = NULL; // image ids sorted, with their position in images.txt
    int8_t *is_train = NULL, *labels = NULL;
    ingest_lines lr = {0};
    int rc = 0;
    if (!base || !p_images || !p_split || !p_labels || !p_attr || !p_attr_alt) {
        rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = ingest_require_dir(base, "the CUB_200_2011 folder inside --root", err)))
        goto done;
    // attributes.txt sits next to CUB_200_2011/ in the release; accept it inside too.
    if (access(p_attr, F_OK) != 0 && access(p_attr_alt, F_OK) == 0) {
        free(p_attr);
        p_attr = p_attr_alt;
        p_attr_alt = NULL;
    }
    if ((rc = ingest_require_file(p_attr, err)) || (rc = ingest_require_file(p_images, err)) ||
        (rc = ingest_require_file(p_split, err)) || (rc = ingest_require_file(p_labels, err)))
        goto done;
    ds->image_root = ingest_join(base, "images");
    if (!ds->image_root) {
        rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
        goto done;
    }
    if ((rc = ingest_require_dir(ds->image_root, "the CUB image folder", err)))
        goto done;

    // attributes.txt -> class names
    if ((rc = ingest_lines_open(&lr, p_attr, err)))
        goto done;
    while ((rc = ingest_lines_next(&lr, err)) == 1) {
        char *f[3];
        int nf = ingest_split_ws(lr.line, f, 3);
        if (nf == 0)
            continue;
        long id;
        if (nf != 2 || parse_id(f[0], &id)) {
            rc = BAD_LINE(lr, "\"<attribute_id> <name>\"");
            break;
        }
        if (id != n_names + 1) {
            rc = wsml_errf(err, WSML_EFORMAT,
                           "%s: line %ld: attribute id %ld, expected %d (ids "
                           "run 1, 2, ... in order)",
                           lr.path, lr.lineno, id, n_names + 1);
            break;
        }
        if (n_names == cap_names) {
            cap_names = cap_names ? cap_names * 2 : 512;
            char **q = realloc(names, sizeof(char *) * (size_t)cap_names);
            if (!q) {
                rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
                break;
            }
            names = q;
        }
        if (!(names[n_names] = strdup(f[1]))) {
            rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
            break;
        }
        n_names++;
    }
    ingest_lines_close(&lr);
    if (rc < 0)
        goto done;
    if (n_names == 0) {
        rc = wsml_errf(err, WSML_EFORMAT, "%s: no attributes", p_attr);
        goto done;
    }
    if ((rc = ingest_set_classes(ds, names, n_names, err)))
        goto done;
    int C = n_names;

    // images.txt
    if ((rc = ingest_lines_open(&lr, p_images, err)))
        goto done;
    long *ids = NULL;
    while ((rc = ingest_lines_next(&lr, err)) == 1) {
        char *f[3];
        int nf = ingest_split_ws(lr.line, f, 3);
        if (nf == 0)
            continue;
        long id;
        if (nf != 2 || parse_id(f[0], &id)) {
            rc = BAD_LINE(lr, "\"<image_id> <relative path>\"");
            break;
        }
        if (n_img == cap_img) {
            cap_img = cap_img ? cap_img * 2 : 4096;
            char **q = realloc(paths, sizeof(char *) * cap_img);
            long *r = q ? realloc(ids, sizeof(long) * cap_img) : NULL;
            if (q)
                paths = q;
            if (r)
                ids = r;
            if (!q || !r) {
                rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
                break;
            }
        }
        if (!(paths[n_img] = strdup(f[1]))) {
            rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
            break;
        }
        ids[n_img++] = id;
    }
    ingest_lines_close(&lr);
    if (rc == 0 && n_img == 0)
        rc = wsml_errf(err, WSML_EFORMAT, "%s: no images", p_images);
    if (rc == 0) {
        by_id = malloc(sizeof(cub_id_pos) * n_img);
        is_train = malloc(n_img);
        labels = malloc(n_img * (size_t)C);
        if (!by_id || !is_train || !labels)
            rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
    }
    if (rc == 0) {
        for (size_t i = 0; i < n_img; i++)
            by_id[i].id = ids[i], by_id[i].pos = (long)i;
        qsort(by_id, n_img, sizeof *by_id, cmp_id_pos);
        for (size_t i = 1; i < n_img && rc == 0; i++)
            if (by_id[i].id == by_id[i - 1].id)
                rc = wsml_errf(err, WSML_EFORMAT, "%s: image id %ld listed twice", p_images,
                               by_id[i].id);
        memset(is_train, -1, n_img);
        memset(labels, -1, n_img * (size_t)C);
    }
    free(ids);
    if (rc < 0)
        goto done;

    // train_test_split.txt
    if ((rc = ingest_lines_open(&lr, p_split, err)))
        goto done;
    while ((rc = ingest_lines_next(&lr, err)) == 1) {
        char *f[3];
        int nf = ingest_split_ws(lr.line, f, 3);
        if (nf == 0)
            continue;
        long id, t;
        if (nf != 2 || parse_id(f[0], &id) || parse_id(f[1], &t) || t > 1) {
            rc = BAD_LINE(lr, "\"<image_id> <is_train 0|1>\"");
            break;
        }
        long pos = pos_of(by_id, n_img, id);
        if (pos < 0) {
            rc = wsml_errf(err, WSML_EFORMAT, "%s: line %ld: image id %ld is not in %s", lr.path,
                           lr.lineno, id, p_images);
            break;
        }
        is_train[pos] = (int8_t)t;
    }
    ingest_lines_close(&lr);
    if (rc < 0)
        goto done;
    for (size_t i = 0; i < n_img; i++)
        if (is_train[i] < 0) {
            rc = wsml_errf(err, WSML_EFORMAT, "%s: no line for image %s", p_split, paths[i]);
            goto done;
        }

    // image_attribute_labels.txt (3.7M lines in the release)
    if ((rc = ingest_lines_open(&lr, p_labels, err)))
        goto done;
    while ((rc = ingest_lines_next(&lr, err)) == 1) {
        char *f[4];
        int nf = ingest_split_ws(lr.line, f, 4);
        if (nf == 0)
            continue;
        long id, a, v;
        if (nf < 3 || parse_id(f[0], &id) || parse_id(f[1], &a) || parse_id(f[2], &v) || v > 1) {
            rc = BAD_LINE(lr, "\"<image_id> <attribute_id> <is_present 0|1> ...\"");
            break;
        }
        long pos = pos_of(by_id, n_img, id);
        if (pos < 0 || a < 1 || a > C) {
            rc = wsml_errf(err, WSML_EFORMAT, "%s: line %ld: unknown %s %ld", lr.path, lr.lineno,
                           a < 1 || a > C ? "attribute id" : "image id", a < 1 || a > C ? a : id);
            break;
        }
        int8_t *cell = &labels[(size_t)pos * C + (a - 1)];
        if (*cell >= 0) {
            rc = wsml_errf(err, WSML_EFORMAT, "%s: line %ld: image %ld attribute %ld listed twice",
                           lr.path, lr.lineno, id, a);
            break;
        }
        *cell = (int8_t)v;
        if ((lr.lineno & 65535) == 0 && ingest_interrupted) {
            rc = wsml_errf(err, WSML_ESTATE, "interrupted by signal");
            break;
        }
    }
    ingest_lines_close(&lr);
    if (rc < 0)
        goto done;
    for (size_t i = 0; i < n_img * (size_t)C; i++)
        if (labels[i] < 0) {
            rc = wsml_errf(err, WSML_EFORMAT, "%s: no label for image %s attribute %zu", p_labels,
                           paths[i / (size_t)C], i % (size_t)C + 1);
            goto done;
        }
    for (size_t i = 0; i < n_img && rc == 0; i++)
        rc = ingest_add_item(ds, &ds->official[is_train[i] ? WSML_SPLIT_TRAIN : WSML_SPLIT_TEST],
                             paths[i], paths[i], labels + i * (size_t)C, NULL, 0, err);
done:
    if (lr.f)
        ingest_lines_close(&lr);
    for (size_t i = 0; i < n_img; i++)
        free(paths[i]);
    free(paths);
    ingest_free_names(names, n_names);
    free(by_id);
    free(is_train);
    free(labels);
    free(base);
    free(p_images);
    free(p_split);
    free(p_labels);
    free(p_attr);
    free(p_attr_alt);
    return rc;
}
