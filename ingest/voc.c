// PASCAL VOC 2012 (docs/datasets.md; reference: preproc/format_pascal.py of Cole et al.).
// ImageSets/Main/<class>_<phase>.txt, lines "<image_id> <flag>" (flag 1 present, -1
// absent, 0 difficult = absent). A phase's images = those with at least one 1, sorted
// by file name "<image_id>.jpg". Phase train -> wsml train (val carved from it), phase
// val -> wsml test.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/ingest.h"

#define VOC_CLASSES 20
static const char *const voc_classes[VOC_CLASSES] = {
    "aeroplane", "bicycle",     "bird",  "boat",        "bottle", "bus",      "car",
    "cat",       "chair",       "cow",   "diningtable", "dog",    "horse",    "motorbike",
    "person",    "pottedplant", "sheep", "sofa",        "train",  "tvmonitor"};

typedef struct {
    char *fname;
    uint32_t mask; // bit c = class c present
} voc_image;

static int cmp_voc_image(const void *a, const void *b) {
    return strcmp(((const voc_image *)a)->fname, ((const voc_image *)b)->fname);
}

static int read_phase(ingest_dataset *ds, const char *main_dir, const char *phase, ingest_list *out,
                      wsml_err *err) {
    ingest_strmap map;
    ingest_strmap_init(&map);
    voc_image *imgs = NULL;
    size_t n = 0, cap = 0;
    int rc = 0;
    for (int c = 0; c < VOC_CLASSES && rc == 0; c++) {
        char name[64];
        snprintf(name, sizeof name, "%s_%s.txt", voc_classes[c], phase);
        char *path = ingest_join(main_dir, name);
        if (!path) {
            rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
            break;
        }
        ingest_lines lr;
        rc = ingest_require_file(path, err);
        if (rc == 0)
            rc = ingest_lines_open(&lr, path, err);
        if (rc) {
            free(path);
            break;
        }
        while ((rc = ingest_lines_next(&lr, err)) == 1) {
            char *f[4];
            int nf = ingest_split_ws(lr.line, f, 4);
            if (nf == 0)
                continue;
            // Columns are padded with runs of spaces ("2008_000015  1").
            const char *flag = nf == 2 ? f[1] : NULL;
            if (nf != 2 ||
                !(strcmp(flag, "1") == 0 || strcmp(flag, "0") == 0 || strcmp(flag, "-1") == 0)) {
                rc = wsml_errf(err, WSML_EFORMAT,
                               "%s: line %ld: expected \"<image_id> <flag>\" with flag 1, 0 or -1",
                               path, lr.lineno);
                break;
            }
            if (strcmp(flag, "1") != 0)
                continue;
            char fname[512];
            int len = snprintf(fname, sizeof fname, "%s.jpg", f[0]);
            if (len >= (int)sizeof fname) {
                rc = wsml_errf(err, WSML_EFORMAT, "%s: line %ld: image id too long", path,
                               lr.lineno);
                break;
            }
            int64_t idx = ingest_strmap_get(&map, fname, (size_t)len);
            if (idx < 0) {
                if (n == cap) {
                    cap = cap ? cap * 2 : 1024;
                    voc_image *p = realloc(imgs, cap * sizeof *p);
                    if (!p) {
                        rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
                        break;
                    }
                    imgs = p;
                }
                imgs[n].fname = strdup(fname);
                imgs[n].mask = 0;
                if (!imgs[n].fname || ingest_strmap_put(&map, fname, (size_t)len, (int64_t)n) < 0) {
                    free(imgs[n].fname);
                    rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
                    break;
                }
                idx = (int64_t)n++;
            }
            imgs[idx].mask |= 1u << c;
        }
        ingest_lines_close(&lr);
        free(path);
        INGEST_CHECK_INTERRUPT(err);
    }
    if (rc == 0) {
        qsort(imgs, n, sizeof *imgs, cmp_voc_image);
        for (size_t i = 0; i < n && rc == 0; i++) {
            int8_t full[VOC_CLASSES];
            for (int c = 0; c < VOC_CLASSES; c++)
                full[c] = (imgs[i].mask >> c) & 1;
            rc = ingest_add_item(ds, out, imgs[i].fname, imgs[i].fname, full, NULL, 0, err);
        }
    }
    for (size_t i = 0; i < n; i++)
        free(imgs[i].fname);
    free(imgs);
    ingest_strmap_free(&map);
    return rc;
}

int ingest_read_voc(ingest_dataset *ds, const ingest_opts *o, wsml_err *err) {
    int rc = ingest_set_classes(ds, (char **)voc_classes, VOC_CLASSES, err);
    if (rc)
        return rc;
    char *main_dir = ingest_join(o->root, "ImageSets/Main");
    ds->image_root = ingest_join(o->root, "JPEGImages");
    if (!main_dir || !ds->image_root) {
        free(main_dir);
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    }
    rc = ingest_require_dir(main_dir, "VOC2012 label lists; --root must be VOCdevkit/VOC2012", err);
    if (rc == 0)
        rc = ingest_require_dir(ds->image_root, "the VOC2012 image folder", err);
    if (rc == 0)
        rc = read_phase(ds, main_dir, "train", &ds->official[WSML_SPLIT_TRAIN], err);
    if (rc == 0)
        rc = read_phase(ds, main_dir, "val", &ds->official[WSML_SPLIT_TEST], err);
    free(main_dir);
    return rc;
}
