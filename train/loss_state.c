// State that losses keep across batches (train/loss.h, "state a loss keeps across
// batches"): ROLE's label estimator and LL-Cp's permanent corrections behind one
// interface, so that the trainer never asks which loss it runs.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/comm.h"
#include "train/loss.h"

// What one kind of state does; `self` is a state_size-byte block, zeroed before init.
typedef struct {
    size_t state_size;
    int (*init)(void *self, const wsml_loss_config *cfg, const wsml_loss_state_env *env,
                wsml_err *err);
    void (*free)(void *self);
    void (*begin_batch)(void *self, const int64_t *index, int batch_size, int8_t *observed,
                        wsml_loss_input *in, wsml_loss_output *out);
    // comm: the data-parallel processes (NULL or one process: this batch alone). With
    // several, every process passes its own share of the global batch and ends up with
    // the state one process training the whole global batch would hold (LL-Cp: the
    // union of every process's flips; ROLE: one optimizer step of G over the rows of every
    // process's share, which are disjoint).
    int (*end_batch)(void *self, wsml_comm *comm, const int64_t *index, int batch_size,
                     const int8_t *full, const wsml_loss_output *out, int64_t *flips_true_pos,
                     wsml_err *err);
    int64_t (*num_corrected)(const void *self); // NULL: corrects no labels
    int (*save)(void *self, wsml_tensor_view *views, size_t cap, size_t *n, wsml_err *err);
    int (*load)(void *self, const wsml_safetensors *st, wsml_err *err);
    // LinearInit: takes over what a fine-tune keeps from the frozen run (1), or finds
    // nothing to take (0); NULL: nothing is carried (wsml_loss_state_carry in loss.h).
    int (*carry)(void *self, const wsml_safetensors *st, wsml_err *err);
} state_ops;

// Every process's `bytes` bytes at send into *recv (malloc'd, rank order), *total bytes.
static int gather_all(wsml_comm *comm, const void *send, size_t bytes, void **recv, size_t *total,
                      wsml_err *err) {
    size_t *counts = malloc(sizeof(size_t) * (size_t)comm->size);
    *recv = NULL;
    if (!counts)
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    int rc = comm->allgather(comm, &bytes, sizeof bytes, counts, err);
    *total = 0;
    for (int r = 0; r < comm->size && rc == 0; r++)
        *total += counts[r];
    if (rc == 0 && !(*recv = malloc(*total + 1)))
        rc = wsml_errf(err, WSML_ENOMEM, "out of memory for %zu bytes of other processes' state",
                       *total);
    if (rc == 0)
        rc = comm->allgatherv(comm, send, counts, *recv, err);
    free(counts);
    if (rc < 0) {
        free(*recv);
        *recv = NULL;
    }
    return rc;
}

struct wsml_loss_state {
    const state_ops *ops;
    void *self;
};

// ---- ROLE: the label estimator (docs/methods.md §2)
// --------------------------------------------------

typedef struct {
    int64_t num_images;
    int num_classes;
    float *estimator_logits; // G: (N, C)
    float *estimator_grad;   // dL/dG: (N, C), zero outside a step (PyTorch's zero_grad)
    float *batch_logits;     // (B, C) the batch's rows of G
    float *batch_grad;       // (B, C) dL/dG of those rows (wsml_loss_compute's output)
    wsml_optim *optim;
    int group; // G's optimizer group ("estimator")
} role_state;

static int role_init(void *self, const wsml_loss_config *cfg, const wsml_loss_state_env *env,
                     wsml_err *err) {
    (void)cfg;
    role_state *r = self;
    const size_t all = (size_t)env->num_images * env->num_classes;
    const size_t rows = (size_t)env->max_batch * env->num_classes;
    r->num_images = env->num_images;
    r->num_classes = env->num_classes;
    r->estimator_logits = malloc(all * sizeof(float));
    r->estimator_grad = calloc(all, sizeof(float));
    r->batch_logits = malloc(rows * sizeof(float));
    r->batch_grad = malloc(rows * sizeof(float));
    int8_t *observed = malloc(all + 1);
    if (!r->estimator_logits || !r->estimator_grad || !r->batch_logits || !r->batch_grad ||
        !observed) {
        free(observed);
        return wsml_errf(err, WSML_ENOMEM, "out of memory for ROLE's %lld x %d estimator",
                         (long long)env->num_images, env->num_classes);
    }
    int rc = env->read_observed(env->ctx, observed, err);
    if (rc >= 0)
        wsml_role_init_estimator(r->estimator_logits, observed, env->num_images, env->num_classes,
                                 env->seed);
    free(observed);
    if (rc < 0)
        return rc;
    // Cole et al. train G with the same optimizer at the head's learning rate.
    rc = r->group = wsml_optim_add_group(env->optim, "estimator", all, env->lr, err);
    r->optim = env->optim;
    return rc < 0 ? rc : 0;
}

static void role_free(void *self) {
    role_state *r = self;
    free(r->estimator_logits);
    free(r->estimator_grad);
    free(r->batch_logits);
    free(r->batch_grad);
}

static void role_begin_batch(void *self, const int64_t *index, int batch_size, int8_t *observed,
                             wsml_loss_input *in, wsml_loss_output *out) {
    (void)observed;
    role_state *r = self;
    const int C = r->num_classes;
    for (int row = 0; row < batch_size; row++)
        memcpy(r->batch_logits + (size_t)row * C, r->estimator_logits + (size_t)index[row] * C,
               C * sizeof(float));
    in->estimator_logits = r->batch_logits;
    out->destimator_logits = r->batch_grad;
}

static int64_t read_i64(const char *p) {
    int64_t v;
    memcpy(&v, p, sizeof v);
    return v;
}

static int role_end_batch(void *self, wsml_comm *comm, const int64_t *index, int batch_size,
                          const int8_t *full, const wsml_loss_output *out, int64_t *flips_true_pos,
                          wsml_err *err) {
    (void)full, (void)out;
    role_state *r = self;
    const int C = r->num_classes;
    *flips_true_pos = 0;
    // The global batch's rows: this process's, or every process's (index, dL/dG row)
    // records in rank order (the trainer scaled each process's rows to the global mean).
    const size_t rec = sizeof(int64_t) + C * sizeof(float);
    char *all = NULL;
    int64_t rows = batch_size;
    if (comm && (comm->size > 1 || comm->forced)) {
        char *mine = malloc(rec * (size_t)batch_size + 1);
        if (!mine)
            return wsml_errf(err, WSML_ENOMEM, "out of memory");
        for (int row = 0; row < batch_size; row++) {
            memcpy(mine + rec * row, &index[row], sizeof(int64_t));
            memcpy(mine + rec * row + sizeof(int64_t), r->batch_grad + (size_t)row * C,
                   C * sizeof(float));
        }
        size_t total = 0;
        int rc = gather_all(comm, mine, rec * (size_t)batch_size, (void **)&all, &total, err);
        free(mine);
        if (rc < 0)
            return wsml_err_prefix(err, "role: gathering the estimator's gradients");
        rows = (int64_t)(total / rec);
    }
    // record `row`: its image and its dL/dG row
#define ROW_IMAGE(row) (all ? read_i64(all + rec * (row)) : index[row])
#define ROW_GRAD(row)                                                                              \
    (all ? (const float *)(all + rec * (row) + sizeof(int64_t)) : r->batch_grad + (size_t)(row)*C)
    for (int64_t row = 0; row < rows; row++)
        memcpy(r->estimator_grad + (size_t)ROW_IMAGE(row) * C, ROW_GRAD(row), C * sizeof(float));
    wsml_optim_step(r->optim, r->group, r->estimator_logits, r->estimator_grad);
    // the rows that are not in the next batch have a zero gradient (PyTorch's zero_grad)
    for (int64_t row = 0; row < rows; row++)
        memset(r->estimator_grad + (size_t)ROW_IMAGE(row) * C, 0, C * sizeof(float));
#undef ROW_IMAGE
#undef ROW_GRAD
    free(all);
    return 0;
}

static int role_save(void *self, wsml_tensor_view *views, size_t cap, size_t *n, wsml_err *err) {
    role_state *r = self;
    if (cap < 1)
        return wsml_errf(err, WSML_EARG, "role: no room for the estimator tensor");
    wsml_tensor_view *v = &views[0];
    memset(v, 0, sizeof *v);
    v->name = WSML_ROLE_ESTIMATOR_TENSOR;
    v->dtype = WSML_DT_F32;
    v->ndim = 2;
    v->shape[0] = r->num_images;
    v->shape[1] = r->num_classes;
    v->count = (size_t)r->num_images * r->num_classes;
    v->data = r->estimator_logits;
    v->nbytes = v->count * sizeof(float);
    *n = 1;
    return 0;
}

static int role_load(void *self, const wsml_safetensors *st, wsml_err *err) {
    role_state *r = self;
    const int64_t shape[2] = {r->num_images, r->num_classes};
    return wsml_st_get_f32(st, WSML_ROLE_ESTIMATOR_TENSOR, 2, shape, r->estimator_logits, err);
}

// Cole et al. (train.py, linear_init) give the fine-tune the frozen phase's best estimates
// as probabilities, sigmoid(G), which LabelEstimator turns back into logits with its
// inverse_sigmoid (p clipped to [1e-5, 1 - 1e-5]); all in float32 as PyTorch/NumPy do.
static int role_carry(void *self, const wsml_safetensors *st, wsml_err *err) {
    role_state *r = self;
    if (!wsml_st_find(st, WSML_ROLE_ESTIMATOR_TENSOR))
        return 0;
    int rc = role_load(self, st, err);
    if (rc < 0)
        return rc;
    const size_t all = (size_t)r->num_images * r->num_classes;
    const float lo = 1e-5f, hi = 1.0f - 1e-5f;
    for (size_t i = 0; i < all; i++) {
        float p = 1.0f / (1.0f + expf(-r->estimator_logits[i]));
        p = p < lo ? lo : p > hi ? hi : p;
        r->estimator_logits[i] = logf(p / (1.0f - p));
    }
    return 1;
}

static const state_ops role_ops = {
    .state_size = sizeof(role_state),
    .init = role_init,
    .free = role_free,
    .begin_batch = role_begin_batch,
    .end_batch = role_end_batch,
    .save = role_save,
    .load = role_load,
    .carry = role_carry,
};

// ---- LL-Cp: permanent corrections (docs/methods.md §2)
// ------------------------------------------------

typedef struct {
    wsml_label_state labels;
    int num_classes;
    int32_t *flips; // (2·B·C) the batch's (row, class) pairs (wsml_loss_output.flips)
    int64_t *pairs; // the checkpoint tensor's data, from the last save
} llcp_state;

static int llcp_init(void *self, const wsml_loss_config *cfg, const wsml_loss_state_env *env,
                     wsml_err *err) {
    (void)cfg;
    llcp_state *l = self;
    int rc = wsml_label_state_init(&l->labels, env->num_images, env->num_classes, err);
    if (rc < 0)
        return rc;
    l->num_classes = env->num_classes;
    l->flips = malloc(2 * (size_t)env->max_batch * env->num_classes * sizeof(int32_t));
    return l->flips ? 0 : wsml_errf(err, WSML_ENOMEM, "out of memory");
}

static void llcp_free(void *self) {
    llcp_state *l = self;
    if (l->labels.slots)
        wsml_label_state_free(&l->labels);
    free(l->flips);
    free(l->pairs);
}

static void llcp_begin_batch(void *self, const int64_t *index, int batch_size, int8_t *observed,
                             wsml_loss_input *in, wsml_loss_output *out) {
    (void)in;
    llcp_state *l = self;
    wsml_label_state_overlay(&l->labels, index, batch_size, observed);
    out->flips = l->flips;
}

static int llcp_end_batch(void *self, wsml_comm *comm, const int64_t *index, int batch_size,
                          const int8_t *full, const wsml_loss_output *out, int64_t *flips_true_pos,
                          wsml_err *err) {
    llcp_state *l = self;
    const int64_t num_flips = out->stats.num_flips > 0 ? out->stats.num_flips : 0;
    *flips_true_pos = 0;
    for (int64_t f = 0; f < num_flips && full; f++) {
        int row = l->flips[2 * f], cls = l->flips[2 * f + 1];
        *flips_true_pos += full[(size_t)row * l->num_classes + cls] == 1;
    }
    if (!comm || (comm->size == 1 && !comm->forced))
        return num_flips
                   ? wsml_label_state_apply(&l->labels, index, batch_size, l->flips, num_flips, err)
                   : 0;
    // Every process's flips as (image, class) pairs, applied by every process (the
    // checkpoint keeps them sorted, so the order does not matter).
    int64_t *mine = malloc(2 * sizeof(int64_t) * (size_t)num_flips + 1), *all = NULL;
    if (!mine)
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    for (int64_t f = 0; f < num_flips; f++) {
        mine[2 * f] = index[l->flips[2 * f]];
        mine[2 * f + 1] = l->flips[2 * f + 1];
    }
    size_t total = 0;
    int rc =
        gather_all(comm, mine, 2 * sizeof(int64_t) * (size_t)num_flips, (void **)&all, &total, err);
    free(mine);
    if (rc < 0)
        return wsml_err_prefix(err, "ll-cp: gathering the corrections");
    for (size_t f = 0; f < total / (2 * sizeof(int64_t)) && rc == 0; f++) {
        int32_t pair[2] = {0, (int32_t)all[2 * f + 1]};
        rc = wsml_label_state_apply(&l->labels, &all[2 * f], 1, pair, 1, err);
    }
    free(all);
    return rc;
}

static int64_t llcp_num_corrected(const void *self) {
    const llcp_state *l = self;
    return (int64_t)l->labels.count;
}

static int llcp_save(void *self, wsml_tensor_view *views, size_t cap, size_t *n, wsml_err *err) {
    llcp_state *l = self;
    if (cap < 1)
        return wsml_errf(err, WSML_EARG, "ll-cp: no room for the label state tensor");
    free(l->pairs);
    l->pairs = NULL;
    size_t num_pairs = 0;
    int rc = wsml_label_state_pairs(&l->labels, &l->pairs, &num_pairs, err);
    if (rc < 0)
        return rc;
    wsml_label_state_tensor_view(l->pairs, num_pairs, &views[0]);
    *n = 1;
    return 0;
}

static int llcp_load(void *self, const wsml_safetensors *st, wsml_err *err) {
    llcp_state *l = self;
    const wsml_tensor_view *v = wsml_st_find(st, WSML_LABEL_STATE_TENSOR);
    if (!v)
        return wsml_errf(err, WSML_ECORRUPT, "tensor %s is missing", WSML_LABEL_STATE_TENSOR);
    return wsml_label_state_load_view(&l->labels, v, err);
}

static const state_ops llcp_ops = {
    .state_size = sizeof(llcp_state),
    .init = llcp_init,
    .free = llcp_free,
    .begin_batch = llcp_begin_batch,
    .end_batch = llcp_end_batch,
    .num_corrected = llcp_num_corrected,
    .save = llcp_save,
    .load = llcp_load,
};

// ---- the table -----------------------------------------------------------------------------

// The state each loss keeps (NULL: none). A new loss with state adds a line here.
static const state_ops *ops_for(const wsml_loss_config *cfg) {
    switch (cfg->kind) {
    case WSML_LOSS_ROLE:
        return &role_ops;
    case WSML_LOSS_LL_CP:
        // the public code's LL-Cp runs as LL-Ct: no corrections to keep (docs/methods.md §2 note)
        return cfg->reference_quirks ? NULL : &llcp_ops;
    default:
        return NULL;
    }
}

int wsml_loss_state_create(const wsml_loss_config *cfg, const wsml_loss_state_env *env,
                           wsml_loss_state **out, wsml_err *err) {
    *out = NULL;
    const state_ops *ops = ops_for(cfg);
    if (!ops)
        return 0;
    wsml_loss_state *s = calloc(1, sizeof *s);
    void *self = calloc(1, ops->state_size);
    if (!s || !self) {
        free(s);
        free(self);
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    }
    s->ops = ops;
    s->self = self;
    int rc = ops->init(self, cfg, env, err);
    if (rc < 0) {
        wsml_loss_state_free(s);
        return rc;
    }
    *out = s;
    return 0;
}

void wsml_loss_state_free(wsml_loss_state *s) {
    if (!s)
        return;
    s->ops->free(s->self);
    free(s->self);
    free(s);
}

void wsml_loss_state_begin_batch(wsml_loss_state *s, const int64_t *index, int batch_size,
                                 int8_t *observed, wsml_loss_input *in, wsml_loss_output *out) {
    if (s)
        s->ops->begin_batch(s->self, index, batch_size, observed, in, out);
}

int wsml_loss_state_end_batch(wsml_loss_state *s, wsml_comm *comm, const int64_t *index,
                              int batch_size, const int8_t *full, const wsml_loss_output *out,
                              int64_t *flips_true_pos, wsml_err *err) {
    *flips_true_pos = 0;
    return s ? s->ops->end_batch(s->self, comm, index, batch_size, full, out, flips_true_pos, err)
             : 0;
}

int64_t wsml_loss_state_num_corrected(const wsml_loss_state *s) {
    return s && s->ops->num_corrected ? s->ops->num_corrected(s->self) : -1;
}

int wsml_loss_state_save(wsml_loss_state *s, wsml_tensor_view *views, size_t cap, size_t *n,
                         wsml_err *err) {
    *n = 0;
    return s ? s->ops->save(s->self, views, cap, n, err) : 0;
}

int wsml_loss_state_load(wsml_loss_state *s, const wsml_safetensors *st, wsml_err *err) {
    return s ? s->ops->load(s->self, st, err) : 0;
}

int wsml_loss_state_save_carried(wsml_loss_state *s, wsml_tensor_view *views, size_t cap, size_t *n,
                                 wsml_err *err) {
    *n = 0;
    return s && s->ops->carry ? s->ops->save(s->self, views, cap, n, err) : 0;
}

int wsml_loss_state_carry(wsml_loss_state *s, const wsml_safetensors *st, wsml_err *err) {
    return s && s->ops->carry ? s->ops->carry(s->self, st, err) : 0;
}
