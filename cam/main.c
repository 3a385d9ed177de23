// wsml-cam: class activation maps of one or more checkpoints over chosen images of a
// store split, as one figure grid like the supplement's Figure 1 (docs/methods.md §5, cam/cam.h).
#include <getopt.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cam/cam.h"
#include "common/cli.h"
#include "common/fileio.h"
#include "common/image.h"
#include "common/log.h"
#include "common/npy.h"
#include "store/store.h"
#include "train/backend.h"
#include "train/loader.h"

#define PROG "wsml-cam"
#define MAX_MODELS 32
#define MAX_IDS 4096

static void usage(FILE *f) {
    fprintf(f,
            "Usage:\n"
            "  " PROG " --store STORE --model CKPT [--model CKPT2 ...] [--name NAME ...]\n"
            "           (--ids ID,ID,... | --count N) --out FIG.png [--split test]\n"
            "           [--each DIR] [--size PX] [--cams FILE.npy] [--backend cpu|cuda]\n"
            "           [--threads N] [--device N] [--quiet]\n"
            "\n"
            "Class activation maps (docs/methods.md): for each chosen image and each of its\n"
            "ground-truth classes (full label 1), the CAM of each model, i.e. the fc weights of\n"
            "the class applied to the last feature map at every position (no bias; the same\n"
            "1x1 convolution for the BoostLU head), upsampled bilinearly to the image\n"
            "(PyTorch's align_corners=False rule), ReLU, divided by its maximum, drawn with\n"
            "matplotlib's jet colour map at 50%% over the image. One figure: a header row with\n"
            "the column names, then one row per (image, class) labelled with the image's id\n"
            "and the class name; columns = the input image, then one per model (name them by\n"
            "method with --name). The same inputs give the same bytes.\n"
            "\n"
            "  --store DIR      a store written by wsml-ingest (images at the network's size)\n"
            "  --split NAME     train, val or test (default test)\n"
            "  --model FILE     a checkpoint (a run's best.safetensors, or any torchvision\n"
            "                   ResNet-18/34/50/101 as safetensors); repeat for more columns\n"
            "  --name NAME      column title of the model at the same position (default: the\n"
            "                   run directory's name for RUN/best.safetensors or\n"
            "                   RUN/last.safetensors, else the file name without extension)\n"
            "  --ids LIST       image ids as the store holds them (wsml-store export --what\n"
            "                   ids), comma-separated; may be repeated\n"
            "  --count N        the first N images of the split, in store order, that have at\n"
            "                   least one positive label\n"
            "  --out FILE       the figure, PNG (written atomically)\n"
            "  --each DIR       also one PNG per (image, class, model) at the image's size:\n"
            "                   DIR/ROW_ID_CLASS_NAME.png (characters other than A-Z a-z 0-9\n"
            "                   . - replaced by _)\n"
            "  --size PX        tile width in the figure (default 224); the height follows the\n"
            "                   store's aspect ratio\n"
            "  --cams FILE      also the normalised CAMs as .npy float32 (rows, models, H, W)\n"
            "  --backend NAME   cpu (default) or cuda; --threads N compute threads of the cpu\n"
            "                   backend (default 0 = the CPUs this process may use)\n"
            "  --device N       the CUDA device, numbered after CUDA_VISIBLE_DEVICES (default:\n"
            "                   the MPI/Slurm local rank modulo the visible devices, else 0;\n"
            "                   ignored on the cpu backend), e.g. --backend cuda --device 1\n"
            "  -q, --quiet      no progress bar or info lines; -h, --help this text\n"
            "  --version        versions of wsml and its libraries\n"
            "\n"
            "Rows: images in the order chosen, each image's classes in class-index order.\n"
            "Images go through the network one at a time, so an image's maps do not depend\n"
            "on the other images chosen. Byte-identical output needs the same backend and\n"
            "--threads (floating-point sums are split differently otherwise).\n"
            "Column titles and class names need a font (Debian: fonts-dejavu-core); without\n"
            "one the figure is drawn without text and a warning says so.\n"
            "\n"
            "Examples:\n"
            "  " PROG " --store data/stores/coco --model runs/an/best.safetensors \\\n"
            "           --model runs/ll-ct/best.safetensors --name 'Naive AN' --name LL-Ct \\\n"
            "           --count 8 --out results/cam.png\n"
            "  " PROG " --store data/stores/voc --model runs/voc-an/best.safetensors \\\n"
            "           --ids 2008_000123,2008_000456 --out cam.png --each cam-tiles/\n"
            "\n"
            "Exit status: 0 ok, 1 runtime error, 2 usage error.\n");
}

typedef struct {
    const char *store, *split, *out, *each, *cams, *backend;
    const char *models[MAX_MODELS];
    const char *names[MAX_MODELS];
    int num_models, num_names;
    char *ids[MAX_IDS]; // pointers into argv (split at the commas)
    int num_ids;
    int count; // 0 when --ids
    int size, threads;
    int device; // --device (-1: the default, wsml_backend_pick_device)
} cam_args;

// One chosen image: its pixels (at the store's size) and its positive classes.
typedef struct {
    uint32_t index;
    char *id;
    uint8_t *pixels; // (H, W, 3)
} chosen_image;

typedef struct {
    int image, cls;
} row_pair;

// Copies a record's image as (H, W, 3) uint8, decoding JPEG payloads.
static int record_pixels(const wsml_record *rec, const wsml_store_meta *meta, const char *split,
                         uint8_t **out, wsml_err *err) {
    size_t bytes = (size_t)meta->height * meta->width * 3;
    *out = NULL;
    if (rec->encoding == WSML_ENC_RAW) {
        if (rec->height != meta->height || rec->width != meta->width || rec->channels != 3 ||
            rec->image_len != bytes)
            return wsml_errf(
                err, WSML_ECORRUPT, "%s record %u: raw image is %dx%dx%d, expected %dx%dx3", split,
                rec->index, rec->height, rec->width, rec->channels, meta->height, meta->width);
        if (!(*out = malloc(bytes)))
            return wsml_errf(err, WSML_ENOMEM, "out of memory for an image");
        memcpy(*out, rec->image, bytes);
        return 0;
    }
    wsml_image img = {0};
    int rc = wsml_image_decode_buffer(rec->image, rec->image_len, &img, err);
    if (rc)
        return wsml_err_prefix(err, "%s record %u", split, rec->index);
    if (img.height != meta->height || img.width != meta->width || img.channels != 3) {
        rc = wsml_errf(err, WSML_ECORRUPT, "%s record %u: JPEG image is %dx%d, expected %dx%d",
                       split, rec->index, img.width, img.height, meta->width, meta->height);
        wsml_image_free(&img);
        return rc;
    }
    *out = img.pixels;
    return 0;
}

// Adds a record as a chosen image and one row per positive class. Returns the number of
// rows added (0: no positive label), or a negative wsml_code.
static int choose(const wsml_record *rec, const wsml_store_meta *meta, const char *split,
                  int8_t *full, chosen_image *images, int *num_images, row_pair **rows,
                  int *num_rows, wsml_err *err) {
    wsml_record_full_labels(rec, meta->num_classes, full);
    int positives = 0;
    for (int c = 0; c < meta->num_classes; c++)
        positives += full[c] == 1;
    if (!positives)
        return 0;
    row_pair *grown = realloc(*rows, sizeof(row_pair) * (size_t)(*num_rows + positives));
    if (!grown)
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    *rows = grown;
    chosen_image *im = &images[*num_images];
    memset(im, 0, sizeof(*im));
    im->index = rec->index;
    im->id = strndup(rec->id, rec->id_len);
    if (!im->id)
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    int rc = record_pixels(rec, meta, split, &im->pixels, err);
    if (rc) {
        free(im->id);
        return rc;
    }
    for (int c = 0; c < meta->num_classes; c++)
        if (full[c] == 1)
            (*rows)[(*num_rows)++] = (row_pair){*num_images, c};
    (*num_images)++;
    return positives;
}

// Picks the images (--ids or --count) and their rows.
static int select_images(wsml_store *store, wsml_split split, const cam_args *a,
                         chosen_image **images_out, int *num_images, row_pair **rows, int *num_rows,
                         wsml_err *err) {
    const wsml_store_meta *meta = wsml_store_meta_get(store);
    const char *split_name = wsml_split_name(split);
    uint32_t n = meta->count[split];
    int want = a->count ? a->count : a->num_ids;
    chosen_image *images = calloc((size_t)want + 1, sizeof(chosen_image));
    int8_t *full = malloc((size_t)meta->num_classes);
    uint32_t *found = NULL;
    wsml_reader *reader = NULL;
    int rc = 0;
    *images_out = images;
    *num_images = 0;
    if (!images || !full) {
        rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
        goto done;
    }
    if (!(reader = wsml_reader_begin(store, err))) {
        rc = err->code ? err->code : WSML_EIO;
        goto done;
    }
    wsml_record rec;
    if (a->count) {
        for (uint32_t i = 0; i < n && *num_images < a->count; i++) {
            if ((rc = wsml_reader_get(reader, split, i, &rec, err)) < 0)
                goto done;
            if ((rc = choose(&rec, meta, split_name, full, images, num_images, rows, num_rows,
                             err)) < 0)
                goto done;
        }
        rc = 0;
        if (*num_images == 0) {
            rc = wsml_errf(err, WSML_ESTATE, "store %s, split %s: no image has a positive label",
                           wsml_store_path(store), split_name);
        } else if (*num_images < a->count) {
            wsml_warn("only %d images of split %s have a positive label (--count %d)", *num_images,
                      split_name, a->count);
        }
        goto done;
    }
    // --ids: one pass over the split finds every id, then the rows follow --ids' order.
    found = malloc(sizeof(uint32_t) * (size_t)a->num_ids);
    if (!found) {
        rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
        goto done;
    }
    for (int k = 0; k < a->num_ids; k++)
        found[k] = UINT32_MAX;
    int left = a->num_ids;
    for (uint32_t i = 0; i < n && left > 0; i++) {
        if ((rc = wsml_reader_get(reader, split, i, &rec, err)) < 0)
            goto done;
        for (int k = 0; k < a->num_ids; k++)
            if (found[k] == UINT32_MAX && strlen(a->ids[k]) == rec.id_len &&
                !memcmp(a->ids[k], rec.id, rec.id_len)) {
                found[k] = i;
                left--;
            }
        wsml_reader_reset(reader);
    }
    rc = 0;
    for (int k = 0; k < a->num_ids; k++)
        if (found[k] == UINT32_MAX) {
            rc =
                wsml_errf(err, WSML_EARG, "--ids %s: no image with this id in split %s of store %s",
                          a->ids[k], split_name, wsml_store_path(store));
            goto done;
        }
    for (int k = 0; k < a->num_ids; k++) {
        if ((rc = wsml_reader_get(reader, split, found[k], &rec, err)) < 0)
            goto done;
        if ((rc = choose(&rec, meta, split_name, full, images, num_images, rows, num_rows, err)) <
            0)
            goto done;
        if (rc == 0)
            wsml_warn("image %s has no positive label in split %s: no row for it", a->ids[k],
                      split_name);
        wsml_reader_reset(reader);
    }
    rc = 0;
    if (*num_rows == 0)
        rc = wsml_errf(err, WSML_ESTATE, "--ids: none of the images has a positive label");
done:
    if (reader)
        wsml_reader_end(reader);
    free(full);
    free(found);
    return rc;
}

// Copies s into buf (cap bytes), cut if longer.
static void copy_text(char *buf, size_t cap, const char *s) {
    size_t n = strlen(s);
    if (n >= cap)
        n = cap - 1;
    memcpy(buf, s, n);
    buf[n] = 0;
}

// Default column title: RUN for RUN/best.safetensors or RUN/last.safetensors, else the
// file name without its extension.
static void default_name(const char *path, char *buf, size_t cap) {
    char tmp[4096];
    copy_text(tmp, sizeof(tmp), path);
    char *slash = strrchr(tmp, '/');
    char *file = slash ? slash + 1 : tmp;
    if (slash && (!strcmp(file, "best.safetensors") || !strcmp(file, "last.safetensors"))) {
        *slash = 0;
        while (slash > tmp && slash[-1] == '/') // "run//best.safetensors"
            *--slash = 0;
        char *dir = strrchr(tmp, '/');
        copy_text(buf, cap, dir ? dir + 1 : tmp);
        if (buf[0])
            return;
    }
    char *dot = strrchr(file, '.');
    if (dot && dot != file)
        *dot = 0;
    copy_text(buf, cap, file);
}

static void free_labels(char **labels, int count) {
    for (int i = 0; labels && i < count; i++)
        free(labels[i]);
    free(labels);
}

static void sanitise(const char *in, char *out, size_t cap) {
    size_t i = 0;
    for (; in[i] && i + 1 < cap; i++) {
        char ch = in[i];
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
                 ch == '.' || ch == '-';
        out[i] = ok ? ch : '_';
    }
    out[i] = 0;
}

// Resizes a (H, W, 3) image to the tile and copies it into dst (tile_h, tile_w, 3).
static int to_tile(const uint8_t *pixels, int H, int W, int tile_h, int tile_w, uint8_t *dst,
                   wsml_err *err) {
    wsml_image in = {.height = H, .width = W, .channels = 3, .pixels = (uint8_t *)pixels}, out;
    int rc = wsml_image_resize(&in, tile_h, tile_w, &out, err);
    if (rc)
        return rc;
    memcpy(dst, out.pixels, (size_t)tile_h * tile_w * 3);
    wsml_image_free(&out);
    return 0;
}

static int run(const cam_args *a) {
    wsml_err err = {0};
    wsml_store *store = NULL;
    wsml_backend *be = NULL;
    chosen_image *images = NULL;
    row_pair *rows = NULL;
    float *inputs = NULL, *cams[MAX_MODELS] = {0}, *map = NULL, *all_maps = NULL;
    uint8_t *tiles = NULL, *overlay = NULL;
    wsml_image figure = {0};
    wsml_progress *progress = NULL;
    char names[MAX_MODELS][256];
    int num_images = 0, num_rows = 0, status = 1;
    int split = wsml_split_parse(a->split);
    if (split < 0)
        return wsml_usage_error("--split must be train, val or test, not '%s'", a->split);

    if (!(store = wsml_store_open(a->store, 1, &err)))
        goto done;
    const wsml_store_meta *meta = wsml_store_meta_get(store);
    const int H = meta->height, W = meta->width, C = meta->num_classes, M = a->num_models;
    if (meta->channels != 3) {
        wsml_errf(&err, WSML_EFORMAT, "store %s has %d channels (expected 3)", a->store,
                  meta->channels);
        goto done;
    }
    // every checkpoint must read and fit the store before the first forward
    for (int m = 0; m < M; m++) {
        if (wsml_cam_check_model(a->models[m], C, &err))
            goto done;
        if (m < a->num_names)
            copy_text(names[m], sizeof(names[m]), a->names[m]);
        else
            default_name(a->models[m], names[m], sizeof(names[m]));
    }
    if (select_images(store, (wsml_split)split, a, &images, &num_images, &rows, &num_rows, &err))
        goto done;

    // the network's input: the training loader's normalisation, no flip (docs/methods.md §3)
    wsml_loader_config lcfg;
    wsml_loader_config_default(&lcfg);
    const size_t image_floats = (size_t)H * W * 3;
    inputs = malloc(sizeof(float) * image_floats * num_images);
    int *pairs = malloc(sizeof(int) * 2 * (size_t)num_rows);
    if (!inputs || !pairs) {
        free(pairs);
        wsml_errf(&err, WSML_ENOMEM, "out of memory for %d images", num_images);
        goto done;
    }
    for (int i = 0; i < num_images; i++)
        wsml_normalise_image(images[i].pixels, H, W, 0, lcfg.mean, lcfg.std, 1,
                             inputs + i * image_floats);
    for (int r = 0; r < num_rows; r++)
        pairs[2 * r] = rows[r].image, pairs[2 * r + 1] = rows[r].cls;

    wsml_backend_options bopt = {.num_threads = a->threads, .device = a->device};
    if (wsml_backend_create(a->backend, &bopt, &be, &err)) {
        free(pairs);
        goto done;
    }
    wsml_info("%d images, %d rows (image, class), %d models", num_images, num_rows, M);
    progress = wsml_progress_start("cam", (uint64_t)M, "model");
    int h = 0, w = 0;
    for (int m = 0; m < M; m++) {
        int mh, mw;
        if (wsml_cam_run_model(a->models[m], C, be, inputs, num_images, H, W, 1, pairs, num_rows,
                               &cams[m], &mh, &mw, &err)) {
            free(pairs);
            goto done;
        }
        if (m == 0)
            h = mh, w = mw;
        wsml_progress_add(progress, 1);
    }
    wsml_progress_end(progress);
    progress = NULL;
    free(pairs);

    // tiles, overlays and the --each files
    const int tile_w = a->size, tile_h = (int)lround((double)a->size * H / W) < 1
                                             ? 1
                                             : (int)lround((double)a->size * H / W);
    const int cols = M + 1;
    const size_t tile_bytes = (size_t)tile_h * tile_w * 3;
    tiles = malloc(tile_bytes * cols * num_rows);
    map = malloc(sizeof(float) * H * W);
    overlay = malloc(image_floats);
    if (a->cams)
        all_maps = malloc(sizeof(float) * (size_t)H * W * M * num_rows);
    if (!tiles || !map || !overlay || (a->cams && !all_maps)) {
        wsml_errf(&err, WSML_ENOMEM, "out of memory for %d rows of %d tiles", num_rows, cols);
        goto done;
    }
    if (a->each && wsml_mkdirs(a->each, &err))
        goto done;
    // Row labels: the image's id, then the class (two lines).
    char **row_labels = calloc((size_t)num_rows + 1, sizeof(char *));
    for (int r = 0; row_labels && r < num_rows; r++) {
        const char *cls = meta->class_names[rows[r].cls];
        char id[512];
        wsml_cam_image_label(images[rows[r].image].id, id, sizeof id);
        size_t len = strlen(id) + strlen(cls) + 2;
        if (!(row_labels[r] = malloc(len))) {
            free_labels(row_labels, r);
            row_labels = NULL;
            break;
        }
        snprintf(row_labels[r], len, "%s\n%s", id, cls);
    }
    if (!row_labels) {
        wsml_errf(&err, WSML_ENOMEM, "out of memory");
        goto done;
    }
    int row_digits = snprintf(NULL, 0, "%d", num_rows - 1);
    if (row_digits < 3)
        row_digits = 3;
    for (int r = 0; r < num_rows; r++) {
        const chosen_image *im = &images[rows[r].image];
        uint8_t *row_tiles = tiles + tile_bytes * cols * r;
        if (to_tile(im->pixels, H, W, tile_h, tile_w, row_tiles, &err))
            break;
        for (int m = 0; m < M; m++) {
            // cams[m]: (rows, h, w) -> map: (H, W)
            if (wsml_cam_upsample(cams[m] + (size_t)r * h * w, h, w, map, H, W)) {
                wsml_errf(&err, WSML_ENOMEM, "out of memory");
                break;
            }
            wsml_cam_normalise(map, (size_t)H * W);
            if (all_maps)
                memcpy(all_maps + ((size_t)r * M + m) * H * W, map, sizeof(float) * H * W);
            wsml_cam_overlay(im->pixels, map, H, W, overlay);
            if (a->each) {
                char id[128], cls[128], name[128], path[4600];
                sanitise(im->id, id, sizeof(id));
                sanitise(meta->class_names[rows[r].cls], cls, sizeof(cls));
                sanitise(names[m], name, sizeof(name));
                snprintf(path, sizeof(path), "%s/%0*d_%s_%s_%s.png", a->each, row_digits, r, id,
                         cls, name);
                wsml_image o = {.height = H, .width = W, .channels = 3, .pixels = overlay};
                if (wsml_image_write_png(path, &o, &err))
                    break;
            }
            if (to_tile(overlay, H, W, tile_h, tile_w, row_tiles + tile_bytes * (m + 1), &err))
                break;
        }
        if (err.code)
            break;
    }
    if (err.code) {
        free_labels(row_labels, num_rows);
        goto done;
    }
    const char *titles[MAX_MODELS + 1];
    titles[0] = "image";
    for (int m = 0; m < M; m++)
        titles[m + 1] = names[m];
    int text_ok = 1;
    int rc = wsml_cam_figure(tiles, num_rows, cols, tile_h, tile_w, titles,
                             (const char *const *)row_labels, &figure, &text_ok, &err);
    free_labels(row_labels, num_rows);
    if (rc)
        goto done;
    if (!text_ok) {
        wsml_warn("the figure has no titles or class names: %s (install a font, e.g. Debian's "
                  "fonts-dejavu-core)",
                  err.msg);
        wsml_err_clear(&err);
    }
    if (wsml_image_write_png(a->out, &figure, &err))
        goto done;
    if (a->cams) {
        int64_t shape[4] = {num_rows, M, H, W};
        if (wsml_npy_write(a->cams, WSML_DT_F32, 4, 4, shape, all_maps, &err))
            goto done;
    }
    wsml_info("wrote %s: %d rows x %d columns, %dx%d pixels%s%s", a->out, num_rows, cols,
              figure.width, figure.height, a->each ? "; overlays in " : "", a->each ? a->each : "");
    status = 0;
done:
    wsml_progress_end(progress);
    if (status && err.code)
        wsml_err_print(PROG, &err);
    for (int i = 0; i < num_images; i++) {
        free(images[i].id);
        free(images[i].pixels);
    }
    free(images);
    free(rows);
    free(inputs);
    for (int m = 0; m < MAX_MODELS; m++)
        free(cams[m]);
    free(map);
    free(all_maps);
    free(tiles);
    free(overlay);
    wsml_image_free(&figure);
    wsml_backend_destroy(be);
    if (store)
        wsml_store_close(store);
    return status;
}

int main(int argc, char **argv) {
    wsml_set_prog(PROG);
    opterr = 0; // one error line of our own instead of getopt's
    static const struct option options[] = {{"store", required_argument, 0, 'S'},
                                            {"split", required_argument, 0, 'P'},
                                            {"model", required_argument, 0, 'M'},
                                            {"name", required_argument, 0, 'n'},
                                            {"ids", required_argument, 0, 'i'},
                                            {"count", required_argument, 0, 'c'},
                                            {"out", required_argument, 0, 'o'},
                                            {"each", required_argument, 0, 'e'},
                                            {"size", required_argument, 0, 's'},
                                            {"cams", required_argument, 0, 'C'},
                                            {"backend", required_argument, 0, 'B'},
                                            {"threads", required_argument, 0, 't'},
                                            {"quiet", no_argument, 0, 'q'},
                                            {"help", no_argument, 0, 'h'},
                                            {"version", no_argument, 0, 'V'},
                                            {"device", required_argument, 0, 'D'},
                                            {0, 0, 0, 0}};
    cam_args a = {.split = "test", .backend = "cpu", .size = 224, .device = -1};
    wsml_err err;
    int opt, status;
    while ((opt = getopt_long(argc, argv, "qh", options, NULL)) != -1) {
        switch (opt) {
        case 'S':
            a.store = optarg;
            break;
        case 'P':
            a.split = optarg;
            break;
        case 'M':
            if (a.num_models == MAX_MODELS)
                return wsml_usage_error("at most %d --model options", MAX_MODELS);
            a.models[a.num_models++] = optarg;
            break;
        case 'n':
            if (a.num_names == MAX_MODELS)
                return wsml_usage_error("at most %d --name options", MAX_MODELS);
            a.names[a.num_names++] = optarg;
            break;
        case 'i': {
            size_t len = strlen(optarg);
            if (!len || optarg[0] == ',' || optarg[len - 1] == ',' || strstr(optarg, ",,"))
                return wsml_usage_error("--ids '%s': an empty id (ids are comma-separated)",
                                        optarg);
            // split in place: argv's strings are the program's to modify
            for (char *p = optarg;;) {
                char *comma = strchr(p, ',');
                if (comma)
                    *comma = 0;
                if (a.num_ids == MAX_IDS)
                    return wsml_usage_error("at most %d ids", MAX_IDS);
                a.ids[a.num_ids++] = p;
                if (!comma)
                    break;
                p = comma + 1;
            }
            break;
        }
        case 'c':
            if (wsml_parse_int(optarg, 1, 100000, &a.count))
                return wsml_usage_error("--count expects an integer in 1..100000, not '%s'",
                                        optarg);
            break;
        case 'o':
            a.out = optarg;
            break;
        case 'e':
            a.each = optarg;
            break;
        case 's':
            if (wsml_parse_int(optarg, 16, 4096, &a.size))
                return wsml_usage_error("--size expects pixels in 16..4096, not '%s'", optarg);
            break;
        case 'C':
            a.cams = optarg;
            break;
        case 'B':
            if (wsml_backend_parse(optarg) < 0)
                return wsml_usage_error("--backend must be one of %s, not '%s'",
                                        wsml_backend_names(), optarg);
            a.backend = optarg;
            break;
        case 't':
            if (wsml_parse_int(optarg, 0, 1024, &a.threads))
                return wsml_usage_error("--threads expects an integer in 0..1024, not '%s'",
                                        optarg);
            break;
        case 'D':
            if (wsml_parse_int(optarg, 0, 4095, &a.device))
                return wsml_usage_error("--device expects an integer in 0..4095, not '%s'", optarg);
            break;
        default: {
            int exit_status = wsml_shared_option(opt, usage, "", argv[optind - 1]);
            if (exit_status >= 0)
                return exit_status;
        }
        }
    }
    if (optind < argc)
        status = wsml_usage_error("unexpected argument '%s'", argv[optind]);
    else if (!a.store)
        status = wsml_usage_error("%s", "--store is required");
    else if (a.num_models == 0)
        status = wsml_usage_error("%s", "at least one --model is required");
    else if (!a.out)
        status = wsml_usage_error("%s", "--out FIG.png is required");
    else if (!a.count == !a.num_ids)
        status = wsml_usage_error("%s", "give either --ids or --count");
    else if (a.num_names && a.num_names != a.num_models)
        status = wsml_usage_error("%s", "give one --name per --model, or none");
    else if (wsml_backend_pick_device(a.backend, a.device, &a.device, &err) < 0)
        status = wsml_usage_error("%s", err.msg);
    else
        status = run(&a);
    return status;
}
