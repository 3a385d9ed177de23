// The compute backend: a table of everything that touches a device — memory, the
// layers the network (train/resnet.c) calls, the optimizer step, staging of input
// batches, device figures. The network and the trainer never touch OpenBLAS, cuDNN or
// device memory themselves and never ask which backend they run on; they only hold
// pointers that the backend allocated ("device pointers") and pass them back to these
// operations. A new backend fills this table (and wsml_backend_create learns its name).
//
//   cpu  (train/backend_cpu.c): OpenBLAS sgemm (im2col + sgemm, direct GEMM for 1x1
//        convolutions) and a small pthread pool: each pool thread runs sgemm on its
//        share of a layer, with OpenBLAS itself set to ONE thread (process-wide, so
//        other OpenBLAS callers in the process get one thread too). Device memory is
//        host memory. The reference: tested against PyTorch (tests/unit/test_net.c).
//   cuda (train/cuda/, built into libwsml-cuda.so and loaded on demand by
//        train/backend_cuda.c): cuDNN convolution, cuBLAS GEMM, own kernels for the
//        rest; tested against the cpu backend (tests/unit/test_cuda.c).
//
// Layouts (the same on every backend, so that both can be compared buffer by buffer):
//   activations  NHWC: x[((b*H + h)*W + w)*C + c], float32. A (n, H, W, C) tensor is
//                also a row-major (n*H*W, C) matrix, which is what the GEMMs use.
//   conv weights OHWI: w[((o*KH + kh)*KW + kw)*I + i] (cuDNN's KRSC / "NHWC filter").
//                PyTorch stores OIHW; train/net.h converts at load/save time.
//   matrices     row-major.
// n is always the actual batch of the call (<= the max_batch a layer was prepared
// for); the last batch of an epoch is smaller.
//
// Gradient conventions (as PyTorch autograd, which accumulates into .grad):
//   parameter gradients (dweight, dgamma, dbeta, dbias) are ACCUMULATED (+=), so the
//   network zeroes them once per step (wsml_net_zero_grad);
//   activation gradients (dx) are OVERWRITTEN unless an `accumulate` flag says +=.
//
// Errors: every operation returns 0 or a negative wsml_code and then leaves one line
// in be->err naming the operation and the cause (for CUDA: the call and its status
// string); the network prefixes the layer name. Operations never print or exit.
// Operations may run asynchronously on a device; copy_to_host and synchronize wait.
#ifndef WSML_BACKEND_H
#define WSML_BACKEND_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"
#include "train/optim.h"

// One convolution layer (no bias, no groups, no dilation: all ResNet needs).
// Filled by the network, then given to conv_prepare once; the backend may keep its
// per-layer state (cuDNN descriptors, chosen algorithms, workspace size) in `plan`.
typedef struct {
    int in_channels, out_channels; // I, O
    int in_h, in_w;                // input spatial size
    int out_h, out_w;              // (in + 2*pad - kernel) / stride + 1
    int kernel_h, kernel_w;
    int stride, pad; // the same along H and W
    int max_batch;   // the largest n this layer will see
    void *plan;      // backend-owned; NULL until conv_prepare
} wsml_conv_desc;

// Max pooling window (ResNet's stem: 3x3, stride 2, pad 1).
typedef struct {
    int channels;
    int in_h, in_w, out_h, out_w;
    int kernel, stride, pad;
} wsml_pool_desc;

typedef struct wsml_backend wsml_backend;

// Memory figures of a device (memory_info). The cpu backend has none.
typedef struct {
    size_t allocated_bytes;      // now held by be->alloc (net tensors), workspace, scratch
    size_t peak_allocated_bytes; // the largest allocated_bytes so far
    size_t workspace_bytes;      // the shared convolution workspace
    size_t device_used_bytes;    // total − free of the whole device now: includes the
                                 // driver's context and library allocations
    size_t device_total_bytes;
    const char *precision;    // "tf32", "fp32" or "bf16"
    int bf16_fallback_layers; // bf16: convolutions prepared in float32 (TF32) because
                              // cuDNN offered no bf16 algorithm for their shape
    const char *algo_search;  // how convolution algorithms are chosen: "heuristic" | "find"
} wsml_backend_memory;

struct wsml_backend {
    const char *name;      // "cpu" or "cuda"
    int host_memory;       // 1: device pointers are ordinary host pointers (cpu), so host
                           // code (e.g. train/optim.h) may read and write them directly
    int num_threads;       // cpu: worker threads for GEMM and the other operations
    const char *precision; // "fp32", "tf32" or "bf16": what convolutions and GEMMs
                           // compute in (wsml_precision_name); the cpu backend is fp32
    wsml_err err;          // the last failure's message
    void *impl;            // backend-private state (thread pool, handles, workspace)

    void (*destroy)(wsml_backend *be);

    // ---- memory ---------------------------------------------------------------
    // Device memory, 64-byte aligned, uninitialised; NULL (and be->err set) on failure.
    void *(*alloc)(wsml_backend *be, size_t bytes);
    void (*free)(wsml_backend *be, void *ptr); // NULL is a no-op
    int (*copy_to_device)(wsml_backend *be, void *dst, const void *host_src, size_t bytes);
    int (*copy_to_host)(wsml_backend *be, void *host_dst, const void *src, size_t bytes);
    int (*copy)(wsml_backend *be, void *dst, const void *src, size_t bytes); // device->device
    int (*zero)(wsml_backend *be, void *dst, size_t bytes);
    int (*synchronize)(wsml_backend *be); // waits for all queued work

    // ---- convolution (NHWC activations, OHWI weights) ---------------------------
    // Called once per layer before use (may size the shared workspace); release
    // frees what prepare made and sets plan to NULL.
    int (*conv_prepare)(wsml_backend *be, wsml_conv_desc *d);
    void (*conv_release)(wsml_backend *be, wsml_conv_desc *d);
    // y: (n, out_h, out_w, O) = conv(x: (n, in_h, in_w, I), w: (O, KH, KW, I)); overwrites y.
    int (*conv_forward)(wsml_backend *be, const wsml_conv_desc *d, int n, float *y, const float *x,
                        const float *w);
    // dx: (n, in_h, in_w, I) = conv_transpose(dy: (n, out_h, out_w, O), w);
    // overwrites dx, or adds to it when accumulate != 0 (a block input that also
    // feeds the residual path).
    int (*conv_backward_data)(wsml_backend *be, const wsml_conv_desc *d, int n, float *dx,
                              const float *dy, const float *w, int accumulate);
    // dw: (O, KH, KW, I) += sum over the batch of dy ⊗ x patches.
    int (*conv_backward_filter)(wsml_backend *be, const wsml_conv_desc *d, int n, float *dw,
                                const float *dy, const float *x);

    // ---- batch normalisation over rows = n*H*W of a (rows, C) NHWC matrix --------
    // Fused with the residual add and ReLU that follow it in ResNet:
    //   y = act(gamma * (x - mean) * invstd + beta + residual)
    // residual may be NULL (no add); relu is 0 or 1. x and y must not alias.
    //
    // Training: mean and biased variance over the rows; invstd = 1/sqrt(var + eps);
    // save_mean/save_invstd (C) keep them for backward; the running statistics are
    // updated as PyTorch does: running = (1 - momentum) * running + momentum * batch,
    // with the UNBIASED variance var * rows / (rows - 1) for running_var (rows >= 2).
    int (*bn_forward_train)(wsml_backend *be, int C, int64_t rows, float *y, const float *x,
                            const float *gamma, const float *beta, const float *residual, int relu,
                            float *running_mean, float *running_var, float *save_mean,
                            float *save_invstd, float momentum, float eps);
    // Inference: running statistics instead of batch statistics.
    int (*bn_forward_eval)(wsml_backend *be, int C, int64_t rows, float *y, const float *x,
                           const float *gamma, const float *beta, const float *residual, int relu,
                           const float *running_mean, const float *running_var, float eps);
    // Backward of bn_forward_train (batch statistics). dy: gradient of y; y: the
    // forward's output (its sign is the ReLU mask; ignored when relu == 0); x: the
    // forward's input. Writes dx (rows, C); if dresidual is not NULL, writes the
    // gradient that flows into the residual input (dy masked by the ReLU) there;
    // dgamma, dbeta (C) are accumulated. dx must not alias dy or dresidual.
    int (*bn_backward)(wsml_backend *be, int C, int64_t rows, float *dx, float *dresidual,
                       const float *dy, const float *y, int relu, const float *x,
                       const float *gamma, const float *save_mean, const float *save_invstd,
                       float *dgamma, float *dbeta);

    // ---- pooling -------------------------------------------------------------------
    // y: (n, out_h, out_w, C) = max over the window of x: (n, in_h, in_w, C); padding
    // never wins. argmax: (n, out_h, out_w, C) int32, the flat input position
    // h*in_w + w of the maximum, the FIRST in row-major window order on ties (PyTorch's
    // rule); written by forward, read by backward (a backend may leave it unused).
    int (*maxpool_forward)(wsml_backend *be, const wsml_pool_desc *d, int n, float *y,
                           const float *x, int32_t *argmax);
    // dx: (n, in_h, in_w, C), overwritten: each dy goes to its window's argmax.
    int (*maxpool_backward)(wsml_backend *be, const wsml_pool_desc *d, int n, float *dx,
                            const float *dy, const float *x, const float *y, const int32_t *argmax);
    // Global average pool: y: (n, C) = mean over hw of x: (n, hw, C).
    int (*avgpool_forward)(wsml_backend *be, int n, int hw, int C, float *y, const float *x);
    // dx: (n, hw, C) = dy: (n, C) / hw, broadcast; overwritten.
    int (*avgpool_backward)(wsml_backend *be, int n, int hw, int C, float *dx, const float *dy);

    // ---- dense algebra (the heads) -----------------------------------------------------
    // Row-major C (M, N) = alpha * op(A) op(B) + beta * C, op = transpose when trans_*
    // != 0; A is (M, K) or (K, M) when transposed, B is (K, N) or (N, K); lda, ldb, ldc
    // are row strides (cblas_sgemm's row-major convention).
    int (*gemm)(wsml_backend *be, int trans_a, int trans_b, int M, int N, int K, float alpha,
                const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);
    // y: (rows, cols) += bias: (cols) on every row.
    int (*bias_add)(wsml_backend *be, int64_t rows, int cols, float *y, const float *bias);
    // dbias: (cols) += column sums of dy: (rows, cols).
    int (*bias_backward)(wsml_backend *be, int64_t rows, int cols, float *dbias, const float *dy);
    // BoostLU head (docs/methods.md §2), after the 1x1 conv made cam: (n, hw, C):
    //   logits[b, c] = mean_s cam'[b, s, c],  cam' = alpha * cam where cam > 0, else cam.
    int (*boostlu_forward)(wsml_backend *be, int n, int hw, int C, float alpha, float *logits,
                           const float *cam);
    // dcam: (n, hw, C) = dlogits[b, c] / hw * (cam > 0 ? alpha : 1); overwritten.
    int (*boostlu_backward)(wsml_backend *be, int n, int hw, int C, float alpha, float *dcam,
                            const float *dlogits, const float *cam);

    // ---- optimizer ----------------------------------------------------------------------
    // One update of group g of o with train/optim.h's rules, bit for bit (PyTorch's float32
    // order), over params and grads: device arrays of o->group[g].count floats. The
    // group's state is in exp_avg (Adam's m or SGD's momentum buffer; NULL for SGD without
    // momentum) and exp_avg_sq (Adam's v; NULL for SGD), device arrays too, initially zero
    // like wsml_optim's; on a host_memory backend these are the group's own arrays.
    // Increments o->group[g].step as wsml_optim_step does. May be queued (no wait).
    int (*optim_step)(wsml_backend *be, wsml_optim *o, int g, float *params, const float *grads,
                      float *exp_avg, float *exp_avg_sq);

    // ---- optional (NULL where a backend has no use for them: cpu) -------------------
    // Page-locked host memory for buffers that are copied to the device every step
    // (the loader's batches): faster copies, and copies that do not block the host.
    void *(*host_alloc)(wsml_backend *be, size_t bytes); // NULL (be->err set) on failure
    void (*host_free)(wsml_backend *be, void *ptr);      // NULL is a no-op
    // Copies `bytes` of host_src (from host_alloc) to a device buffer of the backend on a
    // copy stream of its own, beside the compute, and returns when the copy is done (call
    // it from a loader thread). A later copy_to_device(dst, host_src, bytes) with the same pointer
    // and size then becomes a device-to-device copy. bytes == 0 forgets host_src (its
    // contents are about to change). Thread-safe against the other operations; failures
    // go to *err (be->err belongs to the thread that drives the network).
    int (*stage_input)(wsml_backend *be, const void *host_src, size_t bytes, wsml_err *err);
    // Seconds the device has been busy since the backend was made: the sum, over the
    // bursts of work between two synchronize()s, of the device time from the burst's
    // first operation to its last. Up to date after synchronize().
    int (*busy_seconds)(wsml_backend *be, double *seconds);
    // Memory figures of the device now (e.g. to say which --batch would fit after an
    // out-of-memory error).
    int (*memory_info)(wsml_backend *be, wsml_backend_memory *out);

    // ---- data parallel (train/trainer.c sets these; NULL: one process) ---------------
    // --sync-bn: bn_forward_train and bn_backward sum their per-channel statistics
    // (forward: Σx, Σx², rows; backward: Σdz, Σdz·(x − mean), rows; as doubles) over all
    // processes with this before using them, so that the statistics are those of the
    // global batch (cpu: in place; cuda: the sums through host memory, one synchronisation
    // per layer). sync_bn = 1 turns it on.
    int sync_bn;
    int (*bn_allreduce)(void *ctx, double *buf, size_t n, wsml_err *err);
    void *bn_allreduce_ctx;
    // Gradient all-reduce on the device (cuda: NCCL), NULL where the trainer uses the
    // communicator on host memory (cpu). dp_unique_id writes rank 0's id (up to cap
    // bytes; *len its size) that every process passes to dp_init (broadcast by the
    // trainer over MPI). dp_allreduce queues a sum of n floats in place on the device's
    // communication stream after the compute queued so far, scaled by `scale` (ranks'
    // mean); dp_wait makes later compute wait for every queued all-reduce. dp_load loads
    // what they need (cuda: libnccl) on this process alone, before the trainer's setup
    // agrees, so that a process lacking it fails before the others wait in dp_init.
    int (*dp_load)(wsml_backend *be);
    // dp_abort (may be NULL): this process failed alone while the others may be in (or
    // never reach) an all-reduce: tear the device communicator down without waiting for
    // them (cuda: ncclCommAbort; the backend's destroy follows). dp_desc: what
    // dp_load loaded ("NCCL 2.21.5"), for the trainer's info line; NULL before.
    void (*dp_abort)(wsml_backend *be);
    const char *dp_desc;
    int (*dp_unique_id)(wsml_backend *be, void *id, size_t cap, size_t *len);
    int (*dp_init)(wsml_backend *be, const void *id, size_t len, int rank, int size);
    int (*dp_allreduce)(wsml_backend *be, float *buf, size_t n);
    int (*dp_wait)(wsml_backend *be);
};

// ---- creating backends ------------------------------------------------------------------

// What convolutions and GEMMs compute in (--precision of wsml-train and wsml-eval).
// Parameters, their gradients, optimiser state, activations and BN statistics are float32
// in every mode (bf16 keeps fp32 master weights).
typedef enum {
    WSML_PRECISION_DEFAULT = 0, // cuda: $WSML_PRECISION if set, else tf32; cpu: fp32
    WSML_PRECISION_FP32,        // IEEE float32 throughout
    WSML_PRECISION_TF32,        // cuda: TF32 tensor cores (PyTorch's allow_tf32); cpu: fp32
    WSML_PRECISION_BF16,        // cuda: bfloat16 inputs, fp32 accumulation; cpu: refused
} wsml_precision;

// "fp32" / "tf32" / "bf16" -> precision; -1 if unknown.
int wsml_precision_parse(const char *name);
const char *wsml_precision_name(wsml_precision p); // "default" for WSML_PRECISION_DEFAULT

typedef struct {
    int num_threads;          // cpu: threads for GEMM and the other work; <= 0: all online CPUs
    int device;               // cuda: device ordinal (wsml_backend_pick_device)
    size_t workspace_bytes;   // cpu: cap of the im2col buffer (0: 128 MiB); convolutions
                              // whose batch does not fit run in chunks of whole images
    wsml_precision precision; // cpu: bf16 is an error (WSML_EARG naming --precision)
} wsml_backend_options;

// The backends by name: "cpu" (0) and "cuda" (1); parse gives -1 for an unknown name,
// name NULL past the last.
#define WSML_NUM_BACKENDS 2
int wsml_backend_parse(const char *name);
const char *wsml_backend_name(int index);
// "cpu, cuda": the names for usage errors and --help.
const char *wsml_backend_names(void);
// Whether backend NAME computes in precision P (cpu: fp32, and tf32 run as fp32; cuda: all).
int wsml_backend_supports(const char *name, wsml_precision p);
// One line on the device backend NAME computes on (cuda: "GPU 0: <name>, <memory>,
// driver ..."), written to buf; 1 with buf empty where there is nothing to say (cpu),
// -1 with the reason in buf where the device cannot be described.
int wsml_backend_describe(const char *name, int device, char *buf, size_t cap);

// "cpu" (always) or "cuda" (where libwsml-cuda.so loads); WSML_EARG naming --backend for
// an unknown or unavailable name. *out is NULL on failure.
int wsml_backend_create(const char *name, const wsml_backend_options *opt, wsml_backend **out,
                        wsml_err *err);
int wsml_backend_cpu_create(const wsml_backend_options *opt, wsml_backend **out, wsml_err *err);
// Implemented by train/cuda/ in build/libwsml-cuda.so, which train/backend_cuda.c
// dlopen()s on first use; without it this returns WSML_EARG.
int wsml_backend_cuda_create(const wsml_backend_options *opt, wsml_backend **out, wsml_err *err);
// --device of wsml-train, wsml-eval and wsml-cam: the CUDA device ordinal, numbered after
// CUDA_VISIBLE_DEVICES. requested >= 0 is the given value, < 0 asks for the default: the
// launcher's local rank (wsml_local_rank, common/sysinfo.h) modulo the CUDA devices this
// process sees — one GPU per process on a node, and device 0 where the launcher left each
// process one GPU (srun --gpus-per-task=1) — or 0 outside a launcher. On the cpu backend
// the value is only recorded: a given one gets an info line saying so. WSML_EARG naming
// --device and the count of devices for a CUDA device that does not exist.
int wsml_backend_pick_device(const char *backend, int requested, int *device, wsml_err *err);
// The same with the local rank given: data-parallel training passes its communicator's
// (MPI's ranks on this node, which the launcher's variables may not tell; common/comm.h).
int wsml_backend_pick_device_at(const char *backend, int requested, int local_rank, int *device,
                                wsml_err *err);

// Frees the backend (NULL is a no-op). Every conv plan and allocation must be released
// first.
void wsml_backend_destroy(wsml_backend *be);

// The OpenBLAS kernel ("core") of this process: the cpu backend's numerics depend on it,
// so wsml-train records it in config.json (train/backend_cpu.c).
const char *wsml_backend_blas_core(void);

#endif
