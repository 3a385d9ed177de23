// The cuda backend (train/cuda/, libwsml-cuda.so) beyond the wsml_backend table of
// train/backend.h: device discovery and versions for tests and benchmarks, and what
// its settings mean. Plain C linkage; train/backend_cuda.c provides these functions in
// every build (they load libwsml-cuda.so on first use).
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
//         (wsml_backend_memory.bf16_fallback_layers counts them).
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

// Number of CUDA devices this process can use; 0 when there is no driver, no device or
// any error (never fails otherwise, never prints). Initialises the CUDA runtime.
int wsml_cuda_device_count(void);

// One line describing device `device` and the libraries actually loaded, e.g.
// "NVIDIA H100 80GB HBM3 (sm_90, 132 SMs, 79.1 GiB), driver 13.0, runtime 13.0,
// cuDNN 9.19.0 (built with 9.19.0), cuBLAS 13.0.0". Returns 0, or -1 with the reason
// in buf.
int wsml_cuda_describe(int device, char *buf, size_t cap);

#ifdef __cplusplus
}
#endif

#endif
