// wsml-store: inspect, verify and export a dataset store.
#include <getopt.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/image.h"
#include "common/log.h"
#include "common/npy.h"
#include "common/fileio.h"
#include "store/store.h"

static void usage(FILE *f) {
    fputs("usage: wsml-store info STORE [--json]\n"
          "       wsml-store verify STORE [--quiet]\n"
          "       wsml-store export STORE --split S --what labels|observed|ids|images --out PATH [--range A:B]\n"
          "\n"
          "info    splits, counts, classes, image shape, encoding and ingest parameters\n"
          "verify  reads every record, checks its CRC and structure; exit 1 at the first sign of damage,\n"
          "        naming the split and index of the first bad record and how many are bad\n"
          "export  labels/observed as .npy (N x C int8: full 1/0/-1, observed 1/0/-1),\n"
          "        ids as text (one per line), images as PNG files DIR/<index>.png for --range A:B\n"
          "\n"
          "examples:\n"
          "  wsml-store info data/stores/voc\n"
          "  wsml-store info data/stores/voc --json | jq .counts\n"
          "  wsml-store verify data/stores/coco\n"
          "  wsml-store export data/stores/voc --split train --what observed --out obs.npy\n"
          "  wsml-store export data/stores/voc --split test --what images --range 0:8 --out imgs/\n",
          f);
}

static int cmd_info(const char *dir, int as_json) {
    wsml_err err = {0};
    wsml_store *s = wsml_store_open(dir, 0, &err);
    if (!s) {
        wsml_err_print("wsml-store", &err);
        return 1;
    }
    const wsml_store_meta *m = wsml_store_meta_get(s);
    json_t *info = json_loads(m->info_json, 0, NULL);
    if (as_json) {
        json_object_set_new(info, "version", json_integer(m->version));
        json_object_set_new(info, "path", json_string(dir));
        char *txt = json_dumps(info, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(txt);
        free(txt);
    } else {
        printf("store      %s\n", dir);
        printf("name       %s (format version %d)\n", m->name, m->version);
        printf("splits     train %u, val %u, test %u\n", m->count[0], m->count[1], m->count[2]);
        printf("images     %dx%dx%d, %s\n", m->height, m->width, m->channels, wsml_encoding_name(m->encoding));
        printf("classes    %d:", m->num_classes);
        for (int i = 0; i < m->num_classes && i < 10; i++) printf(" %s", m->class_names[i]);
        printf("%s\n", m->num_classes > 10 ? " ..." : "");
        printf("labels     unlisted full labels are %s\n", m->full_label_default ? "unknown (-1)" : "negative (0)");
        json_t *ing = json_object_get(info, "ingest");
        if (ing) {
            char *txt = json_dumps(ing, JSON_COMPACT | JSON_PRESERVE_ORDER);
            printf("ingest     %s\n", txt);
            free(txt);
        }
        json_t *sk = json_object_get(info, "skipped");
        printf("skipped    %zu images\n", json_is_array(sk) ? json_array_size(sk) : 0);
        if (json_object_get(info, "groups")) printf("groups     G1..G5 (class frequency) present\n");
    }
    json_decref(info);
    wsml_store_close(s);
    return 0;
}

typedef struct {
    long n;
} bad_ctx;

static void on_bad(void *ctx, wsml_split split, uint32_t index, const char *what) {
    bad_ctx *b = ctx;
    if (b->n++ < 20) fprintf(stderr, "wsml-store: bad record: %s %u: %s\n", wsml_split_name(split), index, what);
}

static int cmd_verify(const char *dir) {
    wsml_err err = {0};
    bad_ctx b = {0};
    double t0 = wsml_now();
    long bad = wsml_store_verify(dir, on_bad, &b, &err);
    if (bad < 0) {
        wsml_err_print("wsml-store", &err);
        return 1;
    }
    if (bad > 0) {
        fprintf(stderr, "wsml-store: error: %s (%ld bad record%s in all)\n", err.msg, bad, bad == 1 ? "" : "s");
        return 1;
    }
    if (!wsml_is_quiet()) printf("%s: ok (every record's CRC and structure checked in %.1fs)\n", dir, wsml_now() - t0);
    return 0;
}

static int parse_range(const char *s, uint32_t count, uint32_t *a, uint32_t *b) {
    if (!s) {
        *a = 0, *b = count;
        return 0;
    }
    char *e;
    long x = strtol(s, &e, 10);
    if (*e != ':') return -1;
    long y = strtol(e + 1, &e, 10);
    if (*e || x < 0 || y < x || (uint32_t)y > count) return -1;
    *a = (uint32_t)x, *b = (uint32_t)y;
    return 0;
}

static int cmd_export(const char *dir, const char *split_name, const char *what, const char *out, const char *range) {
    wsml_err err = {0};
    int split = wsml_split_parse(split_name);
    if (split < 0) {
        fprintf(stderr, "wsml-store: error: --split '%s': expected train, val or test\n", split_name ? split_name : "");
        return 2;
    }
    int kind = !strcmp(what, "labels") ? 0 : !strcmp(what, "observed") ? 1 : !strcmp(what, "ids") ? 2
             : !strcmp(what, "images") ? 3 : -1;
    if (kind < 0) {
        fprintf(stderr, "wsml-store: error: --what '%s': expected labels, observed, ids or images\n", what);
        return 2;
    }
    wsml_store *s = wsml_store_open(dir, 1, &err);
    if (!s) {
        wsml_err_print("wsml-store", &err);
        return 1;
    }
    const wsml_store_meta *m = wsml_store_meta_get(s);
    uint32_t a, b;
    if (parse_range(range, m->count[split], &a, &b)) {
        fprintf(stderr, "wsml-store: error: --range '%s': expected A:B with 0 <= A <= B <= %u\n", range, m->count[split]);
        wsml_store_close(s);
        return 2;
    }
    int C = m->num_classes, rc = 0;
    wsml_reader *r = wsml_reader_begin(s, &err);
    int8_t *labels = NULL;
    FILE *ids = NULL;
    wsml_atomic_file af;
    if (!r) rc = 1;
    if (!rc && kind <= 1) labels = malloc((size_t)(b - a) * C + 1);
    if (!rc && kind == 2) {
        if (wsml_atomic_open(&af, out, &err)) rc = 1;
        else ids = af.f;
    }
    if (!rc && kind == 3 && wsml_mkdirs(out, &err)) rc = 1;
    wsml_progress *p = rc ? NULL : wsml_progress_start("export", b - a, "rec");
    for (uint32_t i = a; !rc && i < b; i++) {
        wsml_record rec;
        if (wsml_reader_get(r, (wsml_split)split, i, &rec, &err)) {
            rc = 1;
            break;
        }
        if (kind == 0) wsml_record_full_labels(&rec, C, labels + (size_t)(i - a) * C);
        else if (kind == 1) wsml_record_observed_labels(&rec, C, labels + (size_t)(i - a) * C);
        else if (kind == 2) fprintf(ids, "%.*s\n", (int)rec.id_len, rec.id);
        else {
            wsml_image img = {0};
            if (rec.encoding == WSML_ENC_JPEG) {
                if (wsml_image_decode_buffer(rec.image, rec.image_len, &img, &err)) {
                    wsml_err_prefix(&err, "%s record %u", split_name, i);
                    rc = 1;
                    break;
                }
            } else {
                img.height = rec.height, img.width = rec.width, img.channels = rec.channels;
                img.pixels = (uint8_t *)rec.image;
            }
            char path[4200];
            snprintf(path, sizeof path, "%s/%u.png", out, i);
            if (wsml_image_write_png(path, &img, &err)) rc = 1;
            if (rec.encoding == WSML_ENC_JPEG) wsml_image_free(&img);
        }
        wsml_progress_add(p, 1);
    }
    wsml_progress_end(p);
    if (!rc && kind <= 1) {
        int64_t shape[2] = {b - a, C};
        if (wsml_npy_write(out, WSML_DT_I8, 1, 2, shape, labels, &err)) rc = 1;
    }
    if (kind == 2 && ids) {
        if (!rc && wsml_atomic_commit(&af, &err)) rc = 1;
        else if (rc) wsml_atomic_abort(&af);
    }
    if (rc) wsml_err_print("wsml-store", &err);
    free(labels);
    wsml_reader_end(r);
    wsml_store_close(s);
    return rc;
}

int main(int argc, char **argv) {
    wsml_set_prog("wsml-store");
    static const struct option opts[] = {{"json", no_argument, 0, 'j'},       {"quiet", no_argument, 0, 'q'},
                                         {"split", required_argument, 0, 's'}, {"what", required_argument, 0, 'w'},
                                         {"out", required_argument, 0, 'o'},   {"range", required_argument, 0, 'r'},
                                         {"help", no_argument, 0, 'h'},        {0, 0, 0, 0}};
    int as_json = 0;
    const char *split = NULL, *what = NULL, *out = NULL, *range = NULL;
    int c;
    while ((c = getopt_long(argc, argv, "h", opts, NULL)) != -1) {
        switch (c) {
        case 'j': as_json = 1; break;
        case 'q': wsml_set_quiet(1); break;
        case 's': split = optarg; break;
        case 'w': what = optarg; break;
        case 'o': out = optarg; break;
        case 'r': range = optarg; break;
        case 'h': usage(stdout); return 0;
        default: usage(stderr); return 2;
        }
    }
    if (argc - optind != 2) {
        if (argc - optind == 0) fprintf(stderr, "wsml-store: error: missing command (info, verify or export)\n");
        else fprintf(stderr, "wsml-store: error: expected COMMAND STORE\n");
        usage(stderr);
        return 2;
    }
    const char *cmd = argv[optind], *dir = argv[optind + 1];
    if (!strcmp(cmd, "info")) return cmd_info(dir, as_json);
    if (!strcmp(cmd, "verify")) return cmd_verify(dir);
    if (!strcmp(cmd, "export")) {
        if (!split || !what || !out) {
            fprintf(stderr, "wsml-store: error: export needs --split, --what and --out\n");
            return 2;
        }
        return cmd_export(dir, split, what, out, range);
    }
    fprintf(stderr, "wsml-store: error: unknown command '%s' (info, verify or export)\n", cmd);
    return 2;
}
