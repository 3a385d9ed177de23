// Training losses of docs/methods.md §2: the large-loss family (AN, LL-R, LL-Ct, LL-Cp with a
// relative or absolute threshold), Cole et al.'s baselines (AN-LS, WAN, EPR, ROLE) and
// the fully labelled upper bound — one module, pure CPU code over plain arrays.
//
// The loss is tiny next to the network (B x C numbers), so every backend uses this
// code: the CUDA backend copies the logits (and ROLE's estimator rows) to the host,
// calls wsml_loss_compute, and copies dL/dz back. The BoostLU head needs nothing
// here: it only changes how the logits are made (docs/methods.md §2 "BoostLU").
//
// Exactness: each function is a transcription of the reference code's arithmetic
// (LargeLossMatters losses.py/train.py; single-positive-multi-label losses.py), in
// float32 per entry as PyTorch computes it, with the batch sums accumulated in double.
// tests/unit/test_loss.c checks it against tests/oracles/losses_ref.py (PyTorch).
//
// Label conventions (store/store.h): observed 1 = observed positive, -1 = observed
// negative, 0 = unobserved; full 1 = positive, 0 = negative, -1 = unknown.
#ifndef WSML_LOSS_H
#define WSML_LOSS_H

#include <stddef.h>
#include <stdint.h>

#include "common/comm.h"
#include "common/err.h"
#include "common/safetensors.h"
#include "train/optim.h"

typedef enum {
    WSML_LOSS_FULL,  // "full"  : bce(z, full == 1) — needs full labels (upper bound)
    WSML_LOSS_AN,    // "an"    : bce(z, y_obs == 1)
    WSML_LOSS_AN_LS, // "an-ls" : Cole et al. AN with label smoothing ls
    WSML_LOSS_WAN,   // "wan"   : Cole et al. weighted AN
    WSML_LOSS_EPR,   // "epr"   : Cole et al. expected positive regularisation
    WSML_LOSS_ROLE,  // "role"  : Cole et al. regularised online label estimation
    WSML_LOSS_LL_R,  // "ll-r"  : large loss rejection
    WSML_LOSS_LL_CT, // "ll-ct" : large loss temporary correction
    WSML_LOSS_LL_CP, // "ll-cp" : large loss permanent correction
} wsml_loss_kind;
#define WSML_LOSS_NUM_KINDS 9

typedef enum {
    WSML_THRESHOLD_RELATIVE, // top-k of the batch's unobserved losses (docs/methods.md §2)
    WSML_THRESHOLD_ABSOLUTE, // fixed value R(t) = R0 - (t-1)·Δabs (supp. §B)
} wsml_threshold_kind;
#define WSML_THRESHOLD_NUM_KINDS 2

typedef struct {
    wsml_loss_kind kind;
    wsml_threshold_kind threshold; // LL-R/Ct/Cp only
    double delta_rel_percent;      // Δrel in PERCENT per epoch (reference: 0.1..0.5)
    double r0;                     // absolute threshold at epoch 1
    double delta_abs;              // absolute threshold decrement per epoch
    double ls_coef;                // AN-LS smoothing, default 0.1
    double expected_num_pos;       // EPR/ROLE k (wsml_expected_num_pos)
    // Reproduce the public LargeLossMatters code instead of the paper (docs/methods.md §2 note):
    // LL-Cp runs exactly as LL-Ct (k from the rejection rate, no flips), and with a
    // relative threshold the modification test is the reference's
    // `where(U < thr, L, corrected)` over ALL entries, so that when thr == 0 observed
    // entries are "corrected" too (observed positive -> target 0, observed negative ->
    // target 1), as torch.where does there. Off: observed entries are never modified.
    int reference_quirks;
} wsml_loss_config;

// Defaults: kind AN, relative threshold, Δrel 0.2 %, R0 2.0, Δabs 0.1, ls 0.1,
// expected_num_pos 0 (must be set for EPR/ROLE), quirks off.
void wsml_loss_config_default(wsml_loss_config *cfg);
// "full" "an" "an-ls" "wan" "epr" "role" "ll-r" "ll-ct" "ll-cp" -> kind; -1 if unknown.
int wsml_loss_kind_parse(const char *name);
const char *wsml_loss_kind_name(wsml_loss_kind kind);
// "relative" / "absolute" -> kind; -1 if unknown.
int wsml_threshold_kind_parse(const char *name);
const char *wsml_threshold_kind_name(wsml_threshold_kind kind);
// 1 for LL-R, LL-Ct, LL-Cp.
int wsml_loss_is_large_loss(wsml_loss_kind kind);
// 1 for the losses that use expected_num_pos (EPR, ROLE; docs/methods.md §2).
int wsml_loss_uses_expected_num_pos(wsml_loss_kind kind);
// Checks ranges (ls in [0,1], Δrel >= 0, k > 0 for EPR/ROLE, C >= 2 for WAN, ...);
// WSML_EARG naming the flag (--delta-rel, --epr-k, ...) otherwise.
int wsml_loss_config_check(const wsml_loss_config *cfg, int num_classes, wsml_err *err);

// EPR/ROLE's k (docs/methods.md §2): Cole et al.'s table for dataset names "voc"/"pascal" 1.5,
// "coco" 2.9, "nuswide"/"nus-wide" 1.9, "cub" 3.14e1; any other name: the mean number
// of positives (full == 1) per image of `full` (N x C), or 0 when full is NULL or N == 0.
double wsml_expected_num_pos(const char *dataset_name, const int8_t *full, int64_t num_images,
                             int num_classes);
// Cole et al.'s k for the dataset a store holds, keyed by what its info records (never by
// a directory name): the dedicated ingest formats name it (format "voc", "coco", "cub");
// for a generic one (npy, csv) the store's name (wsml-ingest --name) is looked up
// without case, '-', '_' or ' ' ("NUS-WIDE" -> nuswide). 0 when not in the table.
double wsml_expected_num_pos_for_store(const char *format, const char *name);

// ---- per-epoch quantities of the large-loss family ---------------------------------

// The reference's clean rate at the start of epoch t (1-based), in double exactly as
// train.py computes it: clean = 1; after every epoch clean -= pct / 100.
double wsml_ll_clean_rate(double delta_rel_percent, int epoch);
// Relative threshold's k for a batch of `batch_size` x `num_classes` at epoch t:
// 0 when the batch is not modified (clean rate == 1, i.e. epoch 1 or Δrel == 0);
// LL-R/LL-Ct (and LL-Cp under reference_quirks): ceil(B·C·(1 − clean));
// LL-Cp: ceil(B·C·(pct/100)). Computed in double as the reference; may exceed B·C
// for absurd Δrel (wsml_loss_compute then fails with WSML_EARG naming --delta-rel).
int64_t wsml_ll_k(const wsml_loss_config *cfg, int batch_size, int num_classes, int epoch);
// Absolute threshold R(t) = R0 − (t−1)·Δabs in double (epoch 1 uses R0: wsml's choice).
double wsml_ll_abs_threshold(const wsml_loss_config *cfg, int epoch);

// ---- one batch -----------------------------------------------------------------------

typedef struct {
    int batch_size;                // B, the actual batch (the last of an epoch may be smaller)
    int num_classes;               // C
    int epoch;                     // t, 1-based
    const float *logits;           // z: (B, C)
    const int8_t *observed;        // y_obs: (B, C), the trainer's label state (incl. flips)
    const int8_t *full;            // (B, C) full labels, or NULL (no diagnostics);
                                   // required by WSML_LOSS_FULL
    const float *estimator_logits; // ROLE only: G rows of the batch's images (B, C)
} wsml_loss_input;

typedef struct {
    double loss;                     // scalar batch loss (incl. reg)
    double reg;                      // the regulariser part (EPR, ROLE), else 0
    int64_t k;                       // relative threshold's k for this batch (0: not modified)
    float threshold;                 // relative: the k-th largest U; absolute: (float)R(t); NaN if
                                     // this batch is not subject to modification
    int64_t num_modified;            // entries rejected / corrected in this batch
    int64_t num_modified_hidden_pos; // ... of which full == 1 and y_obs == 0 (-1: no full)
    int64_t num_hidden_pos;          // entries with full == 1 and y_obs == 0 (-1: no full)
    int64_t num_flips;               // LL-Cp: (row, class) pairs written to out->flips
} wsml_loss_stats;

typedef struct {
    float *dlogits;           // (B, C): dL/dz, overwritten
    float *destimator_logits; // ROLE: (B, C) dL/dG rows, overwritten; NULL otherwise
    int32_t *flips;           // LL-Cp: room for 2·B·C int32; receives num_flips
                              // (row in batch, class) pairs in row-major order (the
                              // order of torch.where). NULL: flips are only counted.
    uint8_t *modified;        // optional (B, C): 1 where the entry was modified; or NULL
    wsml_loss_stats stats;
} wsml_loss_output;

// Computes the batch loss, its gradient and the diagnostics. What it computes, with
// N = B·C, p = sigmoid(z) in float32, nlog(x) = −log(x + 1e-5) (Cole et al.) and
// bce(z, t) = (1−t)·z + m + log(exp(−m) + exp(−z−m)), m = max(−z, 0), in float32 as
// torch.nn.functional.binary_cross_entropy_with_logits (so it is exactly 0 where the
// reference's is):
//   full : L = bce(z, full == 1) (unknown full labels count as 0);  loss = Σ L / N.
//   an   : L = bce(z, y_obs == 1);                                   loss = Σ L / N.
//   ll-* : L as AN; U = L where y_obs == 0, else 0; the entries "modified" in this batch
//          (see below) use 0 (LL-R) or Lc = bce(z, 1) (LL-Ct, LL-Cp) instead of L;
//          loss = Σ / N (the denominator stays N).
//          relative: k = wsml_ll_k(); if k > 0, thr = k-th largest of U over the batch
//          (ties counted, as torch.topk), modified = y_obs == 0 and U >= thr;
//          LL-Cp also reports the flips U > thr (strictly) — the trainer makes them
//          observed positives for later epochs (wsml_label_state).
//          absolute: R = R(t); modified = y_obs == 0 and U > (float)R (the comparison
//          of a float32 tensor with a Python scalar); LL-Cp flips = the modified set.
//   an-ls: l = (1−ls)·nlog(p) + ls·nlog(1−p) on observed positives, (1−ls)·nlog(1−p) +
//          ls·nlog(p) elsewhere;                  loss = Σ l / N.
//   wan  : l = nlog(p) on observed positives, nlog(1−p)/(C−1) elsewhere; loss = Σ l / N.
//   epr  : l = nlog(p) on observed positives, 0 elsewhere; reg = (mean_b Σ_c p − k)²/C²;
//          loss = Σ l / N + reg.
//   role : q = sigmoid(G rows); l = 0.5·(A_f + A_g) + 0.5·(X_f + X_g) (docs/methods.md §2, with
//          the bars detached); reg = 0.5·(reg_epr(p) + reg_epr(q)); loss = Σ l / N + reg.
// dlogits = dloss/dz (and destimator_logits = dloss/dG for ROLE), as PyTorch's
// autograd gives for the reference code. Observed negatives (-1) count as "not an
// observed positive" everywhere (AN target 0; Cole's "every other entry").
// Errors: WSML_EARG (bad sizes, missing array the kind needs, k > B·C),
// WSML_ENUMERIC (a non-finite logit, naming row and class), WSML_ENOMEM.
int wsml_loss_compute(const wsml_loss_config *cfg, const wsml_loss_input *in, wsml_loss_output *out,
                      wsml_err *err);

// ---- ROLE's label estimator ------------------------------------------------------------

// Initial estimator logits G (N, C) as Cole et al.'s LabelEstimator, with numpy's
// RandomState(seed).random_sample((N, C)) in place of torch.rand: for every entry in
// row-major order u is drawn and G = (float)(w·(2u − 1)), w = logit(0.6) in double
// (computed as inverse_sigmoid(0.5 + 0.1)); then observed positives get
// (float)logit(0.995) and observed negatives (float)logit(0.005).
void wsml_role_init_estimator(float *estimator_logits, const int8_t *observed, int64_t num_images,
                              int num_classes, uint32_t seed);

// ---- LL-Cp's label state -----------------------------------------------------------------

// The permanent corrections of LL-Cp: the set of (image, class) pairs of the training
// split that have become observed positives. Sparse, so OpenImages-sized splits
// (millions of images x 5,000 classes) cost memory per flip, not per entry.
// Each image appears once per epoch, so applying a batch's flips right after its step
// is the same as applying them at the end of the epoch ("for all later epochs").
typedef struct {
    int64_t num_images;
    int num_classes;
    size_t count;        // number of flipped pairs
    size_t capacity;     // hash table slots (power of two)
    uint64_t *slots;     // open addressing, key = image·C + class, empty = UINT64_MAX
    uint32_t *per_image; // flips per image (to skip images without any)
} wsml_label_state;

// Name of the checkpoint tensor: I64 (n, 2) rows (image, class), sorted.
#define WSML_LABEL_STATE_TENSOR "label_state.flips"
// ROLE's estimator logits in checkpoints: F32 (N, C).
#define WSML_ROLE_ESTIMATOR_TENSOR "role.estimator_logits"

int wsml_label_state_init(wsml_label_state *s, int64_t num_images, int num_classes, wsml_err *err);
void wsml_label_state_free(wsml_label_state *s);
// Records the flips of one batch: flips are (row, class) pairs from wsml_loss_output,
// image_index[row] is the training-split index of the batch's row (0 <= row < B).
int wsml_label_state_apply(wsml_label_state *s, const int64_t *image_index, int batch_size,
                           const int32_t *flips, int64_t num_flips, wsml_err *err);
// Overrides observed (B, C) rows in place: an entry of a flipped pair becomes 1.
void wsml_label_state_overlay(const wsml_label_state *s, const int64_t *image_index, int batch_size,
                              int8_t *observed);
// 1 if (image, class) is flipped.
int wsml_label_state_contains(const wsml_label_state *s, int64_t image, int cls);
// The flips as sorted (image, class) int64 pairs, malloc'd (caller frees; NULL with
// *n = 0 when empty) — the data of the checkpoint tensor.
int wsml_label_state_pairs(const wsml_label_state *s, int64_t **pairs, size_t *n, wsml_err *err);
// Fills a tensor view (name WSML_LABEL_STATE_TENSOR, I64, shape (n, 2)) over pairs.
void wsml_label_state_tensor_view(const int64_t *pairs, size_t n, wsml_tensor_view *view);
// Replaces the state with the pairs of a checkpoint tensor view (I64, (n, 2)); every
// pair must lie inside (num_images, num_classes): WSML_ECORRUPT naming it otherwise,
// and then the state is left unchanged.
int wsml_label_state_load_view(wsml_label_state *s, const wsml_tensor_view *view, wsml_err *err);

// ---- state a loss keeps across batches -------------------------------------------------
//
// Some losses keep state over the whole training split: ROLE its label estimator (the
// logits G, N x C, trained by the optimizer beside the network), LL-Cp its permanent
// corrections (wsml_label_state). The trainer holds them through this one interface and
// never asks which loss it runs; a loss without state gets a NULL state, and every
// function below accepts NULL (doing nothing). Adding a loss with state means adding its
// functions and one line to the table in train/loss_state.c.
//
// One step of the trainer with a state s:
//   observed = the batch's observed labels;  wsml_loss_state_begin_batch(s, ...);
//   wsml_loss_compute(...);  network backward and optimizer step;
//   wsml_loss_state_end_batch(s, ...).
// Checkpoints carry the state's tensors (wsml_loss_state_save / _load), so that a resumed
// run continues bit for bit.

typedef struct wsml_loss_state wsml_loss_state;

// What a state may need from the trainer when it is made.
typedef struct {
    int64_t num_images; // N of the training split
    int num_classes;    // C
    int max_batch;      // the largest batch B
    uint32_t seed;      // --seed (ROLE's initial estimator)
    wsml_optim *optim;  // a state with trained parameters adds its group here ...
    double lr;          // ... at this learning rate (ROLE: lr_mult · lr, as Cole et al.)
    // Fills observed (N, C) with the training split's observed labels (ROLE starts from
    // them); returns 0 or a negative wsml_code with err set.
    int (*read_observed)(void *ctx, int8_t *observed, wsml_err *err);
    void *ctx;
} wsml_loss_state_env;

// Makes the state the loss of cfg keeps, or sets *out = NULL when it keeps none (every
// loss but role, and ll-cp without reference_quirks). WSML_ENOMEM, or the errors of
// env->read_observed and wsml_optim_add_group.
int wsml_loss_state_create(const wsml_loss_config *cfg, const wsml_loss_state_env *env,
                           wsml_loss_state **out, wsml_err *err);
void wsml_loss_state_free(wsml_loss_state *s); // NULL is a no-op

// Before wsml_loss_compute of a batch whose rows are the training images index[0..B-1]:
// overrides observed (B, C) with the state's labels (LL-Cp: corrected entries become 1)
// and points in/out at the state's buffers (ROLE: in->estimator_logits = the batch's rows
// of G, out->destimator_logits; LL-Cp: out->flips). Buffers stay valid until end_batch.
void wsml_loss_state_begin_batch(wsml_loss_state *s, const int64_t *index, int batch_size,
                                 int8_t *observed, wsml_loss_input *in, wsml_loss_output *out);
// After the network's optimizer step of that batch, with wsml_loss_compute's `out`:
// makes the batch's results part of the state (ROLE: one optimizer step of G from the
// batch's dL/dG rows, PyTorch's zero_grad for every other row; LL-Cp: the flips become
// observed positives for later epochs). full (B, C) may be NULL; *flips_true_pos
// receives how many of the batch's flips are full == 1 (0 without flips or full).
// comm (common/comm.h; NULL: one process): data-parallel processes, each passing its
// share of the global batch; the state then holds, on every process, what one process
// training the whole global batch would (LL-Cp: every process's flips; ROLE: one step
// of G over every process's rows, whose dL/dG rows the caller scaled to the global mean).
int wsml_loss_state_end_batch(wsml_loss_state *s, wsml_comm *comm, const int64_t *index,
                              int batch_size, const int8_t *full, const wsml_loss_output *out,
                              int64_t *flips_true_pos, wsml_err *err);
// Labels corrected so far (run.jsonl's corrected_total), or -1 for a state (or loss)
// that corrects none.
int64_t wsml_loss_state_num_corrected(const wsml_loss_state *s);

// Checkpoint: views of the state's tensors (at most cap; *n = how many; 2 always
// suffice), valid until the next call or wsml_loss_state_free. WSML_ENOMEM.
int wsml_loss_state_save(wsml_loss_state *s, wsml_tensor_view *views, size_t cap, size_t *n,
                         wsml_err *err);
// Restores the state from a checkpoint's tensors: each tensor of wsml_loss_state_save
// must be present with its dtype and shape, else WSML_ECORRUPT naming it.
int wsml_loss_state_load(wsml_loss_state *s, const wsml_safetensors *st, wsml_err *err);

// LinearInit (docs/methods.md §3): the part of the state that a fine-tune started with
// --init takes over from the frozen run's best.safetensors. ROLE: the label estimates, as
// Cole et al. hand them on (through probabilities clipped to [1e-5, 1 − 1e-5]); LL-Cp's
// corrections are not carried (the reference rebuilds its dataset for the new run).
// save_carried: views of those tensors (*n = 0 for a state that carries nothing).
// carry: returns 1 after taking them over, 0 when st has none (the state keeps its fresh
// initialisation), or WSML_ECORRUPT naming a tensor of the wrong dtype or shape.
int wsml_loss_state_save_carried(wsml_loss_state *s, wsml_tensor_view *views, size_t cap, size_t *n,
                                 wsml_err *err);
int wsml_loss_state_carry(wsml_loss_state *s, const wsml_safetensors *st, wsml_err *err);

#endif
