// Optimisers with PyTorch's exact update rules (torch.optim.Adam / torch.optim.SGD of
// PyTorch 1.13, the single-tensor CPU path), over flat float32 arrays grouped in
// parameter groups (docs/methods.md §3: backbone lr, head lr = lr_mult · lr; ROLE's estimator).
//
// Float32 op order: each step evaluates the same float32 operations as PyTorch's
// kernels, including the fused multiply-adds of its vectorised `add(x, alpha=a)` and
// `addcmul`, so that on an x86-64 CPU with AVX2/AVX-512 the results equal PyTorch's bit
// for bit (tests/unit/test_optim.c checks 20 steps, two groups, against torch).
//
// Adam, step t of a group (bias corrections and step size in double as adam.py):
//   g  = grad + wd·p                 (only if wd != 0; fmaf(p, wd, grad))
//   m  = m·β1 + (1−β1)·g             (fmaf(g, 1−β1, m·β1))
//   v  = v·β2 + ((1−β2)·g)·g         (fmaf((1−β2)·g, g, v·β2))
//   bc1 = 1 − β1^t, bc2 = 1 − β2^t, step_size = lr / bc1      (double)
//   denom = sqrt(v) / (float)sqrt(bc2) + eps
//   p  = p + ((float)(−step_size)·m) / denom
// SGD (momentum μ, dampening 0, no Nesterov):
//   d = grad + wd·p (fmaf); buf = d on the first step, else buf·μ + d; p = fmaf(buf, −lr, p)
//   (with μ = 0 there is no buffer: p = fmaf(d, −lr, p)).
#ifndef WSML_OPTIM_H
#define WSML_OPTIM_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/safetensors.h"

typedef enum { WSML_OPTIM_ADAM, WSML_OPTIM_SGD } wsml_optim_kind;
#define WSML_OPTIM_NUM_KINDS 2

typedef struct {
    wsml_optim_kind kind;
    double beta1, beta2, eps; // Adam
    double momentum;          // SGD
    double weight_decay;      // L2 term added to the gradient (both)
} wsml_optim_config;

// PyTorch's Adam defaults (β 0.9/0.999, eps 1e-8, wd 0) or the reference's SGD
// (momentum 0.9, weight decay 1e-3) — docs/methods.md §3.
void wsml_optim_config_default(wsml_optim_config *cfg, wsml_optim_kind kind);
// "adam" / "sgd" -> kind; -1 if unknown.
int wsml_optim_kind_parse(const char *name);
const char *wsml_optim_kind_name(wsml_optim_kind kind);

#define WSML_OPTIM_MAX_GROUPS 4
#define WSML_OPTIM_NAME_MAX 32

typedef struct {
    char name[WSML_OPTIM_NAME_MAX]; // "backbone", "head", "estimator": names the tensors
    size_t count;                   // parameters in the group
    double lr;                      // may be changed between steps
    int64_t step;                   // updates applied so far (PyTorch's state['step'])
    float *exp_avg;                 // Adam m, or SGD momentum buffer (NULL for SGD with momentum 0)
    float *exp_avg_sq;              // Adam v (NULL for SGD)
} wsml_optim_group;

typedef struct {
    wsml_optim_config cfg;
    int num_groups;
    wsml_optim_group group[WSML_OPTIM_MAX_GROUPS];
    // storage for tensor names of wsml_optim_state_views
    char tensor_names[WSML_OPTIM_MAX_GROUPS * 3][WSML_OPTIM_NAME_MAX + 32];
} wsml_optim;

// Checks cfg (β in [0, 1), eps > 0, momentum >= 0, wd >= 0) and starts with no groups.
int wsml_optim_init(wsml_optim *o, const wsml_optim_config *cfg, wsml_err *err);
// Adds a group of `count` parameters with learning rate lr, state zeroed, step 0;
// returns the group index (>= 0) or a negative wsml_code. Names must be distinct and
// made of [A-Za-z0-9_-].
int wsml_optim_add_group(wsml_optim *o, const char *name, size_t count, double lr, wsml_err *err);
void wsml_optim_free(wsml_optim *o);

// One update of group g: params (count) -= ..., from grads (count). A group that is
// never stepped (a frozen backbone) keeps step 0, as in PyTorch.
// params: (count,)  grads: (count,)
void wsml_optim_step(wsml_optim *o, int g, float *params, const float *grads);
// The same update with the group's state in the caller's arrays of count floats
// (exp_avg: Adam's m or SGD's momentum buffer, NULL for SGD without momentum;
// exp_avg_sq: Adam's v, NULL for SGD): the cpu backend's optim_step (train/backend.h).
// wsml_optim_step(o, g, p, d) is wsml_optim_step_state(o, g, p, d, exp_avg, exp_avg_sq)
// with the group's own arrays.
void wsml_optim_step_state(wsml_optim *o, int g, float *params, const float *grads, float *exp_avg,
                           float *exp_avg_sq);

// ---- checkpoints ---------------------------------------------------------------------
// The state as safetensors tensors over the optimiser's own memory:
//   optim.<group>.step            I64 (1,)
//   optim.<group>.exp_avg         F32 (count,)   Adam; SGD: optim.<group>.momentum_buffer
//   optim.<group>.exp_avg_sq      F32 (count,)   Adam only
// Writes at most cap views, *n = how many; WSML_EARG if cap is too small
// (3 · WSML_OPTIM_MAX_GROUPS always suffices). The views stay valid while o lives.
int wsml_optim_state_views(wsml_optim *o, wsml_tensor_view *views, size_t cap, size_t *n,
                           wsml_err *err);
// Restores the state from tensors (e.g. wsml_safetensors' tensors, n) of a checkpoint
// written by the same configuration: every tensor above must be present with the
// right dtype and count, else WSML_ECORRUPT naming it; nothing changes on error.
int wsml_optim_state_load(wsml_optim *o, const wsml_tensor_view *tensors, size_t n, wsml_err *err);

#endif
