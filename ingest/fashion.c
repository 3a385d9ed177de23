// Fashion-MNIST based demo data (docs/datasets.md "Fashion mosaic", "Fashion items").
//
// Source: the gzip'd IDX files of the Debian package dataset-fashion-mnist
// ({train,t10k}-{images-idx3,labels-idx1}-ubyte.gz): big-endian magic 0x00000803
// (images: count, rows, cols) / 0x00000801 (labels: count), then uint8 data.
//
// Images are generated on demand from the item pixels (no files): 56x56, a 2x2 grid of
// 28x28 tiles, tile t at row t/2, column t%2 (0 top-left, 1 top-right, 2 bottom-left,
// 3 bottom-right), grey replicated to RGB, empty tiles black.
//
// Drawing procedure (all draws from wsml_rng, i.e. numpy's RandomState):
//  fashion-mosaic, per source set (official train: RandomState(mosaic_seed) over the
//  60k training items; test: RandomState(mosaic_seed + 1) over the 10k test items),
//  for each mosaic in order:
//      repeat
//          for t in 0..3: item[t] = randint(0, n_items) if random_sample() < tile_prob
//                         else empty
//      until at least one tile holds an item          (all-black draws are redrawn)
//  Items are drawn with replacement. Labels = the classes of the items present.
//  fashion-items, per source set (same two seeds), for each item i in file order:
//      position = randint(0, 4); the item alone at that tile, one positive label.
// The val split is then carved from the official train list by the usual docs/methods.md §1 rule.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "ingest/ingest.h"

#define FMNIST_SIDE 28
#define FMNIST_PIXELS (FMNIST_SIDE * FMNIST_SIDE)
#define FMNIST_CLASSES 10
#define TILE_EMPTY 0xFFFFu

// Class names of Fashion-MNIST, in label order, spelled to be safe as file names.
static const char *const fmnist_classes[FMNIST_CLASSES] = {
    "t-shirt_top", "trouser", "pullover", "dress", "coat",
    "sandal",      "shirt",   "sneaker",  "bag",   "ankle_boot"};

typedef struct {
    uint8_t *pixels; // n x 28 x 28
    uint8_t *labels; // n
    size_t n;
} fmnist_set;

typedef struct {
    fmnist_set set[2]; // 0 = train, 1 = t10k
} fashion_ctx;

static void fashion_free(void *p) {
    fashion_ctx *f = p;
    if (!f)
        return;
    for (int i = 0; i < 2; i++) {
        free(f->set[i].pixels);
        free(f->set[i].labels);
    }
    free(f);
}

static uint32_t be32(const uint8_t *b) {
    return (uint32_t)b[0] << 24 | (uint32_t)b[1] << 16 | (uint32_t)b[2] << 8 | b[3];
}

// Reads a gzip'd IDX file: checks magic and dims; *data gets count*item_bytes bytes.
static int read_idx(const char *path, uint32_t magic, int ndim, const uint32_t *dims_expected,
                    uint8_t **data, size_t *count, wsml_err *err) {
    int rc = ingest_require_file(path, err);
    if (rc)
        return rc;
    gzFile gz = gzopen(path, "rb");
    if (!gz)
        return wsml_errf(err, WSML_EIO, "%s: cannot open gzip stream", path);
    gzbuffer(gz, 1 << 17);
    uint8_t head[16];
    size_t head_len = 4 + 4 * (size_t)ndim;
    int got = gzread(gz, head, (unsigned)head_len);
    if (got != (int)head_len) {
        gzclose(gz);
        return wsml_errf(err, WSML_EFORMAT, "%s: truncated IDX header (not a gzip'd IDX file?)",
                         path);
    }
    if (be32(head) != magic) {
        gzclose(gz);
        return wsml_errf(err, WSML_EFORMAT, "%s: IDX magic 0x%08x, expected 0x%08x", path,
                         be32(head), magic);
    }
    size_t n = be32(head + 4), item = 1;
    for (int d = 1; d < ndim; d++) {
        uint32_t v = be32(head + 4 + 4 * d);
        if (v != dims_expected[d - 1]) {
            gzclose(gz);
            return wsml_errf(err, WSML_EFORMAT, "%s: IDX dimension %d is %u, expected %u", path, d,
                             v, dims_expected[d - 1]);
        }
        item *= v;
    }
    if (n == 0 || n > 10000000) {
        gzclose(gz);
        return wsml_errf(err, WSML_EFORMAT, "%s: implausible IDX count %zu", path, n);
    }
    // The buffer grows with the data actually read, so that a header claiming 10M items
    // in a small (truncated or forged) file costs memory for what is there, not 7.8 GB
    // up front (found by fuzzing, tests/fuzz/regressions/fashion).
    size_t want = n * item, have = 0, cap = 0;
    uint8_t *buf = NULL;
    while (have < want) {
        if (have == cap) {
            size_t next = cap ? cap * 2 : (1u << 20);
            if (next > want)
                next = want;
            uint8_t *p = realloc(buf, next);
            if (!p) {
                free(buf);
                gzclose(gz);
                return wsml_errf(err, WSML_ENOMEM, "%s: out of memory", path);
            }
            buf = p;
            cap = next;
        }
        size_t chunk = cap - have > (1u << 30) ? (1u << 30) : cap - have;
        int r = gzread(gz, buf + have, (unsigned)chunk);
        if (r <= 0)
            break;
        have += (size_t)r;
    }
    int errnum = 0;
    char zmsg[128];
    snprintf(zmsg, sizeof zmsg, "%s", gzerror(gz, &errnum)); // owned by gz: copy first
    gzclose(gz);
    if (have != want) {
        free(buf);
        return wsml_errf(err, WSML_EFORMAT, "%s: truncated IDX data (%zu of %zu bytes)%s%s", path,
                         have, want, errnum ? ": " : "", errnum ? zmsg : "");
    }
    *data = buf;
    *count = n;
    return 0;
}

static int load_set(const char *root, const char *prefix, fmnist_set *s, wsml_err *err) {
    char name[64];
    snprintf(name, sizeof name, "%s-images-idx3-ubyte.gz", prefix);
    char *ip = ingest_join(root, name);
    snprintf(name, sizeof name, "%s-labels-idx1-ubyte.gz", prefix);
    char *lp = ingest_join(root, name);
    const uint32_t img_dims[2] = {FMNIST_SIDE, FMNIST_SIDE};
    size_t ni = 0, nl = 0;
    int rc = !ip || !lp ? wsml_errf(err, WSML_ENOMEM, "out of memory") : 0;
    if (!rc)
        rc = read_idx(ip, 0x00000803u, 3, img_dims, &s->pixels, &ni, err);
    if (!rc)
        rc = read_idx(lp, 0x00000801u, 1, NULL, &s->labels, &nl, err);
    if (!rc && ni != nl)
        rc = wsml_errf(err, WSML_EFORMAT, "%s holds %zu images but %s holds %zu labels", ip, ni, lp,
                       nl);
    for (size_t i = 0; !rc && i < nl; i++)
        if (s->labels[i] >= FMNIST_CLASSES)
            rc = wsml_errf(err, WSML_EFORMAT, "%s: item %zu has label %u (expected 0..9)", lp, i,
                           s->labels[i]);
    s->n = ni;
    free(ip);
    free(lp);
    return rc;
}

// gen layout: four 16-bit tile fields (item index, TILE_EMPTY = no item), tile t in
// bits 16t..16t+15; it->source: 0 = train items, 1 = t10k items.
static unsigned gen_tile(uint64_t gen, int t) {
    return (unsigned)(gen >> (16 * t)) & 0xFFFFu;
}

static uint64_t pack_tiles(const unsigned item[4]) {
    uint64_t g = 0;
    for (int t = 0; t < 4; t++)
        g |= (uint64_t)(item[t] & 0xFFFFu) << (16 * t);
    return g;
}

static int fashion_load(const ingest_dataset *ds, const ingest_item *it, wsml_image *out,
                        wsml_err *err) {
    const fashion_ctx *f = ds->reader_ctx;
    const fmnist_set *s = &f->set[it->source ? 1 : 0];
    const int side = 2 * FMNIST_SIDE;
    uint8_t *px = calloc((size_t)side * side * 3, 1);
    if (!px)
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    for (int t = 0; t < 4; t++) {
        unsigned item = gen_tile(it->gen, t);
        if (item == TILE_EMPTY)
            continue;
        if (item >= s->n) {
            free(px);
            return wsml_errf(err, WSML_EARG, "item %u out of range", item);
        }
        const uint8_t *src = s->pixels + (size_t)item * FMNIST_PIXELS;
        int r0 = (t / 2) * FMNIST_SIDE, c0 = (t % 2) * FMNIST_SIDE;
        for (int y = 0; y < FMNIST_SIDE; y++)
            for (int x = 0; x < FMNIST_SIDE; x++) {
                uint8_t v = src[y * FMNIST_SIDE + x];
                uint8_t *d = px + ((size_t)(r0 + y) * side + (c0 + x)) * 3;
                d[0] = d[1] = d[2] = v;
            }
    }
    out->height = out->width = side;
    out->channels = 3;
    out->pixels = px;
    return 0;
}

// The drawing parameters, recorded in the store's info "ingest" object.
static int record_params(ingest_dataset *ds, const ingest_opts *o, long train, long test,
                         wsml_err *err) {
    char buf[256];
    snprintf(buf, sizeof buf,
             "{\"train_count\": %ld, \"test_count\": %ld, \"tile_prob\": %.17g, "
             "\"mosaic_seed\": %u}",
             train, test, o->tile_prob, o->mosaic_seed);
    free(ds->extra_info_json);
    ds->extra_info_json = strdup(buf);
    return ds->extra_info_json ? 0 : wsml_errf(err, WSML_ENOMEM, "out of memory");
}

static int fashion_setup(ingest_dataset *ds, const ingest_opts *o, fashion_ctx **out,
                         wsml_err *err) {
    int rc = ingest_require_dir(o->root,
                                "the Fashion-MNIST folder (Debian package "
                                "dataset-fashion-mnist)",
                                err);
    if (rc)
        return rc;
    fashion_ctx *f = calloc(1, sizeof *f);
    if (!f)
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    ds->reader_ctx = f;
    ds->reader_free = fashion_free;
    ds->load = fashion_load;
    ds->native_size = 2 * FMNIST_SIDE;
    if ((rc = load_set(o->root, "train", &f->set[0], err)))
        return rc;
    if ((rc = load_set(o->root, "t10k", &f->set[1], err)))
        return rc;
    for (int i = 0; i < 2; i++)
        if (f->set[i].n >= TILE_EMPTY) // item indices are packed in 16 bits
            return wsml_errf(err, WSML_EFORMAT, "%s: %zu items, at most %u supported", o->root,
                             f->set[i].n, TILE_EMPTY - 1);
    rc = ingest_set_classes(ds, (char **)fmnist_classes, FMNIST_CLASSES, err);
    *out = f;
    return rc;
}

int ingest_read_fashion_mosaic(ingest_dataset *ds, const ingest_opts *o, wsml_err *err) {
    fashion_ctx *f;
    int rc = fashion_setup(ds, o, &f, err);
    if (rc)
        return rc;
    if (o->tile_prob <= 0 || o->tile_prob > 1)
        return wsml_errf(err, WSML_EARG, "--tile-prob %g: must be in (0, 1]", o->tile_prob);
    long counts[2] = {o->train_count < 0 ? 25000 : o->train_count,
                      o->test_count < 0 ? 5000 : o->test_count};
    if ((rc = record_params(ds, o, counts[0], counts[1], err)))
        return rc;
    wsml_rng rng;
    for (int set = 0; set < 2; set++) {
        const fmnist_set *s = &f->set[set];
        ingest_list *l = &ds->official[set == 0 ? WSML_SPLIT_TRAIN : WSML_SPLIT_TEST];
        wsml_rng_seed(&rng, o->mosaic_seed + (uint32_t)set);
        for (long m = 0; m < counts[set]; m++) {
            unsigned item[4];
            int any;
            do {
                any = 0;
                for (int t = 0; t < 4; t++) {
                    if (wsml_rng_double(&rng) < o->tile_prob) {
                        item[t] = (unsigned)wsml_rng_randint(&rng, 0, (int64_t)s->n);
                        any = 1;
                    } else {
                        item[t] = TILE_EMPTY;
                    }
                }
            } while (!any);
            int8_t full[FMNIST_CLASSES] = {0};
            char id[96], part[4][8];
            for (int t = 0; t < 4; t++) {
                if (item[t] == TILE_EMPTY) {
                    snprintf(part[t], sizeof part[t], "-");
                } else {
                    full[s->labels[item[t]]] = 1;
                    snprintf(part[t], sizeof part[t], "%u", item[t]);
                }
            }
            snprintf(id, sizeof id, "mosaic-%s-%06ld:%s,%s,%s,%s", set ? "test" : "train", m,
                     part[0], part[1], part[2], part[3]);
            rc = ingest_add_item(ds, l, id, NULL, full, NULL, pack_tiles(item), err);
            if (rc)
                return rc;
            l->items[l->n - 1].source = (uint32_t)set;
        }
    }
    return record_params(ds, o, (long)ds->official[WSML_SPLIT_TRAIN].n,
                         (long)ds->official[WSML_SPLIT_TEST].n, err);
}

int ingest_read_fashion_items(ingest_dataset *ds, const ingest_opts *o, wsml_err *err) {
    fashion_ctx *f;
    int rc = fashion_setup(ds, o, &f, err);
    if (rc)
        return rc;
    wsml_rng rng;
    for (int set = 0; set < 2; set++) {
        const fmnist_set *s = &f->set[set];
        long want = set == 0 ? o->train_count : o->test_count;
        size_t n = want < 0 || (size_t)want > s->n ? s->n : (size_t)want;
        ingest_list *l = &ds->official[set == 0 ? WSML_SPLIT_TRAIN : WSML_SPLIT_TEST];
        wsml_rng_seed(&rng, o->mosaic_seed + (uint32_t)set);
        for (size_t i = 0; i < n; i++) {
            unsigned item[4] = {TILE_EMPTY, TILE_EMPTY, TILE_EMPTY, TILE_EMPTY};
            int pos = (int)wsml_rng_randint(&rng, 0, 4);
            item[pos] = (unsigned)i;
            int8_t full[FMNIST_CLASSES] = {0};
            full[s->labels[i]] = 1;
            char id[64];
            snprintf(id, sizeof id, "item-%s-%05zu@%d", set ? "test" : "train", i, pos);
            rc = ingest_add_item(ds, l, id, NULL, full, NULL, pack_tiles(item), err);
            if (rc)
                return rc;
            l->items[l->n - 1].source = (uint32_t)set;
        }
    }
    return record_params(ds, o, (long)ds->official[WSML_SPLIT_TRAIN].n,
                         (long)ds->official[WSML_SPLIT_TEST].n, err);
}
