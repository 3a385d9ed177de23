// Pre-formatted numpy files (docs/datasets.md "NUS-WIDE"): the form Cole et al.'s scripts
// write for every dataset, and the form NUS-WIDE is distributed in.
//   formatted_{train,val}_images.npy      1-D <U strings, paths relative to the image root
//   formatted_{train,val}_labels.npy      N x C, 0/1 (float64 in the release)
//   formatted_{train,val}_labels_obs.npy  N x C, -1/0/1, optional: imported as is
// train -> wsml train (val carved from it), val -> wsml test. Class names come from
// --classes (one per line) or are class_0 ... class_{C-1}.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/npy.h"
#include "ingest/ingest.h"

#define NPY_MAX_CLASSES (1 << 20) // the store's limit (store/store.c MAX_CLASSES)

typedef struct {
    wsml_npy images, labels, obs;
    double *lab, *ob;
    int has_obs;
    char *paths[3];
} npy_split;

static void npy_split_free(npy_split *s) {
    wsml_npy_free(&s->images);
    wsml_npy_free(&s->labels);
    wsml_npy_free(&s->obs);
    free(s->lab);
    free(s->ob);
    for (int i = 0; i < 3; i++)
        free(s->paths[i]);
}

static int load_split(const char *root, const char *phase, npy_split *s, wsml_err *err) {
    static const char *const kinds[3] = {"images", "labels", "labels_obs"};
    for (int k = 0; k < 3; k++) {
        char name[64];
        snprintf(name, sizeof name, "formatted_%s_%s.npy", phase, kinds[k]);
        if (!(s->paths[k] = ingest_join(root, name)))
            return wsml_errf(err, WSML_ENOMEM, "out of memory");
    }
    int rc = ingest_require_file(s->paths[0], err);
    if (!rc)
        rc = ingest_require_file(s->paths[1], err);
    if (!rc)
        rc = wsml_npy_read(s->paths[0], &s->images, err);
    if (!rc)
        rc = wsml_npy_read(s->paths[1], &s->labels, err);
    if (rc)
        return rc;
    if (access(s->paths[2], F_OK) == 0) {
        s->has_obs = 1;
        if ((rc = wsml_npy_read(s->paths[2], &s->obs, err)))
            return rc;
    }
    if (s->images.dtype != WSML_DT_STR || s->images.ndim != 1)
        return wsml_errf(err, WSML_EFORMAT,
                         "%s: expected a 1-D array of strings (<U...), got %s "
                         "with %d dimensions",
                         s->paths[0], wsml_dtype_name(s->images.dtype), s->images.ndim);
    size_t n = s->images.count;
    const wsml_npy *mats[2] = {&s->labels, &s->obs};
    for (int k = 0; k < 1 + s->has_obs; k++) {
        const wsml_npy *m = mats[k];
        if (m->ndim != 2 || (size_t)m->shape[0] != n || m->shape[1] < 1)
            return wsml_errf(err, WSML_EFORMAT,
                             "%s: expected shape (%zu, C) to match %s, got %d dimensions (%lld, "
                             "...)",
                             s->paths[1 + k], n, s->paths[0], m->ndim,
                             m->ndim ? (long long)m->shape[0] : 0LL);
        // A (0, 2^30) array is a valid 128-byte file; C that large would allocate
        // gigabytes of class names (found by fuzzing). The store holds at most 2^20.
        if (m->shape[1] > NPY_MAX_CLASSES)
            return wsml_errf(err, WSML_EFORMAT, "%s: %lld classes (columns), at most %d supported",
                             s->paths[1 + k], (long long)m->shape[1], NPY_MAX_CLASSES);
    }
    if (s->has_obs && s->obs.shape[1] != s->labels.shape[1])
        return wsml_errf(err, WSML_EFORMAT, "%s has %lld classes but %s has %lld", s->paths[2],
                         (long long)s->obs.shape[1], s->paths[1], (long long)s->labels.shape[1]);
    if ((rc = wsml_npy_as_f64(&s->labels, &s->lab, err)))
        return wsml_err_prefix(err, "%s", s->paths[1]);
    if (s->has_obs && (rc = wsml_npy_as_f64(&s->obs, &s->ob, err)))
        return wsml_err_prefix(err, "%s", s->paths[2]);
    size_t C = (size_t)s->labels.shape[1];
    for (size_t i = 0; i < n * C; i++)
        if (s->lab[i] != 0 && s->lab[i] != 1)
            return wsml_errf(err, WSML_EFORMAT, "%s: entry [%zu, %zu] is %g, expected 0 or 1",
                             s->paths[1], i / C, i % C, s->lab[i]);
    for (size_t i = 0; s->has_obs && i < n * C; i++)
        if (s->ob[i] != 0 && s->ob[i] != 1 && s->ob[i] != -1)
            return wsml_errf(err, WSML_EFORMAT, "%s: entry [%zu, %zu] is %g, expected -1, 0 or 1",
                             s->paths[2], i / C, i % C, s->ob[i]);
    return 0;
}

// The reference reads NUS-WIDE images from <root>/Flickr while docs/datasets.md describes
// paths that start with "Flickr/": without --images, use <root>/Flickr when the first
// training path is missing under <root> but present there.
static int guess_image_root(ingest_dataset *ds, const npy_split *train, wsml_err *err) {
    if (train->images.count == 0)
        return 0;
    size_t cap = train->images.itemsize + 1;
    char *rel = malloc(cap);
    if (!rel)
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    int rc = 0;
    if (wsml_npy_string(&train->images, 0, rel, cap) > 0) {
        char *direct = ingest_join(ds->image_root, rel);
        char *flickr = ingest_join(ds->image_root, "Flickr");
        char *inside = flickr ? ingest_join(flickr, rel) : NULL;
        if (!direct || !flickr || !inside) {
            rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
        } else if (access(direct, F_OK) != 0 && access(inside, F_OK) == 0) {
            free(ds->image_root);
            ds->image_root = flickr;
            flickr = NULL;
        }
        free(direct);
        free(flickr);
        free(inside);
    }
    free(rel);
    return rc;
}

int ingest_read_npy(ingest_dataset *ds, const ingest_opts *o, wsml_err *err) {
    npy_split sp[2];
    memset(sp, 0, sizeof sp);
    int8_t *full = NULL, *obs = NULL;
    char **names = NULL;
    int n_names = 0;
    int rc = ingest_require_dir(o->root, "the folder of formatted_*.npy files", err);
    if (rc == 0) {
        ds->image_root = strdup(o->images ? o->images : o->root);
        if (!ds->image_root)
            rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
    }
    if (rc == 0)
        rc = ingest_require_dir(ds->image_root, "the image root (--images)", err);
    if (rc == 0)
        rc = load_split(o->root, "train", &sp[0], err);
    if (rc == 0)
        rc = load_split(o->root, "val", &sp[1], err);
    if (rc == 0 && !o->images)
        rc = guess_image_root(ds, &sp[0], err);
    if (rc == 0 && sp[0].labels.shape[1] != sp[1].labels.shape[1])
        rc = wsml_errf(err, WSML_EFORMAT, "%s has %lld classes but %s has %lld", sp[0].paths[1],
                       (long long)sp[0].labels.shape[1], sp[1].paths[1],
                       (long long)sp[1].labels.shape[1]);
    int C = rc == 0 ? (int)sp[0].labels.shape[1] : 0;
    if (rc == 0 && o->classes) {
        rc = ingest_read_class_file(o->classes, &names, &n_names, err);
        if (rc == 0 && n_names != C)
            rc = wsml_errf(err, WSML_EFORMAT,
                           "%s: %d class names, but the labels have %d "
                           "columns",
                           o->classes, n_names, C);
    } else if (rc == 0) {
        names = calloc((size_t)C, sizeof(char *));
        if (!names)
            rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
        for (int c = 0; rc == 0 && c < C; c++) {
            char buf[32];
            snprintf(buf, sizeof buf, "class_%d", c);
            if (!(names[c] = strdup(buf)))
                rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
            n_names = c + 1;
        }
    }
    if (rc == 0)
        rc = ingest_set_classes(ds, names, C, err);
    if (rc == 0) {
        full = malloc((size_t)C);
        obs = malloc((size_t)C);
        if (!full || !obs)
            rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
    }
    for (int k = 0; k < 2 && rc == 0; k++) {
        npy_split *s = &sp[k];
        ingest_list *l = &ds->official[k == 0 ? WSML_SPLIT_TRAIN : WSML_SPLIT_TEST];
        l->has_observed = s->has_obs;
        size_t width = s->images.itemsize / 4;
        char *path = malloc(width * 4 + 1);
        if (!path) {
            rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
            break;
        }
        for (size_t i = 0; i < s->images.count && rc == 0; i++) {
            if (wsml_npy_string(&s->images, i, path, width * 4 + 1) < 0) {
                rc = wsml_errf(err, WSML_EFORMAT, "%s: entry %zu is not a valid string",
                               s->paths[0], i);
                break;
            }
            if (!path[0]) {
                rc = wsml_errf(err, WSML_EFORMAT, "%s: entry %zu is empty", s->paths[0], i);
                break;
            }
            for (int c = 0; c < C; c++) {
                full[c] = (int8_t)s->lab[i * (size_t)C + c];
                if (s->has_obs)
                    obs[c] = (int8_t)s->ob[i * (size_t)C + c];
            }
            rc = ingest_add_item(ds, l, path, path, full, s->has_obs ? obs : NULL, 0, err);
        }
        free(path);
    }
    free(full);
    free(obs);
    ingest_free_names(names, n_names);
    npy_split_free(&sp[0]);
    npy_split_free(&sp[1]);
    return rc;
}
