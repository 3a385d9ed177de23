// libwsml-ingest: source-format readers and the shared ingest machinery behind
// wsml-ingest (ingest/main.c). Contract: docs/datasets.md (formats, orders) and
// docs/methods.md §1 (validation carve, simulated single positives).
//
// A reader (one file per format) fills an ingest_dataset: class names and, per
// *official* split, the list of images in the reference order with their full labels
// (sparse). The shared code then simulates observed labels on the official lists
// (observe.c), carves val from the official train list (observe.c), and decodes,
// resizes and writes the images with a pool of threads (pipeline.c).
#ifndef WSML_INGEST_H
#define WSML_INGEST_H

#include <signal.h>
#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/image.h"
#include "common/rng.h"
#include "store/store.h"

// ---- options ----------------------------------------------------------------------
typedef struct {
    const char *format;
    const char *root;
    const char *out;
    const char *name;    // store name (default: format, or root's basename)
    const char *images;  // image root for npy/csv (default: root)
    const char *classes; // class-name file (npy, csv)
    int size;            // output side (both sides resized to it)
    wsml_encoding encoding;
    int quality;          // JPEG quality when encoding = jpeg
    int num_pos, num_neg; // docs/methods.md §1 single positive simulation (-1 = all)
    uint32_t seed;        // observed-label generator seed
    double val_frac;      // fraction of official train carved into val
    uint32_t split_seed;  // permutation seed of the val carve
    int jobs;             // decode threads
    int strict, quiet, force;
    // fashion formats
    long train_count, test_count; // mosaics drawn before the val carve / for test
    double tile_prob;             // probability that a mosaic tile holds an item
    uint32_t mosaic_seed;         // seed of the mosaic / item-position draws
    const char *fashion_dir;      // Fashion-MNIST IDX files (default Debian path)
} ingest_opts;

// ---- items and label pools ----------------------------------------------------------
// Full and observed labels are kept sparse: an entry codes (class, value) as
// class*4 + (value+1), value in {-1, 0, 1}; entries equal to the split's default
// (full: ds->full_label_default, observed: 0) are not listed.
#define INGEST_ENTRY(cls, val) ((uint32_t)(cls)*4u + (uint32_t)((val) + 1))
#define INGEST_ENTRY_CLASS(e) ((int)((e) >> 2))
#define INGEST_ENTRY_VALUE(e) ((int)((e)&3u) - 1)

typedef struct {
    uint64_t id;       // offset of the record id in ds->strings
    uint64_t path;     // offset of the image path (relative to ds->image_root), or
                       // UINT64_MAX for generated images
    uint64_t full_off; // first entry in ds->full_pool
    uint64_t obs_off;  // first entry in ds->obs_pool
    uint32_t n_full, n_obs;
    uint64_t gen;    // reader-defined payload for generated images (fashion)
    uint32_t source; // reader-defined source set for generated images
} ingest_item;

typedef struct {
    ingest_item *items;
    size_t n, cap;
    int has_observed; // observed labels set by the reader (imported / real)
} ingest_list;

typedef struct ingest_dataset ingest_dataset;

// Produces the full-resolution image of an item (generated formats); file-based
// formats leave it NULL and the pipeline decodes ds->image_root/path.
typedef int (*ingest_load_fn)(const ingest_dataset *ds, const ingest_item *it, wsml_image *out,
                              wsml_err *err);

struct ingest_dataset {
    char format[32];
    int num_classes;
    char **class_names;
    int full_label_default; // 0, or -1 for real partial labels (OpenImages)
    // Official splits: [WSML_SPLIT_TRAIN], [WSML_SPLIT_VAL] (only when the release has
    // its own validation split, e.g. OpenImages), [WSML_SPLIT_TEST].
    ingest_list official[WSML_NUM_SPLITS];
    int has_official_val;
    int observed_real; // observed labels are real partial labels (no simulation)
    char *strings;
    size_t strings_len, strings_cap;
    uint32_t *full_pool, *obs_pool;
    size_t full_len, full_cap, obs_len, obs_cap;
    char *image_root; // malloc'd; images are image_root/path
    ingest_load_fn load;
    void *reader_ctx; // owned by the reader; freed by reader_free
    void (*reader_free)(void *ctx);
    int native_size; // side of generated images (0 = file based)
    int **groups;    // OpenImages frequency groups (5 lists)
    int group_len[5];
    char *extra_info_json; // reader-specific object merged into "ingest"
};

// ---- dataset building helpers (dataset.c) -----------------------------------------
void ingest_dataset_init(ingest_dataset *ds, const char *format);
void ingest_dataset_free(ingest_dataset *ds);
// Appends a NUL-terminated string to the arena; returns its offset (UINT64_MAX on OOM).
uint64_t ingest_str(ingest_dataset *ds, const char *s, size_t len);
static inline const char *ingest_str_at(const ingest_dataset *ds, uint64_t off) {
    return ds->strings + off;
}
// Appends an item with full labels from a dense int8 row (NULL = none listed) and
// observed labels from a dense row (NULL = none). Returns 0 or WSML_ENOMEM.
int ingest_add_item(ingest_dataset *ds, ingest_list *list, const char *id, const char *path,
                    const int8_t *full_dense, const int8_t *obs_dense, uint64_t gen, wsml_err *err);
// Appends an item whose labels are given as sparse entry lists.
int ingest_add_item_sparse(ingest_dataset *ds, ingest_list *list, const char *id, const char *path,
                           const uint32_t *full, uint32_t n_full, const uint32_t *obs,
                           uint32_t n_obs, uint64_t gen, wsml_err *err);
// Dense rows of an item (num_classes entries each).
void ingest_item_full(const ingest_dataset *ds, const ingest_item *it, int8_t *full);
void ingest_item_observed(const ingest_dataset *ds, const ingest_item *it, int8_t *obs);
int ingest_set_classes(ingest_dataset *ds, char **names, int n, wsml_err *err);
// Reads a class-name file: one name per line, blank lines ignored.
int ingest_read_class_file(const char *path, char ***names, int *n, wsml_err *err);
void ingest_free_names(char **names, int n);

// Path helpers: "a/b" joined; errors naming the expected path when missing.
char *ingest_join(const char *a, const char *b);
int ingest_require_file(const char *path, wsml_err *err);
int ingest_require_dir(const char *path, const char *what, wsml_err *err);

// A line reader over a (possibly huge) text file with line numbers for errors.
typedef struct {
    const char *path;
    void *f;    // FILE*
    char *line; // current line without the trailing newline / CR
    size_t cap;
    size_t len;
    long lineno;
} ingest_lines;
int ingest_lines_open(ingest_lines *lr, const char *path, wsml_err *err);
// 1 = a line was read, 0 = end of file, negative = error.
int ingest_lines_next(ingest_lines *lr, wsml_err *err);
void ingest_lines_close(ingest_lines *lr);
// Splits a line at runs of spaces/tabs in place; returns the number of fields (<= max).
int ingest_split_ws(char *line, char **fields, int max);

// Splits one CSV line (RFC 4180 quoting, no embedded newlines) in place into at most max
// fields; returns their number or a negative code with err naming file and line.
int ingest_csv_split(char *line, const char *file, long lineno, char **fields, int max,
                     wsml_err *err);

// String -> int64 hash map (open addressing, keys copied).
typedef struct {
    char **owned; // cap slots, NULL = empty
    int64_t *vals;
    size_t cap, n;
} ingest_strmap;
void ingest_strmap_init(ingest_strmap *m);
void ingest_strmap_free(ingest_strmap *m);
// Returns the value for key, or -1.
int64_t ingest_strmap_get(const ingest_strmap *m, const char *key, size_t len);
// Inserts key (copied) -> val; returns 0, 1 if the key existed (value unchanged), or
// WSML_ENOMEM.
int ingest_strmap_put(ingest_strmap *m, const char *key, size_t len, int64_t val);

// ---- interruption (main.c installs SIGINT/SIGTERM handlers that set this) --------
extern volatile sig_atomic_t ingest_interrupted;
#define INGEST_CHECK_INTERRUPT(err)                                                                \
    do {                                                                                           \
        if (ingest_interrupted)                                                                    \
            return wsml_errf((err), WSML_ESTATE, "interrupted by signal");                         \
    } while (0)

// ---- readers (one file each) ----------------------------------------------------------
int ingest_read_voc(ingest_dataset *ds, const ingest_opts *o, wsml_err *err);
int ingest_read_coco(ingest_dataset *ds, const ingest_opts *o, wsml_err *err);
int ingest_read_npy(ingest_dataset *ds, const ingest_opts *o, wsml_err *err);
int ingest_read_cub(ingest_dataset *ds, const ingest_opts *o, wsml_err *err);
int ingest_read_openimages(ingest_dataset *ds, const ingest_opts *o, wsml_err *err);
int ingest_read_fashion_mosaic(ingest_dataset *ds, const ingest_opts *o, wsml_err *err);
int ingest_read_fashion_items(ingest_dataset *ds, const ingest_opts *o, wsml_err *err);
int ingest_read_csv(ingest_dataset *ds, const ingest_opts *o, wsml_err *err);

// COCO instances JSON, streamed (coco_json.c): calls back per category, image and
// annotation; bounded memory whatever the file size.
typedef struct {
    void *ctx;
    int (*category)(void *ctx, int64_t id, const char *name, wsml_err *err);
    int (*image)(void *ctx, int64_t id, const char *file_name, wsml_err *err);
    int (*annotation)(void *ctx, int64_t image_id, int64_t category_id, wsml_err *err);
} coco_json_handlers;
// Parses a whole instances file (path for errors) read through fd-like stream f.
int coco_json_parse_file(const char *path, const coco_json_handlers *h, wsml_err *err);
// Same over a memory buffer (tests, fuzzing), fed to the reader `chunk` bytes at a time
// like file reads are (0 = all at once), so that every buffer boundary can be tested.
int coco_json_parse_buffer(const char *name, const void *buf, size_t len, size_t chunk,
                           const coco_json_handlers *h, wsml_err *err);

// ---- shared steps -----------------------------------------------------------------------
// docs/methods.md §1: simulated observed labels on every official split that has none, each with
// a fresh RandomState(seed), images in list order.
int ingest_simulate_observed(ingest_dataset *ds, int num_pos, int num_neg, uint32_t seed,
                             wsml_err *err);
// One image's observed row from its full row (reference generator, see observe.c).
// full: (C) values in {0,1}; obs: (C) output; pos_buf/neg_buf: scratch of C int64.
void ingest_observe_row(const int8_t *full, int C, int num_pos, int num_neg, wsml_rng *rng,
                        int64_t *pos_buf, int64_t *neg_buf, int8_t *obs);
// docs/methods.md §1 validation carve: n_val = round(val_frac*N) (numpy round: half to even),
// perm = RandomState(split_seed).permutation(N); train = sort(perm[:N-n_val]),
// val = sort(perm[N-n_val:]). Outputs malloc'd index arrays.
int ingest_carve_val(size_t n, double val_frac, uint32_t split_seed, uint32_t **train_idx,
                     size_t *n_train, uint32_t **val_idx, size_t *n_val, wsml_err *err);
// docs/methods.md §4 frequency groups from the train list's positive counts.
int ingest_frequency_groups(ingest_dataset *ds, const ingest_list *train, wsml_err *err);

// A skipped image (corrupt/unreadable), reported in info JSON and the summary.
typedef struct {
    wsml_split split;
    char *path;
    char *reason;
} ingest_skip;

typedef struct {
    ingest_skip *items;
    size_t n, cap;
} ingest_skips;
void ingest_skips_free(ingest_skips *s);

// Writes one output split: the items src->items[order[k]] for k = 0..n-1, in order,
// decoded/resized/encoded by opts->jobs threads. Skipped images are appended to skips
// (fatal with opts->strict). *written receives the record count; pos_sum / obs_sum
// the total positive full / observed labels written (for the summary).
int ingest_write_split(const ingest_dataset *ds, const ingest_opts *o, wsml_store_writer *w,
                       wsml_split split, const ingest_list *src, const uint32_t *order, size_t n,
                       ingest_skips *skips, uint32_t *written, double *pos_sum, double *obs_sum,
                       wsml_err *err);

#endif
