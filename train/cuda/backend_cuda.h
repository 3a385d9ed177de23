// Extras of the cuda backend (train/cuda/backend_cuda.cu) beyond the wsml_backend table
// of train/backend.h: device discovery for tests and benchmarks, versions, memory
// figures. Only in builds with WSML_HAVE_CUDA; plain C linkage.
//
// Precision: wsml_backend_options.precision (--precision); WSML_PRECISION_DEFAULT takes
// the environment's WSML_PRECISION (tf32 | fp32 | bf16), else tf32:
//   tf32  cuDNN convolutions with CUDNN_TENSOR_OP_MATH and cuBLAS with
//         CUBLAS_TF32_TENSOR_OP_MATH (PyTorch's allow_tf32 = True);
//   fp32  CUDNN_FMA_MATH and CUBLAS_DEFAULT_MATH (no tensor cores);
//   bf16  convolutions on bfloat16 copies of x, w, dy made per call (round to nearest
//         even) with float32 accumulation (cuDNN's PSEUDO_BFLOAT16 configuration), the
//         results converted back to the float32 buffers (dw: the bf16 gradient added to
//         the float32 one, as autocast's); GEMMs cublasGemmEx with
//         CUBLAS_COMPUTE_32F_FAST_16BF on the float32 buffers. Parameters, gradients,
//         optimiser state, activations and BN statistics stay float32 ("fp32 master
//         weights"). A layer for which cuDNN has no bf16 algorithm runs in tf32
//         (wsml_cuda_memory.bf16_fallback_layers counts them).
// Batch norm, pooling, the heads and every reduction are fp32 with double accumulators in
// every mode. Algorithm choice is read from the environment:
//   WSML_CUDNN_ALGO  heuristic (default: cudnnGetConvolution*Algorithm_v7, like PyTorch's
//                    cudnn.benchmark = False) | find (cudnnFind*Algorithm: runs every
//                    candidate once per distinct layer shape in conv_prepare, like
//                    cudnn.benchmark = True).
// wsml_backend_options.workspace_bytes caps the one shared cuDNN workspace
// (0: 1 GiB, and never more than a quarter of the free device memory at prepare).
#ifndef WSML_BACKEND_CUDA_H
#define WSML_BACKEND_CUDA_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#include "train/backend.h"
#include "train/optim.h"

// Number of CUDA devices this process can use; 0 when there is no driver, no device or
// any error (never fails otherwise, never prints). Initialises the CUDA runtime.
int wsml_cuda_device_count(void);

// One line describing device `device` and the libraries actually loaded, e.g.
// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB), driver 13.0, runtime 13.0,
// cuDNN 9.19.0 (built with 9.19.0), cuBLAS 13.0.0". Returns 0, or -1 with the reason
// in buf.
int wsml_cuda_describe(int device, char *buf, size_t cap);

typedef struct {
    size_t allocated_bytes;      // now held by be->alloc (net tensors), workspace, scratch
    size_t peak_allocated_bytes; // the largest allocated_bytes so far
    size_t workspace_bytes;      // the shared cuDNN workspace
    size_t device_used_bytes;    // total − free of the whole device now (cudaMemGetInfo):
                                 // includes the CUDA context and library allocations
    size_t device_total_bytes;
    const char *precision;    // "tf32", "fp32" or "bf16"
    int bf16_fallback_layers; // bf16: convolutions prepared in float32 (TF32) because
                              // cuDNN offered no bf16 algorithm for their shape
    const char *algo_search;  // "heuristic" or "find"
} wsml_cuda_memory;

// Memory figures of a backend made by wsml_backend_cuda_create (be->name "cuda").
// Returns 0 or a negative wsml_code (message in be->err).
int wsml_cuda_memory_info(wsml_backend *be, wsml_cuda_memory *out);

// One optimiser update of group g of `o` (train/optim.h) on the GPU: params and grads are
// device arrays of o->group[g].count floats, exp_avg / exp_avg_sq device copies of the
// group's state (exp_avg: Adam's m or SGD's momentum buffer, NULL for SGD without
// momentum; exp_avg_sq: Adam's v, NULL for SGD), initially zero like wsml_optim's. The
// float32 arithmetic is wsml_optim_step's, fmaf for fmaf (PyTorch's order), so that the
// results equal the host optimizer's bit for bit; increments o->group[g].step as
// wsml_optim_step does. Queued on the compute stream (no wait). wsml-train uses it for
// --backend cuda (train/trainer.c: the host's wsml_optim keeps the step counts and gets
// the state copied back for checkpoints). Returns 0 or a negative wsml_code.
int wsml_cuda_optim_step(wsml_backend *be, wsml_optim *o, int g, float *params, const float *grads,
                         float *exp_avg, float *exp_avg_sq);

#ifdef __cplusplus
}
#endif

#endif
