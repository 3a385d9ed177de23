// Prediction with a trained network (the one predict path): the network's configuration
// and weights from a checkpoint, and one pass of a network over a store split that
// turns images into scores. The trainer's validation and test passes and wsml-eval
// (--store) score through here; wsml-cam builds its networks here too but runs its own
// forward over the images it draws (it needs the feature maps, not scores), with the
// same preprocessing function (wsml_normalise_image) as the loader.
//
// A checkpoint's network shape is read from the checkpoint itself: the architecture from
// its tensor names (layer1.0.conv3 = bottleneck; the number of layer3 blocks tells 18/34
// or 50/101), the width from conv1.weight, the classes from fc.weight. The head (linear
// or BoostLU's CAM head, whose tensors look the same) and alpha come from the caller,
// else the checkpoint's metadata ("head", "alpha", written by the trainer), else the
// "options" of config.json beside the checkpoint (a run directory), else linear / 5.
#ifndef WSML_PREDICT_H
#define WSML_PREDICT_H

#include <signal.h>
#include <stdint.h>

#include "common/err.h"
#include "common/safetensors.h"
#include "store/store.h"
#include "train/backend.h"
#include "train/net.h"

// The network configuration of a checkpoint read with wsml_st_read: arch, width_mult,
// num_classes, head and alpha resolved (head NULL / alpha <= 0: from the checkpoint or
// its run, see above); height, width and max_batch keep wsml_net_config_default's values
// for the caller to set. path names the checkpoint in errors and locates config.json.
// WSML_EFORMAT for a checkpoint that is not a torchvision ResNet-18/34/50/101, WSML_EARG
// for an unknown head.
int wsml_checkpoint_config(const wsml_safetensors *st, const char *path, const char *head,
                           double alpha, wsml_net_config *cfg, wsml_err *err);
// Creates the network for cfg on `be` and loads every tensor of st into it (errors
// prefixed with path). *net is the caller's (wsml_net_free, before the backend); NULL on
// failure. st may be freed afterwards.
int wsml_checkpoint_net(const wsml_safetensors *st, const char *path, const wsml_net_config *cfg,
                        wsml_backend *be, wsml_net **net, wsml_err *err);

// Runs `net` in eval mode over every record of `split` in index order, with the training
// loader's preprocessing (no flip, ImageNet normalisation, docs/methods.md §3) in batches of
// `batch` images (<= the net's max_batch) read by `workers` threads, pinned and staged where the
// net's backend offers it. Fills scores (N, C) float32 with sigmoid(logits) — the
// probabilities the reference ranks (LargeLossMatters train.py: preds = sigmoid(logits))
// — and labels (N, C) int8 with the split's full labels (1 / 0 / -1 unknown), row = record
// index; N = the split's count, C = the store's classes (the net's). Draws the progress
// bar of common/log.h. Returns 0, 1 when *stop became non-zero meanwhile (stop may be
// NULL), or a negative wsml_code with err naming the store, split or record.
int wsml_predict_split(wsml_net *net, wsml_store *store, wsml_split split, int batch, int workers,
                       volatile sig_atomic_t *stop, float *scores, int8_t *labels, wsml_err *err);

// The same over global batches first_batch .. end_batch − 1 only (of `batch` images each,
// the grid of wsml_predict_split, so that every image is scored in the same batch as
// there): fills the rows of their records and leaves the others as they were. The
// trainer's validation splits a split this way across data-parallel processes.
int wsml_predict_split_part(wsml_net *net, wsml_store *store, wsml_split split, int batch,
                            int workers, int64_t first_batch, int64_t end_batch,
                            volatile sig_atomic_t *stop, float *scores, int8_t *labels,
                            wsml_err *err);

typedef struct {
    const char *backend;   // "cpu" (default when NULL) or "cuda"
    const char *precision; // "tf32" (default when NULL), "fp32" or "bf16" (train/backend.h)
    int threads;           // compute threads of the cpu backend; <= 0: all CPUs
    int device;            // cuda: the device ordinal (wsml_backend_pick_device)
    int batch;             // images per forward (default 32 when <= 0)
    int workers;           // loader threads (default 2 when <= 0)
    const char *head;      // "linear" / "boostlu", or NULL: from the checkpoint / run
    double alpha;          // BoostLU alpha, or <= 0: from the checkpoint / run / 5
} wsml_predict_opts;

// The checkpoint at model_path over `split` of the open store (wsml-eval --store): a
// backend and network as opts say, then wsml_predict_split. On success *scores and
// *labels are malloc'd (N, C) arrays as above and *n = N. A class count that differs
// from the store's is WSML_EFORMAT naming both.
int wsml_predict_checkpoint(wsml_store *store, wsml_split split, const char *model_path,
                            const wsml_predict_opts *opts, float **scores, int8_t **labels,
                            int64_t *n, wsml_err *err);

#endif
