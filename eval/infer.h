// Inference over one split of a store (`wsml-eval --store`): the trained network of
// libwsml-train (train/net.h) run in eval mode over every record in index order, with
// the training loader's preprocessing (no flip, ImageNet normalisation, docs/methods.md §3).
//
// The network's shape is read from the checkpoint itself: the architecture from its
// tensor names (layer1.0.conv3 = bottleneck; the number of layer3 blocks tells 18/34 or
// 50/101), the width from conv1.weight, the classes from fc.weight. The head (linear or
// BoostLU's CAM head, whose tensors look the same) and alpha come from the options, else
// the checkpoint's metadata ("head", "alpha"), else the "options" of config.json beside
// the checkpoint (a run directory), else linear.
#ifndef WSML_EVAL_INFER_H
#define WSML_EVAL_INFER_H

#include <stdint.h>

#include "common/err.h"
#include "common/safetensors.h"
#include "store/store.h"
#include "train/backend.h"
#include "train/net.h"

typedef struct {
    const char *backend;   // "cpu" (default when NULL) or "cuda"
    const char *precision; // "tf32" (default when NULL), "fp32" or "bf16" (train/backend.h)
    int threads;           // compute threads of the cpu backend; <= 0: all CPUs
    int batch;             // images per forward (default 32 when <= 0)
    int workers;           // loader threads (default 2 when <= 0)
    const char *head;      // "linear" / "boostlu", or NULL: from the checkpoint / run
    double alpha;          // BoostLU alpha, or <= 0: from the checkpoint / run / 5
} wsml_infer_opts;

// The network configuration of a checkpoint read with wsml_st_read (see the top of this
// file): arch, width_mult, num_classes, head and alpha resolved; height, width and
// max_batch keep wsml_net_config_default's values for the caller to set. model_path
// names the checkpoint in errors and locates config.json. WSML_EFORMAT for a checkpoint
// that is not a torchvision ResNet-18/34/50/101, WSML_EARG for an unknown head.
int wsml_infer_model_config(const wsml_safetensors *st, const char *model_path,
                            const wsml_infer_opts *opts, wsml_net_config *cfg, wsml_err *err);
// Creates the network for cfg on `be` and loads every tensor of st into it (errors
// prefixed with model_path). *net is the caller's (wsml_net_free; before the backend);
// NULL on failure. st may be freed afterwards.
int wsml_infer_build_net(const wsml_safetensors *st, const char *model_path,
                         const wsml_net_config *cfg, wsml_backend *be, wsml_net **net,
                         wsml_err *err);

// Runs the model at model_path over `split` of the open store. On success *scores is
// (N, C) float32 sigmoid(logits) — the probabilities the reference ranks (LargeLossMatters
// train.py: preds = sigmoid(logits)) — and *labels (N, C) int8 the split's full labels
// (1 / 0 / -1 unknown), both malloc'd and in record-index order; *n = N. Errors name the
// checkpoint, the store or the record (a class count that differs from the store's is
// WSML_EFORMAT naming both). Draws the progress bar of common/log.h.
int wsml_infer_split(wsml_store *store, wsml_split split, const char *model_path,
                     const wsml_infer_opts *opts, float **scores, int8_t **labels, int64_t *n,
                     wsml_err *err);

#endif
