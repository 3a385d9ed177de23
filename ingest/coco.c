// MS COCO 2014 (docs/datasets.md; reference: preproc/format_coco.py of Cole et al.).
// annotations/instances_{train,val}2014.json, streamed (coco_json.c). Class index =
// position in "categories" (ids 1..90 with gaps; both files must agree). A split's
// images = the image ids with at least one annotation, sorted as decimal strings (the
// reference's "backwards compatibility" order); record id and path
// "<split>2014/<file_name>" (= "<split>2014/COCO_<split>2014_<id:012>.jpg" in the
// release; derived that way when images[] does not list the id).
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/ingest.h"

typedef struct {
    int64_t id;
    char *name;
} coco_cat;

typedef struct {
    int64_t id;
    uint64_t name; // offset in names arena
} coco_img;

typedef struct {
    int64_t image_id, category_id;
} coco_ann;

typedef struct {
    coco_cat *cats;
    size_t n_cats, cap_cats;
    coco_img *imgs;
    size_t n_imgs, cap_imgs;
    char *names;
    size_t names_len, names_cap;
    coco_ann *anns;
    size_t n_anns, cap_anns;
} coco_file;

static void coco_file_free(coco_file *f) {
    for (size_t i = 0; i < f->n_cats; i++)
        free(f->cats[i].name);
    free(f->cats);
    free(f->imgs);
    free(f->names);
    free(f->anns);
    memset(f, 0, sizeof *f);
}

static int grow(void **p, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap * 2 : 1024;
    while (c < need)
        c *= 2;
    void *q = realloc(*p, c * sz);
    if (!q)
        return -1;
    *p = q;
    *cap = c;
    return 0;
}

static int on_category(void *ctx, int64_t id, const char *name, wsml_err *err) {
    coco_file *f = ctx;
    if (grow((void **)&f->cats, &f->cap_cats, f->n_cats + 1, sizeof(coco_cat)))
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    for (size_t i = 0; i < f->n_cats; i++)
        if (f->cats[i].id == id)
            return wsml_errf(err, WSML_EFORMAT, "category id %" PRId64 " listed twice", id);
    f->cats[f->n_cats].id = id;
    f->cats[f->n_cats].name = strdup(name);
    if (!f->cats[f->n_cats].name)
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    f->n_cats++;
    return 0;
}

static int on_image(void *ctx, int64_t id, const char *file_name, wsml_err *err) {
    coco_file *f = ctx;
    if (!file_name)
        return 0;
    size_t len = strlen(file_name);
    if (grow((void **)&f->imgs, &f->cap_imgs, f->n_imgs + 1, sizeof(coco_img)) ||
        grow((void **)&f->names, &f->names_cap, f->names_len + len + 1, 1))
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    memcpy(f->names + f->names_len, file_name, len + 1);
    f->imgs[f->n_imgs].id = id;
    f->imgs[f->n_imgs].name = f->names_len;
    f->names_len += len + 1;
    f->n_imgs++;
    return 0;
}

static int on_annotation(void *ctx, int64_t image_id, int64_t category_id, wsml_err *err) {
    coco_file *f = ctx;
    if (grow((void **)&f->anns, &f->cap_anns, f->n_anns + 1, sizeof(coco_ann)))
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    f->anns[f->n_anns].image_id = image_id;
    f->anns[f->n_anns].category_id = category_id;
    f->n_anns++;
    return 0;
}

static int cmp_i64(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static int cmp_img(const void *a, const void *b) {
    return cmp_i64(&((const coco_img *)a)->id, &((const coco_img *)b)->id);
}

typedef struct {
    char key[24]; // the id as a decimal string
    int64_t id;
} id_str;

static int cmp_id_str(const void *a, const void *b) {
    return strcmp(((const id_str *)a)->key, ((const id_str *)b)->key);
}

static int build_split(ingest_dataset *ds, const coco_file *f, const char *split,
                       const char *json_path, ingest_list *out, wsml_err *err) {
    int C = ds->num_classes;
    // unique image ids with an annotation, numerically sorted (for lookups)
    int64_t *ids = malloc(sizeof(int64_t) * (f->n_anns ? f->n_anns : 1));
    if (!ids)
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    for (size_t i = 0; i < f->n_anns; i++)
        ids[i] = f->anns[i].image_id;
    qsort(ids, f->n_anns, sizeof(int64_t), cmp_i64);
    size_t n = 0;
    for (size_t i = 0; i < f->n_anns; i++)
        if (i == 0 || ids[i] != ids[n - 1])
            ids[n++] = ids[i];
    // decimal-string order (format_coco.py: sorted(np.unique([str(image_id) ...])))
    id_str *order = malloc(sizeof(id_str) * (n ? n : 1));
    uint32_t *rank = malloc(sizeof(uint32_t) * (n ? n : 1)); // numeric position -> row
    int8_t *labels = calloc(n ? n : 1, (size_t)C);
    int rc = 0;
    if (!order || !rank || !labels) {
        rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        snprintf(order[i].key, sizeof order[i].key, "%" PRId64, ids[i]);
        order[i].id = ids[i];
    }
    qsort(order, n, sizeof *order, cmp_id_str);
    for (size_t row = 0; row < n; row++) {
        int64_t *p = bsearch(&order[row].id, ids, n, sizeof(int64_t), cmp_i64);
        rank[p - ids] = (uint32_t)row;
    }
    for (size_t i = 0; i < f->n_anns; i++) {
        const coco_ann *a = &f->anns[i];
        int c = -1;
        for (size_t k = 0; k < f->n_cats; k++)
            if (f->cats[k].id == a->category_id) {
                c = (int)k;
                break;
            }
        if (c < 0) {
            rc = wsml_errf(err, WSML_EFORMAT,
                           "%s: annotations[%zu]: category_id %" PRId64 " is not in categories",
                           json_path, i, a->category_id);
            goto done;
        }
        int64_t *p = bsearch(&a->image_id, ids, n, sizeof(int64_t), cmp_i64);
        labels[(size_t)rank[p - ids] * C + c] = 1;
    }
    // images[] sorted by id to find file names
    coco_img *imgs = f->imgs; // NULL when the file lists no images (UBSan, fuzzing)
    if (f->n_imgs)
        qsort(imgs, f->n_imgs, sizeof *imgs, cmp_img);
    for (size_t row = 0; row < n && rc == 0; row++) {
        char rel[1024];
        coco_img key = {.id = order[row].id};
        coco_img *im = f->n_imgs ? bsearch(&key, imgs, f->n_imgs, sizeof *imgs, cmp_img) : NULL;
        int len;
        if (im)
            len = snprintf(rel, sizeof rel, "%s2014/%s", split, f->names + im->name);
        else
            len = snprintf(rel, sizeof rel, "%s2014/COCO_%s2014_%012" PRId64 ".jpg", split, split,
                           order[row].id);
        if (len >= (int)sizeof rel) {
            rc = wsml_errf(err, WSML_EFORMAT, "%s: image %" PRId64 ": file_name too long",
                           json_path, order[row].id);
            break;
        }
        rc = ingest_add_item(ds, out, rel, rel, labels + row * (size_t)C, NULL, 0, err);
    }
done:
    free(ids);
    free(order);
    free(rank);
    free(labels);
    return rc;
}

int ingest_read_coco(ingest_dataset *ds, const ingest_opts *o, wsml_err *err) {
    static const char *const splits[2] = {"train", "val"};
    coco_file files[2];
    memset(files, 0, sizeof files);
    char *paths[2] = {0}, *dirs[2] = {0};
    int rc = 0;
    ds->image_root = strdup(o->root);
    if (!ds->image_root)
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    for (int s = 0; s < 2 && rc == 0; s++) {
        char rel[64];
        snprintf(rel, sizeof rel, "annotations/instances_%s2014.json", splits[s]);
        paths[s] = ingest_join(o->root, rel);
        snprintf(rel, sizeof rel, "%s2014", splits[s]);
        dirs[s] = ingest_join(o->root, rel);
        if (!paths[s] || !dirs[s])
            rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
    }
    // Every expected path is checked before the long parse starts.
    for (int s = 0; s < 2 && rc == 0; s++)
        rc = ingest_require_file(paths[s], err);
    for (int s = 0; s < 2 && rc == 0; s++)
        rc = ingest_require_dir(dirs[s], "COCO image folder", err);
    for (int s = 0; s < 2 && rc == 0; s++) {
        coco_json_handlers h = {.ctx = &files[s],
                                .category = on_category,
                                .image = on_image,
                                .annotation = on_annotation};
        rc = coco_json_parse_file(paths[s], &h, err);
    }
    if (rc == 0 && files[0].n_cats == 0)
        rc = wsml_errf(err, WSML_EFORMAT, "%s: no categories", paths[0]);
    if (rc == 0) {
        int same = files[0].n_cats == files[1].n_cats;
        for (size_t k = 0; same && k < files[0].n_cats; k++)
            same = files[0].cats[k].id == files[1].cats[k].id &&
                   !strcmp(files[0].cats[k].name, files[1].cats[k].name);
        if (!same)
            rc = wsml_errf(err, WSML_EFORMAT, "%s and %s list different categories", paths[0],
                           paths[1]);
    }
    if (rc == 0) {
        char **names = malloc(sizeof(char *) * files[0].n_cats);
        if (!names)
            rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
        else {
            for (size_t k = 0; k < files[0].n_cats; k++)
                names[k] = files[0].cats[k].name;
            rc = ingest_set_classes(ds, names, (int)files[0].n_cats, err);
            free(names);
        }
    }
    if (rc == 0)
        rc = build_split(ds, &files[0], "train", paths[0], &ds->official[WSML_SPLIT_TRAIN], err);
    if (rc == 0)
        rc = build_split(ds, &files[1], "val", paths[1], &ds->official[WSML_SPLIT_TEST], err);
    for (int s = 0; s < 2; s++) {
        coco_file_free(&files[s]);
        free(paths[s]);
        free(dirs[s]);
    }
    return rc;
}
