// Adam and SGD with PyTorch's update rules (see optim.h for the exact float32 order).
#include "train/optim.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

// Every rounding step of PyTorch's kernels is written out (fmaf where PyTorch fuses);
// the compiler must not fuse a separate multiply and add on its own when built for a
// CPU with FMA (-march=native), or SGD's buf·μ + d would round once instead of twice.
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

void wsml_optim_config_default(wsml_optim_config *cfg, wsml_optim_kind kind) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->kind = kind;
    cfg->beta1 = 0.9;
    cfg->beta2 = 0.999;
    cfg->eps = 1e-8;
    if (kind == WSML_OPTIM_SGD) {
        cfg->momentum = 0.9;      // LargeLossMatters train.py
        cfg->weight_decay = 1e-3; // ditto
    }
}

int wsml_optim_kind_parse(const char *name) {
    if (strcmp(name, "adam") == 0)
        return WSML_OPTIM_ADAM;
    if (strcmp(name, "sgd") == 0)
        return WSML_OPTIM_SGD;
    return -1;
}

const char *wsml_optim_kind_name(wsml_optim_kind kind) {
    return kind == WSML_OPTIM_SGD ? "sgd" : "adam";
}

int wsml_optim_init(wsml_optim *o, const wsml_optim_config *cfg, wsml_err *err) {
    memset(o, 0, sizeof(*o));
    if (cfg->kind != WSML_OPTIM_ADAM && cfg->kind != WSML_OPTIM_SGD)
        return wsml_errf(err, WSML_EARG, "--optimizer: unknown kind %d", (int)cfg->kind);
    if (cfg->kind == WSML_OPTIM_ADAM &&
        !(cfg->beta1 >= 0 && cfg->beta1 < 1 && cfg->beta2 >= 0 && cfg->beta2 < 1 && cfg->eps > 0))
        return wsml_errf(err, WSML_EARG, "adam: betas (%g, %g) must lie in [0, 1), eps %g > 0",
                         cfg->beta1, cfg->beta2, cfg->eps);
    if (!(cfg->momentum >= 0 && isfinite(cfg->momentum)))
        return wsml_errf(err, WSML_EARG, "sgd: momentum %g must be >= 0", cfg->momentum);
    if (!(cfg->weight_decay >= 0 && isfinite(cfg->weight_decay)))
        return wsml_errf(err, WSML_EARG, "optimizer: weight decay %g must be >= 0",
                         cfg->weight_decay);
    o->cfg = *cfg;
    return 0;
}

int wsml_optim_add_group(wsml_optim *o, const char *name, size_t count, double lr, wsml_err *err) {
    if (o->num_groups >= WSML_OPTIM_MAX_GROUPS)
        return wsml_errf(err, WSML_EARG, "optimizer: more than %d parameter groups",
                         WSML_OPTIM_MAX_GROUPS);
    size_t len = strlen(name);
    if (len == 0 || len >= WSML_OPTIM_NAME_MAX ||
        strspn(name, "abcdefghijklmnopqrstuvwxyz"
                     "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
                     "0123456789_-") != len)
        return wsml_errf(err, WSML_EARG, "optimizer: bad parameter group name '%s'", name);
    for (int g = 0; g < o->num_groups; g++)
        if (strcmp(o->group[g].name, name) == 0)
            return wsml_errf(err, WSML_EARG, "optimizer: parameter group '%s' added twice", name);
    if (!(lr >= 0 && isfinite(lr)))
        return wsml_errf(err, WSML_EARG, "--lr: learning rate %g of group '%s' must be >= 0", lr,
                         name);
    wsml_optim_group *grp = &o->group[o->num_groups];
    memset(grp, 0, sizeof(*grp));
    memcpy(grp->name, name, len + 1);
    grp->count = count;
    grp->lr = lr;
    size_t bytes = (count ? count : 1) * sizeof(float);
    int adam = o->cfg.kind == WSML_OPTIM_ADAM;
    if (adam || o->cfg.momentum != 0) {
        grp->exp_avg = calloc(1, bytes);
        if (adam)
            grp->exp_avg_sq = calloc(1, bytes);
        if (!grp->exp_avg || (adam && !grp->exp_avg_sq)) {
            free(grp->exp_avg);
            free(grp->exp_avg_sq);
            return wsml_errf(err, WSML_ENOMEM, "optimizer: out of memory for group '%s' (%zu)",
                             name, count);
        }
    }
    return o->num_groups++;
}

void wsml_optim_free(wsml_optim *o) {
    for (int g = 0; g < o->num_groups; g++) {
        free(o->group[g].exp_avg);
        free(o->group[g].exp_avg_sq);
    }
    memset(o, 0, sizeof(*o));
}

// params, grads, m, v: (n,) — adam.py _single_tensor_adam, one tensor.
static void adam_update(float *params, const float *grads, float *m, float *v, size_t n,
                        const wsml_optim_config *cfg, double lr, int64_t step) {
    // Python scalars reach the float32 kernels rounded to float.
    const float beta1 = (float)cfg->beta1, beta2 = (float)cfg->beta2;
    const float one_minus_beta1 = (float)(1 - cfg->beta1);
    const float one_minus_beta2 = (float)(1 - cfg->beta2);
    const float weight_decay = (float)cfg->weight_decay;
    const double bias_correction1 = 1 - pow(cfg->beta1, (double)step);
    const double bias_correction2 = 1 - pow(cfg->beta2, (double)step);
    const float neg_step_size = (float)(-(lr / bias_correction1));
    const float bias_correction2_sqrt = (float)sqrt(bias_correction2);
    const float eps = (float)cfg->eps;
    const int decay = cfg->weight_decay != 0;
    for (size_t i = 0; i < n; i++) {
        float g = decay ? fmaf(params[i], weight_decay, grads[i]) : grads[i];
        m[i] = fmaf(g, one_minus_beta1, m[i] * beta1);
        v[i] = fmaf(one_minus_beta2 * g, g, v[i] * beta2);
        float denom = sqrtf(v[i]) / bias_correction2_sqrt + eps;
        params[i] = params[i] + (neg_step_size * m[i]) / denom;
    }
}

// params, grads, buf: (n,) — sgd.py _single_tensor_sgd, dampening 0, no Nesterov.
static void sgd_update(float *params, const float *grads, float *buf, size_t n,
                       const wsml_optim_config *cfg, double lr, int64_t step) {
    const float weight_decay = (float)cfg->weight_decay;
    const float momentum = (float)cfg->momentum;
    const float neg_lr = (float)(-lr);
    const int decay = cfg->weight_decay != 0;
    for (size_t i = 0; i < n; i++) {
        float d = decay ? fmaf(params[i], weight_decay, grads[i]) : grads[i];
        if (buf) {
            // first step: buf = clone(d_p); later: buf.mul_(momentum).add_(d_p)
            buf[i] = step == 1 ? d : buf[i] * momentum + d;
            d = buf[i];
        }
        params[i] = fmaf(d, neg_lr, params[i]);
    }
}

void wsml_optim_step_state(wsml_optim *o, int g, float *params, const float *grads, float *exp_avg,
                           float *exp_avg_sq) {
    wsml_optim_group *grp = &o->group[g];
    grp->step++;
    if (o->cfg.kind == WSML_OPTIM_ADAM)
        adam_update(params, grads, exp_avg, exp_avg_sq, grp->count, &o->cfg, grp->lr, grp->step);
    else
        sgd_update(params, grads, exp_avg, grp->count, &o->cfg, grp->lr, grp->step);
}

void wsml_optim_step(wsml_optim *o, int g, float *params, const float *grads) {
    wsml_optim_step_state(o, g, params, grads, o->group[g].exp_avg, o->group[g].exp_avg_sq);
}

// ---- checkpoints ---------------------------------------------------------------------

static const char *buffer_name(const wsml_optim *o, int which) {
    if (which == 0)
        return "step";
    if (which == 1)
        return o->cfg.kind == WSML_OPTIM_ADAM ? "exp_avg" : "momentum_buffer";
    return "exp_avg_sq";
}

static void set_view(wsml_tensor_view *v, char *name, wsml_dtype dtype, int64_t count,
                     const void *data, size_t nbytes) {
    memset(v, 0, sizeof(*v));
    v->name = name;
    v->dtype = dtype;
    v->ndim = 1;
    v->shape[0] = count;
    v->count = (size_t)count;
    v->data = data;
    v->nbytes = nbytes;
}

int wsml_optim_state_views(wsml_optim *o, wsml_tensor_view *views, size_t cap, size_t *n,
                           wsml_err *err) {
    size_t k = 0;
    for (int g = 0; g < o->num_groups; g++) {
        wsml_optim_group *grp = &o->group[g];
        const void *data[3] = {&grp->step, grp->exp_avg, grp->exp_avg_sq};
        for (int which = 0; which < 3; which++) {
            if (!data[which])
                continue;
            if (k >= cap)
                return wsml_errf(err, WSML_EARG, "optimizer: room for %zu state tensors only", cap);
            char local[sizeof(o->tensor_names[0])]; // (the group name lives in o too)
            snprintf(local, sizeof(local), "optim.%s.%s", grp->name, buffer_name(o, which));
            char *name = o->tensor_names[g * 3 + which];
            memcpy(name, local, sizeof(local));
            if (which == 0)
                set_view(&views[k++], name, WSML_DT_I64, 1, data[0], sizeof(int64_t));
            else
                set_view(&views[k++], name, WSML_DT_F32, (int64_t)grp->count, data[which],
                         grp->count * sizeof(float));
        }
    }
    *n = k;
    return 0;
}

static const wsml_tensor_view *find_tensor(const wsml_tensor_view *tensors, size_t n,
                                           const char *name) {
    for (size_t i = 0; i < n; i++)
        if (tensors[i].name && strcmp(tensors[i].name, name) == 0)
            return &tensors[i];
    return NULL;
}

int wsml_optim_state_load(wsml_optim *o, const wsml_tensor_view *tensors, size_t n, wsml_err *err) {
    // Validate everything first so that a bad checkpoint changes nothing.
    const wsml_tensor_view *found[WSML_OPTIM_MAX_GROUPS][3] = {{NULL}};
    char name[WSML_OPTIM_NAME_MAX + 32];
    for (int g = 0; g < o->num_groups; g++) {
        wsml_optim_group *grp = &o->group[g];
        const void *data[3] = {&grp->step, grp->exp_avg, grp->exp_avg_sq};
        for (int which = 0; which < 3; which++) {
            if (!data[which])
                continue;
            snprintf(name, sizeof(name), "optim.%s.%s", grp->name, buffer_name(o, which));
            const wsml_tensor_view *t = find_tensor(tensors, n, name);
            if (!t)
                return wsml_errf(err, WSML_ECORRUPT, "checkpoint lacks tensor %s", name);
            wsml_dtype want = which == 0 ? WSML_DT_I64 : WSML_DT_F32;
            size_t count = which == 0 ? 1 : grp->count;
            size_t elem = which == 0 ? sizeof(int64_t) : sizeof(float);
            if (t->dtype != want || t->count != count || t->nbytes != count * elem)
                return wsml_errf(err, WSML_ECORRUPT,
                                 "checkpoint tensor %s: expected %s with %zu elements, got %s "
                                 "with %zu",
                                 name, wsml_dtype_name(want), count, wsml_dtype_name(t->dtype),
                                 t->count);
            found[g][which] = t;
        }
    }
    for (int g = 0; g < o->num_groups; g++) {
        wsml_optim_group *grp = &o->group[g];
        int64_t step;
        memcpy(&step, found[g][0]->data, sizeof(step));
        if (step < 0)
            return wsml_errf(err, WSML_ECORRUPT, "checkpoint tensor optim.%s.step is %lld",
                             grp->name, (long long)step);
    }
    for (int g = 0; g < o->num_groups; g++) {
        wsml_optim_group *grp = &o->group[g];
        memcpy(&grp->step, found[g][0]->data, sizeof(int64_t));
        if (found[g][1])
            memcpy(grp->exp_avg, found[g][1]->data, grp->count * sizeof(float));
        if (found[g][2])
            memcpy(grp->exp_avg_sq, found[g][2]->data, grp->count * sizeof(float));
    }
    return 0;
}
