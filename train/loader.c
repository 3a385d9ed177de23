// The data loader (train/loader.h): a pool of worker threads that fills one batch
// buffer while the caller uses the other.
//
// One job at a time: "fill batch b into buffer k". Workers take the batch's rows one
// by one from a shared counter; a row's output position is fixed by its index, so
// which worker does which row (thread timing) never changes the result. Each worker
// owns a wsml_reader (LMDB read snapshot) and releases it when the job runs dry.
#include "train/loader.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/image.h"
#include "common/rng.h"

typedef struct {
    wsml_loader *loader;
    int id;
    wsml_reader *reader;
    pthread_t thread;
    int started;
} loader_worker;

struct wsml_loader {
    wsml_loader_config cfg;
    wsml_store *store;
    int64_t num_images;
    int64_t num_batches;
    int num_classes;
    int height, width;
    size_t image_floats; // 3·H·W
    float lut[3][256];   // normalised value of each byte per channel

    int64_t *order; // (N) epoch order
    uint8_t *flips; // (N) per epoch position
    int epoch;

    wsml_batch buf[2];

    loader_worker *workers;
    pthread_mutex_t mu;
    pthread_cond_t work_cv; // a job was posted, or quit
    pthread_cond_t done_cv; // the job finished
    int quit;
    // the job in flight
    int job_active;    // 1 while rows remain or are being processed
    int job_buf;       // buffer being filled
    int64_t job_batch; // batch being filled
    int job_rows;      // rows in that batch
    int64_t job_first; // the epoch position of its row 0
    int job_next_row;  // next row to hand out
    int job_done_rows; // rows finished
    int job_failed;    // a row failed: job_err holds the first error
    wsml_err job_err;
    // what the caller sees
    int64_t next_batch; // next batch wsml_loader_next returns
    int pending;        // a job for next_batch was posted into job_buf
};

void wsml_loader_config_default(wsml_loader_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->split = WSML_SPLIT_TRAIN;
    cfg->batch_size = 16;
    cfg->num_workers = 2;
    cfg->shuffle = 1;
    cfg->flip = 1;
    cfg->seed = 0;
    cfg->height = 224;
    cfg->width = 224;
    // ImageNet statistics, as torchvision's Normalize in the reference (docs/methods.md §3).
    cfg->mean[0] = 0.485f, cfg->mean[1] = 0.456f, cfg->mean[2] = 0.406f;
    cfg->std[0] = 0.229f, cfg->std[1] = 0.224f, cfg->std[2] = 0.225f;
}

// ---- buffers on a backend ----------------------------------------------------------------

static void *pinned_alloc(size_t bytes, void *ctx) {
    wsml_backend *be = ctx;
    return be->host_alloc(be, bytes);
}

static void pinned_free(void *p, void *ctx) {
    wsml_backend *be = ctx;
    be->host_free(be, p);
}

static int stage_batch(const float *images, size_t bytes, void *ctx, wsml_err *err) {
    wsml_backend *be = ctx;
    return be->stage_input(be, images, bytes, err);
}

void wsml_loader_use_backend(wsml_loader_config *cfg, wsml_backend *be) {
    if (be->host_alloc && be->host_free) {
        cfg->alloc = pinned_alloc;
        cfg->free = pinned_free;
        cfg->alloc_ctx = be;
    }
    if (be->stage_input) {
        cfg->on_filled = stage_batch;
        cfg->filled_ctx = be;
    }
}

uint32_t wsml_loader_epoch_seed(uint32_t seed, int epoch) {
    // splitmix64 (Steele et al.), one round.
    uint64_t z = ((uint64_t)seed << 32 | (uint32_t)epoch) + 0x9e3779b97f4a7c15ULL;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    z = z ^ (z >> 31);
    return (uint32_t)z;
}

// hwc: (H, W, 3) uint8 -> out: (3, H, W) float32, or (H, W, 3) when nhwc
static void normalise_lut(const uint8_t *hwc, int height, int width, int flip,
                          const float lut[3][256], int nhwc, float *out) {
    if (nhwc) {
        for (int y = 0; y < height; y++) {
            const uint8_t *row = hwc + (size_t)y * width * 3;
            float *o = out + (size_t)y * width * 3;
            for (int x = 0; x < width; x++, o += 3) {
                const uint8_t *px = row + (size_t)(flip ? width - 1 - x : x) * 3;
                o[0] = lut[0][px[0]];
                o[1] = lut[1][px[1]];
                o[2] = lut[2][px[2]];
            }
        }
        return;
    }
    size_t plane = (size_t)height * width;
    for (int y = 0; y < height; y++) {
        const uint8_t *row = hwc + (size_t)y * width * 3;
        float *o0 = out + (size_t)y * width, *o1 = o0 + plane, *o2 = o1 + plane;
        for (int x = 0; x < width; x++) {
            const uint8_t *px = row + (size_t)(flip ? width - 1 - x : x) * 3;
            o0[x] = lut[0][px[0]];
            o1[x] = lut[1][px[1]];
            o2[x] = lut[2][px[2]];
        }
    }
}

static void build_lut(const float mean[3], const float std[3], float lut[3][256]) {
    // ToTensor: u8 -> float32 / 255; Normalize: (x - mean) / std, each in float32.
    for (int c = 0; c < 3; c++)
        for (int v = 0; v < 256; v++) {
            float x = (float)v / 255.0f;
            lut[c][v] = (x - mean[c]) / std[c];
        }
}

void wsml_normalise_image(const uint8_t *hwc, int height, int width, int flip, const float mean[3],
                          const float std[3], int nhwc, float *out) {
    float lut[3][256];
    build_lut(mean, std, lut);
    normalise_lut(hwc, height, width, flip, (const float(*)[256])lut, nhwc, out);
}

// Fills row `row` of the batch whose row 0 is epoch position `first` into buffer b. Runs in a
// worker, without the lock.
static int fill_row(wsml_loader *l, loader_worker *w, int b, int64_t first, int row,
                    wsml_err *err) {
    wsml_batch *out = &l->buf[b];
    int64_t pos = first + row;
    int64_t index = l->order[pos];
    int flip = l->flips[pos];
    const char *split = wsml_split_name(l->cfg.split);
    wsml_record rec;
    int rc = wsml_reader_get(w->reader, l->cfg.split, (uint32_t)index, &rec, err);
    if (rc < 0)
        return rc;
    out->index[row] = index;
    out->flipped[row] = (uint8_t)flip;
    wsml_record_observed_labels(&rec, l->num_classes, out->observed + (size_t)row * l->num_classes);
    wsml_record_full_labels(&rec, l->num_classes, out->full + (size_t)row * l->num_classes);
    float *dst = out->images + (size_t)row * l->image_floats;
    if (rec.encoding == WSML_ENC_RAW) {
        if (rec.height != l->height || rec.width != l->width || rec.channels != 3 ||
            rec.image_len != (uint32_t)l->image_floats)
            return wsml_errf(err, WSML_ECORRUPT,
                             "%s record %lld: raw image is %dx%dx%d (%u bytes), expected %dx%dx3",
                             split, (long long)index, rec.height, rec.width, rec.channels,
                             rec.image_len, l->height, l->width);
        normalise_lut(rec.image, l->height, l->width, flip, (const float(*)[256])l->lut,
                      l->cfg.nhwc, dst);
        return 0;
    }
    wsml_image img = {0};
    rc = wsml_image_decode_jpeg(rec.image, rec.image_len, &img, err);
    if (rc < 0)
        return wsml_err_prefix(err, "%s record %lld", split, (long long)index);
    if (img.height != l->height || img.width != l->width || img.channels != 3) {
        rc = wsml_errf(err, WSML_ECORRUPT,
                       "%s record %lld: JPEG image is %dx%dx%d, expected %dx%dx3", split,
                       (long long)index, img.height, img.width, img.channels, l->height, l->width);
        wsml_image_free(&img);
        return rc;
    }
    normalise_lut(img.pixels, l->height, l->width, flip, (const float(*)[256])l->lut, l->cfg.nhwc,
                  dst);
    wsml_image_free(&img);
    return 0;
}

static void *worker_main(void *arg) {
    loader_worker *w = arg;
    wsml_loader *l = w->loader;
    pthread_mutex_lock(&l->mu);
    for (;;) {
        if (l->quit)
            break;
        if (l->job_active && l->job_next_row < l->job_rows && !l->job_failed) {
            int row = l->job_next_row++;
            int b = l->job_buf;
            int64_t first = l->job_first;
            pthread_mutex_unlock(&l->mu);
            wsml_err err;
            wsml_err_clear(&err);
            int rc = fill_row(l, w, b, first, row, &err);
            pthread_mutex_lock(&l->mu);
            if (rc < 0 && !l->job_failed) {
                l->job_failed = 1;
                l->job_err = err;
            }
            l->job_done_rows++;
            if (l->job_done_rows == l->job_rows && !l->job_failed && l->cfg.on_filled) {
                wsml_batch *x = &l->buf[b];
                wsml_err_clear(&err);
                if (l->cfg.on_filled(x->images, (size_t)x->size * l->image_floats * sizeof(float),
                                     l->cfg.filled_ctx, &err) < 0) {
                    l->job_failed = 1;
                    l->job_err = err;
                }
            }
            // A failed job stops handing out rows; it is done when the rows handed out
            // so far have come back.
            if (l->job_done_rows == (l->job_failed ? l->job_next_row : l->job_rows)) {
                l->job_active = 0;
                pthread_cond_broadcast(&l->done_cv);
            }
            continue;
        }
        // Nothing to do: release the read snapshot so LMDB pages can be reused.
        pthread_mutex_unlock(&l->mu);
        wsml_reader_reset(w->reader);
        pthread_mutex_lock(&l->mu);
        if (l->quit)
            break;
        if (l->job_active && l->job_next_row < l->job_rows && !l->job_failed)
            continue;
        pthread_cond_wait(&l->work_cv, &l->mu);
    }
    pthread_mutex_unlock(&l->mu);
    return NULL;
}

// Waits until no job is in flight. Caller holds the lock.
static void wait_idle_locked(wsml_loader *l) {
    while (l->job_active)
        pthread_cond_wait(&l->done_cv, &l->mu);
}

// Posts "fill batch into buffer b". Caller holds the lock and has waited idle.
// Global batch `batch`'s positions, all processes together, and this process's share of
// them (loader.h): *first (epoch position) and *rows, *global the global batch's size.
static void batch_share(const wsml_loader *l, int64_t batch, int64_t *first, int64_t *rows,
                        int64_t *global) {
    const int64_t W = l->cfg.world > 1 ? l->cfg.world : 1, R = W > 1 ? l->cfg.rank : 0;
    const int64_t G = W * l->cfg.batch_size, start = batch * G;
    int64_t n = l->num_images - start;
    if (n > G)
        n = G;
    *global = n;
    *first = start + n * R / W;
    *rows = start + n * (R + 1) / W - *first;
}

static void post_job_locked(wsml_loader *l, int b, int64_t batch) {
    int64_t first, rows, global;
    batch_share(l, batch, &first, &rows, &global);
    l->job_buf = b;
    l->job_batch = batch;
    l->job_rows = (int)rows;
    l->job_next_row = 0;
    l->job_done_rows = 0;
    l->job_failed = 0;
    wsml_err_clear(&l->job_err);
    l->job_active = 1;
    l->buf[b].size = (int)rows;
    l->buf[b].global_size = (int)global;
    l->job_first = first;
    l->buf[b].batch_index = batch;
    l->buf[b].first_pos = first;
    if (l->cfg.on_filled) {
        wsml_err ignored; // forgetting cannot fail
        l->cfg.on_filled(l->buf[b].images, 0, l->cfg.filled_ctx, &ignored);
    }
    pthread_cond_broadcast(&l->work_cv);
}

static void free_buffers(wsml_loader *l) {
    for (int b = 0; b < 2; b++) {
        wsml_batch *x = &l->buf[b];
        if (x->images) {
            if (l->cfg.free)
                l->cfg.free(x->images, l->cfg.alloc_ctx);
            else
                free(x->images);
        }
        free(x->index);
        free(x->flipped);
        free(x->observed);
        free(x->full);
        memset(x, 0, sizeof *x);
    }
}

wsml_loader *wsml_loader_open(wsml_store *store, const wsml_loader_config *cfg, wsml_err *err) {
    if (cfg->batch_size < 1) {
        wsml_errf(err, WSML_EARG, "--batch %d: must be at least 1", cfg->batch_size);
        return NULL;
    }
    if (cfg->num_workers < 1 || cfg->num_workers > 256) {
        wsml_errf(err, WSML_EARG, "--workers %d: must be in 1..256", cfg->num_workers);
        return NULL;
    }
    if (cfg->split < 0 || cfg->split >= WSML_NUM_SPLITS) {
        wsml_errf(err, WSML_EARG, "loader: bad split %d", (int)cfg->split);
        return NULL;
    }
    for (int c = 0; c < 3; c++)
        if (!(cfg->std[c] > 0)) {
            wsml_errf(err, WSML_EARG, "loader: std[%d] = %g must be positive", c, cfg->std[c]);
            return NULL;
        }
    const wsml_store_meta *meta = wsml_store_meta_get(store);
    if (meta->channels != 3 || meta->height != cfg->height || meta->width != cfg->width) {
        wsml_errf(err, WSML_ESTATE, "store '%s' holds %dx%dx%d images, the network expects %dx%dx3",
                  meta->name, meta->height, meta->width, meta->channels, cfg->height, cfg->width);
        return NULL;
    }
    wsml_loader *l = calloc(1, sizeof *l);
    if (!l) {
        wsml_errf(err, WSML_ENOMEM, "loader: out of memory");
        return NULL;
    }
    l->cfg = *cfg;
    l->store = store;
    l->num_images = meta->count[cfg->split];
    l->num_batches = (l->num_images + cfg->batch_size - 1) / cfg->batch_size;
    if (cfg->world > 1) {
        // global batches; a last one smaller than world is dropped (loader.h)
        int64_t G = (int64_t)cfg->world * cfg->batch_size;
        l->num_batches = l->num_images / G + (l->num_images % G >= cfg->world);
    }
    l->num_classes = meta->num_classes;
    l->height = cfg->height;
    l->width = cfg->width;
    l->image_floats = (size_t)3 * cfg->height * cfg->width;
    build_lut(cfg->mean, cfg->std, l->lut);
    pthread_mutex_init(&l->mu, NULL);
    pthread_cond_init(&l->work_cv, NULL);
    pthread_cond_init(&l->done_cv, NULL);

    size_t n = l->num_images > 0 ? (size_t)l->num_images : 1;
    l->order = malloc(n * sizeof *l->order);
    l->flips = calloc(n, 1);
    int ok = l->order && l->flips;
    size_t B = (size_t)cfg->batch_size, C = (size_t)l->num_classes;
    for (int b = 0; b < 2 && ok; b++) {
        wsml_batch *x = &l->buf[b];
        size_t bytes = B * l->image_floats * sizeof(float);
        x->images = cfg->alloc ? cfg->alloc(bytes, cfg->alloc_ctx) : malloc(bytes);
        x->index = malloc(B * sizeof *x->index);
        x->flipped = malloc(B);
        x->observed = malloc(B * C + 1);
        x->full = malloc(B * C + 1);
        ok = x->images && x->index && x->flipped && x->observed && x->full;
    }
    l->workers = calloc((size_t)cfg->num_workers, sizeof *l->workers);
    if (!ok || !l->workers) {
        wsml_errf(err, WSML_ENOMEM, "loader: out of memory for %d-image batches of %dx%d",
                  cfg->batch_size, cfg->height, cfg->width);
        wsml_loader_close(l);
        return NULL;
    }
    for (int i = 0; i < cfg->num_workers; i++) {
        loader_worker *w = &l->workers[i];
        w->loader = l;
        w->id = i;
        w->reader = wsml_reader_begin(store, err);
        if (!w->reader) {
            wsml_loader_close(l);
            return NULL;
        }
        if (pthread_create(&w->thread, NULL, worker_main, w) != 0) {
            wsml_errf(err, WSML_ENOMEM, "loader: cannot start worker thread %d", i);
            wsml_loader_close(l);
            return NULL;
        }
        w->started = 1;
    }
    return l;
}

void wsml_loader_close(wsml_loader *l) {
    if (!l)
        return;
    pthread_mutex_lock(&l->mu);
    wait_idle_locked(l);
    l->quit = 1;
    pthread_cond_broadcast(&l->work_cv);
    pthread_mutex_unlock(&l->mu);
    if (l->workers) {
        for (int i = 0; i < l->cfg.num_workers; i++) {
            loader_worker *w = &l->workers[i];
            if (w->started)
                pthread_join(w->thread, NULL);
            if (w->reader)
                wsml_reader_end(w->reader);
        }
        free(l->workers);
    }
    free_buffers(l);
    free(l->order);
    free(l->flips);
    pthread_mutex_destroy(&l->mu);
    pthread_cond_destroy(&l->work_cv);
    pthread_cond_destroy(&l->done_cv);
    free(l);
}

int64_t wsml_loader_num_images(const wsml_loader *l) {
    return l->num_images;
}
int64_t wsml_loader_num_batches(const wsml_loader *l) {
    return l->num_batches;
}
const int64_t *wsml_loader_order(const wsml_loader *l) {
    return l->order;
}
const uint8_t *wsml_loader_flips(const wsml_loader *l) {
    return l->flips;
}

int wsml_loader_start_epoch(wsml_loader *l, int epoch, int64_t start_batch, wsml_err *err) {
    if (epoch < 1)
        return wsml_errf(err, WSML_EARG, "loader: epoch %d (epochs count from 1)", epoch);
    if (start_batch < 0 || start_batch > l->num_batches)
        return wsml_errf(err, WSML_EARG, "loader: start batch %lld outside 0..%lld",
                         (long long)start_batch, (long long)l->num_batches);
    pthread_mutex_lock(&l->mu);
    wait_idle_locked(l);
    pthread_mutex_unlock(&l->mu);

    // The epoch's random choices, in the caller's thread (see loader.h).
    size_t n = (size_t)l->num_images;
    wsml_rng rng;
    wsml_rng_seed(&rng, wsml_loader_epoch_seed(l->cfg.seed, epoch));
    if (l->cfg.shuffle)
        wsml_rng_permutation(&rng, l->order, n);
    else
        for (size_t i = 0; i < n; i++)
            l->order[i] = (int64_t)i;
    if (l->cfg.flip)
        for (size_t i = 0; i < n; i++)
            l->flips[i] = wsml_rng_double(&rng) < 0.5;
    else
        memset(l->flips, 0, n);
    l->epoch = epoch;

    pthread_mutex_lock(&l->mu);
    l->next_batch = start_batch;
    l->pending = 0;
    if (start_batch < l->num_batches) {
        post_job_locked(l, 0, start_batch);
        l->pending = 1;
    }
    pthread_mutex_unlock(&l->mu);
    return 0;
}

int wsml_loader_next(wsml_loader *l, wsml_batch **batch, wsml_err *err) {
    *batch = NULL;
    pthread_mutex_lock(&l->mu);
    if (!l->pending) {
        pthread_mutex_unlock(&l->mu);
        return 0; // end of the epoch (or no epoch started)
    }
    wait_idle_locked(l);
    int b = l->job_buf;
    if (l->job_failed) {
        l->pending = 0;
        *err = l->job_err;
        int rc = err->code < 0 ? err->code : WSML_EIO;
        pthread_mutex_unlock(&l->mu);
        return rc;
    }
    l->next_batch++;
    l->pending = 0;
    if (l->next_batch < l->num_batches) {
        // The caller now owns buffer b until its next call; fill the other one.
        post_job_locked(l, 1 - b, l->next_batch);
        l->pending = 1;
    }
    pthread_mutex_unlock(&l->mu);
    *batch = &l->buf[b];
    return 1;
}
