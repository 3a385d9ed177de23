// wsml-store: inspect, verify and export a dataset store (store.h).
#include <getopt.h>
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/fileio.h"
#include "common/image.h"
#include "common/log.h"
#include "common/npy.h"
#include "common/sysinfo.h"
#include "store/store.h"

#define PROG "wsml-store"

static void usage(FILE *f) {
    fputs("usage: wsml-store info STORE [--json]\n"
          "       wsml-store verify STORE [--quiet]\n"
          "       wsml-store export STORE --split S --what labels|observed|ids|images --out PATH\n"
          "                         [--range A:B]\n"
          "\n"
          "info    name, splits and counts, classes, image shape, encoding, ingest parameters,\n"
          "        skipped images and label statistics (--json: the whole info object, every\n"
          "        class name, plus \"path\", \"version\" and \"data_bytes\")\n"
          "verify  reads every record of every split and checks its CRC32, structure, label\n"
          "        indices, shape and key contiguity; prints each bad record as\n"
          "        \"SPLIT INDEX: what\" on stdout, then one error line naming the first\n"
          "export  one split, records A..B-1 (default: all):\n"
          "          labels    full labels, .npy int8 N x C (1 positive, 0 negative, -1 unknown)\n"
          "          observed  observed labels, .npy int8 N x C (1 pos, -1 neg, 0 unobserved)\n"
          "          ids       text, one image id/path per line\n"
          "          images    PNG files PATH/<index>.png (index zero-padded to the width of\n"
          "                    B-1, so that sorted names are in index order)\n"
          "\n"
          "options:\n"
          "  --json            info as JSON on stdout\n"
          "  --split S         train, val or test\n"
          "  --what W          labels, observed, ids or images\n"
          "  --out PATH        output file (.npy, text) or directory (images)\n"
          "  --range A:B       records A <= i < B (A or B may be left out)\n"
          "  --quiet           no progress bar or summary line\n"
          "  --help            this text;  --version  versions of wsml and its libraries\n"
          "\n"
          "exit status: 0 ok (verify: store clean), 1 runtime error (verify: damage found),\n"
          "2 usage error\n"
          "\n"
          "examples:\n"
          "  wsml-store info data/stores/voc\n"
          "  wsml-store info data/stores/voc --json | jq .counts\n"
          "  wsml-store verify data/stores/coco\n"
          "  wsml-store export data/stores/voc --split train --what observed --out obs.npy\n"
          "  wsml-store export data/stores/voc --split test --what ids --out test_ids.txt\n"
          "  wsml-store export data/stores/voc --split test --what images --range 0:8 --out imgs\n",
          f);
}

static int usage_error(const char *fmt, const char *arg) {
    fprintf(stderr, PROG ": error: ");
    fprintf(stderr, fmt, arg);
    fprintf(stderr, " (see wsml-store --help)\n");
    return 2;
}

static int fail(const wsml_err *err) {
    wsml_err_print(PROG, err);
    return 1;
}

// ---- info -----------------------------------------------------------------------

static long long data_bytes(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    struct stat st;
    return stat(path, &st) == 0 ? (long long)st.st_size : -1;
}

static void print_split_reals(const char *label, json_t *obj) {
    if (!json_is_object(obj))
        return;
    printf("%-9s", label);
    for (int s = 0; s < WSML_NUM_SPLITS; s++) {
        json_t *v = json_object_get(obj, wsml_split_name((wsml_split)s));
        if (json_is_number(v))
            printf(" %s %.3f", wsml_split_name((wsml_split)s), json_number_value(v));
    }
    printf("\n");
}

static int cmd_info(const char *dir, int as_json) {
    wsml_err err = {0};
    wsml_store *s = wsml_store_open(dir, 0, &err);
    if (!s)
        return fail(&err);
    const wsml_store_meta *m = wsml_store_meta_get(s);
    json_t *info = json_loads(m->info_json, 0, NULL); // parsed once already by the open
    if (!info) {
        wsml_store_close(s);
        wsml_errf(&err, WSML_ENOMEM, "%s: out of memory", dir);
        return fail(&err);
    }
    long long bytes = data_bytes(dir);
    if (as_json) {
        // The info object itself (every class name), plus where and what format it is.
        json_object_set_new(info, "path", json_string(dir));
        json_object_set_new(info, "version", json_integer(m->version));
        json_object_set_new(info, "data_bytes", json_integer(bytes));
        char *txt = json_dumps(info, JSON_INDENT(2));
        if (txt)
            puts(txt);
        free(txt);
    } else {
        json_t *fmt = json_object_get(info, "format");
        printf("store     %s (format version %d, %.1f MB)\n", dir, m->version, bytes / 1e6);
        printf("name      %s (%s)\n", m->name, json_is_string(fmt) ? json_string_value(fmt) : "?");
        printf("splits    train %u, val %u, test %u\n", m->count[0], m->count[1], m->count[2]);
        printf("images    %dx%dx%d (HxWxC), %s\n", m->height, m->width, m->channels,
               wsml_encoding_name(m->encoding));
        printf("classes   %d:", m->num_classes);
        int shown = m->num_classes < 8 ? m->num_classes : 8;
        for (int c = 0; c < shown; c++)
            printf("%s %s", c ? "," : "", m->class_names[c]);
        if (m->num_classes > shown)
            printf(", ... (%d more; --json lists all)", m->num_classes - shown);
        printf("\n");
        printf("labels    full labels not listed in a record are %s\n",
               m->full_label_default ? "unknown (-1)" : "negative (0)");
        print_split_reals("positives", json_object_get(info, "label_cardinality"));
        print_split_reals("observed", json_object_get(info, "observed_cardinality"));
        json_t *ing = json_object_get(info, "ingest");
        if (ing) {
            char *txt = json_dumps(ing, JSON_COMPACT);
            if (txt)
                printf("ingest    %s\n", txt);
            free(txt);
        }
        json_t *sk = json_object_get(info, "skipped"),
               *skn = json_object_get(info, "skipped_total");
        long long nsk = json_is_integer(skn) ? json_integer_value(skn)
                        : json_is_array(sk)  ? (long long)json_array_size(sk)
                                             : 0;
        printf("skipped   %lld image%s", nsk, nsk == 1 ? "" : "s");
        json_t *first = json_is_array(sk) ? json_array_get(sk, 0) : NULL;
        json_t *fp = json_object_get(first, "path"), *fr = json_object_get(first, "reason");
        if (json_is_string(fp))
            printf(" (first: %s: %s)", json_string_value(fp),
                   json_is_string(fr) ? json_string_value(fr) : "");
        printf("\n");
        json_t *groups = json_object_get(info, "groups");
        if (json_is_array(groups)) {
            printf("groups    %zu frequency groups of", json_array_size(groups));
            for (size_t g = 0; g < json_array_size(groups); g++)
                printf(" %zu", json_array_size(json_array_get(groups, g)));
            printf(" classes\n");
        }
    }
    json_decref(info);
    wsml_store_close(s);
    return 0;
}

// ---- verify ---------------------------------------------------------------------

typedef struct {
    wsml_progress *progress;
    const char *dir;
} verify_ctx;

// Where verify is, for the message if LMDB's own page structure is so damaged that
// reading it faults (LMDB trusts its page pointers).
static volatile sig_atomic_t at_split = -1;
static volatile uint32_t at_index;
static const char *verify_dir = "";

static void append(char *buf, size_t cap, size_t *n, const char *s) {
    while (*s && *n + 1 < cap)
        buf[(*n)++] = *s++;
}

static void on_fault(int sig) {
    char msg[4600], num[16];
    size_t n = 0;
    append(msg, sizeof msg, &n, PROG ": error: ");
    append(msg, sizeof msg, &n, verify_dir);
    append(msg, sizeof msg, &n, ": the LMDB page structure is damaged (");
    append(msg, sizeof msg, &n, sig == SIGBUS ? "SIGBUS" : "SIGSEGV");
    append(msg, sizeof msg, &n, ") while reading ");
    if (at_split >= 0) {
        append(msg, sizeof msg, &n, wsml_split_name((wsml_split)at_split));
        append(msg, sizeof msg, &n, " record ");
        int k = 0;
        uint32_t x = at_index;
        char rev[16];
        do
            rev[k++] = (char)('0' + x % 10), x /= 10;
        while (x);
        int j = 0;
        while (k)
            num[j++] = rev[--k];
        num[j] = 0;
        append(msg, sizeof msg, &n, num);
    } else {
        append(msg, sizeof msg, &n, "the store");
    }
    append(msg, sizeof msg, &n, "; re-ingest it\n");
    if (write(STDERR_FILENO, msg, n) < 0) {
    }
    _exit(1);
}

static void on_progress(void *ctx, wsml_split split, uint32_t index) {
    verify_ctx *v = ctx;
    at_index = index;
    at_split = split;
    wsml_progress_add(v->progress, 1);
}

static void on_bad(void *ctx, wsml_split split, uint32_t index, const char *what) {
    (void)ctx;
    printf("%s %u: %s\n", wsml_split_name(split), index, what);
}

static int cmd_verify(const char *dir) {
    wsml_err err = {0};
    // The total for the progress bar; also refuses incomplete/other-version stores early.
    uint64_t total = 0;
    wsml_store *s = wsml_store_open(dir, 0, &err);
    if (s) {
        const wsml_store_meta *m = wsml_store_meta_get(s);
        for (int k = 0; k < WSML_NUM_SPLITS; k++)
            total += m->count[k];
        wsml_store_close(s);
    } else if (err.code != WSML_ECORRUPT) { // damaged counts: verify itself describes them
        return fail(&err);
    }
    verify_dir = dir;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fault;
    sigaction(SIGSEGV, &sa, NULL);
    sigaction(SIGBUS, &sa, NULL);
    verify_ctx v = {wsml_progress_start("verify", total, "rec"), dir};
    double t0 = wsml_now();
    wsml_err_clear(&err);
    long bad = wsml_store_verify_progress(dir, on_bad, on_progress, &v, &err);
    wsml_progress_end(v.progress);
    fflush(stdout);
    if (bad < 0)
        return fail(&err);
    if (bad > 0) {
        fprintf(stderr, PROG ": error: %s (%ld bad record%s in all)\n", err.msg, bad,
                bad == 1 ? "" : "s");
        return 1;
    }
    if (!wsml_is_quiet())
        printf("%s: ok: %llu records checked (CRC32, structure, labels, shape) in %.1f s\n", dir,
               (unsigned long long)total, wsml_now() - t0);
    return 0;
}

// ---- export ---------------------------------------------------------------------

// "A:B", "A:", ":B" or ":" against count; 0 or -1 (malformed) or -2 (outside the split).
// Each bound is digits only (no sign, no space), at most UINT32_MAX.
static int parse_range(const char *s, uint32_t count, uint32_t *a, uint32_t *b) {
    *a = 0, *b = count;
    if (!s)
        return 0;
    const char *colon = strchr(s, ':');
    if (!colon)
        return -1;
    int64_t x;
    if (colon != s) {
        if (*s < '0' || *s > '9')
            return -1;
        char *first = strndup(s, (size_t)(colon - s));
        int bad = !first || wsml_parse_i64(first, 0, UINT32_MAX, &x);
        free(first);
        if (bad)
            return -1;
        *a = (uint32_t)x;
    }
    if (colon[1]) {
        if (colon[1] < '0' || colon[1] > '9' || wsml_parse_i64(colon + 1, 0, UINT32_MAX, &x))
            return -1;
        *b = (uint32_t)x;
    }
    if (*a > *b || *b > count)
        return -2;
    return 0;
}

typedef enum { WHAT_LABELS, WHAT_OBSERVED, WHAT_IDS, WHAT_IMAGES } export_what;

static int digits(uint32_t x) {
    int d = 1;
    while (x >= 10)
        x /= 10, d++;
    return d;
}

static int cmd_export(const char *dir, const char *split_name, const char *what_name,
                      const char *out, const char *range) {
    int split = wsml_split_parse(split_name);
    if (split < 0)
        return usage_error("--split '%s': expected train, val or test", split_name);
    export_what what;
    if (!strcmp(what_name, "labels"))
        what = WHAT_LABELS;
    else if (!strcmp(what_name, "observed"))
        what = WHAT_OBSERVED;
    else if (!strcmp(what_name, "ids"))
        what = WHAT_IDS;
    else if (!strcmp(what_name, "images"))
        what = WHAT_IMAGES;
    else
        return usage_error("--what '%s': expected labels, observed, ids or images", what_name);
    if (range && parse_range(range, UINT32_MAX, &(uint32_t){0}, &(uint32_t){0}) == -1)
        return usage_error("--range '%s': expected A:B (records A <= i < B)", range);

    wsml_err err = {0};
    wsml_store *s = wsml_store_open(dir, 1, &err);
    if (!s)
        return fail(&err);
    const wsml_store_meta *m = wsml_store_meta_get(s);
    uint32_t a, b, count = m->count[split];
    if (parse_range(range, count, &a, &b) < 0) {
        fprintf(stderr,
                PROG ": error: --range '%s' is outside %s's %u records (0 <= A <= B <= %u)\n",
                range, split_name, count, count);
        wsml_store_close(s);
        return 2;
    }
    int C = m->num_classes, rc = 0;
    uint32_t n = b - a;
    int8_t *labels = NULL;
    wsml_atomic_file ids = {0};
    int width = digits(n ? b - 1 : 0);
    wsml_reader *r = wsml_reader_begin(s, &err);
    if (!r)
        rc = -1;
    if (!rc && (what == WHAT_LABELS || what == WHAT_OBSERVED) &&
        !(labels = malloc((size_t)n * C + 1)))
        rc = wsml_errf(&err, WSML_ENOMEM, "%s: out of memory for %u x %d labels (export a --range)",
                       out, n, C);
    if (!rc && what == WHAT_IDS)
        rc = wsml_atomic_open(&ids, out, &err);
    if (!rc && what == WHAT_IMAGES)
        rc = wsml_mkdirs(out, &err);
    if (!rc && what == WHAT_IMAGES)
        rc = wsml_image_init(&err);
    wsml_progress *p = rc ? NULL : wsml_progress_start("export", n, "rec");
    for (uint32_t i = a; !rc && i < b; i++) {
        wsml_record rec;
        if ((rc = wsml_reader_get(r, (wsml_split)split, i, &rec, &err)) < 0)
            break;
        if (what == WHAT_LABELS) {
            wsml_record_full_labels(&rec, C, labels + (size_t)(i - a) * C);
        } else if (what == WHAT_OBSERVED) {
            wsml_record_observed_labels(&rec, C, labels + (size_t)(i - a) * C);
        } else if (what == WHAT_IDS) {
            if (memchr(rec.id, '\n', rec.id_len))
                rc = wsml_errf(&err, WSML_EFORMAT, "%s: %s record %u: id contains a newline", dir,
                               split_name, i);
            else
                fprintf(ids.f, "%.*s\n", (int)rec.id_len, rec.id);
        } else {
            wsml_image img = {rec.height, rec.width, rec.channels, (uint8_t *)rec.image};
            if (rec.encoding == WSML_ENC_JPEG &&
                (rc = wsml_image_decode_buffer(rec.image, rec.image_len, &img, &err)) < 0) {
                wsml_err_prefix(&err, "%s: %s record %u", dir, split_name, i);
                break;
            }
            char path[4200];
            if (snprintf(path, sizeof path, "%s/%0*u.png", out, width & 15, i) >= (int)sizeof path)
                rc = wsml_errf(&err, WSML_EARG, "%s: path too long", out);
            else
                rc = wsml_image_write_png(path, &img, &err);
            if (rec.encoding == WSML_ENC_JPEG)
                wsml_image_free(&img);
        }
        wsml_progress_add(p, 1);
    }
    wsml_progress_end(p);
    if (!rc && labels) {
        int64_t shape[2] = {n, C};
        rc = wsml_npy_write(out, WSML_DT_I8, 1, 2, shape, labels, &err);
    }
    if (ids.f) {
        if (!rc)
            rc = wsml_atomic_commit(&ids, &err);
        else
            wsml_atomic_abort(&ids);
    }
    free(labels);
    wsml_reader_end(r);
    wsml_store_close(s);
    if (rc)
        return fail(&err);
    if (!wsml_is_quiet())
        wsml_info("%s: exported %u %s record%s (%u..%u) to %s", split_name, n, what_name,
                  n == 1 ? "" : "s", a, b ? b - 1 : 0, out);
    return 0;
}

int main(int argc, char **argv) {
    wsml_set_prog(PROG);
    static const struct option opts[] = {{"json", no_argument, 0, 'j'},
                                         {"quiet", no_argument, 0, 'q'},
                                         {"split", required_argument, 0, 's'},
                                         {"what", required_argument, 0, 'w'},
                                         {"out", required_argument, 0, 'o'},
                                         {"range", required_argument, 0, 'r'},
                                         {"help", no_argument, 0, 'h'},
                                         {"version", no_argument, 0, 'V'},
                                         {0, 0, 0, 0}};
    int as_json = 0;
    const char *split = NULL, *what = NULL, *out = NULL, *range = NULL;
    int c;
    opterr = 0;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'j':
            as_json = 1;
            break;
        case 'q':
            wsml_set_quiet(1);
            break;
        case 's':
            split = optarg;
            break;
        case 'w':
            what = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'r':
            range = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        case 'V':
            wsml_print_version(stdout);
            return 0;
        default:
            return usage_error("unknown option or missing value: %s", argv[optind - 1]);
        }
    }
    if (argc - optind == 0)
        return usage_error("missing command%s", " (info, verify or export)");
    const char *cmd = argv[optind];
    if (strcmp(cmd, "info") && strcmp(cmd, "verify") && strcmp(cmd, "export"))
        return usage_error("unknown command '%s' (info, verify or export)", cmd);
    if (argc - optind != 2)
        return usage_error(argc - optind < 2 ? "%s: missing STORE" : "%s: expected one STORE", cmd);
    const char *dir = argv[optind + 1];
    if (!strcmp(cmd, "info")) {
        if (split || what || out || range)
            return usage_error("%s takes only --json", "info");
        return cmd_info(dir, as_json);
    }
    if (as_json)
        return usage_error("--json is for %s only", "info");
    if (!strcmp(cmd, "verify")) {
        if (split || what || out || range)
            return usage_error("%s takes only --quiet", "verify");
        return cmd_verify(dir);
    }
    if (!split || !what || !out)
        return usage_error("%s needs --split, --what and --out", "export");
    return cmd_export(dir, split, what, out, range);
}
