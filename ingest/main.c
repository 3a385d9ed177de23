// wsml-ingest: a dataset as released -> a wsml store (docs/datasets.md, docs/methods.md §1).
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <malloc.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/log.h"
#include "common/sysinfo.h"
#include "ingest/ingest.h"

#define PROG "wsml-ingest"
#define FASHION_DIR "/usr/share/datasets/fashion-mnist"
#define SKIPPED_LISTED_MAX 1000 // entries of "skipped" kept in the info JSON

static void usage(FILE *f) {
    fprintf(
        f,
        "Usage: wsml-ingest --format FORMAT --root DIR --out STORE [options]\n"
        "Reads a dataset as released and writes a wsml store (train, val, test splits with\n"
        "full and observed labels and pre-resized images).\n"
        "\n"
        "Formats (downloads, layouts, what is read: docs/datasets.md):\n"
        "  voc             PASCAL VOC 2012; --root = VOCdevkit/VOC2012\n"
        "  coco            MS COCO 2014; --root holds annotations/, train2014/, val2014/\n"
        "  npy             formatted_{train,val}_{images,labels}[_obs].npy (NUS-WIDE)\n"
        "  cub             CUB-200-2011 attributes; --root holds CUB_200_2011/, attributes.txt\n"
        "  openimages      OpenImages V3 real partial labels; --root holds 2017_11/, images_*/\n"
        "  fashion-mosaic  2x2 Fashion-MNIST mosaics (demo data); --root = IDX folder\n"
        "  fashion-items   single Fashion-MNIST items on a 56x56 canvas (demo pretraining)\n"
        "  csv             your own data: --root holds train.csv [val.csv] [test.csv]\n"
        "\n"
        "Options:\n"
        "  --format FORMAT     one of the formats above (required)\n"
        "  --root DIR          dataset folder (required, except fashion: default\n"
        "                      $WSML_FASHION_MNIST, else " FASHION_DIR ")\n"
        "  --out STORE         store directory to create (required)\n"
        "  --force             replace an existing STORE\n"
        "  --name NAME         store name (default: the format, or --root's basename for npy/csv)\n"
        "  --images DIR        image root for npy and csv (default: --root)\n"
        "  --classes FILE      class names, one per line (npy, csv)\n"
        "  --size N            resize both sides to N (default 448; 56 for fashion formats)\n"
        "  --encoding E        raw | jpeg (default jpeg; raw for fashion formats)\n"
        "  --quality Q         JPEG quality 1..100 (default 95)\n"
        "  --num-pos N         observed positives per image (default 1; -1 = all)\n"
        "  --num-neg N         observed negatives per image (default 0; -1 = all)\n"
        "  --seed S            observed-label generator seed (default 1200)\n"
        "  --val-frac F        fraction of the official train split carved into val\n"
        "                      (default 0.2; 0 for fashion-items)\n"
        "  --split-seed S      seed of the val carve permutation (default 1200)\n"
        "  --jobs N            decode threads (default: the CPUs this process may use)\n"
        "  --strict            a corrupt or unreadable image is fatal (default: skipped)\n"
        "  --quiet             no progress bar or info lines\n"
        "  --json              print a JSON summary on stdout at the end\n"
        "  fashion formats:\n"
        "  --train-count N     mosaics drawn from the training items before the val carve\n"
        "                      (default 25000 -> 20000 train + 5000 val); items: first N\n"
        "                      training items (default all 60000)\n"
        "  --test-count N      test mosaics (default 5000); items: first N test items (10000)\n"
        "  --tile-prob P       probability that a mosaic tile holds an item (default 0.7)\n"
        "  --mosaic-seed S     seed of the mosaic and item-position draws (default 0)\n"
        "  -h, --help          this help;  --version  versions of wsml and its libraries\n"
        "\n"
        "Examples:\n"
        "  wsml-ingest --format voc --root data/VOCdevkit/VOC2012 --out stores/voc\n"
        "  wsml-ingest --format coco --root data/coco --out stores/coco\n"
        "  wsml-ingest --format npy --root data/nuswide --classes data/nuswide/Concepts81.txt \\\n"
        "              --out stores/nuswide\n"
        "  wsml-ingest --format cub --root data/cub --out stores/cub\n"
        "  wsml-ingest --format openimages --root data/openimages --out stores/openimages\n"
        "  wsml-ingest --format fashion-mosaic --out stores/mosaic\n"
        "  wsml-ingest --format fashion-items --out stores/items --val-frac 0.1\n"
        "  wsml-ingest --format csv --root mydata --images mydata/photos --out stores/mine\n"
        "     (mydata/train.csv: header \"path,labels[,observed]\", labels joined by '|',\n"
        "      e.g. \"cats/001.jpg,cat|sofa\"; observed: names, '-name' = observed negative)\n"
        "\n"
        "Exit status: 0 ok, 1 runtime error (nothing complete is left at STORE), 2 usage.\n");
}

static int usage_error(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, PROG ": error: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, " (see --help)\n");
    return 2;
}

// Option values through common/cli's strict parsers, with the flag in the message.
static int parse_long(const char *flag, const char *s, long lo, long hi, long *out) {
    int64_t v;
    if (wsml_parse_i64(s, lo, hi, &v)) {
        fprintf(stderr, PROG ": error: %s %s: expected an integer in %ld..%ld (see --help)\n", flag,
                s, lo, hi);
        return -1;
    }
    *out = (long)v;
    return 0;
}

static int parse_double(const char *flag, const char *s, double lo, double hi, double *out) {
    if (wsml_parse_double(s, lo, hi, out)) {
        fprintf(stderr, PROG ": error: %s %s: expected a number in [%g, %g] (see --help)\n", flag,
                s, lo, hi);
        return -1;
    }
    return 0;
}

static void on_signal(int sig) {
    (void)sig;
    ingest_interrupted = 1;
}

typedef int (*reader_fn)(ingest_dataset *, const ingest_opts *, wsml_err *);
static const struct {
    const char *name;
    reader_fn read;
    int fashion;
} formats[] = {
    {"voc", ingest_read_voc, 0},
    {"coco", ingest_read_coco, 0},
    {"npy", ingest_read_npy, 0},
    {"cub", ingest_read_cub, 0},
    {"openimages", ingest_read_openimages, 0},
    {"fashion-mosaic", ingest_read_fashion_mosaic, 1},
    {"fashion-items", ingest_read_fashion_items, 1},
    {"csv", ingest_read_csv, 0},
};
#define NUM_FORMATS (sizeof formats / sizeof formats[0])

// The output splits: item lists and orders (indices into the official lists).
typedef struct {
    const ingest_list *src[WSML_NUM_SPLITS];
    uint32_t *order[WSML_NUM_SPLITS];
    size_t n[WSML_NUM_SPLITS];
    const char *val_source; // "carved", "official", "none"
} split_plan;

static uint32_t *identity(size_t n) {
    uint32_t *p = malloc(sizeof(uint32_t) * (n ? n : 1));
    if (p)
        for (size_t i = 0; i < n; i++)
            p[i] = (uint32_t)i;
    return p;
}

static int plan_splits(const ingest_dataset *ds, const ingest_opts *o, split_plan *pl,
                       wsml_err *err) {
    memset(pl, 0, sizeof *pl);
    const ingest_list *tr = &ds->official[WSML_SPLIT_TRAIN];
    for (int s = 0; s < WSML_NUM_SPLITS; s++)
        if (ds->official[s].n > UINT32_MAX)
            return wsml_errf(err, WSML_EARG, "%s: more than 2^32 images",
                             wsml_split_name((wsml_split)s));
    pl->src[WSML_SPLIT_TEST] = &ds->official[WSML_SPLIT_TEST];
    pl->n[WSML_SPLIT_TEST] = ds->official[WSML_SPLIT_TEST].n;
    pl->order[WSML_SPLIT_TEST] = identity(pl->n[WSML_SPLIT_TEST]);
    pl->src[WSML_SPLIT_TRAIN] = tr;
    pl->src[WSML_SPLIT_VAL] = ds->has_official_val ? &ds->official[WSML_SPLIT_VAL] : tr;
    if (ds->has_official_val) {
        pl->val_source = "official";
        pl->n[WSML_SPLIT_TRAIN] = tr->n;
        pl->order[WSML_SPLIT_TRAIN] = identity(tr->n);
        pl->n[WSML_SPLIT_VAL] = ds->official[WSML_SPLIT_VAL].n;
        pl->order[WSML_SPLIT_VAL] = identity(pl->n[WSML_SPLIT_VAL]);
    } else {
        int rc = ingest_carve_val(tr->n, o->val_frac, o->split_seed, &pl->order[WSML_SPLIT_TRAIN],
                                  &pl->n[WSML_SPLIT_TRAIN], &pl->order[WSML_SPLIT_VAL],
                                  &pl->n[WSML_SPLIT_VAL], err);
        if (rc)
            return rc;
        pl->val_source = pl->n[WSML_SPLIT_VAL] ? "carved" : "none";
    }
    for (int s = 0; s < WSML_NUM_SPLITS; s++)
        if (!pl->order[s])
            return wsml_errf(err, WSML_ENOMEM, "out of memory planning splits");
    return 0;
}

static json_t *info_json(const ingest_dataset *ds, const ingest_opts *o, const char *name,
                         const split_plan *pl, const uint32_t *written, const double *pos_sum,
                         const double *obs_sum, const ingest_skips *skips,
                         const int *observed_imported) {
    json_t *j = json_object();
    json_object_set_new(j, "name", json_string(name));
    json_object_set_new(j, "format", json_string(ds->format));
    json_t *cls = json_array();
    for (int c = 0; c < ds->num_classes; c++)
        json_array_append_new(cls, json_string(ds->class_names[c]));
    json_object_set_new(j, "classes", cls);
    json_t *counts = json_object(), *card = json_object(), *ocard = json_object();
    for (int s = 0; s < WSML_NUM_SPLITS; s++) {
        const char *sn = wsml_split_name((wsml_split)s);
        json_object_set_new(counts, sn, json_integer(written[s]));
        json_object_set_new(card, sn, json_real(written[s] ? pos_sum[s] / written[s] : 0.0));
        json_object_set_new(ocard, sn, json_real(written[s] ? obs_sum[s] / written[s] : 0.0));
    }
    json_object_set_new(j, "counts", counts);
    json_object_set_new(j, "height", json_integer(o->size));
    json_object_set_new(j, "width", json_integer(o->size));
    json_object_set_new(j, "channels", json_integer(3));
    json_object_set_new(j, "encoding", json_string(wsml_encoding_name(o->encoding)));
    json_object_set_new(j, "full_label_default", json_integer(ds->full_label_default));
    json_object_set_new(j, "label_cardinality", card);
    json_object_set_new(j, "observed_cardinality", ocard);

    json_t *in = json_object();
    json_object_set_new(in, "root", json_string(o->root));
    if (o->images)
        json_object_set_new(in, "images", json_string(o->images));
    if (ds->image_root)
        json_object_set_new(in, "image_root", json_string(ds->image_root));
    json_object_set_new(in, "size", json_integer(o->size));
    json_object_set_new(in, "encoding", json_string(wsml_encoding_name(o->encoding)));
    if (o->encoding == WSML_ENC_JPEG)
        json_object_set_new(in, "quality", json_integer(o->quality));
    json_t *obs = json_object();
    for (int s = 0; s < WSML_NUM_SPLITS; s++)
        if (s != WSML_SPLIT_VAL || ds->has_official_val)
            json_object_set_new(obs, wsml_split_name((wsml_split)s),
                                json_string(ds->observed_real      ? "real"
                                            : observed_imported[s] ? "imported"
                                                                   : "simulated"));
    json_object_set_new(in, "observed", obs);
    json_object_set_new(in, "num_pos", json_integer(o->num_pos));
    json_object_set_new(in, "num_neg", json_integer(o->num_neg));
    json_object_set_new(in, "seed", json_integer(o->seed));
    json_object_set_new(in, "val", json_string(pl->val_source));
    json_object_set_new(in, "val_frac", json_real(o->val_frac));
    json_object_set_new(in, "split_seed", json_integer(o->split_seed));
    json_t *off = json_object();
    for (int s = 0; s < WSML_NUM_SPLITS; s++)
        if (s != WSML_SPLIT_VAL || ds->has_official_val)
            json_object_set_new(off, wsml_split_name((wsml_split)s),
                                json_integer((json_int_t)ds->official[s].n));
    json_object_set_new(in, "official_counts", off);
    if (ds->extra_info_json) {
        json_t *x = json_loads(ds->extra_info_json, 0, NULL);
        if (x)
            json_object_update(in, x);
        json_decref(x);
    }
    json_object_set_new(j, "ingest", in);

    json_t *sk = json_array();
    for (size_t i = 0; i < skips->n && i < SKIPPED_LISTED_MAX; i++) {
        json_t *e = json_object();
        json_object_set_new(e, "split", json_string(wsml_split_name(skips->items[i].split)));
        json_object_set_new(e, "path", json_string(skips->items[i].path));
        json_object_set_new(e, "reason", json_string(skips->items[i].reason));
        json_array_append_new(sk, e);
    }
    json_object_set_new(j, "skipped", sk);
    json_object_set_new(j, "skipped_total", json_integer((json_int_t)skips->n));
    if (ds->groups) {
        json_t *g = json_array();
        for (int k = 0; k < 5; k++) {
            json_t *a = json_array();
            for (int i = 0; i < ds->group_len[k]; i++)
                json_array_append_new(a, json_integer(ds->groups[k][i]));
            json_array_append_new(g, a);
        }
        json_object_set_new(j, "groups", g);
    }
    return j;
}

static const char *base_name(const char *path, char *buf, size_t cap) {
    size_t len = strlen(path);
    while (len > 1 && path[len - 1] == '/')
        len--;
    size_t start = len;
    while (start > 0 && path[start - 1] != '/')
        start--;
    size_t n = len - start < cap - 1 ? len - start : cap - 1;
    memcpy(buf, path + start, n);
    buf[n] = '\0';
    return buf;
}

static int run(ingest_opts *o, int want_json) {
    wsml_err err;
    wsml_err_clear(&err);
    const char *fmt = o->format;
    reader_fn read = NULL;
    for (size_t i = 0; i < NUM_FORMATS; i++)
        if (strcmp(formats[i].name, fmt) == 0)
            read = formats[i].read;

    struct stat st;
    if (!o->force && stat(o->out, &st) == 0) {
        fprintf(stderr, PROG ": error: %s: exists (pass --force to replace it)\n", o->out);
        return 1;
    }
    if (wsml_image_init(&err)) {
        wsml_err_print(PROG, &err);
        return 1;
    }

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    double t0 = wsml_now();
    ingest_dataset ds;
    ingest_dataset_init(&ds, fmt);
    split_plan pl;
    memset(&pl, 0, sizeof pl);
    ingest_skips skips = {0};
    wsml_store_writer *w = NULL;
    json_t *info = NULL;
    uint32_t written[WSML_NUM_SPLITS] = {0};
    double pos_sum[WSML_NUM_SPLITS] = {0}, obs_sum[WSML_NUM_SPLITS] = {0};
    char namebuf[64];
    const char *name = o->name;
    if (!name)
        name = (!strcmp(fmt, "npy") || !strcmp(fmt, "csv"))
                   ? base_name(o->root, namebuf, sizeof namebuf)
                   : fmt;
    int rc = read(&ds, o, &err);
    if (rc == 0 && ds.num_classes <= 0)
        rc = wsml_errf(&err, WSML_EFORMAT, "%s: no classes found", o->root);
    if (rc == 0 && ds.official[WSML_SPLIT_TRAIN].n == 0)
        rc = wsml_errf(&err, WSML_EFORMAT, "%s: the train split has no images", o->root);
    int observed_imported[WSML_NUM_SPLITS] = {0};
    for (int s = 0; s < WSML_NUM_SPLITS; s++)
        observed_imported[s] = ds.official[s].has_observed;
    if (rc == 0)
        rc = ingest_simulate_observed(&ds, o->num_pos, o->num_neg, o->seed, &err);
    if (rc == 0)
        rc = plan_splits(&ds, o, &pl, &err);
    if (rc == 0 && !strcmp(fmt, "openimages"))
        rc = ingest_frequency_groups(&ds, &ds.official[WSML_SPLIT_TRAIN], &err);
    if (rc == 0) {
        double t1 = wsml_now();
        wsml_info("%s: %d classes; %zu train, %zu val, %zu test images listed (%.1f s)", name,
                  ds.num_classes, pl.n[WSML_SPLIT_TRAIN], pl.n[WSML_SPLIT_VAL],
                  pl.n[WSML_SPLIT_TEST], t1 - t0);
        w = wsml_store_create(o->out, o->force, &err);
        if (!w)
            rc = err.code ? err.code : WSML_EIO;
    }
    for (int s = 0; s < WSML_NUM_SPLITS && rc == 0; s++)
        rc = ingest_write_split(&ds, o, w, (wsml_split)s, pl.src[s], pl.order[s], pl.n[s], &skips,
                                &written[s], &pos_sum[s], &obs_sum[s], &err);
    if (rc == 0 && ingest_interrupted)
        rc = wsml_errf(&err, WSML_ESTATE, "interrupted by signal");
    char *info_str = NULL;
    if (rc == 0) {
        info = info_json(&ds, o, name, &pl, written, pos_sum, obs_sum, &skips, observed_imported);
        info_str = json_dumps(info, JSON_COMPACT | JSON_REAL_PRECISION(12));
        if (!info_str)
            rc = wsml_errf(&err, WSML_ENOMEM, "out of memory serialising info");
    }
    int created = w != NULL;
    if (rc == 0) {
        rc = wsml_store_writer_finish(w, info_str, &err);
        w = NULL; // finish consumes the writer whatever the result (store.h)
    }
    if (rc) {
        if (w)
            wsml_store_writer_abort(w);
        wsml_err_print(PROG, &err);
        if (created || ingest_interrupted)
            fprintf(stderr, PROG ": %s left incomplete\n", o->out);
    } else {
        double secs = wsml_now() - t0;
        for (int s = 0; s < WSML_NUM_SPLITS; s++)
            wsml_info("%s: %u images, label cardinality %.3f, observed positives %.3f/image",
                      wsml_split_name((wsml_split)s), written[s],
                      written[s] ? pos_sum[s] / written[s] : 0.0,
                      written[s] ? obs_sum[s] / written[s] : 0.0);
        if (skips.n) {
            wsml_warn("skipped %zu unreadable image%s (listed in the store's info \"skipped\"):",
                      skips.n, skips.n == 1 ? "" : "s");
            for (size_t i = 0; i < skips.n && i < 20; i++)
                wsml_warn("  %s %s: %s", wsml_split_name(skips.items[i].split), skips.items[i].path,
                          skips.items[i].reason);
            if (skips.n > 20)
                wsml_warn("  ... and %zu more", skips.n - 20);
        }
        uint32_t total = written[0] + written[1] + written[2];
        wsml_info("wrote %s: %u images in %.1f s (%.0f img/s, %d decode thread%s)", o->out, total,
                  secs, secs > 0 ? total / secs : 0.0, o->jobs, o->jobs == 1 ? "" : "s");
        if (want_json) {
            json_object_set_new(info, "seconds", json_real(secs));
            json_dumpf(info, stdout, JSON_INDENT(2) | JSON_REAL_PRECISION(12));
            fputc('\n', stdout);
        }
    }
    free(info_str);
    json_decref(info);
    for (int s = 0; s < WSML_NUM_SPLITS; s++)
        free(pl.order[s]);
    ingest_skips_free(&skips);
    ingest_dataset_free(&ds);
    return rc ? 1 : 0;
}

int main(int argc, char **argv) {
    wsml_set_prog(PROG);
    // Every image passes through several buffers of 0.1-40 MB (file bytes, decoded
    // pixels, resized pixels). With glibc's defaults each of them is a fresh mmap that is
    // unmapped on free, so every image pays page faults on all its memory again: measured
    // 10.5 ms -> 4.0 ms CPU per 500x375 JPEG decoded and resized to 448 on this VM. Keep
    // such blocks on the heap and reuse them; the bounded in-flight window
    // (pipeline.c) still bounds the peak.
    mallopt(M_MMAP_THRESHOLD, 64 << 20);
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    ingest_opts o = {
        .size = -1,
        .encoding = (wsml_encoding)-1,
        .quality = 95,
        .num_pos = 1,
        .num_neg = 0,
        .seed = 1200,
        .val_frac = -1,
        .split_seed = 1200,
        .jobs = 0,
        .train_count = -1,
        .test_count = -1,
        .tile_prob = 0.7,
        .mosaic_seed = 0,
    };
    int want_json = 0;
    enum {
        OPT_FORMAT = 256,
        OPT_ROOT,
        OPT_OUT,
        OPT_NAME,
        OPT_IMAGES,
        OPT_CLASSES,
        OPT_SIZE,
        OPT_ENCODING,
        OPT_QUALITY,
        OPT_NUM_POS,
        OPT_NUM_NEG,
        OPT_SEED,
        OPT_VAL_FRAC,
        OPT_SPLIT_SEED,
        OPT_JOBS,
        OPT_STRICT,
        OPT_QUIET,
        OPT_FORCE,
        OPT_JSON,
        OPT_TRAIN_COUNT,
        OPT_TEST_COUNT,
        OPT_TILE_PROB,
        OPT_MOSAIC_SEED,
    };
    static const struct option longopts[] = {
        {"format", required_argument, 0, OPT_FORMAT},
        {"root", required_argument, 0, OPT_ROOT},
        {"out", required_argument, 0, OPT_OUT},
        {"name", required_argument, 0, OPT_NAME},
        {"images", required_argument, 0, OPT_IMAGES},
        {"classes", required_argument, 0, OPT_CLASSES},
        {"size", required_argument, 0, OPT_SIZE},
        {"encoding", required_argument, 0, OPT_ENCODING},
        {"quality", required_argument, 0, OPT_QUALITY},
        {"num-pos", required_argument, 0, OPT_NUM_POS},
        {"num-neg", required_argument, 0, OPT_NUM_NEG},
        {"seed", required_argument, 0, OPT_SEED},
        {"val-frac", required_argument, 0, OPT_VAL_FRAC},
        {"split-seed", required_argument, 0, OPT_SPLIT_SEED},
        {"jobs", required_argument, 0, OPT_JOBS},
        {"strict", no_argument, 0, OPT_STRICT},
        {"quiet", no_argument, 0, OPT_QUIET},
        {"force", no_argument, 0, OPT_FORCE},
        {"json", no_argument, 0, OPT_JSON},
        {"train-count", required_argument, 0, OPT_TRAIN_COUNT},
        {"test-count", required_argument, 0, OPT_TEST_COUNT},
        {"tile-prob", required_argument, 0, OPT_TILE_PROB},
        {"mosaic-seed", required_argument, 0, OPT_MOSAIC_SEED},
        {"help", no_argument, 0, 'h'},
        {"version", no_argument, 0, 'V'},
        {0, 0, 0, 0},
    };
    long v;
    double d;
    int c;
    while ((c = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (c) {
        case OPT_FORMAT:
            o.format = optarg;
            break;
        case OPT_ROOT:
            o.root = optarg;
            break;
        case OPT_OUT:
            o.out = optarg;
            break;
        case OPT_NAME:
            o.name = optarg;
            break;
        case OPT_IMAGES:
            o.images = optarg;
            break;
        case OPT_CLASSES:
            o.classes = optarg;
            break;
        case OPT_SIZE:
            if (parse_long("--size", optarg, 8, 4096, &v))
                return 2;
            o.size = (int)v;
            break;
        case OPT_ENCODING:
            if (!strcmp(optarg, "raw"))
                o.encoding = WSML_ENC_RAW;
            else if (!strcmp(optarg, "jpeg"))
                o.encoding = WSML_ENC_JPEG;
            else
                return usage_error("--encoding %s: expected raw or jpeg%s", optarg, "");
            break;
        case OPT_QUALITY:
            if (parse_long("--quality", optarg, 1, 100, &v))
                return 2;
            o.quality = (int)v;
            break;
        case OPT_NUM_POS:
            if (parse_long("--num-pos", optarg, -1, 1000000, &v))
                return 2;
            o.num_pos = (int)v;
            break;
        case OPT_NUM_NEG:
            if (parse_long("--num-neg", optarg, -1, 1000000, &v))
                return 2;
            o.num_neg = (int)v;
            break;
        case OPT_SEED:
            if (parse_long("--seed", optarg, 0, UINT32_MAX, &v))
                return 2;
            o.seed = (uint32_t)v;
            break;
        case OPT_VAL_FRAC:
            if (parse_double("--val-frac", optarg, 0, 1, &d))
                return 2;
            o.val_frac = d;
            break;
        case OPT_SPLIT_SEED:
            if (parse_long("--split-seed", optarg, 0, UINT32_MAX, &v))
                return 2;
            o.split_seed = (uint32_t)v;
            break;
        case OPT_JOBS:
            if (parse_long("--jobs", optarg, 1, 1024, &v))
                return 2;
            o.jobs = (int)v;
            break;
        case OPT_STRICT:
            o.strict = 1;
            break;
        case OPT_QUIET:
            o.quiet = 1;
            break;
        case OPT_FORCE:
            o.force = 1;
            break;
        case OPT_JSON:
            want_json = 1;
            break;
        case OPT_TRAIN_COUNT:
            if (parse_long("--train-count", optarg, 0, 10000000, &v))
                return 2;
            o.train_count = v;
            break;
        case OPT_TEST_COUNT:
            if (parse_long("--test-count", optarg, 0, 10000000, &v))
                return 2;
            o.test_count = v;
            break;
        case OPT_TILE_PROB:
            if (parse_double("--tile-prob", optarg, 1e-6, 1, &d))
                return 2;
            o.tile_prob = d;
            break;
        case OPT_MOSAIC_SEED:
            if (parse_long("--mosaic-seed", optarg, 0, UINT32_MAX - 1, &v))
                return 2;
            o.mosaic_seed = (uint32_t)v;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            wsml_print_version(stdout);
            return 0;
        default:
            fprintf(stderr, PROG ": see --help\n");
            return 2;
        }
    }
    if (optind < argc)
        return usage_error("unexpected argument '%s'%s", argv[optind], "");
    if (!o.format)
        return usage_error("--format is required%s%s", "", "");
    int fashion = -1;
    for (size_t i = 0; i < NUM_FORMATS; i++)
        if (!strcmp(formats[i].name, o.format))
            fashion = formats[i].fashion;
    if (fashion < 0)
        return usage_error("--format %s: expected voc, coco, npy, cub, openimages, "
                           "fashion-mosaic, fashion-items or csv%s",
                           o.format, "");
    if (!o.out)
        return usage_error("--out is required%s%s", "", "");
    if (!o.root) {
        if (!fashion)
            return usage_error("--root is required for --format %s%s", o.format, "");
        // Debian's dataset-fashion-mnist, or the release's four .gz files anywhere else
        const char *env = getenv("WSML_FASHION_MNIST");
        o.root = env && *env ? env : FASHION_DIR;
    }
    if (o.size < 0)
        o.size = fashion ? 56 : 448;
    if ((int)o.encoding < 0)
        o.encoding = fashion ? WSML_ENC_RAW : WSML_ENC_JPEG;
    if (o.val_frac < 0)
        o.val_frac = !strcmp(o.format, "fashion-items") ? 0.0 : 0.2;
    if (o.jobs <= 0)
        o.jobs = wsml_cpu_count();
    wsml_set_quiet(o.quiet);
    wsml_set_run_dir(o.out);
    return run(&o, want_json);
}
