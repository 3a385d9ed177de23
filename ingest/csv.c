// Your own data (docs/datasets.md "--format csv").
// --root holds train.csv and optionally val.csv and test.csv. Each has a header naming
// its columns: path, labels and optionally observed (any order). Fields follow RFC 4180
// (double quotes around a field that holds a comma or a quote; "" inside a quoted field
// is one quote). path is relative to --images (default --root); labels are class names
// joined by '|' (empty = no positive); observed lists observed positives the same way,
// with '-name' for an observed negative, and is imported as given (otherwise observed
// labels are simulated, docs/methods.md §1). Classes: --classes FILE (its order), else the sorted
// union of every name used. Without val.csv, val is carved from train (docs/methods.md §1).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "ingest/ingest.h"

typedef struct {
    char *path, *labels, *observed; // observed NULL when the column is absent
    long lineno;
} csv_row;

typedef struct {
    char *file;
    csv_row *rows;
    size_t n, cap;
    int has_observed;
} csv_file;

static void csv_file_free(csv_file *f) {
    for (size_t i = 0; i < f->n; i++) {
        free(f->rows[i].path);
        free(f->rows[i].labels);
        free(f->rows[i].observed);
    }
    free(f->rows);
    free(f->file);
    memset(f, 0, sizeof *f);
}

static void free_fields(char **f, int n) {
    for (int i = 0; i < n; i++) {
        free(f[i]);
        f[i] = NULL;
    }
}

static int read_csv(const char *path, csv_file *out, wsml_err *err) {
    memset(out, 0, sizeof *out);
    out->file = strdup(path);
    if (!out->file)
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    ingest_lines lr;
    int rc = ingest_lines_open(&lr, path, err);
    if (rc)
        return rc;
    int col_path = -1, col_labels = -1, col_obs = -1, ncols = 0;
    while ((rc = ingest_lines_next(&lr, err)) == 1) {
        if (lr.len == 0)
            continue;
        char *view[3], *f[3];
        int nf = ingest_csv_split(lr.line, path, lr.lineno, view, 3, err);
        if (nf < 0) {
            rc = nf;
            break;
        }
        int dup_failed = 0;
        for (int i = 0; i < nf; i++)
            if (!(f[i] = strdup(view[i])))
                dup_failed = 1;
        if (dup_failed) {
            free_fields(f, nf);
            rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
            break;
        }
        if (ncols == 0) { // the header
            for (int i = 0; i < nf; i++) {
                if (!strcmp(f[i], "path") && col_path < 0)
                    col_path = i;
                else if (!strcmp(f[i], "labels") && col_labels < 0)
                    col_labels = i;
                else if (!strcmp(f[i], "observed") && col_obs < 0)
                    col_obs = i;
                else {
                    rc = wsml_errf(err, WSML_EFORMAT,
                                   "%s: line %ld: unknown or repeated column \"%s\" (the header "
                                   "is path,labels[,observed])",
                                   path, lr.lineno, f[i]);
                    break;
                }
            }
            if (rc == 1 && (col_path < 0 || col_labels < 0))
                rc = wsml_errf(err, WSML_EFORMAT,
                               "%s: line %ld: the header must name the columns path and labels "
                               "(and optionally observed)",
                               path, lr.lineno);
            free_fields(f, nf);
            if (rc != 1)
                break;
            ncols = nf;
            out->has_observed = col_obs >= 0;
            continue;
        }
        if (nf != ncols) {
            free_fields(f, nf);
            rc = wsml_errf(err, WSML_EFORMAT, "%s: line %ld: %d fields, the header has %d", path,
                           lr.lineno, nf, ncols);
            break;
        }
        if (!f[col_path][0]) {
            free_fields(f, nf);
            rc = wsml_errf(err, WSML_EFORMAT, "%s: line %ld: empty path", path, lr.lineno);
            break;
        }
        if (out->n == out->cap) {
            size_t cap = out->cap ? out->cap * 2 : 256;
            csv_row *p = realloc(out->rows, cap * sizeof *p);
            if (!p) {
                free_fields(f, nf);
                rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
                break;
            }
            out->rows = p;
            out->cap = cap;
        }
        csv_row *r = &out->rows[out->n++];
        r->path = f[col_path];
        r->labels = f[col_labels];
        r->observed = col_obs >= 0 ? f[col_obs] : NULL;
        r->lineno = lr.lineno;
    }
    if (rc == 0 && ncols == 0)
        rc = wsml_errf(err, WSML_EFORMAT, "%s: empty file (expected a header path,labels)", path);
    ingest_lines_close(&lr);
    return rc < 0 ? rc : 0;
}

// Calls fn for each '|'-separated, trimmed, non-empty name in s.
typedef int (*name_fn)(void *ctx, const char *name, size_t len, wsml_err *err);
static int for_each_name(const char *s, name_fn fn, void *ctx, wsml_err *err) {
    while (*s) {
        const char *e = strchr(s, '|');
        if (!e)
            e = s + strlen(s);
        const char *a = s, *b = e;
        while (a < b && (*a == ' ' || *a == '\t'))
            a++;
        while (b > a && (b[-1] == ' ' || b[-1] == '\t'))
            b--;
        if (b > a) {
            int rc = fn(ctx, a, (size_t)(b - a), err);
            if (rc)
                return rc;
        }
        s = *e ? e + 1 : e;
    }
    return 0;
}

typedef struct {
    ingest_strmap *map;
    char ***names;
    size_t *n, *cap;
} collect_ctx;

static int collect_name(void *vctx, const char *name, size_t len, wsml_err *err) {
    collect_ctx *c = vctx;
    if (len && name[0] == '-') { // observed negative
        name++;
        len--;
    }
    if (!len)
        return 0;
    if (ingest_strmap_get(c->map, name, len) >= 0)
        return 0;
    if (*c->n == *c->cap) {
        size_t cap = *c->cap ? *c->cap * 2 : 64;
        char **p = realloc(*c->names, cap * sizeof(char *));
        if (!p)
            return wsml_errf(err, WSML_ENOMEM, "out of memory");
        *c->names = p;
        *c->cap = cap;
    }
    char *s = strndup(name, len);
    if (!s || ingest_strmap_put(c->map, name, len, (int64_t)*c->n) < 0) {
        free(s);
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    }
    (*c->names)[(*c->n)++] = s;
    return 0;
}

typedef struct {
    const ingest_strmap *map;
    int8_t *row;
    int observed; // 1: '-name' allowed and means -1
    const char *file, *classes_file;
    long lineno;
} label_ctx;

static int set_label(void *vctx, const char *name, size_t len, wsml_err *err) {
    label_ctx *c = vctx;
    int8_t v = 1;
    if (c->observed && name[0] == '-') {
        name++;
        len--;
        v = -1;
    }
    int64_t k = len ? ingest_strmap_get(c->map, name, len) : -1;
    if (k < 0)
        return wsml_errf(err, WSML_EFORMAT, "%s: line %ld: unknown class \"%.*s\"%s%s%s", c->file,
                         c->lineno, (int)len, name, c->classes_file ? " (not in " : "",
                         c->classes_file ? c->classes_file : "", c->classes_file ? ")" : "");
    c->row[k] = v;
    return 0;
}

static int cmp_str(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int ingest_read_csv(ingest_dataset *ds, const ingest_opts *o, wsml_err *err) {
    static const char *const names[3] = {"train.csv", "val.csv", "test.csv"};
    static const wsml_split target[3] = {WSML_SPLIT_TRAIN, WSML_SPLIT_VAL, WSML_SPLIT_TEST};
    csv_file files[3];
    int present[3] = {0};
    memset(files, 0, sizeof files);
    ingest_strmap map;
    ingest_strmap_init(&map);
    char **classes = NULL;
    size_t n_classes = 0, cap_classes = 0;
    int8_t *full = NULL, *obs = NULL;
    int rc = ingest_require_dir(o->root, "the dataset folder holding train.csv", err);
    if (rc)
        return rc;
    ds->image_root = strdup(o->images ? o->images : o->root);
    if (!ds->image_root)
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    rc = ingest_require_dir(ds->image_root, "the image folder (--images)", err);
    for (int k = 0; k < 3 && rc == 0; k++) {
        char *path = ingest_join(o->root, names[k]);
        if (!path) {
            rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
            break;
        }
        if (k == 0)
            rc = ingest_require_file(path, err);
        if (rc == 0 && (k == 0 || access(path, F_OK) == 0)) {
            present[k] = 1;
            rc = read_csv(path, &files[k], err);
        }
        free(path);
    }
    const char *classes_file = o->classes;
    if (rc == 0 && classes_file) {
        char **cn;
        int nc;
        rc = ingest_read_class_file(classes_file, &cn, &nc, err);
        if (rc == 0) {
            classes = cn;
            n_classes = (size_t)nc;
        }
        for (int i = 0; rc == 0 && i < nc; i++) {
            int r = ingest_strmap_put(&map, cn[i], strlen(cn[i]), i);
            if (r == 1)
                rc = wsml_errf(err, WSML_EFORMAT, "%s: class \"%s\" listed twice", classes_file,
                               cn[i]);
            else if (r < 0)
                rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
        }
    } else if (rc == 0) {
        collect_ctx cc = {&map, &classes, &n_classes, &cap_classes};
        for (int k = 0; k < 3 && rc == 0; k++)
            for (size_t i = 0; i < files[k].n && rc == 0; i++) {
                rc = for_each_name(files[k].rows[i].labels, collect_name, &cc, err);
                if (rc == 0 && files[k].rows[i].observed)
                    rc = for_each_name(files[k].rows[i].observed, collect_name, &cc, err);
            }
        if (rc == 0 && n_classes == 0)
            rc = wsml_errf(err, WSML_EFORMAT, "%s/train.csv: no labels at all (pass --classes)",
                           o->root);
        if (rc == 0) { // sorted union; rebuild the name -> index map in that order
            qsort(classes, n_classes, sizeof(char *), cmp_str);
            ingest_strmap_free(&map);
            ingest_strmap_init(&map);
            for (size_t i = 0; i < n_classes && rc == 0; i++)
                if (ingest_strmap_put(&map, classes[i], strlen(classes[i]), (int64_t)i) < 0)
                    rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
        }
    }
    if (rc == 0)
        rc = ingest_set_classes(ds, classes, (int)n_classes, err);
    if (rc == 0) {
        full = malloc(n_classes);
        obs = malloc(n_classes);
        if (!full || !obs)
            rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
    }
    for (int k = 0; k < 3 && rc == 0; k++) {
        if (!present[k])
            continue;
        ingest_list *l = &ds->official[target[k]];
        l->has_observed = files[k].has_observed;
        for (size_t i = 0; i < files[k].n && rc == 0; i++) {
            const csv_row *r = &files[k].rows[i];
            memset(full, 0, n_classes);
            memset(obs, 0, n_classes);
            label_ctx lc = {&map, full, 0, files[k].file, classes_file, r->lineno};
            rc = for_each_name(r->labels, set_label, &lc, err);
            if (rc == 0 && r->observed) {
                label_ctx oc = {&map, obs, 1, files[k].file, classes_file, r->lineno};
                rc = for_each_name(r->observed, set_label, &oc, err);
            }
            if (rc == 0)
                rc = ingest_add_item(ds, l, r->path, r->path, full,
                                     files[k].has_observed ? obs : NULL, 0, err);
        }
    }
    if (rc == 0 && present[1])
        ds->has_official_val = 1;
    free(full);
    free(obs);
    ingest_free_names(classes, (int)n_classes);
    ingest_strmap_free(&map);
    for (int k = 0; k < 3; k++)
        csv_file_free(&files[k]);
    return rc;
}
