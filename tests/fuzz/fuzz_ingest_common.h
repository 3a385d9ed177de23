// Shared by the ingest-reader fuzz targets: runs a reader over files written from the
// fuzz input, then the steps wsml-ingest runs on a reader's result (observed-label
// simulation, val carve, frequency groups), so that an inconsistent dataset a reader
// lets through is caught there. Errors must be one non-empty line.
#ifndef WSML_FUZZ_INGEST_COMMON_H
#define WSML_FUZZ_INGEST_COMMON_H

#include <stdlib.h>
#include <string.h>

#include "ingest/ingest.h"
#include "tests/fuzz/fuzz_util.h"

typedef int (*fuzz_reader_fn)(ingest_dataset *ds, const ingest_opts *o, wsml_err *err);

static inline void fuzz_opts(ingest_opts *o, const char *format, const char *root) {
    memset(o, 0, sizeof *o);
    o->format = format;
    o->root = root;
    o->size = 8;
    o->num_pos = 1;
    o->num_neg = 0;
    o->seed = 1200;
    o->val_frac = 0.2;
    o->split_seed = 1200;
    o->jobs = 1;
    o->quiet = 1;
    o->train_count = 4;
    o->test_count = 3;
    o->tile_prob = 0.7;
    o->mosaic_seed = 1;
}

// Checks an item's labels against the dataset's class count and pools.
static inline void fuzz_check_list(const ingest_dataset *ds, const ingest_list *l) {
    int C = ds->num_classes;
    int8_t *row = malloc((size_t)(C > 0 ? C : 1));
    if (!row)
        abort();
    for (size_t i = 0; i < l->n; i++) {
        const ingest_item *it = &l->items[i];
        if (it->full_off + it->n_full > ds->full_len || it->obs_off + it->n_obs > ds->obs_len)
            abort();
        for (uint32_t k = 0; k < it->n_full; k++)
            if (INGEST_ENTRY_CLASS(ds->full_pool[it->full_off + k]) >= C)
                abort();
        for (uint32_t k = 0; k < it->n_obs; k++)
            if (INGEST_ENTRY_CLASS(ds->obs_pool[it->obs_off + k]) >= C)
                abort();
        if (it->id >= ds->strings_len)
            abort();
        (void)strlen(ingest_str_at(ds, it->id));
        if (it->path != UINT64_MAX)
            (void)strlen(ingest_str_at(ds, it->path));
        ingest_item_full(ds, it, row);
        ingest_item_observed(ds, it, row);
    }
    free(row);
}

static inline void fuzz_run_reader(fuzz_reader_fn reader, const ingest_opts *o) {
    ingest_dataset ds;
    ingest_dataset_init(&ds, o->format);
    wsml_err err;
    wsml_err_clear(&err);
    int rc = reader(&ds, o, &err);
    if (rc == 0 && ds.num_classes > 0) {
        if (!ds.class_names)
            abort();
        for (int c = 0; c < ds.num_classes; c++)
            if (!ds.class_names[c])
                abort();
        for (int s = 0; s < WSML_NUM_SPLITS; s++)
            fuzz_check_list(&ds, &ds.official[s]);
        rc = ingest_simulate_observed(&ds, o->num_pos, o->num_neg, o->seed, &err);
        const ingest_list *tr = &ds.official[WSML_SPLIT_TRAIN];
        if (rc == 0) {
            uint32_t *ti = NULL, *vi = NULL;
            size_t nt = 0, nv = 0;
            if (ingest_carve_val(tr->n, o->val_frac, o->split_seed, &ti, &nt, &vi, &nv, &err) ==
                0) {
                if (nt + nv != tr->n)
                    abort();
                for (size_t k = 0; k < nt; k++)
                    if (ti[k] >= tr->n)
                        abort();
                for (size_t k = 0; k < nv; k++)
                    if (vi[k] >= tr->n)
                        abort();
            }
            free(ti);
            free(vi);
        }
        if (rc == 0 && ds.full_label_default == -1)
            rc = ingest_frequency_groups(&ds, tr, &err);
        for (int s = 0; rc == 0 && s < WSML_NUM_SPLITS; s++)
            fuzz_check_list(&ds, &ds.official[s]);
    }
    if (rc != 0 && (!err.msg[0] || strchr(err.msg, '\n')))
        abort();
    if (getenv("WSML_FUZZ_VERBOSE")) // to check what a seed reaches (quiet otherwise)
        fprintf(stderr, "%s: %s (%d classes; %zu/%zu/%zu items)\n", o->format, rc ? err.msg : "ok",
                ds.num_classes, ds.official[0].n, ds.official[1].n, ds.official[2].n);
    ingest_dataset_free(&ds);
}

// Writes part k to rel when present, else removes rel (a missing file is a case too).
static inline void fuzz_put_part(const char *rel, int k, int n, const uint8_t **part,
                                 const size_t *len) {
    if (k < n)
        fuzz_write(rel, part[k], len[k]);
    else
        fuzz_unlink(rel);
}

// The usual target: the input is a small dataset of several files. dirs (NULL-ended) are
// made once per process; part k of the input (split at FUZZ_SEP) goes to files[k]
// (NULL-ended, at most FUZZ_MAX_PARTS), a missing part is a missing file.
#define FUZZ_MAX_PARTS 8
static inline void fuzz_put_dataset(const uint8_t *data, size_t size, const char *const *dirs,
                                    const char *const *files) {
    static int ready;
    if (!ready) {
        for (int k = 0; dirs[k]; k++)
            fuzz_mkdirs(dirs[k]);
        ready = 1;
    }
    int num_files = 0;
    while (files[num_files])
        num_files++;
    if (num_files > FUZZ_MAX_PARTS)
        abort();
    const uint8_t *part[FUZZ_MAX_PARTS];
    size_t len[FUZZ_MAX_PARTS];
    int n = fuzz_split(data, size, part, len, num_files);
    for (int k = 0; k < num_files; k++)
        fuzz_put_part(files[k], k, n, part, len);
}

// The whole target of a reader that needs only its files: the dataset as above, then
// the reader over the scratch folder root_rel with fuzz_opts. Returns 0 (for libFuzzer).
static inline int fuzz_ingest_dataset(const uint8_t *data, size_t size, const char *const *dirs,
                                      const char *const *files, const char *format,
                                      const char *root_rel, fuzz_reader_fn reader) {
    fuzz_put_dataset(data, size, dirs, files);
    ingest_opts o;
    fuzz_opts(&o, format, fuzz_path(root_rel));
    fuzz_run_reader(reader, &o);
    return 0;
}

#endif
