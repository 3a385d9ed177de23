// The training data loader: worker threads read records zero-copy from a store
// (one wsml_reader per thread), decode JPEG payloads when needed, flip, normalise and
// fill a batch buffer while the caller trains on the previous one (double buffering).
//
// Determinism: every random choice of an epoch (the order of the split and each
// image's flip) is drawn up front in the calling thread from a numpy-compatible
// generator, never by the workers, so the same seed gives the same batches for any
// worker count and any thread timing, and a resumed run can start an epoch at any
// batch and see what an uninterrupted run saw.
//
// Epoch e (1-based) of a loader with seed s draws, from
//   rng = np.random.RandomState(wsml_loader_epoch_seed(s, e)):
//   order = rng.permutation(N)              (np.arange(N) without shuffle; no draw)
//   flip  = rng.random_sample(N) < 0.5      (all False without flip; no draw)
// flip[j] belongs to position j of the epoch (image order[j]).
// Batch b holds positions b·B .. min((b+1)·B, N) − 1; the last batch may be smaller
// (nothing is dropped, as the reference's DataLoader(drop_last=False)).
//
// Data parallel (world > 1 processes, docs/methods.md "Data-parallel training"): every
// process draws the same order and flips; global batch b holds positions b·G ..
// min((b+1)·G, N) − 1 with G = world·B, and process `rank` takes its contiguous share
// of them: positions b·G + ⌊n·rank/world⌋ .. b·G + ⌊n·(rank+1)/world⌋ − 1, n = the global
// batch's size (B each for a full one; the last, short one splits into shares that differ
// by at most one image). A last global batch smaller than world (some process would get
// no image) is dropped: at most world − 1 images per epoch, the same ones for a given
// seed and epoch. world = 1 is the single-process loader above.
//
// Pixels: out = ((float)u8 / 255 − mean_c) / std_c in float32, which is what
// torchvision's ToTensor() followed by Normalize(mean, std) computes; ImageNet mean
// (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225) by default (docs/methods.md §3).
#ifndef WSML_LOADER_H
#define WSML_LOADER_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "store/store.h"
#include "train/backend.h"

typedef struct {
    wsml_split split;
    int batch_size;    // B >= 1
    int num_workers;   // worker threads >= 1
    int shuffle;       // draw a permutation per epoch
    int flip;          // random horizontal flip with probability 0.5
    uint32_t seed;     // see wsml_loader_epoch_seed
    int height, width; // the network's input; a record of another size is an error
    float mean[3], std[3];
    int nhwc;        // 0: images (B, 3, H, W) as torchvision; 1: (B, H, W, 3), the
                     // layout of train/net.h (the same values, permuted)
    int rank, world; // data parallel: this process's share of each global batch (world
                     // <= 1: the whole batch; see above)
    // Optional allocator for the image buffers (e.g. pinned host memory for CUDA);
    // NULL = malloc/free. alloc returns NULL on failure.
    void *(*alloc)(size_t bytes, void *ctx);
    void (*free)(void *p, void *ctx);
    void *alloc_ctx;
    // Optional: told about an image buffer's contents (e.g. to copy them to a GPU beside
    // the compute, train/backend.h's stage_input). Called with the loader's lock held:
    // with bytes = 0 when a batch starts filling `images` (the old contents are gone),
    // and with the batch's image bytes by the worker that finished it, before
    // wsml_loader_next hands it out. A negative return fails the batch (err says why).
    int (*on_filled)(const float *images, size_t bytes, void *ctx, wsml_err *err);
    void *filled_ctx;
} wsml_loader_config;

// Defaults: train split, B 16, 2 workers, shuffle and flip on, seed 0, 224x224,
// ImageNet mean/std, NCHW, malloc.
void wsml_loader_config_default(wsml_loader_config *cfg);
// Points cfg's buffer hooks at a backend (train/backend.h): page-locked image buffers
// (host_alloc) and a copy to the device beside the compute (stage_input) where the
// backend offers them; a backend without them (cpu) leaves cfg as it is.
void wsml_loader_use_backend(wsml_loader_config *cfg, wsml_backend *be);

// One batch. Arrays are owned by the loader and valid until the next
// wsml_loader_next / wsml_loader_start_epoch / wsml_loader_close.
typedef struct {
    int size;            // images in this batch (B, or fewer for the last batch)
    int global_size;     // images in the global batch, all processes together (= size
                         // for one process)
    int64_t batch_index; // b: position of this batch in the epoch
    int64_t first_pos;   // epoch position of row 0 (b·B for one process)
    float *images;       // (size, 3, H, W) normalised, or (size, H, W, 3) with cfg.nhwc
    int64_t *index;      // (size) record index in the split
    uint8_t *flipped;    // (size) 1 if the row was flipped
    int8_t *observed;    // (size, C) observed labels as stored (1 / 0 / -1)
    int8_t *full;        // (size, C) full labels as stored (1 / 0 / -1)
} wsml_batch;

typedef struct wsml_loader wsml_loader;

// Opens a loader over one split of an open store (the store must outlive it).
// Checks the configuration (WSML_EARG naming the setting) and that the store's
// images have 3 channels and the configured height/width (WSML_ESTATE naming the
// store's size and the expected one). Starts the worker threads.
wsml_loader *wsml_loader_open(wsml_store *store, const wsml_loader_config *cfg, wsml_err *err);
// Stops the workers (waiting for a batch in flight) and frees everything.
void wsml_loader_close(wsml_loader *l);

int64_t wsml_loader_num_images(const wsml_loader *l);
int64_t wsml_loader_num_batches(const wsml_loader *l); // ceil(N / B) (one process)

// Seed of epoch e's generator: the low 32 bits of splitmix64(seed << 32 | e), so
// that different seeds never share an epoch's draws by an offset of epochs.
uint32_t wsml_loader_epoch_seed(uint32_t seed, int epoch);

// Draws epoch `epoch`'s order and flips, and starts filling batch `start_batch`
// (0 for a fresh epoch, later when resuming mid-epoch). Any batch in flight is
// waited for and discarded.
int wsml_loader_start_epoch(wsml_loader *l, int epoch, int64_t start_batch, wsml_err *err);

// Returns 1 and sets *batch to the next batch (then starts filling the one after it),
// 0 at the end of the epoch, or a negative wsml_code when a worker failed (a store
// read, a JPEG decode, a wrong image size), with err naming the split and record.
int wsml_loader_next(wsml_loader *l, wsml_batch **batch, wsml_err *err);

// The epoch's order and flips (N entries each) as drawn by the last start_epoch.
const int64_t *wsml_loader_order(const wsml_loader *l);
const uint8_t *wsml_loader_flips(const wsml_loader *l);

// Flips (if flip) and normalises one image as described at the top of this file.
// Used by the workers; exposed for tests and for inference over a split.
// hwc: (H, W, 3) uint8 -> out: (3, H, W) float32, or (H, W, 3) when nhwc
void wsml_normalise_image(const uint8_t *hwc, int height, int width, int flip, const float mean[3],
                          const float std[3], int nhwc, float *out);

#endif
