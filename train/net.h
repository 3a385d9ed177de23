// The network of libwsml-train: ResNet-18/34/50/101 in torchvision's exact layout and
// tensor names, with the linear head (global average pool -> fc) or BoostLU's CAM head
// (docs/methods.md §2), forward and backward on a backend (train/backend.h).
//
// Memory (llm.c style): all parameters are ONE backend allocation carved into named
// tensors, the gradients a second one with the same layout, the BatchNorm running
// statistics a third; activations are allocated once for max_batch. The backbone's
// parameters come first and the head's (fc.weight, fc.bias) last, so the two
// optimiser groups of docs/methods.md §3 (backbone lr, head lr_mult·lr) are two contiguous ranges:
//   params[0 .. num_backbone_params)  and  params[num_backbone_params .. num_params).
//
// Layouts: the input and every activation are NHWC (the store holds HWC images);
// convolution weights are kept as OHWI (O, KH, KW, I) internally and converted from/to
// PyTorch's OIHW in load/save and wsml_net_read/write_tensor. fc.weight is (C, F) in
// both heads (the BoostLU 1x1 conv's (C, F, 1, 1) kernel, squeezed), so checkpoints of
// either head load into the other and into torchvision.
//
// Lifetime/ownership: a wsml_net borrows its backend (which must outlive it) and owns
// everything else. Not thread-safe: one thread drives a net.
#ifndef WSML_NET_H
#define WSML_NET_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "common/safetensors.h"
#include "train/backend.h"

typedef enum {
    WSML_ARCH_RESNET18,
    WSML_ARCH_RESNET34,
    WSML_ARCH_RESNET50,
    WSML_ARCH_RESNET101,
} wsml_arch;
#define WSML_NUM_ARCHS 4

typedef enum {
    WSML_HEAD_LINEAR,  // "linear":  logits = fc(mean_hw(features))
    WSML_HEAD_BOOSTLU, // "boostlu": cam = fc applied per position (1x1 conv, with bias);
                       //            logits = mean_hw(cam > 0 ? alpha·cam : cam)
                       //            (docs/methods.md §2)
} wsml_head_kind;
#define WSML_NUM_HEADS 2

typedef struct {
    wsml_arch arch;
    // Scales every channel width: stage widths are base·{1,2,4,8} with
    // base = max(1, round(64·width_mult)) (the stem conv has `base` outputs; bottleneck
    // blocks have inner width base·2^i and output 4·base·2^i). 1.0 = torchvision.
    double width_mult;
    int num_classes; // C >= 1
    wsml_head_kind head;
    float alpha;       // BoostLU's boost factor (default 5); ignored by "linear"
    int height, width; // input size, each in [32, 8192] (any value, as torchvision)
    int max_batch;     // the largest batch forward() will be given
} wsml_net_config;

// Defaults: ResNet-50, width 1, 1 class... (num_classes must be set), linear head,
// alpha 5, 448x448, max_batch 16.
void wsml_net_config_default(wsml_net_config *cfg);
// "resnet18" "resnet34" "resnet50" "resnet101" -> arch; -1 if unknown.
int wsml_arch_parse(const char *name);
const char *wsml_arch_name(wsml_arch arch);
// "linear" / "boostlu" -> head; -1 if unknown.
int wsml_head_parse(const char *name);
const char *wsml_head_name(wsml_head_kind head);

typedef struct wsml_net wsml_net;

// Builds the network on `be` (allocating parameters, gradients and activations).
// Parameters are uninitialised until wsml_net_init or wsml_net_load. Errors:
// WSML_EARG naming the bad field (--arch, --width-mult, --num-classes, input size outside
// [32, 8192], --batch), WSML_ENOMEM/WSML_EDEVICE with the bytes asked.
//
// Spatial sizes are torchvision's for any input: each conv/pool output side is
// floor((in + 2·pad − kernel)/stride) + 1, which for every stride-2 layer of ResNet
// (7x7 stem conv pad 3, 3x3 max pool pad 1, 3x3 convs pad 1, 1x1 downsample pad 0) is
// ceil(in/2), so a block's two branches always agree; the heads average over whatever
// is left, ceil(H/32) x ceil(W/32) positions.
int wsml_net_create(const wsml_net_config *cfg, wsml_backend *be, wsml_net **out, wsml_err *err);
void wsml_net_free(wsml_net *net); // NULL is a no-op
const wsml_net_config *wsml_net_get_config(const wsml_net *net);
// The backend the network was created on.
wsml_backend *wsml_net_backend(const wsml_net *net);

// ---- weights ---------------------------------------------------------------------------

// torchvision's initialisation (torchvision.models.resnet.ResNet.__init__), drawn from
// wsml_rng seeded with `seed` (numpy's RandomState(seed)):
//   conv weights ~ N(0, 2 / fan_out), fan_out = O·KH·KW   (kaiming_normal_, fan_out, relu)
//   BN weight 1, bias 0, running_mean 0, running_var 1, num_batches_tracked 0
//   fc.weight, fc.bias ~ U(-1/sqrt(F), 1/sqrt(F))          (nn.Linear / nn.Conv2d default)
// Draw order: tensors in torchvision's state_dict order, elements in PyTorch's (OIHW)
// row-major order: a conv weight takes O·I·KH·KW standard normals (legacy polar method).
void wsml_net_init(wsml_net *net, uint32_t seed);
// Re-initialises only fc.weight and fc.bias as above, from RandomState(seed)
// (for a pretrained backbone with a new head).
void wsml_net_init_head(wsml_net *net, uint32_t seed);

typedef enum {
    WSML_NET_LOAD_ALL,      // every tensor, fc.* included, must be present and fit
    WSML_NET_LOAD_BACKBONE, // fc.* in the file are ignored (the caller initialised the
                            // head: ImageNet weights for a C-class problem)
} wsml_net_load_mode;

// Loads tensors by torchvision name from safetensors (F32, or F16/BF16/F64 converted).
// A missing or mis-shaped tensor is an error naming it and both shapes
// (WSML_EFORMAT); tensors the network does not have (optimizer state, timm extras)
// are ignored. num_batches_tracked is optional (old torchvision weights lack it: 0).
// On error the network's weights are unspecified (reload or re-init).
int wsml_net_load(wsml_net *net, const char *path, wsml_net_load_mode mode, wsml_err *err);
int wsml_net_load_st(wsml_net *net, const wsml_safetensors *st, wsml_net_load_mode mode,
                     wsml_err *err);
// Writes every tensor (F32 parameters and running statistics in PyTorch layout,
// num_batches_tracked as I64 scalars) plus `extra` tensors of the caller (optimizer
// state, label state; their names must not collide) into one safetensors file,
// atomically (common/safetensors.h). metadata_json: an object of strings, or NULL.
int wsml_net_save(wsml_net *net, const char *path, const wsml_tensor_view *extra, size_t num_extra,
                  const char *metadata_json, wsml_err *err);

// ---- tensors ------------------------------------------------------------------------------

typedef enum {
    WSML_NET_PARAM,   // trained: in wsml_net_params(), with a gradient
    WSML_NET_RUNNING, // BN running_mean / running_var (F32), in wsml_net_buffers()
    WSML_NET_COUNTER, // BN num_batches_tracked (I64 scalar, kept on the host)
} wsml_net_tensor_kind;

typedef struct {
    const char *name; // torchvision name, e.g. "layer1.0.conv1.weight"
    wsml_net_tensor_kind kind;
    int ndim;
    int64_t shape[4];     // PyTorch's shape (OIHW for convolutions; () for counters)
    size_t offset, count; // element range in wsml_net_params()/grads() (PARAM) or
                          // wsml_net_buffers() (RUNNING); count 1 for COUNTER
    int is_head;          // fc.weight, fc.bias (the lr_mult group, docs/methods.md §3)
    int ohwi;             // stored as (O, KH, KW, I), a permutation of `shape`
} wsml_net_tensor_info;

// All tensors in torchvision's state_dict order (params, running stats, counters).
size_t wsml_net_num_tensors(const wsml_net *net);
const wsml_net_tensor_info *wsml_net_tensor(const wsml_net *net, size_t i);
// Index of a tensor by name, or -1.
int64_t wsml_net_find_tensor(const wsml_net *net, const char *name);
// Copies tensor i to/from host memory in PyTorch's layout (float for PARAM/RUNNING,
// int64_t for COUNTER), converting OHWI <-> OIHW. WSML_EDEVICE on a copy failure.
int wsml_net_read_tensor(wsml_net *net, size_t i, void *host_dst, wsml_err *err);
int wsml_net_write_tensor(wsml_net *net, size_t i, const void *host_src, wsml_err *err);
// Gradient of PARAM tensor i in PyTorch's layout.
int wsml_net_read_grad(wsml_net *net, size_t i, float *host_dst, wsml_err *err);
// The same permutation for any per-parameter array in the internal layout (e.g. an
// optimizer's state, which is laid out like wsml_net_params()): converts the elements
// of PARAM tensor i from internal (src) to PyTorch's layout (dst), host memory.
void wsml_net_to_torch_layout(const wsml_net *net, size_t i, const float *src, float *dst);
void wsml_net_from_torch_layout(const wsml_net *net, size_t i, const float *src, float *dst);

// Flat device arrays (see the top of this file); `host_memory` backends can hand them
// to wsml_optim_step directly.
float *wsml_net_params(wsml_net *net);
float *wsml_net_grads(wsml_net *net);
float *wsml_net_buffers(wsml_net *net);
size_t wsml_net_num_params(const wsml_net *net);          // all trainable floats
size_t wsml_net_num_backbone_params(const wsml_net *net); // the head starts here
size_t wsml_net_num_buffer_floats(const wsml_net *net);

// ---- training and inference ---------------------------------------------------------------

typedef enum {
    WSML_NET_EVAL,  // BN uses running statistics; nothing is kept for backward
    WSML_NET_TRAIN, // BN uses batch statistics and updates the running ones (momentum
                    // 0.1, eps 1e-5, unbiased running_var), num_batches_tracked += 1
} wsml_net_mode;

// Runs the network on n images (1 <= n <= max_batch). input: (n, H, W, 3) float32 NHWC
// on the HOST, already normalised; logits land in a host array (wsml_net_logits).
// Train mode needs more than one value per BN channel (n·h·w >= 2 at every layer),
// as PyTorch: WSML_EARG otherwise.
int wsml_net_forward(wsml_net *net, const float *input, int n, wsml_net_mode mode, wsml_err *err);
// (n, C) logits of the last forward, host memory owned by the net.
const float *wsml_net_logits(const wsml_net *net);
// Backpropagates dlogits (n, C, host) of the last TRAIN forward into the parameter
// gradients, ADDING to them (call wsml_net_zero_grad before each step, as PyTorch's
// optimizer.zero_grad()). WSML_ESTATE if the last forward was not in train mode.
int wsml_net_backward(wsml_net *net, const float *dlogits, wsml_err *err);
int wsml_net_zero_grad(wsml_net *net, wsml_err *err);
// Called by wsml_net_backward each time the gradients from flat parameter offset `first`
// to the end are final (params and grads are in state_dict order and backward runs from
// the head to the stem: after the head first = the head's offset, then after each residual
// block its first parameter's, last 0 after the stem; the head only while the backbone is
// frozen), with the work that produced them queued on the backend. Data-parallel training
// starts the all-reduce of those gradients there, beside the rest of backward
// (train/trainer.c). A negative return fails backward. fn NULL: none (the default).
typedef int (*wsml_grads_ready_fn)(void *ctx, size_t first, wsml_err *err);
void wsml_net_set_grads_ready(wsml_net *net, wsml_grads_ready_fn fn, void *ctx);

// LinearInit (docs/methods.md §3): with a frozen backbone, backward stops at the head, so only
// fc.* get gradients (the backbone's stay as they are, i.e. zero after zero_grad) and
// the backward costs next to nothing. As in Cole et al.'s linear phase (a linear
// classifier on features extracted once from the pretrained network), the backbone runs
// in eval mode even in a TRAIN forward: its BN layers normalise with their running
// statistics and never update them, so the backbone's tensors stay byte-identical.
void wsml_net_set_frozen_backbone(wsml_net *net, int frozen);
int wsml_net_frozen_backbone(const wsml_net *net);

// ---- class activation maps ---------------------------------------------------------------

// The last feature map of the last forward: (n, h, w, F) NHWC, h = ceil(H/32),
// w = ceil(W/32) (wsml_net_feature_side), F = 512·base/64 (18/34) or 2048·base/64
// (50/101). Copied to host memory.
void wsml_net_feature_shape(const wsml_net *net, int *h, int *w, int *F);
// The side of the last feature map for an input side (>= 1): ceil(side/32), the five
// stride-2 reductions of ResNet. E.g. BatchNorm in train mode needs
// batch · feature_side(H) · feature_side(W) >= 2.
int wsml_net_feature_side(int input_side);
int wsml_net_read_features(wsml_net *net, float *host_dst, wsml_err *err);
// CAM of docs/methods.md §5 before upsampling: cam[b, c, y, x] = Σ_k fc.weight[c, k] · F[b, y, x,
// k] (no bias, no boost, as the reference's get_cam), host (n, C, h, w).
int wsml_net_cam(wsml_net *net, float *host_dst, wsml_err *err);

// ---- inspection (tests; comparing backends layer by layer) ----------------------------------

// Output of one layer in the last forward, copied to the host as NHWC (n, h, w, C):
//   a BN module's name ("bn1", "layer1.0.bn2", "layer2.0.downsample.1") gives that
//   unit's output after the fused residual add and ReLU (what the next layer reads);
//   "maxpool" the stem's max pool output; "cam" the BoostLU head's CAM before the boost
//   (n, h, w, C classes; boostlu head only).
// *count receives the number of floats (at most cap are written). WSML_EARG for an
// unknown name or cap too small.
int wsml_net_read_activation(wsml_net *net, const char *name, float *host_dst, size_t cap,
                             size_t *count, wsml_err *err);
// The per-image shape (h, w, C) of wsml_net_read_activation's `name` (available right
// after wsml_net_create). WSML_EARG for an unknown name.
int wsml_net_activation_shape(const wsml_net *net, const char *name, int *h, int *w, int *C,
                              wsml_err *err);
// The stem max pool's argmax of the last forward, (n, h, w, C) int32 flat positions
// ih·in_w + iw (backend.h); only meaningful on backends that fill it (cpu).
int wsml_net_read_maxpool_argmax(wsml_net *net, int32_t *host_dst, size_t cap, size_t *count,
                                 wsml_err *err);

#endif
