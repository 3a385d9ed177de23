// The cuda backend (train/backend.h): the twin of train/backend_cpu.c on one NVIDIA GPU,
// with the same layouts and the same arithmetic wherever the CPU's is cheap to match.
//
//   convolutions     cuDNN (legacy descriptor API, still in cuDNN 9): NHWC float tensors,
//                    NHWC ("KRSC" = OHWI) float filters, cross-correlation. Algorithms
//                    are chosen once per layer shape in conv_prepare (heuristics, or
//                    cudnnFind with WSML_CUDNN_ALGO=find) and cached in the layer's plan
//                    and in a per-backend shape cache; all layers share ONE workspace,
//                    grown only in conv_prepare. A batch smaller than max_batch (the last
//                    batch of an epoch) gets its algorithms chosen on first use within
//                    the existing workspace and kept in a second slot of the plan.
//   gemm             cuBLAS sgemm, row-major through the column-major transpose identity.
//   everything else  own kernels below: batch norm (statistics as sums in double, as the
//                    cpu backend) fused with the residual add and ReLU, max pool with
//                    argmax (PyTorch's first-max rule) and its gather-form backward,
//                    global average pool, bias, BoostLU.
// Elementwise formulas use __fmul_rn/__fadd_rn where the cpu backend does a separate
// multiply and add (x86-64 without -mfma never contracts), so that, given the same
// per-channel coefficients, both backends round the same way; ReLU decisions then
// agree, which keeps the two backends comparable tensor by tensor (tests/unit/test_cuda.c).
//
// Precision (--precision / WSML_PRECISION, train/cuda/backend_cuda.h): tf32 (default) lets
// cuDNN and cuBLAS use TF32 tensor cores for convolutions and GEMMs; fp32 forbids it; bf16
// runs convolutions on bfloat16 copies of their operands and GEMMs with bf16 products,
// accumulating in float32, while every buffer the network owns stays float32.
//
// Everything runs in order on one compute stream; copy_to_host, copy_to_device and
// synchronize wait for it. A second stream copies the loader's next batch (pinned host
// memory, stage_input) while the compute stream works; copy_to_device of a staged batch
// is then a device-to-device copy. Busy time for the trainer's gpu_idle_frac is measured
// with events around each burst of work between two waits. Every CUDA/cuDNN/cuBLAS status is
// checked; be->err gets "op: call: status" (the network prefixes the layer).
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cudnn.h>
#include <dlfcn.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "train/cuda/backend_cuda.h"

// The backend in parts, by concern (llm.c's llmc/ layout), in one translation unit; each
// part uses the ones before it, so the order matters.
// clang-format off
#include "train/cuda/libs.cuh"
#include "train/cuda/common.cuh"
#include "train/cuda/memory.cuh"
#include "train/cuda/staging.cuh"
#include "train/cuda/convolution.cuh"
#include "train/cuda/reduce.cuh"
#include "train/cuda/normalisation.cuh"
#include "train/cuda/pooling.cuh"
#include "train/cuda/heads.cuh"
#include "train/cuda/optimizer.cuh"
#include "train/cuda/dataparallel.cuh"
// clang-format on

// ----------------------------------------------------------------------------
// device figures

static int cuda_memory_info(wsml_backend *be, wsml_backend_memory *out) {
    memset(out, 0, sizeof(*out));
    if (!be || !be->name || strcmp(be->name, "cuda") != 0)
        return be ? wsml_errf(&be->err, WSML_EARG, "memory_info: not a cuda backend") : WSML_EARG;
    cuda_impl *im = impl_of(be);
    out->allocated_bytes = im->allocated;
    out->peak_allocated_bytes = im->peak;
    out->workspace_bytes = im->workspace_bytes;
    out->precision = precision_name(im->precision);
    out->bf16_fallback_layers = im->bf16_fallback_layers;
    out->algo_search = im->find ? "find" : "heuristic";
    size_t free_b = 0, total_b = 0;
    CUDA_TRY("memory_info", cudaMemGetInfo(&free_b, &total_b));
    out->device_used_bytes = total_b - free_b;
    out->device_total_bytes = total_b;
    return 0;
}

// ----------------------------------------------------------------------------
// creation

static void cuda_destroy(wsml_backend *be) {
    cuda_impl *im = impl_of(be);
    if (im) {
        cuda_dp_destroy(im);
        if (im->stream)
            cudaStreamSynchronize(im->stream);
        if (im->copy_stream)
            cudaStreamSynchronize(im->copy_stream);
        for (int i = 0; i < STAGE_SLOTS; i++) {
            if (im->stage[i].dev)
                cudaFree(im->stage[i].dev);
            if (im->stage[i].consumed)
                cudaEventDestroy(im->stage[i].consumed);
        }
        if (im->burst_start)
            cudaEventDestroy(im->burst_start);
        if (im->burst_end)
            cudaEventDestroy(im->burst_end);
        if (im->copy_stream)
            cudaStreamDestroy(im->copy_stream);
        if (im->stage_mu_ready)
            pthread_mutex_destroy(&im->stage_mu);
        for (size_t i = 0; i < im->num_allocs; i++)
            cudaFree(im->allocs[i].ptr);
        free(im->allocs);
        if (im->workspace)
            cudaFree(im->workspace);
        if (im->scratch)
            cudaFree(im->scratch);
        if (im->bf16_buf)
            cudaFree(im->bf16_buf);
        if (im->cublas)
            cublasDestroy(im->cublas);
        if (im->cublas_workspace)
            cudaFree(im->cublas_workspace);
        if (im->cudnn)
            cudnnDestroy(im->cudnn);
        if (im->stream)
            cudaStreamDestroy(im->stream);
        free(im->cache);
        free(im);
    }
    free(be);
}

// The rest of creation, with be->err receiving failures (copied to *err by the caller).
static int cuda_init(wsml_backend *be, const wsml_backend_options *opt) {
    cuda_impl *im = impl_of(be);
    const char *op = "cuda backend";
    // --precision (options) wins; WSML_PRECISION is the default's default (benchmarks).
    wsml_precision prec = opt ? opt->precision : WSML_PRECISION_DEFAULT;
    if (prec == WSML_PRECISION_DEFAULT) {
        const char *env = getenv("WSML_PRECISION");
        if (!env || !*env)
            prec = WSML_PRECISION_TF32;
        else if (precision_parse(env) < 0)
            return wsml_errf(&be->err, WSML_EARG, "WSML_PRECISION=%s: expected tf32, fp32 or bf16",
                             env);
        else
            prec = (wsml_precision)precision_parse(env);
    }
    if (prec != WSML_PRECISION_FP32 && prec != WSML_PRECISION_TF32 && prec != WSML_PRECISION_BF16)
        return wsml_errf(&be->err, WSML_EARG, "--precision: unknown value %d", (int)prec);
    im->precision = prec;
    im->tf32 = prec == WSML_PRECISION_TF32;
    im->tensor_ops = prec != WSML_PRECISION_FP32;
    be->precision = precision_name(prec);
    const char *algo = getenv("WSML_CUDNN_ALGO");
    if (!algo || !*algo || !strcmp(algo, "heuristic"))
        im->find = 0;
    else if (!strcmp(algo, "find"))
        im->find = 1;
    else
        return wsml_errf(&be->err, WSML_EARG, "WSML_CUDNN_ALGO=%s: expected heuristic or find",
                         algo);

    if (load_libraries() != 0)
        return wsml_errf(&be->err, WSML_EDEVICE, "--backend cuda: %s", libs_error);
    int count = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess || count < 1) {
        if (e != cudaSuccess)
            cudaGetLastError();
        int no_driver = e == cudaErrorInsufficientDriver || e == cudaErrorNoDevice;
        return wsml_errf(&be->err, WSML_EDEVICE,
                         "--backend cuda: no usable CUDA device (cudaGetDeviceCount: %s)%s",
                         e != cudaSuccess ? cudaGetErrorString(e) : "0 devices",
                         no_driver ? "; this machine has no NVIDIA driver or GPU: use --backend "
                                     "cpu"
                                   : "");
    }
    im->device = opt ? opt->device : 0;
    if (im->device < 0 || im->device >= count)
        return wsml_errf(&be->err, WSML_EARG,
                         "--device %d: this process sees %d CUDA device(s) (0..%d, numbered "
                         "after CUDA_VISIBLE_DEVICES)",
                         im->device, count, count - 1);
    CUDA_TRY(op, cudaSetDevice(im->device));
    cudaDeviceProp prop;
    CUDA_TRY(op, cudaGetDeviceProperties(&prop, im->device));
    im->sm_count = prop.multiProcessorCount > 0 ? prop.multiProcessorCount : 1;
    // cuDNN 9's legacy API is what this file uses; an older runtime would not have it.
    size_t cudnn_version = cudnnGetVersion();
    if (cudnn_version / 10000 != CUDNN_MAJOR)
        return wsml_errf(&be->err, WSML_EDEVICE,
                         "cuda backend: loaded cuDNN %zu.%zu.%zu but built for cuDNN %d.x",
                         cudnn_version / 10000, cudnn_version / 100 % 100, cudnn_version % 100,
                         CUDNN_MAJOR);
    CUDA_TRY(op, cudaStreamCreateWithFlags(&im->stream, cudaStreamNonBlocking));
    CUDA_TRY(op, cudaStreamCreateWithFlags(&im->copy_stream, cudaStreamNonBlocking));
    CUDA_TRY(op, cudaEventCreate(&im->burst_start));
    CUDA_TRY(op, cudaEventCreate(&im->burst_end));
    for (int i = 0; i < STAGE_SLOTS; i++)
        CUDA_TRY(op, cudaEventCreateWithFlags(&im->stage[i].consumed, cudaEventDisableTiming));
    if (pthread_mutex_init(&im->stage_mu, NULL) != 0)
        return wsml_errf(&be->err, WSML_ENOMEM, "cuda backend: pthread_mutex_init failed");
    im->stage_mu_ready = 1;
    CUDNN_TRY(op, cudnnCreate(&im->cudnn));
    CUDNN_TRY(op, cudnnSetStream(im->cudnn, im->stream));
    CUBLAS_TRY(op, cublasCreate(&im->cublas));
    CUBLAS_TRY(op, cublasSetStream(im->cublas, im->stream));
    CUBLAS_TRY(op, cublasSetMathMode(im->cublas,
                                     im->tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
    // cuBLAS's workspace is ours too, so that it never allocates during a step.
    int rc = device_malloc(be, "cuda backend: cuBLAS workspace", &im->cublas_workspace,
                           CUBLAS_WORKSPACE_BYTES);
    if (rc)
        return rc;
    CUBLAS_TRY(op, cublasSetWorkspace(im->cublas, im->cublas_workspace, CUBLAS_WORKSPACE_BYTES));
    rc = device_malloc(be, "cuda backend: scratch", &im->scratch, SCRATCH_INITIAL_BYTES);
    if (rc)
        return rc;
    im->scratch_bytes = SCRATCH_INITIAL_BYTES;
    im->workspace_cap = opt && opt->workspace_bytes ? opt->workspace_bytes : WORKSPACE_CAP_DEFAULT;
    return 0;
}

extern "C" int wsml_backend_cuda_create(const wsml_backend_options *opt, wsml_backend **out,
                                        wsml_err *err) {
    *out = NULL;
    wsml_backend *be = (wsml_backend *)calloc(1, sizeof(*be));
    cuda_impl *im = (cuda_impl *)calloc(1, sizeof(*im));
    if (!be || !im) {
        free(be);
        free(im);
        return wsml_errf(err, WSML_ENOMEM, "cuda backend: out of host memory");
    }
    be->impl = im;
    be->name = "cuda";
    be->host_memory = 0;
    be->num_threads = 1;
    int rc = cuda_init(be, opt);
    if (rc) {
        if (err)
            *err = be->err;
        cuda_destroy(be);
        return rc;
    }
    be->destroy = cuda_destroy;
    be->alloc = cuda_alloc;
    be->free = cuda_free;
    be->copy_to_device = cuda_copy_to_device;
    be->copy_to_host = cuda_copy_to_host;
    be->copy = cuda_copy;
    be->zero = cuda_zero;
    be->synchronize = cuda_synchronize;
    be->conv_prepare = cuda_conv_prepare;
    be->conv_release = cuda_conv_release;
    be->conv_forward = cuda_conv_forward;
    be->conv_backward_data = cuda_conv_backward_data;
    be->conv_backward_filter = cuda_conv_backward_filter;
    be->bn_forward_train = cuda_bn_forward_train;
    be->bn_forward_eval = cuda_bn_forward_eval;
    be->bn_backward = cuda_bn_backward;
    be->maxpool_forward = cuda_maxpool_forward;
    be->maxpool_backward = cuda_maxpool_backward;
    be->avgpool_forward = cuda_avgpool_forward;
    be->avgpool_backward = cuda_avgpool_backward;
    be->gemm = cuda_gemm;
    be->bias_add = cuda_bias_add;
    be->bias_backward = cuda_bias_backward;
    be->boostlu_forward = cuda_boostlu_forward;
    be->boostlu_backward = cuda_boostlu_backward;
    be->host_alloc = cuda_host_alloc;
    be->host_free = cuda_host_free;
    be->stage_input = cuda_stage_input;
    be->busy_seconds = cuda_busy_seconds;
    be->optim_step = cuda_optim_step;
    be->memory_info = cuda_memory_info;
    cuda_dp_register(be);
    *out = be;
    return 0;
}

// ----------------------------------------------------------------------------
// extras (train/cuda/backend_cuda.h)

extern "C" int wsml_cuda_device_count(void) {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();
        return 0;
    }
    return count > 0 ? count : 0;
}

extern "C" int wsml_cuda_describe(int device, char *buf, size_t cap) {
    cudaDeviceProp prop;
    cudaError_t e = cudaGetDeviceProperties(&prop, device);
    if (e != cudaSuccess) {
        cudaGetLastError();
        snprintf(buf, cap, "GPU %d: cudaGetDeviceProperties: %s", device, cudaGetErrorString(e));
        return -1;
    }
    if (load_libraries() != 0) {
        snprintf(buf, cap, "%s (%s)", prop.name, libs_error);
        return -1;
    }
    int driver = 0, runtime = 0, cb_major = 0, cb_minor = 0, cb_patch = 0;
    cudaDriverGetVersion(&driver);
    cudaRuntimeGetVersion(&runtime);
    cublasGetProperty(MAJOR_VERSION, &cb_major);
    cublasGetProperty(MINOR_VERSION, &cb_minor);
    cublasGetProperty(PATCH_LEVEL, &cb_patch);
    size_t v = cudnnGetVersion();
    snprintf(buf, cap,
             "%s (sm_%d%d, %d SMs, %.1f GiB), driver %d.%d, runtime %d.%d, cuDNN %zu.%zu.%zu "
             "(built with %d.%d.%d), cuBLAS %d.%d.%d",
             prop.name, prop.major, prop.minor, prop.multiProcessorCount,
             prop.totalGlobalMem / 1073741824.0, driver / 1000, driver % 1000 / 10, runtime / 1000,
             runtime % 1000 / 10, v / 10000, v / 100 % 100, v % 100, CUDNN_MAJOR, CUDNN_MINOR,
             CUDNN_PATCHLEVEL, cb_major, cb_minor, cb_patch);
    return 0;
}
