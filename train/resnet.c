// ResNet-18/34/50/101 (torchvision layout and names) with the linear or BoostLU head,
// forward and backward over a backend (train/net.h, train/backend.h).
//
// The network is a list of "units" (a convolution followed by its batch norm, the
// residual add and ReLU fused into the BN) grouped into blocks:
//   stem:       conv1 → bn1 → relu → maxpool 3x3/2
//   BasicBlock: conv1 → bn1 → relu → conv2 → bn2 (+ identity or downsample) → relu
//   Bottleneck: conv1 (1x1) → bn1 → relu → conv2 (3x3, the block's stride) → bn2 → relu
//               → conv3 (1x1) → bn3 (+ identity or downsample) → relu
//   downsample: conv 1x1 with the block's stride → bn (no relu)    (torchvision v1.5)
// Each unit keeps its conv output y (the BN input) and its BN output a (the next
// unit's input) for backward; activation gradients flow through five scratch buffers
// of the largest activation's size instead of one per activation.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "common/safetensors.h"
#include "train/net.h"

#define BN_MOMENTUM 0.1f
#define BN_EPS 1e-5f
#define NAME_MAX_LEN 48

typedef struct {
    char conv_name[NAME_MAX_LEN]; // "layer1.0.conv1", "layer2.0.downsample.0", "conv1"
    char bn_name[NAME_MAX_LEN];   // "layer1.0.bn1", "layer2.0.downsample.1", "bn1"
    wsml_conv_desc conv;
    int relu;
    size_t first_tensor; // conv weight; then bn weight, bias, running_mean, running_var,
                         // num_batches_tracked
    // parameters (device), carved out of the net's allocations
    float *w, *dw, *gamma, *dgamma, *beta, *dbeta, *running_mean, *running_var;
    int64_t num_batches_tracked;
    // activations (device)
    const float *x;                 // input (n, in_h, in_w, I): another unit's a, or the image
    float *y;                       // conv output (n, out_h, out_w, O)
    float *a;                       // act(bn(y) + residual)
    const float *residual;          // NULL, the block input, or the downsample unit's a
    float *save_mean, *save_invstd; // (O)
} unit;

typedef struct {
    int first_unit, num_units; // conv1.., the last one takes the residual
    int downsample;            // unit index or -1
    const float *in;           // block input
    float *out;                // the last unit's a
} block;

struct wsml_net {
    wsml_net_config cfg;
    wsml_backend *be;
    int base_width, feat_dim, feat_h, feat_w;

    unit *units;
    int num_units;
    block *blocks;
    int num_blocks;
    wsml_pool_desc pool;

    wsml_net_tensor_info *tensors;
    char (*names)[NAME_MAX_LEN + 24];
    size_t num_tensors;
    size_t num_params, num_backbone_params, num_buffer_floats;
    size_t fc_weight_tensor; // fc.bias follows

    float *params, *grads, *buffers; // device
    float *fc_w, *fc_dw, *fc_b, *fc_db;
    float *activations; // one device allocation, carved below
    float *input;       // (max_batch, H, W, 3)
    float *pool_out;    // stem maxpool output (n, H/4, W/4, base)
    int32_t *pool_argmax;
    float *pooled, *dpooled;         // linear head (n, F)
    float *cam, *dcam;               // (n, hw, C): BoostLU's CAM; dcam also CAM scratch
    float *logits_dev, *dlogits_dev; // (n, C)
    float *grad_buf[5];              // scratch activation gradients, max_act each
    size_t max_act;
    float *logits_host;

    int last_n, last_train, frozen;
    wsml_grads_ready_fn grads_ready; // wsml_net_set_grads_ready
    void *grads_ready_ctx;
};

// ----------------------------------------------------------------------------
// configuration

void wsml_net_config_default(wsml_net_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->arch = WSML_ARCH_RESNET50;
    cfg->width_mult = 1.0;
    cfg->num_classes = 0;
    cfg->head = WSML_HEAD_LINEAR;
    cfg->alpha = 5.0f;
    cfg->height = cfg->width = 448;
    cfg->max_batch = 16;
}

static const char *const ARCH_NAMES[] = {"resnet18", "resnet34", "resnet50", "resnet101"};
static const char *const HEAD_NAMES[] = {"linear", "boostlu"};

int wsml_arch_parse(const char *name) {
    for (int i = 0; i < WSML_NUM_ARCHS; i++)
        if (name && strcmp(name, ARCH_NAMES[i]) == 0)
            return i;
    return -1;
}
const char *wsml_arch_name(wsml_arch arch) {
    return (unsigned)arch < WSML_NUM_ARCHS ? ARCH_NAMES[arch] : "?";
}
int wsml_head_parse(const char *name) {
    for (int i = 0; i < WSML_NUM_HEADS; i++)
        if (name && strcmp(name, HEAD_NAMES[i]) == 0)
            return i;
    return -1;
}
const char *wsml_head_name(wsml_head_kind head) {
    return (unsigned)head < WSML_NUM_HEADS ? HEAD_NAMES[head] : "?";
}

const wsml_net_config *wsml_net_get_config(const wsml_net *net) {
    return &net->cfg;
}

wsml_backend *wsml_net_backend(const wsml_net *net) {
    return net->be;
}

// Blocks per stage and whether blocks are bottlenecks (torchvision resnet.py).
static void arch_layout(wsml_arch arch, int blocks[4], int *bottleneck) {
    static const int L18[4] = {2, 2, 2, 2}, L34[4] = {3, 4, 6, 3}, L101[4] = {3, 4, 23, 3};
    const int *l = arch == WSML_ARCH_RESNET18 ? L18 : arch == WSML_ARCH_RESNET101 ? L101 : L34;
    memcpy(blocks, l, sizeof(L18));
    *bottleneck = arch == WSML_ARCH_RESNET50 || arch == WSML_ARCH_RESNET101;
}

// ----------------------------------------------------------------------------
// building

static void set_conv(unit *u, int in_c, int out_c, int in_h, int in_w, int k, int stride, int pad,
                     int max_batch) {
    wsml_conv_desc *d = &u->conv;
    memset(d, 0, sizeof(*d));
    d->in_channels = in_c;
    d->out_channels = out_c;
    d->in_h = in_h;
    d->in_w = in_w;
    d->kernel_h = d->kernel_w = k;
    d->stride = stride;
    d->pad = pad;
    d->out_h = (in_h + 2 * pad - k) / stride + 1;
    d->out_w = (in_w + 2 * pad - k) / stride + 1;
    d->max_batch = max_batch;
}

static size_t act_size(const unit *u, int n) {
    return (size_t)n * u->conv.out_h * u->conv.out_w * u->conv.out_channels;
}

// Adds a tensor to the list (state_dict order). Offsets: params / buffers / counters.
static size_t add_tensor(wsml_net *net, const char *prefix, const char *suffix,
                         wsml_net_tensor_kind kind, int ndim, const int64_t *shape,
                         size_t *param_off, size_t *buf_off, size_t *counter_off, int is_head,
                         int ohwi) {
    size_t i = net->num_tensors++;
    wsml_net_tensor_info *t = &net->tensors[i];
    snprintf(net->names[i], sizeof(net->names[i]), "%s.%s", prefix, suffix);
    t->name = net->names[i];
    t->kind = kind;
    t->ndim = ndim;
    size_t count = 1;
    for (int d = 0; d < ndim; d++) {
        t->shape[d] = shape[d];
        count *= (size_t)shape[d];
    }
    t->count = count;
    t->is_head = is_head;
    t->ohwi = ohwi;
    if (kind == WSML_NET_PARAM) {
        t->offset = *param_off;
        *param_off += count;
    } else if (kind == WSML_NET_RUNNING) {
        t->offset = *buf_off;
        *buf_off += count;
    } else {
        t->offset = *counter_off;
        *counter_off += 1;
    }
    return i;
}

static void add_unit_tensors(wsml_net *net, unit *u, size_t *po, size_t *bo, size_t *co) {
    const wsml_conv_desc *d = &u->conv;
    int64_t wshape[4] = {d->out_channels, d->in_channels, d->kernel_h, d->kernel_w};
    int64_t cshape[1] = {d->out_channels};
    u->first_tensor = add_tensor(net, u->conv_name, "weight", WSML_NET_PARAM, 4, wshape, po, bo, co,
                                 0, d->kernel_h * d->kernel_w > 1 ? 1 : 0);
    add_tensor(net, u->bn_name, "weight", WSML_NET_PARAM, 1, cshape, po, bo, co, 0, 0);
    add_tensor(net, u->bn_name, "bias", WSML_NET_PARAM, 1, cshape, po, bo, co, 0, 0);
    add_tensor(net, u->bn_name, "running_mean", WSML_NET_RUNNING, 1, cshape, po, bo, co, 0, 0);
    add_tensor(net, u->bn_name, "running_var", WSML_NET_RUNNING, 1, cshape, po, bo, co, 0, 0);
    add_tensor(net, u->bn_name, "num_batches_tracked", WSML_NET_COUNTER, 0, NULL, po, bo, co, 0, 0);
}

// Assigns (base != NULL) or just measures the activation block; returns its floats.
static size_t layout_activations(wsml_net *net, float *base) {
    size_t off = 0;
    const int B = net->cfg.max_batch, C = net->cfg.num_classes;
    const size_t hw = (size_t)net->feat_h * net->feat_w;
#define CARVE(ptr, type, count)                                                                    \
    do {                                                                                           \
        if (base)                                                                                  \
            ptr = (type *)(base + off);                                                            \
        off += ((size_t)(count) + 15) / 16 * 16;                                                   \
    } while (0)
    CARVE(net->input, float, (size_t)B * net->cfg.height * net->cfg.width * 3);
    for (int i = 0; i < net->num_units; i++) {
        unit *u = &net->units[i];
        CARVE(u->y, float, act_size(u, B));
        CARVE(u->a, float, act_size(u, B));
        CARVE(u->save_mean, float, u->conv.out_channels);
        CARVE(u->save_invstd, float, u->conv.out_channels);
    }
    size_t pool_size = (size_t)B * net->pool.out_h * net->pool.out_w * net->pool.channels;
    CARVE(net->pool_out, float, pool_size);
    CARVE(net->pool_argmax, int32_t, pool_size);
    CARVE(net->pooled, float, (size_t)B * net->feat_dim);
    CARVE(net->dpooled, float, (size_t)B * net->feat_dim);
    CARVE(net->cam, float, (size_t)B *hw *C);
    CARVE(net->dcam, float, (size_t)B *hw *C);
    CARVE(net->logits_dev, float, (size_t)B *C);
    CARVE(net->dlogits_dev, float, (size_t)B *C);
    for (int g = 0; g < 5; g++)
        CARVE(net->grad_buf[g], float, net->max_act);
#undef CARVE
    return off;
}

static int build(wsml_net *net, wsml_err *err) {
    const wsml_net_config *cfg = &net->cfg;
    int stage_blocks[4], bottleneck;
    arch_layout(cfg->arch, stage_blocks, &bottleneck);
    const int expansion = bottleneck ? 4 : 1, B = cfg->max_batch;
    int total_blocks = 0;
    for (int s = 0; s < 4; s++)
        total_blocks += stage_blocks[s];
    int max_units = 1 + total_blocks * (bottleneck ? 3 : 2) + 4;
    net->units = calloc((size_t)max_units, sizeof(unit));
    net->blocks = calloc((size_t)total_blocks, sizeof(block));
    size_t max_tensors = (size_t)max_units * 6 + 2;
    net->tensors = calloc(max_tensors, sizeof(*net->tensors));
    net->names = calloc(max_tensors, sizeof(*net->names));
    if (!net->units || !net->blocks || !net->tensors || !net->names)
        return wsml_errf(err, WSML_ENOMEM, "network: out of memory");

    const int base = net->base_width;
    size_t po = 0, bo = 0, co = 0;
    // stem
    unit *stem = &net->units[net->num_units++];
    strcpy(stem->conv_name, "conv1");
    strcpy(stem->bn_name, "bn1");
    set_conv(stem, 3, base, cfg->height, cfg->width, 7, 2, 3, B);
    stem->relu = 1;
    add_unit_tensors(net, stem, &po, &bo, &co);
    net->pool.channels = base;
    net->pool.in_h = stem->conv.out_h;
    net->pool.in_w = stem->conv.out_w;
    net->pool.kernel = 3;
    net->pool.stride = 2;
    net->pool.pad = 1;
    net->pool.out_h = (net->pool.in_h + 2 - 3) / 2 + 1;
    net->pool.out_w = (net->pool.in_w + 2 - 3) / 2 + 1;

    int in_c = base, h = net->pool.out_h, w = net->pool.out_w;
    for (int s = 0; s < 4; s++) {
        int planes = base << s;
        for (int bi = 0; bi < stage_blocks[s]; bi++) {
            block *bk = &net->blocks[net->num_blocks++];
            int stride = (s > 0 && bi == 0) ? 2 : 1;
            int out_c = planes * expansion;
            bk->first_unit = net->num_units;
            bk->num_units = bottleneck ? 3 : 2;
            bk->downsample = -1;
            char prefix[32];
            snprintf(prefix, sizeof(prefix), "layer%d.%d", s + 1, bi);
            for (int k = 0; k < bk->num_units; k++) {
                unit *u = &net->units[net->num_units++];
                snprintf(u->conv_name, NAME_MAX_LEN, "%s.conv%d", prefix, k + 1);
                snprintf(u->bn_name, NAME_MAX_LEN, "%s.bn%d", prefix, k + 1);
                u->relu = 1;
                if (bottleneck) {
                    if (k == 0)
                        set_conv(u, in_c, planes, h, w, 1, 1, 0, B);
                    if (k == 1)
                        set_conv(u, planes, planes, h, w, 3, stride, 1, B);
                    if (k == 2)
                        set_conv(u, planes, out_c, u[-1].conv.out_h, u[-1].conv.out_w, 1, 1, 0, B);
                } else {
                    if (k == 0)
                        set_conv(u, in_c, planes, h, w, 3, stride, 1, B);
                    if (k == 1)
                        set_conv(u, planes, planes, u[-1].conv.out_h, u[-1].conv.out_w, 3, 1, 1, B);
                }
                add_unit_tensors(net, u, &po, &bo, &co);
            }
            if (stride != 1 || in_c != out_c) {
                bk->downsample = net->num_units;
                unit *u = &net->units[net->num_units++];
                snprintf(u->conv_name, NAME_MAX_LEN, "%s.downsample.0", prefix);
                snprintf(u->bn_name, NAME_MAX_LEN, "%s.downsample.1", prefix);
                u->relu = 0;
                set_conv(u, in_c, out_c, h, w, 1, stride, 0, B);
                add_unit_tensors(net, u, &po, &bo, &co);
            }
            unit *last = &net->units[bk->first_unit + bk->num_units - 1];
            in_c = out_c;
            h = last->conv.out_h;
            w = last->conv.out_w;
        }
    }
    net->feat_dim = in_c;
    net->feat_h = h;
    net->feat_w = w;
    net->num_backbone_params = po;
    int64_t fcw_shape[2] = {cfg->num_classes, in_c}, fcb_shape[1] = {cfg->num_classes};
    net->fc_weight_tensor =
        add_tensor(net, "fc", "weight", WSML_NET_PARAM, 2, fcw_shape, &po, &bo, &co, 1, 0);
    add_tensor(net, "fc", "bias", WSML_NET_PARAM, 1, fcb_shape, &po, &bo, &co, 1, 0);
    net->num_params = po;
    net->num_buffer_floats = bo;

    // wiring: inputs and residuals
    stem->x = NULL; // set per forward to net->input
    net->max_act = 0;
    for (int i = 0; i < net->num_units; i++)
        if (act_size(&net->units[i], B) > net->max_act)
            net->max_act = act_size(&net->units[i], B);
    size_t pool_size = (size_t)B * net->pool.out_h * net->pool.out_w * base;
    if (pool_size > net->max_act)
        net->max_act = pool_size;
    return 0;
}

static void wire(wsml_net *net) {
    net->units[0].x = net->input;
    const float *prev = net->pool_out;
    for (int b = 0; b < net->num_blocks; b++) {
        block *bk = &net->blocks[b];
        bk->in = prev;
        for (int k = 0; k < bk->num_units; k++) {
            unit *u = &net->units[bk->first_unit + k];
            u->x = k == 0 ? bk->in : u[-1].a;
            u->residual = NULL;
        }
        unit *last = &net->units[bk->first_unit + bk->num_units - 1];
        if (bk->downsample >= 0) {
            unit *ds = &net->units[bk->downsample];
            ds->x = bk->in;
            last->residual = ds->a;
        } else {
            last->residual = bk->in;
        }
        bk->out = last->a;
        prev = bk->out;
    }
}

static void point_params(wsml_net *net) {
    for (int i = 0; i < net->num_units; i++) {
        unit *u = &net->units[i];
        const wsml_net_tensor_info *t = &net->tensors[u->first_tensor];
        u->w = net->params + t[0].offset;
        u->dw = net->grads + t[0].offset;
        u->gamma = net->params + t[1].offset;
        u->dgamma = net->grads + t[1].offset;
        u->beta = net->params + t[2].offset;
        u->dbeta = net->grads + t[2].offset;
        u->running_mean = net->buffers + t[3].offset;
        u->running_var = net->buffers + t[4].offset;
    }
    const wsml_net_tensor_info *fc = &net->tensors[net->fc_weight_tensor];
    net->fc_w = net->params + fc[0].offset;
    net->fc_dw = net->grads + fc[0].offset;
    net->fc_b = net->params + fc[1].offset;
    net->fc_db = net->grads + fc[1].offset;
}

int wsml_net_create(const wsml_net_config *cfg, wsml_backend *be, wsml_net **out, wsml_err *err) {
    *out = NULL;
    if ((unsigned)cfg->arch > WSML_ARCH_RESNET101)
        return wsml_errf(err, WSML_EARG, "--arch: unknown architecture %d", (int)cfg->arch);
    if (!(cfg->width_mult > 0.0) || cfg->width_mult > 64.0)
        return wsml_errf(err, WSML_EARG, "--width-mult %g: expected a value in (0, 64]",
                         cfg->width_mult);
    if (cfg->num_classes < 1)
        return wsml_errf(err, WSML_EARG, "--num-classes %d: expected at least 1", cfg->num_classes);
    if ((unsigned)cfg->head > WSML_HEAD_BOOSTLU)
        return wsml_errf(err, WSML_EARG, "--head: unknown head %d", (int)cfg->head);
    // Any size, as torchvision: every layer's output is floor((in + 2·pad − k)/stride) + 1
    // and the global average pool takes whatever is left (ceil(side/32) per side).
    if (cfg->height < 32 || cfg->width < 32 || cfg->height > 8192 || cfg->width > 8192)
        return wsml_errf(err, WSML_EARG, "input size %dx%d: height and width must be in [32, 8192]",
                         cfg->height, cfg->width);
    if (cfg->max_batch < 1 || cfg->max_batch > 65536)
        return wsml_errf(err, WSML_EARG, "--batch %d: expected 1..65536", cfg->max_batch);
    if (cfg->head == WSML_HEAD_BOOSTLU && !isfinite(cfg->alpha))
        return wsml_errf(err, WSML_EARG, "--alpha %g: not a finite number", cfg->alpha);

    wsml_net *net = calloc(1, sizeof(*net));
    if (!net)
        return wsml_errf(err, WSML_ENOMEM, "network: out of memory");
    net->cfg = *cfg;
    net->be = be;
    long base = lround(64.0 * cfg->width_mult);
    net->base_width = base < 1 ? 1 : (int)base;
    int rc = build(net, err);
    if (rc)
        goto fail;

    size_t act_floats = layout_activations(net, NULL);
    struct {
        float **ptr;
        size_t floats;
    } allocs[] = {{&net->params, net->num_params},
                  {&net->grads, net->num_params},
                  {&net->buffers, net->num_buffer_floats},
                  {&net->activations, act_floats}};
    for (size_t i = 0; i < sizeof(allocs) / sizeof(allocs[0]); i++) {
        *allocs[i].ptr = be->alloc(be, allocs[i].floats * sizeof(float));
        if (!*allocs[i].ptr) {
            rc = wsml_errf(err, be->err.code ? be->err.code : WSML_ENOMEM,
                           "network %s: cannot allocate %zu MiB of %s memory (%s)",
                           wsml_arch_name(cfg->arch), allocs[i].floats * sizeof(float) >> 20,
                           be->name, be->err.msg);
            goto fail;
        }
    }
    layout_activations(net, net->activations);
    point_params(net);
    wire(net);
    net->logits_host = calloc((size_t)cfg->max_batch * cfg->num_classes, sizeof(float));
    if (!net->logits_host) {
        rc = wsml_errf(err, WSML_ENOMEM, "network: out of memory");
        goto fail;
    }
    for (int i = 0; i < net->num_units; i++) {
        rc = be->conv_prepare(be, &net->units[i].conv);
        if (rc) {
            rc = wsml_errf(err, rc, "%s: %s", net->units[i].conv_name, be->err.msg);
            goto fail;
        }
    }
    if ((rc = be->zero(be, net->grads, net->num_params * sizeof(float))) != 0) {
        rc = wsml_errf(err, rc, "network: %s", be->err.msg);
        goto fail;
    }
    *out = net;
    return 0;
fail:
    wsml_net_free(net);
    return rc;
}

void wsml_net_free(wsml_net *net) {
    if (!net)
        return;
    wsml_backend *be = net->be;
    if (net->units)
        for (int i = 0; i < net->num_units; i++)
            be->conv_release(be, &net->units[i].conv);
    be->free(be, net->params);
    be->free(be, net->grads);
    be->free(be, net->buffers);
    be->free(be, net->activations);
    free(net->logits_host);
    free(net->units);
    free(net->blocks);
    free(net->tensors);
    free(net->names);
    free(net);
}

// ----------------------------------------------------------------------------
// tensors

size_t wsml_net_num_tensors(const wsml_net *net) {
    return net->num_tensors;
}
const wsml_net_tensor_info *wsml_net_tensor(const wsml_net *net, size_t i) {
    return i < net->num_tensors ? &net->tensors[i] : NULL;
}
int64_t wsml_net_find_tensor(const wsml_net *net, const char *name) {
    for (size_t i = 0; i < net->num_tensors; i++)
        if (strcmp(net->tensors[i].name, name) == 0)
            return (int64_t)i;
    return -1;
}
float *wsml_net_params(wsml_net *net) {
    return net->params;
}
float *wsml_net_grads(wsml_net *net) {
    return net->grads;
}
float *wsml_net_buffers(wsml_net *net) {
    return net->buffers;
}
size_t wsml_net_num_params(const wsml_net *net) {
    return net->num_params;
}
size_t wsml_net_num_backbone_params(const wsml_net *net) {
    return net->num_backbone_params;
}
size_t wsml_net_num_buffer_floats(const wsml_net *net) {
    return net->num_buffer_floats;
}

// OHWI <-> OIHW for a conv weight tensor; a plain copy otherwise.
void wsml_net_to_torch_layout(const wsml_net *net, size_t i, const float *src, float *dst) {
    const wsml_net_tensor_info *t = &net->tensors[i];
    if (!t->ohwi) {
        memcpy(dst, src, t->count * sizeof(float));
        return;
    }
    const int64_t O = t->shape[0], I = t->shape[1], KH = t->shape[2], KW = t->shape[3];
    for (int64_t o = 0; o < O; o++)
        for (int64_t ci = 0; ci < I; ci++)
            for (int64_t kh = 0; kh < KH; kh++)
                for (int64_t kw = 0; kw < KW; kw++)
                    dst[((o * I + ci) * KH + kh) * KW + kw] =
                        src[((o * KH + kh) * KW + kw) * I + ci];
}

void wsml_net_from_torch_layout(const wsml_net *net, size_t i, const float *src, float *dst) {
    const wsml_net_tensor_info *t = &net->tensors[i];
    if (!t->ohwi) {
        memcpy(dst, src, t->count * sizeof(float));
        return;
    }
    const int64_t O = t->shape[0], I = t->shape[1], KH = t->shape[2], KW = t->shape[3];
    for (int64_t o = 0; o < O; o++)
        for (int64_t ci = 0; ci < I; ci++)
            for (int64_t kh = 0; kh < KH; kh++)
                for (int64_t kw = 0; kw < KW; kw++)
                    dst[((o * KH + kh) * KW + kw) * I + ci] =
                        src[((o * I + ci) * KH + kh) * KW + kw];
}

static int64_t *counter_of(wsml_net *net, size_t i) {
    // Counters are numbered in unit order (one per BN).
    return &net->units[net->tensors[i].offset].num_batches_tracked;
}

static float *device_base(wsml_net *net, const wsml_net_tensor_info *t, int grad) {
    if (t->kind == WSML_NET_PARAM)
        return (grad ? net->grads : net->params) + t->offset;
    return net->buffers + t->offset;
}

static int read_floats(wsml_net *net, size_t i, const float *dev, float *host_dst, wsml_err *err) {
    const wsml_net_tensor_info *t = &net->tensors[i];
    float *tmp = malloc(t->count * sizeof(float));
    if (!tmp)
        return wsml_errf(err, WSML_ENOMEM, "%s: out of memory", t->name);
    int rc = net->be->copy_to_host(net->be, tmp, dev, t->count * sizeof(float));
    if (rc == 0)
        rc = net->be->synchronize(net->be);
    if (rc) {
        free(tmp);
        return wsml_errf(err, rc, "%s: %s", t->name, net->be->err.msg);
    }
    wsml_net_to_torch_layout(net, i, tmp, host_dst);
    free(tmp);
    return 0;
}

int wsml_net_read_tensor(wsml_net *net, size_t i, void *host_dst, wsml_err *err) {
    if (i >= net->num_tensors)
        return wsml_errf(err, WSML_EARG, "tensor index %zu", i);
    const wsml_net_tensor_info *t = &net->tensors[i];
    if (t->kind == WSML_NET_COUNTER) {
        *(int64_t *)host_dst = *counter_of(net, i);
        return 0;
    }
    return read_floats(net, i, device_base(net, t, 0), host_dst, err);
}

int wsml_net_read_grad(wsml_net *net, size_t i, float *host_dst, wsml_err *err) {
    if (i >= net->num_tensors || net->tensors[i].kind != WSML_NET_PARAM)
        return wsml_errf(err, WSML_EARG, "tensor index %zu is not a parameter", i);
    return read_floats(net, i, device_base(net, &net->tensors[i], 1), host_dst, err);
}

int wsml_net_write_tensor(wsml_net *net, size_t i, const void *host_src, wsml_err *err) {
    if (i >= net->num_tensors)
        return wsml_errf(err, WSML_EARG, "tensor index %zu", i);
    const wsml_net_tensor_info *t = &net->tensors[i];
    if (t->kind == WSML_NET_COUNTER) {
        *counter_of(net, i) = *(const int64_t *)host_src;
        return 0;
    }
    float *tmp = malloc(t->count * sizeof(float));
    if (!tmp)
        return wsml_errf(err, WSML_ENOMEM, "%s: out of memory", t->name);
    wsml_net_from_torch_layout(net, i, host_src, tmp);
    int rc =
        net->be->copy_to_device(net->be, device_base(net, t, 0), tmp, t->count * sizeof(float));
    if (rc == 0)
        rc = net->be->synchronize(net->be);
    free(tmp);
    if (rc)
        return wsml_errf(err, rc, "%s: %s", t->name, net->be->err.msg);
    return 0;
}

// ----------------------------------------------------------------------------
// initialisation

static int init_tensor(wsml_net *net, size_t i, wsml_rng *rng, float *tmp, wsml_err *err) {
    const wsml_net_tensor_info *t = &net->tensors[i];
    const char *leaf = strrchr(t->name, '.') + 1;
    if (t->kind == WSML_NET_COUNTER) {
        int64_t zero = 0;
        return wsml_net_write_tensor(net, i, &zero, err);
    }
    if (t->is_head) {
        // nn.Linear / nn.Conv2d default: kaiming_uniform_(a=sqrt(5)) gives
        // U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for the weight, and the bias the same bound.
        double bound = 1.0 / sqrt((double)net->feat_dim);
        for (size_t k = 0; k < t->count; k++)
            tmp[k] = (float)wsml_rng_uniform(rng, -bound, bound);
    } else if (t->ndim == 4) {
        // kaiming_normal_(mode="fan_out", nonlinearity="relu"): std = sqrt(2 / fan_out)
        double std = sqrt(2.0 / (double)(t->shape[0] * t->shape[2] * t->shape[3]));
        for (size_t k = 0; k < t->count; k++)
            tmp[k] = (float)(std * wsml_rng_normal(rng));
    } else {
        float v = (strcmp(leaf, "weight") == 0 || strcmp(leaf, "running_var") == 0) ? 1.0f : 0.0f;
        for (size_t k = 0; k < t->count; k++)
            tmp[k] = v;
    }
    return wsml_net_write_tensor(net, i, tmp, err);
}

static int init_range(wsml_net *net, size_t first, size_t end, uint32_t seed, wsml_err *err) {
    wsml_rng rng;
    wsml_rng_seed(&rng, seed);
    size_t max_count = 0;
    for (size_t i = first; i < end; i++)
        if (net->tensors[i].count > max_count)
            max_count = net->tensors[i].count;
    float *tmp = malloc(max_count * sizeof(float));
    if (!tmp)
        return wsml_errf(err, WSML_ENOMEM, "initialising weights: out of memory");
    int rc = 0;
    for (size_t i = first; i < end && rc == 0; i++)
        rc = init_tensor(net, i, &rng, tmp, err);
    free(tmp);
    return rc;
}

// Errors are impossible on the cpu backend; a device backend that fails a copy here is
// broken and fails the next forward as well.
void wsml_net_init(wsml_net *net, uint32_t seed) {
    init_range(net, 0, net->num_tensors, seed, NULL);
}

void wsml_net_init_head(wsml_net *net, uint32_t seed) {
    init_range(net, net->fc_weight_tensor, net->fc_weight_tensor + 2, seed, NULL);
}

// ----------------------------------------------------------------------------
// safetensors

static void format_shape(char *buf, size_t cap, int ndim, const int64_t *shape) {
    size_t len = 0;
    len += (size_t)snprintf(buf + len, cap - len, "[");
    for (int d = 0; d < ndim && len < cap; d++)
        len += (size_t)snprintf(buf + len, cap - len, "%s%lld", d ? ", " : "", (long long)shape[d]);
    if (len < cap)
        snprintf(buf + len, cap - len, "]");
}

int wsml_net_load_st(wsml_net *net, const wsml_safetensors *st, wsml_net_load_mode mode,
                     wsml_err *err) {
    size_t max_count = 0;
    for (size_t i = 0; i < net->num_tensors; i++)
        if (net->tensors[i].count > max_count)
            max_count = net->tensors[i].count;
    float *tmp = malloc(max_count * sizeof(float));
    if (!tmp)
        return wsml_errf(err, WSML_ENOMEM, "loading weights: out of memory");
    int rc = 0;
    for (size_t i = 0; i < net->num_tensors && rc == 0; i++) {
        const wsml_net_tensor_info *t = &net->tensors[i];
        if (t->is_head && mode == WSML_NET_LOAD_BACKBONE)
            continue;
        const wsml_tensor_view *v = wsml_st_find(st, t->name);
        if (t->kind == WSML_NET_COUNTER) {
            int64_t value = 0;
            if (v) {
                if (v->count != 1 || (v->dtype != WSML_DT_I64 && v->dtype != WSML_DT_I32)) {
                    rc = wsml_errf(err, WSML_EFORMAT,
                                   "tensor %s: expected one I64 value, found %zu %s values",
                                   t->name, v->count, wsml_dtype_name(v->dtype));
                    break;
                }
                if (v->dtype == WSML_DT_I64)
                    memcpy(&value, v->data, sizeof(value));
                else {
                    int32_t v32;
                    memcpy(&v32, v->data, sizeof(v32));
                    value = v32;
                }
            }
            *counter_of(net, i) = value;
            continue;
        }
        if (!v) {
            rc = wsml_errf(err, WSML_EFORMAT, "tensor %s is missing", t->name);
            break;
        }
        // Accept the BoostLU reference's 1x1 conv kernel (C, F, 1, 1) for fc.weight.
        int ndim = t->ndim;
        int64_t shape[4];
        memcpy(shape, t->shape, sizeof(shape));
        if (t->is_head && t->ndim == 2 && v->ndim == 4 && v->shape[2] == 1 && v->shape[3] == 1) {
            ndim = 4;
            shape[2] = shape[3] = 1;
        }
        int same = v->ndim == ndim;
        for (int d = 0; same && d < ndim; d++)
            same = v->shape[d] == shape[d];
        if (!same) {
            char have[96], want[96];
            format_shape(have, sizeof(have), v->ndim, v->shape);
            format_shape(want, sizeof(want), t->ndim, t->shape);
            rc = wsml_errf(err, WSML_EFORMAT, "tensor %s has shape %s, expected %s", t->name, have,
                           want);
            break;
        }
        rc = wsml_st_get_f32(st, t->name, ndim, shape, tmp, err);
        if (rc == 0)
            rc = wsml_net_write_tensor(net, i, tmp, err);
    }
    free(tmp);
    return rc;
}

int wsml_net_load(wsml_net *net, const char *path, wsml_net_load_mode mode, wsml_err *err) {
    wsml_safetensors st;
    int rc = wsml_st_read(path, &st, err);
    if (rc)
        return rc;
    rc = wsml_net_load_st(net, &st, mode, err);
    wsml_st_free(&st);
    if (rc)
        wsml_err_prefix(err, "%s", path);
    return rc;
}

int wsml_net_save(wsml_net *net, const char *path, const wsml_tensor_view *extra, size_t num_extra,
                  const char *metadata_json, wsml_err *err) {
    size_t n = net->num_tensors, nviews = n + num_extra;
    for (size_t e = 0; e < num_extra; e++)
        if (wsml_net_find_tensor(net, extra[e].name) >= 0)
            return wsml_errf(err, WSML_EARG, "%s: extra tensor %s collides with a network tensor",
                             path, extra[e].name);
    wsml_tensor_view *views = calloc(nviews, sizeof(*views));
    float *floats = malloc((net->num_params + net->num_buffer_floats) * sizeof(float));
    int64_t *counters = malloc((size_t)net->num_units * sizeof(int64_t));
    int rc = 0;
    if (!views || !floats || !counters) {
        rc = wsml_errf(err, WSML_ENOMEM, "%s: out of memory", path);
        goto done;
    }
    size_t fpos = 0;
    for (size_t i = 0; i < n; i++) {
        const wsml_net_tensor_info *t = &net->tensors[i];
        wsml_tensor_view *v = &views[i];
        v->name = (char *)t->name;
        v->ndim = t->ndim;
        memcpy(v->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
        v->count = t->count;
        if (t->kind == WSML_NET_COUNTER) {
            int64_t *c = &counters[t->offset];
            *c = *counter_of(net, i);
            v->dtype = WSML_DT_I64;
            v->data = c;
            v->nbytes = sizeof(int64_t);
        } else {
            float *dst = floats + fpos;
            fpos += t->count;
            if ((rc = wsml_net_read_tensor(net, i, dst, err)) != 0)
                goto done;
            v->dtype = WSML_DT_F32;
            v->data = dst;
            v->nbytes = t->count * sizeof(float);
        }
    }
    for (size_t e = 0; e < num_extra; e++)
        views[n + e] = extra[e];
    rc = wsml_st_write(path, views, nviews, metadata_json, err);
done:
    free(views);
    free(floats);
    free(counters);
    return rc;
}

// ----------------------------------------------------------------------------
// forward

#define BE(call, layer)                                                                            \
    do {                                                                                           \
        int rc_ = (call);                                                                          \
        if (rc_)                                                                                   \
            return wsml_errf(err, rc_, "%s: %s", (layer), net->be->err.msg);                       \
    } while (0)

// conv → BN (+ residual) (+ ReLU) for n images.
// A frozen backbone (LinearInit) runs its BN in eval mode even in a train forward.
static int unit_forward(wsml_net *net, unit *u, int n, int train, wsml_err *err) {
    wsml_backend *be = net->be;
    const int64_t rows = (int64_t)n * u->conv.out_h * u->conv.out_w;
    const int C = u->conv.out_channels;
    BE(be->conv_forward(be, &u->conv, n, u->y, u->x, u->w), u->conv_name);
    if (train && !net->frozen) {
        if (rows < 2)
            return wsml_errf(err, WSML_EARG,
                             "%s: expected more than 1 value per channel when training "
                             "(batch %d of %dx%d positions)",
                             u->bn_name, n, u->conv.out_h, u->conv.out_w);
        BE(be->bn_forward_train(be, C, rows, u->a, u->y, u->gamma, u->beta, u->residual, u->relu,
                                u->running_mean, u->running_var, u->save_mean, u->save_invstd,
                                BN_MOMENTUM, BN_EPS),
           u->bn_name);
        u->num_batches_tracked++;
    } else {
        BE(be->bn_forward_eval(be, C, rows, u->a, u->y, u->gamma, u->beta, u->residual, u->relu,
                               u->running_mean, u->running_var, BN_EPS),
           u->bn_name);
    }
    return 0;
}

int wsml_net_forward(wsml_net *net, const float *input, int n, wsml_net_mode mode, wsml_err *err) {
    wsml_backend *be = net->be;
    const wsml_net_config *cfg = &net->cfg;
    if (n < 1 || n > cfg->max_batch)
        return wsml_errf(err, WSML_EARG, "forward: batch of %d images, expected 1..%d", n,
                         cfg->max_batch);
    const int train = mode == WSML_NET_TRAIN, C = cfg->num_classes, F = net->feat_dim;
    const int hw = net->feat_h * net->feat_w;
    net->last_n = n;
    net->last_train = 0;
    BE(be->copy_to_device(be, net->input, input,
                          (size_t)n * cfg->height * cfg->width * 3 * sizeof(float)),
       "input");
    int rc = unit_forward(net, &net->units[0], n, train, err);
    if (rc)
        return rc;
    BE(be->maxpool_forward(be, &net->pool, n, net->pool_out, net->units[0].a, net->pool_argmax),
       "maxpool");
    for (int b = 0; b < net->num_blocks; b++) {
        block *bk = &net->blocks[b];
        // torchvision's order: the main branch, then the downsample branch, then the
        // add (fused into the last unit's BN), so errors name the same layer first.
        for (int k = 0; k < bk->num_units; k++) {
            if (k == bk->num_units - 1 && bk->downsample >= 0 &&
                (rc = unit_forward(net, &net->units[bk->downsample], n, train, err)) != 0)
                return rc;
            if ((rc = unit_forward(net, &net->units[bk->first_unit + k], n, train, err)) != 0)
                return rc;
        }
    }
    const float *feats = net->blocks[net->num_blocks - 1].out; // (n, hw, F)
    if (cfg->head == WSML_HEAD_LINEAR) {
        // logits = fc(mean_hw(features)): (n, F) · (C, F)^T + b
        BE(be->avgpool_forward(be, n, hw, F, net->pooled, feats), "avgpool");
        BE(be->gemm(be, 0, 1, n, C, F, 1.0f, net->pooled, F, net->fc_w, F, 0.0f, net->logits_dev,
                    C),
           "fc");
        BE(be->bias_add(be, n, C, net->logits_dev, net->fc_b), "fc");
    } else {
        // cam = 1x1 conv with fc's weights: (n·hw, F) · (C, F)^T + b; then BoostLU
        // (docs/methods.md §2)
        BE(be->gemm(be, 0, 1, n * hw, C, F, 1.0f, feats, F, net->fc_w, F, 0.0f, net->cam, C), "fc");
        BE(be->bias_add(be, (int64_t)n * hw, C, net->cam, net->fc_b), "fc");
        BE(be->boostlu_forward(be, n, hw, C, cfg->alpha, net->logits_dev, net->cam), "boostlu");
    }
    BE(be->copy_to_host(be, net->logits_host, net->logits_dev, (size_t)n * C * sizeof(float)),
       "logits");
    BE(be->synchronize(be), "logits");
    net->last_train = train;
    return 0;
}

const float *wsml_net_logits(const wsml_net *net) {
    return net->logits_host;
}

// ----------------------------------------------------------------------------
// backward

// Gradients of a unit's conv: dW += from dy and its input; dx (unless NULL) overwritten
// or accumulated.
static int unit_conv_backward(wsml_net *net, unit *u, int n, const float *dy, float *dx,
                              int accumulate, wsml_err *err) {
    wsml_backend *be = net->be;
    BE(be->conv_backward_filter(be, &u->conv, n, u->dw, dy, u->x), u->conv_name);
    if (dx)
        BE(be->conv_backward_data(be, &u->conv, n, dx, dy, u->w, accumulate), u->conv_name);
    return 0;
}

static int unit_bn_backward(wsml_net *net, unit *u, int n, const float *dy, float *dx,
                            float *dresidual, wsml_err *err) {
    wsml_backend *be = net->be;
    const int64_t rows = (int64_t)n * u->conv.out_h * u->conv.out_w;
    BE(be->bn_backward(be, u->conv.out_channels, rows, dx, dresidual, dy, u->a, u->relu, u->y,
                       u->gamma, u->save_mean, u->save_invstd, u->dgamma, u->dbeta),
       u->bn_name);
    return 0;
}

// dout: gradient of the block output; din receives the gradient of the block input.
// t1, t2, r: scratch (t1/t2 alternate along the main path, r holds the residual branch's
// gradient when there is a downsample unit).
static int block_backward(wsml_net *net, block *bk, int n, const float *dout, float *din, float *t1,
                          float *t2, float *r, wsml_err *err) {
    int rc;
    unit *first = &net->units[bk->first_unit];
    unit *ds = bk->downsample >= 0 ? &net->units[bk->downsample] : NULL;
    const float *dy = dout; // gradient of the current unit's a
    for (int k = bk->num_units - 1; k >= 0; k--) {
        unit *u = first + k;
        float *dres = k == bk->num_units - 1 ? (ds ? r : din) : NULL;
        if ((rc = unit_bn_backward(net, u, n, dy, t1, dres, err)) != 0)
            return rc;
        if (k > 0) {
            if ((rc = unit_conv_backward(net, u, n, t1, t2, 0, err)) != 0)
                return rc;
            dy = t2;
        }
    }
    // t1 = gradient of the first unit's conv output. The downsample branch writes din
    // first (its BN backward uses t2, free now), then the main branch adds to it.
    if (ds) {
        if ((rc = unit_bn_backward(net, ds, n, r, t2, NULL, err)) != 0)
            return rc;
        if ((rc = unit_conv_backward(net, ds, n, t2, din, 0, err)) != 0)
            return rc;
    }
    return unit_conv_backward(net, first, n, t1, din, 1, err);
}

// wsml_net_set_grads_ready's hook: gradients from `first` on are final.
static int grads_ready(wsml_net *net, size_t first, wsml_err *err) {
    return net->grads_ready ? net->grads_ready(net->grads_ready_ctx, first, err) : 0;
}

int wsml_net_backward(wsml_net *net, const float *dlogits, wsml_err *err) {
    wsml_backend *be = net->be;
    const wsml_net_config *cfg = &net->cfg;
    if (!net->last_train)
        return wsml_errf(err, WSML_ESTATE,
                         "backward: the last forward was not a (successful) train-mode forward");
    const int n = net->last_n, C = cfg->num_classes, F = net->feat_dim;
    const int hw = net->feat_h * net->feat_w;
    const float *feats = net->blocks[net->num_blocks - 1].out;
    float *gout = net->grad_buf[0], *gin = net->grad_buf[1];
    int rc;
    BE(be->copy_to_device(be, net->dlogits_dev, dlogits, (size_t)n * C * sizeof(float)), "dlogits");
    if (cfg->head == WSML_HEAD_LINEAR) {
        BE(be->gemm(be, 1, 0, C, F, n, 1.0f, net->dlogits_dev, C, net->pooled, F, 1.0f, net->fc_dw,
                    F),
           "fc");
        BE(be->bias_backward(be, n, C, net->fc_db, net->dlogits_dev), "fc");
        if ((rc = grads_ready(net, (size_t)(net->fc_dw - net->grads), err)) != 0)
            return rc;
        if (net->frozen)
            goto done; // LinearInit: only the head learns
        BE(be->gemm(be, 0, 0, n, F, C, 1.0f, net->dlogits_dev, C, net->fc_w, F, 0.0f, net->dpooled,
                    F),
           "fc");
        BE(be->avgpool_backward(be, n, hw, F, gout, net->dpooled), "avgpool");
    } else {
        BE(be->boostlu_backward(be, n, hw, C, cfg->alpha, net->dcam, net->dlogits_dev, net->cam),
           "boostlu");
        BE(be->gemm(be, 1, 0, C, F, n * hw, 1.0f, net->dcam, C, feats, F, 1.0f, net->fc_dw, F),
           "fc");
        BE(be->bias_backward(be, (int64_t)n * hw, C, net->fc_db, net->dcam), "fc");
        if ((rc = grads_ready(net, (size_t)(net->fc_dw - net->grads), err)) != 0)
            return rc;
        if (net->frozen)
            goto done; // LinearInit: only the head learns
        BE(be->gemm(be, 0, 0, n * hw, F, C, 1.0f, net->dcam, C, net->fc_w, F, 0.0f, gout, F), "fc");
    }
    for (int b = net->num_blocks - 1; b >= 0; b--) {
        rc = block_backward(net, &net->blocks[b], n, gout, gin, net->grad_buf[2], net->grad_buf[3],
                            net->grad_buf[4], err);
        if (rc)
            return rc;
        const unit *first = &net->units[net->blocks[b].first_unit];
        if ((rc = grads_ready(net, (size_t)(first->dw - net->grads), err)) != 0)
            return rc;
        float *tmp = gout;
        gout = gin;
        gin = tmp;
    }
    // stem: gout = gradient of the maxpool output
    unit *stem = &net->units[0];
    float *t1 = net->grad_buf[2], *t2 = net->grad_buf[3];
    BE(be->maxpool_backward(be, &net->pool, n, t2, gout, stem->a, net->pool_out, net->pool_argmax),
       "maxpool");
    if ((rc = unit_bn_backward(net, stem, n, t2, t1, NULL, err)) != 0)
        return rc;
    if ((rc = unit_conv_backward(net, stem, n, t1, NULL, 0, err)) != 0)
        return rc;
    if ((rc = grads_ready(net, 0, err)) != 0)
        return rc;
done:
    BE(be->synchronize(be), "backward");
    return 0;
}

void wsml_net_set_grads_ready(wsml_net *net, wsml_grads_ready_fn fn, void *ctx) {
    net->grads_ready = fn;
    net->grads_ready_ctx = ctx;
}

int wsml_net_zero_grad(wsml_net *net, wsml_err *err) {
    BE(net->be->zero(net->be, net->grads, net->num_params * sizeof(float)), "zero_grad");
    return 0;
}

void wsml_net_set_frozen_backbone(wsml_net *net, int frozen) {
    net->frozen = frozen != 0;
}
int wsml_net_frozen_backbone(const wsml_net *net) {
    return net->frozen;
}

// ----------------------------------------------------------------------------
// features and CAM

void wsml_net_feature_shape(const wsml_net *net, int *h, int *w, int *F) {
    if (h)
        *h = net->feat_h;
    if (w)
        *w = net->feat_w;
    if (F)
        *F = net->feat_dim;
}

int wsml_net_feature_side(int input_side) {
    return (input_side + 31) / 32; // ceil(in/2), five times
}

int wsml_net_read_features(wsml_net *net, float *host_dst, wsml_err *err) {
    if (net->last_n < 1)
        return wsml_errf(err, WSML_ESTATE, "features: no forward yet");
    size_t count = (size_t)net->last_n * net->feat_h * net->feat_w * net->feat_dim;
    BE(net->be->copy_to_host(net->be, host_dst, net->blocks[net->num_blocks - 1].out,
                             count * sizeof(float)),
       "features");
    BE(net->be->synchronize(net->be), "features");
    return 0;
}

int wsml_net_cam(wsml_net *net, float *host_dst, wsml_err *err) {
    if (net->last_n < 1)
        return wsml_errf(err, WSML_ESTATE, "cam: no forward yet");
    wsml_backend *be = net->be;
    const int n = net->last_n, C = net->cfg.num_classes, F = net->feat_dim;
    const int hw = net->feat_h * net->feat_w;
    const float *feats = net->blocks[net->num_blocks - 1].out;
    // dcam is free outside backward: (n·hw, C) = features · fc.weight^T, no bias
    BE(be->gemm(be, 0, 1, n * hw, C, F, 1.0f, feats, F, net->fc_w, F, 0.0f, net->dcam, C), "cam");
    float *tmp = malloc((size_t)n * hw * C * sizeof(float));
    if (!tmp)
        return wsml_errf(err, WSML_ENOMEM, "cam: out of memory");
    int rc = be->copy_to_host(be, tmp, net->dcam, (size_t)n * hw * C * sizeof(float));
    if (rc == 0)
        rc = be->synchronize(be);
    if (rc) {
        free(tmp);
        return wsml_errf(err, rc, "cam: %s", be->err.msg);
    }
    for (int b = 0; b < n; b++)
        for (int p = 0; p < hw; p++)
            for (int c = 0; c < C; c++)
                host_dst[((size_t)b * C + c) * hw + p] = tmp[((size_t)b * hw + p) * C + c];
    free(tmp);
    return 0;
}

// ----------------------------------------------------------------------------
// inspection

static int copy_out(wsml_net *net, const char *what, const void *src, size_t count, size_t elem,
                    void *host_dst, size_t cap, size_t *count_out, wsml_err *err) {
    if (count_out)
        *count_out = count;
    if (count > cap)
        return wsml_errf(err, WSML_EARG, "%s: %zu values do not fit in %zu", what, count, cap);
    BE(net->be->copy_to_host(net->be, host_dst, src, count * elem), what);
    BE(net->be->synchronize(net->be), what);
    return 0;
}

// The buffer behind an activation name and its per-image shape; NULL if unknown.
static const float *find_activation(const wsml_net *net, const char *name, int *h, int *w, int *C) {
    if (strcmp(name, "maxpool") == 0) {
        *h = net->pool.out_h, *w = net->pool.out_w, *C = net->pool.channels;
        return net->pool_out;
    }
    if (strcmp(name, "cam") == 0) {
        *h = net->feat_h, *w = net->feat_w, *C = net->cfg.num_classes;
        return net->cfg.head == WSML_HEAD_BOOSTLU ? net->cam : NULL;
    }
    for (int i = 0; i < net->num_units; i++)
        if (strcmp(net->units[i].bn_name, name) == 0) {
            const wsml_conv_desc *d = &net->units[i].conv;
            *h = d->out_h, *w = d->out_w, *C = d->out_channels;
            return net->units[i].a;
        }
    return NULL;
}

int wsml_net_activation_shape(const wsml_net *net, const char *name, int *h, int *w, int *C,
                              wsml_err *err) {
    if (!find_activation(net, name, h, w, C))
        return wsml_errf(err, WSML_EARG, "%s: no such layer%s", name,
                         strcmp(name, "cam") == 0 ? " (only the boostlu head keeps a CAM)" : "");
    return 0;
}

int wsml_net_read_activation(wsml_net *net, const char *name, float *host_dst, size_t cap,
                             size_t *count, wsml_err *err) {
    const int n = net->last_n;
    if (n < 1)
        return wsml_errf(err, WSML_ESTATE, "%s: no forward yet", name);
    int h, w, C;
    const float *src = find_activation(net, name, &h, &w, &C);
    if (!src)
        return wsml_net_activation_shape(net, name, &h, &w, &C, err);
    return copy_out(net, name, src, (size_t)n * h * w * C, sizeof(float), host_dst, cap, count,
                    err);
}

int wsml_net_read_maxpool_argmax(wsml_net *net, int32_t *host_dst, size_t cap, size_t *count,
                                 wsml_err *err) {
    const int n = net->last_n;
    if (n < 1)
        return wsml_errf(err, WSML_ESTATE, "maxpool: no forward yet");
    return copy_out(net, "maxpool argmax", net->pool_argmax,
                    (size_t)n * net->pool.out_h * net->pool.out_w * net->pool.channels,
                    sizeof(int32_t), host_dst, cap, count, err);
}
