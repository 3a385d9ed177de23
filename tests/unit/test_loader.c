// train/loader.c: batches against tests/oracles/loader_ref.py (numpy's RandomState for
// the epoch order and flips, torchvision's ToTensor + Normalize + hflip for the pixels),
// determinism across worker counts and mid-epoch starts, and errors from workers.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/image.h"
#include "store/store.h"
#include "train/loader.h"

#define N_TRAIN 23
#define N_VAL 5
#define N_TEST 3
#define H 6
#define W 10
#define C 4

static uint32_t lcg_state;
static uint32_t lcg(void) {
    lcg_state = lcg_state * 1664525u + 1013904223u;
    return lcg_state >> 8;
}

typedef struct {
    char dir[256];
    uint8_t pixels[N_TRAIN][H * W * 3];
    int8_t full[N_TRAIN][C], observed[N_TRAIN][C];
} fixture;

// Writes a store with N_TRAIN random train images (plus small val/test splits).
// bad_index >= 0 stores that train record with a width of W - 2 (a damaged store).
// jpeg != 0 stores JPEG payloads (then pixels[] holds the decoded images).
static void make_store(fixture *fx, int bad_index, int jpeg) {
    wsml_err err;
    cr_assert_eq(wsml_image_init(&err), 0, "%s", err.msg);
    snprintf(fx->dir, sizeof fx->dir, "/tmp/wsml-test-loader-%d-XXXXXX", (int)getpid());
    cr_assert(mkdtemp(fx->dir));
    strcat(fx->dir, "/store");
    wsml_store_writer *w = wsml_store_create(fx->dir, 0, &err);
    cr_assert(w, "%s", err.msg);
    lcg_state = 12345;
    uint32_t counts[3] = {N_TRAIN, N_VAL, N_TEST};
    for (int s = 0; s < 3; s++) {
        for (uint32_t i = 0; i < counts[s]; i++) {
            uint8_t px[H * W * 3];
            int8_t full[C], obs[C];
            for (int k = 0; k < H * W * 3; k++)
                px[k] = (uint8_t)lcg();
            for (int c = 0; c < C; c++) {
                full[c] = (int8_t)(lcg() % 2);
                obs[c] = (int8_t)((int)(lcg() % 3) - 1);
            }
            char id[32];
            snprintf(id, sizeof id, "%s-%u", wsml_split_name((wsml_split)s), i);
            int width = (s == 0 && (int)i == bad_index) ? W - 2 : W;
            wsml_image img = {H, width, 3, px};
            void *payload = px;
            size_t len = (size_t)H * width * 3;
            if (jpeg) {
                cr_assert_eq(wsml_image_encode_jpeg(&img, 90, &payload, &len, &err), 0, "%s",
                             err.msg);
                if (s == 0) {
                    wsml_image dec;
                    cr_assert_eq(wsml_image_decode_buffer(payload, len, &dec, &err), 0, "%s",
                                 err.msg);
                    memcpy(px, dec.pixels, sizeof px);
                    wsml_image_free(&dec);
                }
            }
            if (s == 0) {
                memcpy(fx->pixels[i], px, sizeof px);
                memcpy(fx->full[i], full, C);
                memcpy(fx->observed[i], obs, C);
            }
            wsml_record_in rec = {id, full,  obs, C,       jpeg ? WSML_ENC_JPEG : WSML_ENC_RAW,
                                  H,  width, 3,   payload, len};
            cr_assert_eq(wsml_store_put(w, (wsml_split)s, i, &rec, 0, &err), 0, "%s", err.msg);
            if (jpeg)
                free(payload);
        }
    }
    char info[1024];
    snprintf(info, sizeof info,
             "{\"name\": \"loadertest\", \"format\": \"test\", \"classes\": [\"a\", \"b\", "
             "\"c\", \"d\"], \"counts\": {\"train\": %d, \"val\": %d, \"test\": %d}, "
             "\"height\": %d, \"width\": %d, \"channels\": 3, \"encoding\": \"%s\", "
             "\"full_label_default\": 0}",
             N_TRAIN, N_VAL, N_TEST, H, W, jpeg ? "jpeg" : "raw");
    cr_assert_eq(wsml_store_writer_finish(w, info, &err), 0, "%s", err.msg);
}

static void remove_store(fixture *fx) {
    char cmd[600];
    char *slash = strrchr(fx->dir, '/');
    *slash = 0;
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", fx->dir);
    cr_assert_eq(system(cmd), 0);
}

static wsml_loader *open_loader_layout(wsml_store *st, int B, int workers, int shuffle, int flip,
                                       uint32_t seed, int nhwc) {
    wsml_loader_config cfg;
    wsml_loader_config_default(&cfg);
    cfg.batch_size = B;
    cfg.num_workers = workers;
    cfg.shuffle = shuffle;
    cfg.flip = flip;
    cfg.seed = seed;
    cfg.height = H;
    cfg.width = W;
    cfg.nhwc = nhwc;
    wsml_err err;
    wsml_loader *l = wsml_loader_open(st, &cfg, &err);
    cr_assert(l, "%s", err.msg);
    return l;
}

static wsml_loader *open_loader(wsml_store *st, int B, int workers, int shuffle, int flip,
                                uint32_t seed) {
    return open_loader_layout(st, B, workers, shuffle, flip, seed, 0);
}

// All batches of one epoch concatenated: images (N,3,H,W), index, flipped.
typedef struct {
    float images[N_TRAIN][3 * H * W];
    int64_t index[N_TRAIN];
    uint8_t flipped[N_TRAIN];
    int8_t observed[N_TRAIN][C], full[N_TRAIN][C];
    int sizes[N_TRAIN];
    int num_batches;
} epoch_dump;

static void run_epoch(wsml_loader *l, int epoch, int64_t start, epoch_dump *d) {
    wsml_err err;
    memset(d, 0, sizeof *d);
    cr_assert_eq(wsml_loader_start_epoch(l, epoch, start, &err), 0, "%s", err.msg);
    wsml_batch *b;
    int rc;
    int64_t expect = start;
    while ((rc = wsml_loader_next(l, &b, &err)) == 1) {
        cr_assert_eq(b->batch_index, expect);
        int64_t p = b->first_pos;
        memcpy(d->images[p], b->images, sizeof(float) * 3 * H * W * b->size);
        memcpy(&d->index[p], b->index, sizeof(int64_t) * b->size);
        memcpy(&d->flipped[p], b->flipped, b->size);
        memcpy(d->observed[p], b->observed, (size_t)C * b->size);
        memcpy(d->full[p], b->full, (size_t)C * b->size);
        d->sizes[d->num_batches++] = b->size;
        expect++;
    }
    cr_assert_eq(rc, 0, "%s", err.msg);
    cr_assert_eq(expect, wsml_loader_num_batches(l));
}

Test(loader, batches_equal_numpy_and_torchvision) {
    static fixture fx;
    make_store(&fx, -1, 0);
    const uint32_t seed = 4242;
    const int epochs = 2;

    char raw[300];
    snprintf(raw, sizeof raw, "%s.raw", fx.dir);
    FILE *f = fopen(raw, "wb");
    cr_assert(f);
    cr_assert_eq(fwrite(fx.pixels, sizeof fx.pixels, 1, f), 1);
    fclose(f);
    const char *python = getenv("PYTHON"), *tests = getenv("WSML_TESTS");
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "%s -W ignore %s/oracles/loader_ref.py %s %d %d %d %u %d",
             python && *python ? python : "/usr/bin/python3", tests && *tests ? tests : "tests",
             raw, N_TRAIN, H, W, seed, epochs);
    FILE *p = popen(cmd, "r");
    cr_assert(p, "cannot run %s", cmd);
    static int64_t order[2][N_TRAIN];
    static uint8_t flips[2][N_TRAIN];
    static float plain[N_TRAIN][3 * H * W], flipped[N_TRAIN][3 * H * W];
    for (int e = 0; e < epochs; e++) {
        cr_assert_eq(fread(order[e], sizeof order[e], 1, p), 1, "oracle output ended");
        cr_assert_eq(fread(flips[e], sizeof flips[e], 1, p), 1, "oracle output ended");
    }
    cr_assert_eq(fread(plain, sizeof plain, 1, p), 1, "oracle output ended");
    cr_assert_eq(fread(flipped, sizeof flipped, 1, p), 1, "oracle output ended");
    cr_assert_eq(pclose(p), 0, "oracle failed: %s", cmd);
    unlink(raw);

    wsml_err err;
    wsml_store *st = wsml_store_open(fx.dir, 1, &err);
    cr_assert(st, "%s", err.msg);
    wsml_loader *l = open_loader(st, 5, 3, 1, 1, seed);
    cr_assert_eq(wsml_loader_num_batches(l), 5);
    static epoch_dump d;
    int n_flipped = 0;
    for (int e = 0; e < epochs; e++) {
        run_epoch(l, e + 1, 0, &d);
        cr_assert_eq(d.num_batches, 5);
        for (int b = 0; b < 4; b++)
            cr_assert_eq(d.sizes[b], 5);
        cr_assert_eq(d.sizes[4], 3, "the last batch keeps the remainder (drop_last=False)");
        for (int j = 0; j < N_TRAIN; j++) {
            cr_assert_eq(d.index[j], order[e][j], "epoch %d position %d: index %lld, numpy %lld",
                         e + 1, j, (long long)d.index[j], (long long)order[e][j]);
            cr_assert_eq(d.flipped[j], flips[e][j], "epoch %d position %d: flip", e + 1, j);
            int64_t i = d.index[j];
            const float *want = flips[e][j] ? flipped[i] : plain[i];
            cr_assert_eq(memcmp(d.images[j], want, sizeof plain[0]), 0,
                         "epoch %d position %d (record %lld): pixels differ from torchvision's",
                         e + 1, j, (long long)i);
            cr_assert_eq(memcmp(d.observed[j], fx.observed[i], C), 0);
            cr_assert_eq(memcmp(d.full[j], fx.full[i], C), 0);
            n_flipped += d.flipped[j];
        }
    }
    cr_assert(n_flipped > 0 && n_flipped < epochs * N_TRAIN, "flips must vary");
    cr_assert_neq(memcmp(order[0], order[1], sizeof order[0]), 0, "epochs must differ");
    wsml_loader_close(l);
    wsml_store_close(st);
    remove_store(&fx);
}

Test(loader, deterministic_across_workers_and_mid_epoch_start) {
    static fixture fx;
    make_store(&fx, -1, 0);
    wsml_err err;
    wsml_store *st = wsml_store_open(fx.dir, 0, &err);
    cr_assert(st, "%s", err.msg);
    static epoch_dump a, b, c;
    wsml_loader *l1 = open_loader(st, 4, 1, 1, 1, 99);
    wsml_loader *l4 = open_loader(st, 4, 4, 1, 1, 99);
    for (int e = 1; e <= 3; e++) {
        run_epoch(l1, e, 0, &a);
        run_epoch(l4, e, 0, &b);
        cr_assert_eq(memcmp(&a, &b, sizeof a), 0, "epoch %d: 1 vs 4 workers differ", e);
    }
    // Resuming epoch 2 at batch 3: the same batches as positions 12.. of a full epoch 2
    // (and a start in the middle of another epoch does not disturb it).
    run_epoch(l1, 2, 0, &a);
    cr_assert_eq(wsml_loader_start_epoch(l4, 5, 1, &err), 0);
    run_epoch(l4, 2, 3, &c);
    for (int j = 12; j < N_TRAIN; j++) {
        cr_assert_eq(c.index[j], a.index[j]);
        cr_assert_eq(c.flipped[j], a.flipped[j]);
        cr_assert_eq(memcmp(c.images[j], a.images[j], sizeof a.images[0]), 0);
    }
    cr_assert_eq(c.num_batches, 3);
    // A different seed gives a different order.
    wsml_loader *l5 = open_loader(st, 4, 2, 1, 1, 100);
    run_epoch(l5, 2, 0, &c);
    cr_assert_neq(memcmp(c.index, a.index, sizeof a.index), 0);
    wsml_loader_close(l1);
    wsml_loader_close(l4);
    wsml_loader_close(l5);
    wsml_store_close(st);
    remove_store(&fx);
}

Test(loader, no_shuffle_no_flip_is_store_order) {
    static fixture fx;
    make_store(&fx, -1, 0);
    wsml_err err;
    wsml_store *st = wsml_store_open(fx.dir, 0, &err);
    cr_assert(st, "%s", err.msg);
    static epoch_dump d;
    wsml_loader *l = open_loader(st, 7, 2, 0, 0, 1);
    static float want[3 * H * W];
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    for (int e = 1; e <= 2; e++) {
        run_epoch(l, e, 0, &d);
        for (int j = 0; j < N_TRAIN; j++) {
            cr_assert_eq(d.index[j], j);
            cr_assert_eq(d.flipped[j], 0);
            // The formula of loader.h, written out here.
            for (int c = 0; c < 3; c++)
                for (int y = 0; y < H; y++)
                    for (int x = 0; x < W; x++)
                        want[(c * H + y) * W + x] =
                            ((float)fx.pixels[j][(y * W + x) * 3 + c] / 255.0f - mean[c]) / std[c];
            cr_assert_eq(memcmp(d.images[j], want, sizeof want), 0, "record %d", j);
        }
    }
    wsml_loader_close(l);
    wsml_store_close(st);
    remove_store(&fx);
}

Test(loader, jpeg_payloads_are_decoded) {
    static fixture fx;
    make_store(&fx, -1, 1);
    wsml_err err;
    wsml_store *st = wsml_store_open(fx.dir, 1, &err);
    cr_assert(st, "%s", err.msg);
    static epoch_dump d;
    wsml_loader *l = open_loader(st, 6, 2, 1, 1, 5);
    run_epoch(l, 1, 0, &d);
    static float want[3 * H * W];
    const float mean[3] = {0.485f, 0.456f, 0.406f}, std[3] = {0.229f, 0.224f, 0.225f};
    for (int j = 0; j < N_TRAIN; j++) {
        int64_t i = d.index[j];
        wsml_normalise_image(fx.pixels[i], H, W, d.flipped[j], mean, std, 0, want);
        cr_assert_eq(memcmp(d.images[j], want, sizeof want), 0, "record %lld", (long long)i);
    }
    wsml_loader_close(l);
    wsml_store_close(st);
    remove_store(&fx);
}

Test(loader, wrong_image_size_is_an_error_naming_the_record) {
    static fixture fx;
    make_store(&fx, 9, 0);
    wsml_err err;
    wsml_store *st = wsml_store_open(fx.dir, 1, &err);
    cr_assert(st, "%s", err.msg);
    wsml_loader *l = open_loader(st, 4, 3, 0, 0, 1);
    cr_assert_eq(wsml_loader_start_epoch(l, 1, 0, &err), 0);
    wsml_batch *b;
    cr_assert_eq(wsml_loader_next(l, &b, &err), 1);
    cr_assert_eq(wsml_loader_next(l, &b, &err), 1);
    int rc = wsml_loader_next(l, &b, &err); // batch 2 holds record 9
    cr_assert_lt(rc, 0);
    cr_assert_null(b);
    cr_assert(strstr(err.msg, "train record 9"), "message: %s", err.msg);
    cr_assert(strstr(err.msg, "expected 6x10x3"), "message: %s", err.msg);
    // The loader stays usable: a fresh epoch starts again.
    cr_assert_eq(wsml_loader_start_epoch(l, 2, 0, &err), 0);
    cr_assert_eq(wsml_loader_next(l, &b, &err), 1);
    wsml_loader_close(l);

    // A network input of another size than the store's is refused at open.
    wsml_loader_config cfg;
    wsml_loader_config_default(&cfg);
    cfg.height = 8;
    cfg.width = W;
    cr_assert_null(wsml_loader_open(st, &cfg, &err));
    cr_assert_eq(err.code, WSML_ESTATE);
    cr_assert(strstr(err.msg, "6x10x3") && strstr(err.msg, "8x10x3"), "message: %s", err.msg);
    wsml_store_close(st);
    remove_store(&fx);
}

Test(loader, nhwc_is_the_same_values_permuted) {
    static fixture fx;
    make_store(&fx, -1, 0);
    wsml_err err;
    wsml_store *st = wsml_store_open(fx.dir, 0, &err);
    cr_assert(st, "%s", err.msg);
    static epoch_dump a, b;
    wsml_loader *l1 = open_loader_layout(st, 6, 2, 1, 1, 17, 0);
    wsml_loader *l2 = open_loader_layout(st, 6, 2, 1, 1, 17, 1);
    run_epoch(l1, 3, 0, &a);
    run_epoch(l2, 3, 0, &b);
    cr_assert_eq(memcmp(a.index, b.index, sizeof a.index), 0);
    cr_assert_eq(memcmp(a.flipped, b.flipped, sizeof a.flipped), 0);
    for (int j = 0; j < N_TRAIN; j++)
        for (int c = 0; c < 3; c++)
            for (int p = 0; p < H * W; p++)
                cr_assert_eq(a.images[j][c * H * W + p], b.images[j][p * 3 + c],
                             "image %d channel %d pixel %d", j, c, p);
    wsml_loader_close(l1);
    wsml_loader_close(l2);
    wsml_store_close(st);
    remove_store(&fx);
}

// Data parallel (loader.h): the shares of `world` loaders, one per rank, are the global
// batches of ONE loader with batch world·B, split in rank order: every position once, the
// same images, flips and labels; a last global batch smaller than world is dropped.
Test(loader, data_parallel_shares_are_one_loaders_global_batches) {
    static fixture fx;
    make_store(&fx, -1, 0);
    wsml_err err;
    wsml_store *st = wsml_store_open(fx.dir, 0, &err);
    cr_assert(st, "%s", err.msg);
    static epoch_dump ref;
    // (world, B): 23 = 9 + 9 + 5 (shares 1, 2, 2), 8 + 8 + 7, 10 + 10 + 3 (3 < 5: dropped)
    const int cases[][2] = {{3, 3}, {4, 2}, {5, 2}, {1, 4}};
    for (size_t k = 0; k < sizeof cases / sizeof *cases; k++) {
        const int world = cases[k][0], B = cases[k][1], G = world * B;
        wsml_loader *one = open_loader(st, G, 2, 1, 1, 7);
        run_epoch(one, 2, 0, &ref);
        int last = N_TRAIN % G, kept = last > 0 && last < world ? N_TRAIN - last : N_TRAIN;
        int covered[N_TRAIN] = {0};
        for (int r = 0; r < world; r++) {
            wsml_loader_config cfg;
            wsml_loader_config_default(&cfg);
            cfg.batch_size = B;
            cfg.num_workers = 2;
            cfg.seed = 7;
            cfg.height = H;
            cfg.width = W;
            cfg.rank = r;
            cfg.world = world;
            wsml_loader *l = wsml_loader_open(st, &cfg, &err);
            cr_assert(l, "%s", err.msg);
            cr_assert_eq(wsml_loader_num_batches(l), (kept + G - 1) / G, "world %d", world);
            cr_assert_eq(wsml_loader_start_epoch(l, 2, 0, &err), 0, "%s", err.msg);
            wsml_batch *b;
            int64_t expect = 0;
            while (wsml_loader_next(l, &b, &err) == 1) {
                cr_assert_eq(b->batch_index, expect++);
                int64_t start = b->batch_index * G, n = b->global_size;
                cr_assert_eq(n, ref.sizes[b->batch_index], "world %d batch %lld", world,
                             (long long)b->batch_index);
                cr_assert_eq(b->first_pos, start + n * r / world);
                cr_assert_eq(b->size, start + n * (r + 1) / world - b->first_pos);
                for (int i = 0; i < b->size; i++) {
                    int64_t p = b->first_pos + i;
                    covered[p]++;
                    cr_assert_eq(b->index[i], ref.index[p]);
                    cr_assert_eq(b->flipped[i], ref.flipped[p]);
                    cr_assert_eq(memcmp(b->images + (size_t)i * 3 * H * W, ref.images[p],
                                        sizeof ref.images[0]),
                                 0);
                    cr_assert_eq(memcmp(b->observed + (size_t)i * C, ref.observed[p], C), 0);
                }
            }
            wsml_loader_close(l);
        }
        for (int p = 0; p < N_TRAIN; p++)
            cr_assert_eq(covered[p], p < kept, "world %d B %d: position %d seen %d times", world, B,
                         p, covered[p]);
        wsml_loader_close(one);
    }
    wsml_store_close(st);
    remove_store(&fx);
}
