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

// ----------------------------------------------------------------------------
// cuDNN and cuBLAS are loaded with dlopen when the first cuda backend is made, not linked:
// libcublasLt alone costs ~2 s of start-up in EVERY process that links it (measured here:
// an empty main() linked with -lcublas takes 2.2 s), which would slow every CPU-only run
// of wsml-train/wsml-eval and every Criterion test process. The CUDA runtime is static
// (libcudart_static) and cheap. Each call site below keeps the library's own name: the
// macros after the table turn it into a call through the loaded pointer.

#define WSML_STR2(x) #x
#define WSML_STR(x) WSML_STR2(x)
#define CUDNN_SONAME "libcudnn.so." WSML_STR(CUDNN_MAJOR)
#define CUBLAS_SONAME "libcublas.so." WSML_STR(CUBLAS_VER_MAJOR)

#define CUDNN_FUNCS(X)                                                                             \
    X(cudnnGetVersion)                                                                             \
    X(cudnnGetErrorString)                                                                         \
    X(cudnnGetLastErrorString)                                                                     \
    X(cudnnCreate)                                                                                 \
    X(cudnnDestroy)                                                                                \
    X(cudnnSetStream)                                                                              \
    X(cudnnCreateTensorDescriptor)                                                                 \
    X(cudnnDestroyTensorDescriptor)                                                                \
    X(cudnnSetTensor4dDescriptor)                                                                  \
    X(cudnnCreateFilterDescriptor)                                                                 \
    X(cudnnDestroyFilterDescriptor)                                                                \
    X(cudnnSetFilter4dDescriptor)                                                                  \
    X(cudnnCreateConvolutionDescriptor)                                                            \
    X(cudnnDestroyConvolutionDescriptor)                                                           \
    X(cudnnSetConvolution2dDescriptor)                                                             \
    X(cudnnSetConvolutionMathType)                                                                 \
    X(cudnnGetConvolutionForwardAlgorithm_v7)                                                      \
    X(cudnnFindConvolutionForwardAlgorithm)                                                        \
    X(cudnnGetConvolutionForwardWorkspaceSize)                                                     \
    X(cudnnConvolutionForward)                                                                     \
    X(cudnnGetConvolutionBackwardDataAlgorithm_v7)                                                 \
    X(cudnnFindConvolutionBackwardDataAlgorithm)                                                   \
    X(cudnnGetConvolutionBackwardDataWorkspaceSize)                                                \
    X(cudnnConvolutionBackwardData)                                                                \
    X(cudnnGetConvolutionBackwardFilterAlgorithm_v7)                                               \
    X(cudnnFindConvolutionBackwardFilterAlgorithm)                                                 \
    X(cudnnGetConvolutionBackwardFilterWorkspaceSize)                                              \
    X(cudnnConvolutionBackwardFilter)
#define CUBLAS_FUNCS(X)                                                                            \
    X(cublasCreate_v2)                                                                             \
    X(cublasDestroy_v2)                                                                            \
    X(cublasSetStream_v2)                                                                          \
    X(cublasSetMathMode)                                                                           \
    X(cublasSetWorkspace_v2)                                                                       \
    X(cublasSgemm_v2)                                                                              \
    X(cublasGetStatusString)                                                                       \
    X(cublasGetStatusName)                                                                         \
    X(cublasGetProperty)

#define DECLARE_POINTER(name) static decltype(&::name) dl_##name;
CUDNN_FUNCS(DECLARE_POINTER)
CUBLAS_FUNCS(DECLARE_POINTER)
#undef DECLARE_POINTER
// cublasGemmEx is overloaded in C++ (cublas_api.h adds a cudaDataType compute-type form):
// the C entry point's own signature.
typedef cublasStatus_t (*gemm_ex_fn)(cublasHandle_t, cublasOperation_t, cublasOperation_t, int, int,
                                     int, const void *, const void *, cudaDataType, int,
                                     const void *, cudaDataType, int, const void *, void *,
                                     cudaDataType, int, cublasComputeType_t, cublasGemmAlgo_t);
static gemm_ex_fn dl_cublasGemmEx;

static pthread_once_t libs_once = PTHREAD_ONCE_INIT;
static char libs_error[512]; // empty when both libraries and every symbol were found

static void load_libraries_once(void) {
    void *cudnn = dlopen(CUDNN_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!cudnn) {
        snprintf(libs_error, sizeof libs_error,
                 "cannot load cuDNN: %s (put cuDNN %d's lib directory on LD_LIBRARY_PATH)",
                 dlerror(), CUDNN_MAJOR);
        return;
    }
    void *cublas = dlopen(CUBLAS_SONAME, RTLD_NOW | RTLD_LOCAL);
    if (!cublas) {
        snprintf(libs_error, sizeof libs_error,
                 "cannot load cuBLAS: %s (put cuBLAS %d's lib directory on LD_LIBRARY_PATH)",
                 dlerror(), CUBLAS_VER_MAJOR);
        return;
    }
#define RESOLVE(lib, soname, name)                                                                 \
    dl_##name = (decltype(dl_##name))dlsym(lib, #name);                                            \
    if (!dl_##name) {                                                                              \
        snprintf(libs_error, sizeof libs_error, "%s has no %s (too old?)", soname, #name);         \
        return;                                                                                    \
    }
#define RESOLVE_CUDNN(name) RESOLVE(cudnn, CUDNN_SONAME, name)
#define RESOLVE_CUBLAS(name) RESOLVE(cublas, CUBLAS_SONAME, name)
    CUDNN_FUNCS(RESOLVE_CUDNN)
    CUBLAS_FUNCS(RESOLVE_CUBLAS)
    RESOLVE_CUBLAS(cublasGemmEx)
#undef RESOLVE_CUDNN
#undef RESOLVE_CUBLAS
#undef RESOLVE
}

// 0, or -1 with the reason in libs_error. The handles stay open for the process.
static int load_libraries(void) {
    pthread_once(&libs_once, load_libraries_once);
    return libs_error[0] ? -1 : 0;
}

#define cudnnGetVersion dl_cudnnGetVersion
#define cudnnGetErrorString dl_cudnnGetErrorString
#define cudnnGetLastErrorString dl_cudnnGetLastErrorString
#define cudnnCreate dl_cudnnCreate
#define cudnnDestroy dl_cudnnDestroy
#define cudnnSetStream dl_cudnnSetStream
#define cudnnCreateTensorDescriptor dl_cudnnCreateTensorDescriptor
#define cudnnDestroyTensorDescriptor dl_cudnnDestroyTensorDescriptor
#define cudnnSetTensor4dDescriptor dl_cudnnSetTensor4dDescriptor
#define cudnnCreateFilterDescriptor dl_cudnnCreateFilterDescriptor
#define cudnnDestroyFilterDescriptor dl_cudnnDestroyFilterDescriptor
#define cudnnSetFilter4dDescriptor dl_cudnnSetFilter4dDescriptor
#define cudnnCreateConvolutionDescriptor dl_cudnnCreateConvolutionDescriptor
#define cudnnDestroyConvolutionDescriptor dl_cudnnDestroyConvolutionDescriptor
#define cudnnSetConvolution2dDescriptor dl_cudnnSetConvolution2dDescriptor
#define cudnnSetConvolutionMathType dl_cudnnSetConvolutionMathType
#define cudnnGetConvolutionForwardAlgorithm_v7 dl_cudnnGetConvolutionForwardAlgorithm_v7
#define cudnnFindConvolutionForwardAlgorithm dl_cudnnFindConvolutionForwardAlgorithm
#define cudnnGetConvolutionForwardWorkspaceSize dl_cudnnGetConvolutionForwardWorkspaceSize
#define cudnnConvolutionForward dl_cudnnConvolutionForward
#define cudnnGetConvolutionBackwardDataAlgorithm_v7 dl_cudnnGetConvolutionBackwardDataAlgorithm_v7
#define cudnnFindConvolutionBackwardDataAlgorithm dl_cudnnFindConvolutionBackwardDataAlgorithm
#define cudnnGetConvolutionBackwardDataWorkspaceSize dl_cudnnGetConvolutionBackwardDataWorkspaceSize
#define cudnnConvolutionBackwardData dl_cudnnConvolutionBackwardData
#define cudnnGetConvolutionBackwardFilterAlgorithm_v7                                              \
    dl_cudnnGetConvolutionBackwardFilterAlgorithm_v7
#define cudnnFindConvolutionBackwardFilterAlgorithm dl_cudnnFindConvolutionBackwardFilterAlgorithm
#define cudnnGetConvolutionBackwardFilterWorkspaceSize                                             \
    dl_cudnnGetConvolutionBackwardFilterWorkspaceSize
#define cudnnConvolutionBackwardFilter dl_cudnnConvolutionBackwardFilter
// cublas_v2.h already maps cublasCreate -> cublasCreate_v2 etc.; rescanning lands here.
#define cublasCreate_v2 dl_cublasCreate_v2
#define cublasDestroy_v2 dl_cublasDestroy_v2
#define cublasSetStream_v2 dl_cublasSetStream_v2
#define cublasSetMathMode dl_cublasSetMathMode
#define cublasSetWorkspace_v2 dl_cublasSetWorkspace_v2
#define cublasSgemm_v2 dl_cublasSgemm_v2
#define cublasGemmEx dl_cublasGemmEx
#define cublasGetStatusString dl_cublasGetStatusString
#define cublasGetStatusName dl_cublasGetStatusName
#define cublasGetProperty dl_cublasGetProperty

#define THREADS 256
// Default cap of the shared cuDNN workspace (options.workspace_bytes overrides it).
#define WORKSPACE_CAP_DEFAULT ((size_t)1 << 30)
// cuBLAS's own workspace (NVIDIA recommends 32 MiB on Hopper).
#define CUBLAS_WORKSPACE_BYTES ((size_t)32 << 20)
// Initial scratch for per-channel partial sums and coefficients (grows if a layer needs).
#define SCRATCH_INITIAL_BYTES ((size_t)8 << 20)

// ----------------------------------------------------------------------------
// state

// Algorithms (and their math types and workspace needs) for one batch size.
typedef struct {
    int n; // 0: empty slot
    cudnnConvolutionFwdAlgo_t fwd;
    cudnnConvolutionBwdDataAlgo_t bwd_data;
    cudnnConvolutionBwdFilterAlgo_t bwd_filter;
    cudnnMathType_t fwd_math, data_math, filter_math;
    size_t fwd_bytes, data_bytes, filter_bytes;
} conv_algos;

// Per-layer plan (wsml_conv_desc.plan). One convolution descriptor per direction, since
// each carries the math type of the algorithm chosen for that direction.
typedef struct {
    cudnnTensorDescriptor_t x_desc, y_desc;
    cudnnFilterDescriptor_t w_desc;
    cudnnConvolutionDescriptor_t fwd_conv, data_conv, filter_conv;
    conv_algos slot[2]; // [0]: max_batch, [1]: the last other batch size seen
    int active;         // slot the descriptors are set for, -1 none
    int bf16;           // operands in bfloat16 (--precision bf16 and cuDNN has algorithms)
} conv_plan;

// Shape cache: layers of the same shape (ResNet repeats blocks) share one search.
typedef struct {
    int key[10];
    conv_algos algos;
} algo_cache_entry;

typedef struct {
    void *ptr;
    size_t bytes;
} alloc_record;

// One staged input: the device copy of a pinned host buffer of the loader.
#define STAGE_SLOTS 4 // the loader double-buffers; two loaders (train, val) may be open
typedef struct {
    const void *host; // NULL: free slot
    size_t bytes;     // bytes staged
    void *dev;        // device buffer of cap bytes (allocated on first use, then kept)
    size_t cap;
    int valid;            // dev holds host's current contents
    int in_use;           // a copy into dev is running (another thread)
    cudaEvent_t consumed; // recorded on the compute stream after dev was read
    unsigned long long last_used;
} stage_slot;

typedef struct {
    int device, sm_count;
    cudaStream_t stream;
    cudnnHandle_t cudnn;
    cublasHandle_t cublas;
    wsml_precision precision; // FP32, TF32 or BF16
    int tf32;                 // 1: TF32 tensor cores allowed
    int tensor_ops;           // 1: tf32 or bf16 (cuDNN may pick tensor-core math)
    // bf16: convolution operands converted from the float32 buffers, per call: three
    // regions (input side, filter, output side) sized in conv_prepare for the largest layer
    void *bf16_buf;
    size_t bf16_bytes;
    int bf16_fallback_layers; // layers prepared in float32 for want of a bf16 algorithm
    int find;                 // 1: cudnnFind instead of heuristics
    void *workspace;
    size_t workspace_bytes, workspace_cap;
    void *cublas_workspace;
    void *scratch;
    size_t scratch_bytes;
    alloc_record *allocs;
    size_t num_allocs, cap_allocs;
    size_t allocated, peak; // bytes: be->alloc + workspace + scratch + cuBLAS workspace
    algo_cache_entry *cache;
    size_t cache_len, cache_cap;
    // Input staging (stage_input): the loader's pinned batches are copied on copy_stream
    // into these device buffers while the compute stream works on the previous batch.
    cudaStream_t copy_stream;
    pthread_mutex_t stage_mu;
    int stage_mu_ready;
    stage_slot stage[STAGE_SLOTS];
    unsigned long long stage_clock;
    // Busy time (busy_seconds): a burst opens with the first operation queued after the
    // stream was drained and closes when it is drained again.
    cudaEvent_t burst_start, burst_end;
    int burst_open;
    double busy_seconds;
} cuda_impl;

static cuda_impl *impl_of(wsml_backend *be) {
    return (cuda_impl *)be->impl;
}

// train/backend.c's wsml_precision_parse/_name: this library links only libwsml-common
// (the executables that dlopen it do not export libwsml-train's symbols).
static int precision_parse(const char *name) {
    if (!strcmp(name, "fp32"))
        return WSML_PRECISION_FP32;
    if (!strcmp(name, "tf32"))
        return WSML_PRECISION_TF32;
    if (!strcmp(name, "bf16"))
        return WSML_PRECISION_BF16;
    return -1;
}

static const char *precision_name(wsml_precision p) {
    return p == WSML_PRECISION_BF16 ? "bf16" : p == WSML_PRECISION_TF32 ? "tf32" : "fp32";
}

// ----------------------------------------------------------------------------
// errors: "op: call: status"

// The function name of a stringised call expression ("cudaMalloc(&p, n)" -> "cudaMalloc").
static const char *call_name(const char *expr, char *buf, size_t cap) {
    size_t i = 0;
    while (expr[i] && expr[i] != '(' && i + 1 < cap) {
        buf[i] = expr[i];
        i++;
    }
    buf[i] = 0;
    return buf;
}

static int cuda_fail(wsml_backend *be, const char *op, const char *expr, cudaError_t e) {
    char name[64];
    cudaGetLastError(); // clear a non-sticky error so that later calls can proceed
    return wsml_errf(&be->err, e == cudaErrorMemoryAllocation ? WSML_ENOMEM : WSML_EDEVICE,
                     "%s: %s: %s (%s)", op, call_name(expr, name, sizeof name),
                     cudaGetErrorString(e), cudaGetErrorName(e));
}

static int cudnn_fail(wsml_backend *be, const char *op, const char *expr, cudnnStatus_t s) {
    char name[80], detail[256] = "";
    cudnnGetLastErrorString(detail, sizeof detail);
    for (char *c = detail; *c; c++)
        if (*c == '\n' || *c == '\r')
            *c = ' ';
    return wsml_errf(&be->err,
                     s == CUDNN_STATUS_INTERNAL_ERROR_HOST_ALLOCATION_FAILED ? WSML_ENOMEM
                                                                             : WSML_EDEVICE,
                     "%s: %s: %s%s%s", op, call_name(expr, name, sizeof name),
                     cudnnGetErrorString(s), detail[0] ? ": " : "", detail);
}

static int cublas_fail(wsml_backend *be, const char *op, const char *expr, cublasStatus_t s) {
    char name[64];
    return wsml_errf(&be->err, s == CUBLAS_STATUS_ALLOC_FAILED ? WSML_ENOMEM : WSML_EDEVICE,
                     "%s: %s: %s (%s)", op, call_name(expr, name, sizeof name),
                     cublasGetStatusString(s), cublasGetStatusName(s));
}

#define CUDA_TRY(op, call)                                                                         \
    do {                                                                                           \
        cudaError_t e_ = (call);                                                                   \
        if (e_ != cudaSuccess)                                                                     \
            return cuda_fail(be, (op), #call, e_);                                                 \
    } while (0)
#define CUDNN_TRY(op, call)                                                                        \
    do {                                                                                           \
        cudnnStatus_t s_ = (call);                                                                 \
        if (s_ != CUDNN_STATUS_SUCCESS)                                                            \
            return cudnn_fail(be, (op), #call, s_);                                                \
    } while (0)
#define CUBLAS_TRY(op, call)                                                                       \
    do {                                                                                           \
        cublasStatus_t s_ = (call);                                                                \
        if (s_ != CUBLAS_STATUS_SUCCESS)                                                           \
            return cublas_fail(be, (op), #call, s_);                                               \
    } while (0)
// After a kernel launch: launch-configuration errors show here, faults at synchronize.
#define LAUNCH_TRY(op, kernel)                                                                     \
    do {                                                                                           \
        cudaError_t e_ = cudaGetLastError();                                                       \
        if (e_ != cudaSuccess)                                                                     \
            return cuda_fail(be, (op), kernel "<<<>>>", e_);                                       \
    } while (0)

static int64_t ceil_div(int64_t a, int64_t b) {
    return (a + b - 1) / b;
}

// Blocks for a grid-stride loop over `work` items (enough to fill the GPU, no more).
static int grid_for(wsml_backend *be, int64_t work) {
    int64_t blocks = ceil_div(work, THREADS), max_blocks = (int64_t)impl_of(be)->sm_count * 16;
    if (blocks > max_blocks)
        blocks = max_blocks;
    return blocks < 1 ? 1 : (int)blocks;
}

// ----------------------------------------------------------------------------
// busy time: every operation that queues work calls burst_begin first

static void burst_begin(wsml_backend *be) {
    cuda_impl *im = impl_of(be);
    if (im->burst_open || !im->burst_start)
        return;
    if (cudaEventRecord(im->burst_start, im->stream) == cudaSuccess)
        im->burst_open = 1;
    else
        cudaGetLastError(); // timing only: a failure here must not fail the operation
}

// Waits until the compute stream is empty and closes the burst in flight.
static int stream_drain(wsml_backend *be, const char *op) {
    cuda_impl *im = impl_of(be);
    int timed = im->burst_open && cudaEventRecord(im->burst_end, im->stream) == cudaSuccess;
    CUDA_TRY(op, cudaStreamSynchronize(im->stream));
    if (im->burst_open) {
        float ms = 0;
        if (timed && cudaEventElapsedTime(&ms, im->burst_start, im->burst_end) == cudaSuccess)
            im->busy_seconds += ms / 1000.0;
        else
            cudaGetLastError();
        im->burst_open = 0;
    }
    return 0;
}

// ----------------------------------------------------------------------------
// device memory

static void track(cuda_impl *im, size_t bytes, int add) {
    if (add) {
        im->allocated += bytes;
        if (im->allocated > im->peak)
            im->peak = im->allocated;
    } else {
        im->allocated -= bytes;
    }
}

// cudaMalloc with an out-of-memory message that says how much was asked and what is free.
static int device_malloc(wsml_backend *be, const char *op, void **p, size_t bytes) {
    cuda_impl *im = impl_of(be);
    *p = NULL;
    cudaError_t e = cudaMalloc(p, bytes ? bytes : 256);
    if (e == cudaSuccess) {
        track(im, bytes, 1);
        return 0;
    }
    *p = NULL;
    if (e != cudaErrorMemoryAllocation)
        return cuda_fail(be, op, "cudaMalloc", e);
    cudaGetLastError();
    size_t free_b = 0, total_b = 0;
    cudaMemGetInfo(&free_b, &total_b);
    return wsml_errf(&be->err, WSML_ENOMEM,
                     "%s: cudaMalloc of %zu bytes (%.1f MiB): out of memory on GPU %d "
                     "(%.1f MiB free of %.1f MiB); try a smaller --batch",
                     op, bytes, bytes / 1048576.0, im->device, free_b / 1048576.0,
                     total_b / 1048576.0);
}

static void device_free(cuda_impl *im, void *p, size_t bytes) {
    if (!p)
        return;
    cudaFree(p);
    track(im, bytes, 0);
}

static void *cuda_alloc(wsml_backend *be, size_t bytes) {
    cuda_impl *im = impl_of(be);
    if (im->num_allocs == im->cap_allocs) {
        size_t cap = im->cap_allocs ? 2 * im->cap_allocs : 64;
        alloc_record *a = (alloc_record *)realloc(im->allocs, cap * sizeof(*a));
        if (!a) {
            wsml_errf(&be->err, WSML_ENOMEM, "alloc: out of host memory");
            return NULL;
        }
        im->allocs = a;
        im->cap_allocs = cap;
    }
    void *p = NULL;
    // cudaMalloc returns 256-byte aligned memory (the interface asks for 64).
    if (device_malloc(be, "alloc", &p, bytes) != 0)
        return NULL;
    im->allocs[im->num_allocs].ptr = p;
    im->allocs[im->num_allocs].bytes = bytes;
    im->num_allocs++;
    return p;
}

static void cuda_free(wsml_backend *be, void *ptr) {
    cuda_impl *im = impl_of(be);
    if (!ptr)
        return;
    for (size_t i = 0; i < im->num_allocs; i++)
        if (im->allocs[i].ptr == ptr) {
            device_free(im, ptr, im->allocs[i].bytes);
            im->allocs[i] = im->allocs[--im->num_allocs];
            return;
        }
    cudaFree(ptr); // not ours: let CUDA decide (an invalid pointer is a programmer error)
}

// The staged slot holding host_src's current bytes, or -1. Caller holds stage_mu.
static int stage_find(cuda_impl *im, const void *host_src, size_t bytes) {
    for (int i = 0; i < STAGE_SLOTS; i++)
        if (im->stage[i].host == host_src && im->stage[i].valid && im->stage[i].bytes == bytes)
            return i;
    return -1;
}

static int cuda_copy_to_device(wsml_backend *be, void *dst, const void *host_src, size_t bytes) {
    cuda_impl *im = impl_of(be);
    if (!bytes)
        return 0;
    burst_begin(be);
    int slot = -1;
    if (im->stage_mu_ready) {
        pthread_mutex_lock(&im->stage_mu);
        slot = stage_find(im, host_src, bytes);
        if (slot >= 0) {
            im->stage[slot].valid = 0;  // consumed: the loader refills and restages host_src
            im->stage[slot].in_use = 1; // no stage_input may reuse it before `consumed`
        }
        pthread_mutex_unlock(&im->stage_mu);
    }
    if (slot >= 0) {
        // Already on the device (stage_input): a device-to-device copy, no host wait.
        stage_slot *s = &im->stage[slot];
        cudaError_t e = cudaMemcpyAsync(dst, s->dev, bytes, cudaMemcpyDeviceToDevice, im->stream);
        if (e == cudaSuccess)
            e = cudaEventRecord(s->consumed, im->stream);
        pthread_mutex_lock(&im->stage_mu);
        s->in_use = 0;
        pthread_mutex_unlock(&im->stage_mu);
        if (e != cudaSuccess)
            return cuda_fail(be, "copy_to_device (staged input)", "cudaMemcpyAsync", e);
        return 0;
    }
    CUDA_TRY("copy_to_device",
             cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, im->stream));
    // Wait: the caller may reuse host_src at once (it may be pinned memory, for which
    // the copy would otherwise still be in flight).
    return stream_drain(be, "copy_to_device");
}

// stage_input (train/backend.h), called by loader threads: the copy runs on copy_stream,
// beside whatever the compute stream is doing.
// Failures go to *err, not be->err, which belongs to the thread driving the network.
static int stage_fail(wsml_err *err, const char *call, cudaError_t e) {
    cudaGetLastError();
    return wsml_errf(err, e == cudaErrorMemoryAllocation ? WSML_ENOMEM : WSML_EDEVICE,
                     "stage_input: %s: %s (%s)", call, cudaGetErrorString(e), cudaGetErrorName(e));
}

static int cuda_stage_input(wsml_backend *be, const void *host_src, size_t bytes, wsml_err *err) {
    cuda_impl *im = impl_of(be);
    pthread_mutex_lock(&im->stage_mu);
    int slot = -1;
    for (int i = 0; i < STAGE_SLOTS && slot < 0; i++)
        if (im->stage[i].host == host_src)
            slot = i;
    if (bytes == 0) { // forget: host_src is about to be refilled
        if (slot >= 0)
            im->stage[slot].valid = 0;
        pthread_mutex_unlock(&im->stage_mu);
        return 0;
    }
    for (int i = 0; i < STAGE_SLOTS && slot < 0; i++) // else the least recently used idle slot
        if (!im->stage[i].in_use &&
            (slot < 0 || im->stage[i].last_used < im->stage[slot].last_used))
            slot = i;
    if (slot < 0 || im->stage[slot].in_use) {
        pthread_mutex_unlock(&im->stage_mu);
        return 0; // no slot free: copy_to_device will copy from the host instead
    }
    stage_slot *s = &im->stage[slot];
    s->host = host_src;
    s->valid = 0;
    s->in_use = 1;
    s->last_used = ++im->stage_clock;
    pthread_mutex_unlock(&im->stage_mu);

    int rc = 0;
    cudaError_t e = cudaSetDevice(im->device); // the current device is per thread
    if (e != cudaSuccess) {
        rc = stage_fail(err, "cudaSetDevice", e);
    } else if (s->cap < bytes) {
        // Once per slot for a given batch size: the first batches, not every step.
        if (s->dev) {
            cudaStreamWaitEvent(im->copy_stream, s->consumed, 0);
            cudaStreamSynchronize(im->copy_stream);
            cudaFree(s->dev);
            s->dev = NULL;
            s->cap = 0;
        }
        e = cudaMalloc(&s->dev, bytes);
        if (e != cudaSuccess)
            rc = stage_fail(err, "cudaMalloc", e);
        else
            s->cap = bytes;
    }
    // A compute-stream copy out of this slot (the batch before) must be done first.
    if (rc == 0 && (e = cudaStreamWaitEvent(im->copy_stream, s->consumed, 0)) != cudaSuccess)
        rc = stage_fail(err, "cudaStreamWaitEvent", e);
    if (rc == 0 && (e = cudaMemcpyAsync(s->dev, host_src, bytes, cudaMemcpyHostToDevice,
                                        im->copy_stream)) != cudaSuccess)
        rc = stage_fail(err, "cudaMemcpyAsync", e);
    if (rc == 0 && (e = cudaStreamSynchronize(im->copy_stream)) != cudaSuccess)
        rc = stage_fail(err, "cudaStreamSynchronize", e);
    pthread_mutex_lock(&im->stage_mu);
    s->in_use = 0;
    s->bytes = bytes;
    s->valid = rc == 0;
    pthread_mutex_unlock(&im->stage_mu);
    return rc;
}

static void *cuda_host_alloc(wsml_backend *be, size_t bytes) {
    void *p = NULL;
    cudaError_t e = cudaHostAlloc(&p, bytes ? bytes : 64, cudaHostAllocPortable);
    if (e != cudaSuccess) {
        cuda_fail(be, "host_alloc", "cudaHostAlloc", e);
        return NULL;
    }
    return p;
}

static void cuda_host_free(wsml_backend *be, void *ptr) {
    (void)be;
    if (ptr)
        cudaFreeHost(ptr);
}

static int cuda_busy_seconds(wsml_backend *be, double *seconds) {
    *seconds = impl_of(be)->busy_seconds;
    return 0;
}

static int cuda_copy_to_host(wsml_backend *be, void *host_dst, const void *src, size_t bytes) {
    cuda_impl *im = impl_of(be);
    if (!bytes)
        return 0;
    burst_begin(be);
    CUDA_TRY("copy_to_host",
             cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, im->stream));
    return stream_drain(be, "copy_to_host");
}

static int cuda_copy(wsml_backend *be, void *dst, const void *src, size_t bytes) {
    burst_begin(be);
    if (!bytes)
        return 0;
    CUDA_TRY("copy",
             cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, impl_of(be)->stream));
    return 0;
}

static int cuda_zero(wsml_backend *be, void *dst, size_t bytes) {
    burst_begin(be);
    if (!bytes)
        return 0;
    CUDA_TRY("zero", cudaMemsetAsync(dst, 0, bytes, impl_of(be)->stream));
    return 0;
}

static int cuda_synchronize(wsml_backend *be) {
    int rc = stream_drain(be, "synchronize");
    if (rc)
        return rc;
    CUDA_TRY("synchronize", cudaGetLastError());
    return 0;
}

// Scratch for per-channel partial sums (double) and coefficients; grows (rarely: a
// layer wider than any before) with the stream drained first.
static int ensure_scratch(wsml_backend *be, size_t bytes) {
    cuda_impl *im = impl_of(be);
    if (im->scratch_bytes >= bytes)
        return 0;
    size_t want = im->scratch_bytes * 2 > bytes ? im->scratch_bytes * 2 : bytes;
    int drc = stream_drain(be, "scratch");
    if (drc)
        return drc;
    device_free(im, im->scratch, im->scratch_bytes);
    im->scratch = NULL;
    im->scratch_bytes = 0;
    int rc = device_malloc(be, "scratch", &im->scratch, want);
    if (rc)
        return rc;
    im->scratch_bytes = want;
    return 0;
}

// ----------------------------------------------------------------------------
// convolution (cuDNN)

// bf16 operands. dst: (n,) bfloat16 = round-to-nearest-even of src: (n,) float32
__global__ void to_bf16_kernel(int64_t n, __nv_bfloat16 *dst, const float *src) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x)
        dst[i] = __float2bfloat16_rn(src[i]);
}

// dst: (n,) float32 = src (bfloat16, exact), or += src when accumulate
__global__ void from_bf16_kernel(int64_t n, float *dst, const __nv_bfloat16 *src, int accumulate) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float v = __bfloat162float(src[i]);
        dst[i] = accumulate ? __fadd_rn(dst[i], v) : v;
    }
}

static int to_bf16(wsml_backend *be, const char *op, void *dst, const float *src, int64_t n) {
    to_bf16_kernel<<<grid_for(be, n), THREADS, 0, impl_of(be)->stream>>>(n, (__nv_bfloat16 *)dst,
                                                                         src);
    LAUNCH_TRY(op, "to_bf16_kernel");
    return 0;
}

static int from_bf16(wsml_backend *be, const char *op, float *dst, const void *src, int64_t n,
                     int accumulate) {
    from_bf16_kernel<<<grid_for(be, n), THREADS, 0, impl_of(be)->stream>>>(
        n, dst, (const __nv_bfloat16 *)src, accumulate);
    LAUNCH_TRY(op, "from_bf16_kernel");
    return 0;
}

// The three bf16 regions of a layer for batch n: input side (x or dx), filter (w or dw),
// output side (y or dy), each 256-byte aligned.
typedef struct {
    void *in, *filter, *out;
    int64_t in_elems, filter_elems, out_elems;
} bf16_regions;

static size_t round256(size_t bytes) {
    return (bytes + 255) & ~(size_t)255;
}

static bf16_regions bf16_layout(cuda_impl *im, const wsml_conv_desc *d, int n) {
    bf16_regions r;
    r.in_elems = (int64_t)n * d->in_h * d->in_w * d->in_channels;
    r.filter_elems = (int64_t)d->out_channels * d->kernel_h * d->kernel_w * d->in_channels;
    r.out_elems = (int64_t)n * d->out_h * d->out_w * d->out_channels;
    char *base = (char *)im->bf16_buf;
    r.in = base;
    r.filter = base + round256((size_t)r.in_elems * 2);
    r.out = (char *)r.filter + round256((size_t)r.filter_elems * 2);
    return r;
}

static size_t bf16_bytes_for(const wsml_conv_desc *d) {
    size_t in = (size_t)d->max_batch * d->in_h * d->in_w * d->in_channels;
    size_t filter = (size_t)d->out_channels * d->kernel_h * d->kernel_w * d->in_channels;
    size_t out = (size_t)d->max_batch * d->out_h * d->out_w * d->out_channels;
    return round256(in * 2) + round256(filter * 2) + round256(out * 2);
}

// Grows the bf16 operand buffer (conv_prepare only, never during a step).
static int grow_bf16(wsml_backend *be, size_t bytes) {
    cuda_impl *im = impl_of(be);
    if (bytes <= im->bf16_bytes)
        return 0;
    int rc = stream_drain(be, "conv_prepare");
    if (rc)
        return rc;
    void *p = NULL;
    rc = device_malloc(be, "conv_prepare: bf16 operands", &p, bytes);
    if (rc)
        return rc;
    device_free(im, im->bf16_buf, im->bf16_bytes);
    im->bf16_buf = p;
    im->bf16_bytes = bytes;
    return 0;
}

static int is_fp32_only(cudnnMathType_t m) {
    return m == CUDNN_DEFAULT_MATH || m == CUDNN_FMA_MATH;
}

// Sets x/y descriptors for a batch of n (the filter and convolutions do not depend on n).
// The data type of a layer's operands: bf16 plans store them as bfloat16 (converted per
// call), accumulating in float32 (cuDNN's PSEUDO_BFLOAT16 configuration).
static cudnnDataType_t conv_data_type(const conv_plan *p) {
    return p->bf16 ? CUDNN_DATA_BFLOAT16 : CUDNN_DATA_FLOAT;
}

static int set_tensor_descs(wsml_backend *be, conv_plan *p, const wsml_conv_desc *d, int n,
                            const char *op) {
    cudnnDataType_t dt = conv_data_type(p);
    CUDNN_TRY(op, cudnnSetTensor4dDescriptor(p->x_desc, CUDNN_TENSOR_NHWC, dt, n, d->in_channels,
                                             d->in_h, d->in_w));
    CUDNN_TRY(op, cudnnSetTensor4dDescriptor(p->y_desc, CUDNN_TENSOR_NHWC, dt, n, d->out_channels,
                                             d->out_h, d->out_w));
    return 0;
}

static int set_math(wsml_backend *be, conv_plan *p, const conv_algos *a, const char *op) {
    CUDNN_TRY(op, cudnnSetConvolutionMathType(p->fwd_conv, a->fwd_math));
    CUDNN_TRY(op, cudnnSetConvolutionMathType(p->data_conv, a->data_math));
    CUDNN_TRY(op, cudnnSetConvolutionMathType(p->filter_conv, a->filter_math));
    return 0;
}

static void cache_key(const wsml_conv_desc *d, int n, int key[10]) {
    key[0] = d->in_channels, key[1] = d->out_channels, key[2] = d->in_h, key[3] = d->in_w;
    key[4] = d->kernel_h, key[5] = d->kernel_w, key[6] = d->stride, key[7] = d->pad;
    key[8] = n, key[9] = 0;
}

static const conv_algos *cache_find(cuda_impl *im, const int key[10]) {
    for (size_t i = 0; i < im->cache_len; i++)
        if (!memcmp(im->cache[i].key, key, sizeof(im->cache[i].key)))
            return &im->cache[i].algos;
    return NULL;
}

static void cache_add(cuda_impl *im, const int key[10], const conv_algos *a) {
    if (im->cache_len == im->cache_cap) {
        size_t cap = im->cache_cap ? 2 * im->cache_cap : 32;
        algo_cache_entry *c = (algo_cache_entry *)realloc(im->cache, cap * sizeof(*c));
        if (!c)
            return; // the cache is an optimisation only
        im->cache = c;
        im->cache_cap = cap;
    }
    memcpy(im->cache[im->cache_len].key, key, sizeof(im->cache[im->cache_len].key));
    im->cache[im->cache_len].algos = *a;
    im->cache_len++;
}

// The generic candidate filter: cuDNN lists candidates best first (heuristics) or
// fastest first (find); take the first that succeeded, obeys the precision and whose
// workspace (re-queried under the math type it will run with) fits `limit`.
#define CHOOSE_ALGO(PERF_T, COUNT, QUERY_HEUR, QUERY_FIND, WS_QUERY, conv, out_algo, out_math,     \
                    out_bytes, what)                                                               \
    do {                                                                                           \
        PERF_T perf[COUNT];                                                                        \
        int returned = 0;                                                                          \
        cudnnMathType_t query_math = im->tensor_ops ? CUDNN_TENSOR_OP_MATH : CUDNN_FMA_MATH;       \
        CUDNN_TRY(op, cudnnSetConvolutionMathType(conv, query_math));                              \
        cudnnStatus_t find_status = CUDNN_STATUS_NOT_SUPPORTED;                                    \
        if (im->find)                                                                              \
            find_status = QUERY_FIND;                                                              \
        if (find_status != CUDNN_STATUS_SUCCESS)                                                   \
            CUDNN_TRY(op, QUERY_HEUR);                                                             \
        int found = 0;                                                                             \
        /* fp32: first the candidates cuDNN itself lists as plain fp32, then any other */          \
        /* under the forced FMA math type (the workspace query rejects what cannot run) */         \
        for (int pass = im->tensor_ops ? 1 : 0; pass < 2 && !found; pass++)                        \
            for (int i = 0; i < returned && !found; i++) {                                         \
                if (perf[i].status != CUDNN_STATUS_SUCCESS)                                        \
                    continue;                                                                      \
                if (pass == 0 && !is_fp32_only(perf[i].mathType))                                  \
                    continue;                                                                      \
                cudnnMathType_t m = im->tensor_ops ? perf[i].mathType : CUDNN_FMA_MATH;            \
                if (cudnnSetConvolutionMathType(conv, m) != CUDNN_STATUS_SUCCESS)                  \
                    continue;                                                                      \
                size_t bytes = 0;                                                                  \
                if (WS_QUERY(perf[i].algo, &bytes) != CUDNN_STATUS_SUCCESS || bytes > limit)       \
                    continue;                                                                      \
                out_algo = perf[i].algo;                                                           \
                out_math = m;                                                                      \
                out_bytes = bytes;                                                                 \
                found = 1;                                                                         \
            }                                                                                      \
        if (!found)                                                                                \
            return wsml_errf(&be->err, WSML_EDEVICE,                                               \
                             "%s: cuDNN offers no %s algorithm for this layer (batch %d, "         \
                             "%s) within a %zu-byte workspace",                                    \
                             op, what, n, precision_name(im->precision), limit);                   \
    } while (0)

// Chooses the three algorithms for batch n with workspaces of at most `limit` bytes;
// leaves the plan's descriptors set for n and for the chosen math types.
static int choose_algos(wsml_backend *be, conv_plan *p, const wsml_conv_desc *d, int n,
                        size_t limit, conv_algos *out, const char *op) {
    cuda_impl *im = impl_of(be);
    int rc = set_tensor_descs(be, p, d, n, op);
    if (rc)
        return rc;
    int key[10];
    cache_key(d, n, key);
    key[9] = p->bf16;
    const conv_algos *hit = cache_find(im, key);
    if (hit && hit->fwd_bytes <= limit && hit->data_bytes <= limit && hit->filter_bytes <= limit) {
        *out = *hit;
        return set_math(be, p, out, op);
    }
    conv_algos a;
    memset(&a, 0, sizeof(a));
    a.n = n;
    cudnnHandle_t h = im->cudnn;
#define FWD_WS(algo, bytes)                                                                        \
    cudnnGetConvolutionForwardWorkspaceSize(h, p->x_desc, p->w_desc, p->fwd_conv, p->y_desc, algo, \
                                            bytes)
#define DATA_WS(algo, bytes)                                                                       \
    cudnnGetConvolutionBackwardDataWorkspaceSize(h, p->w_desc, p->y_desc, p->data_conv, p->x_desc, \
                                                 algo, bytes)
#define FILTER_WS(algo, bytes)                                                                     \
    cudnnGetConvolutionBackwardFilterWorkspaceSize(h, p->x_desc, p->y_desc, p->filter_conv,        \
                                                   p->w_desc, algo, bytes)
    CHOOSE_ALGO(
        cudnnConvolutionFwdAlgoPerf_t, CUDNN_CONVOLUTION_FWD_ALGO_COUNT,
        cudnnGetConvolutionForwardAlgorithm_v7(h, p->x_desc, p->w_desc, p->fwd_conv, p->y_desc,
                                               CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf),
        cudnnFindConvolutionForwardAlgorithm(h, p->x_desc, p->w_desc, p->fwd_conv, p->y_desc,
                                             CUDNN_CONVOLUTION_FWD_ALGO_COUNT, &returned, perf),
        FWD_WS, p->fwd_conv, a.fwd, a.fwd_math, a.fwd_bytes, "forward");
    CHOOSE_ALGO(cudnnConvolutionBwdDataAlgoPerf_t, CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT,
                cudnnGetConvolutionBackwardDataAlgorithm_v7(
                    h, p->w_desc, p->y_desc, p->data_conv, p->x_desc,
                    CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned, perf),
                cudnnFindConvolutionBackwardDataAlgorithm(
                    h, p->w_desc, p->y_desc, p->data_conv, p->x_desc,
                    CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT, &returned, perf),
                DATA_WS, p->data_conv, a.bwd_data, a.data_math, a.data_bytes, "backward-data");
    CHOOSE_ALGO(cudnnConvolutionBwdFilterAlgoPerf_t, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT,
                cudnnGetConvolutionBackwardFilterAlgorithm_v7(
                    h, p->x_desc, p->y_desc, p->filter_conv, p->w_desc,
                    CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &returned, perf),
                cudnnFindConvolutionBackwardFilterAlgorithm(
                    h, p->x_desc, p->y_desc, p->filter_conv, p->w_desc,
                    CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT, &returned, perf),
                FILTER_WS, p->filter_conv, a.bwd_filter, a.filter_math, a.filter_bytes,
                "backward-filter");
#undef FWD_WS
#undef DATA_WS
#undef FILTER_WS
    *out = a;
    cache_add(im, key, &a);
    return 0;
}

static size_t algos_bytes(const conv_algos *a) {
    size_t b = a->fwd_bytes;
    if (a->data_bytes > b)
        b = a->data_bytes;
    if (a->filter_bytes > b)
        b = a->filter_bytes;
    return b;
}

// Grows the shared workspace (only called from conv_prepare, never during a step).
static int grow_workspace(wsml_backend *be, size_t bytes) {
    cuda_impl *im = impl_of(be);
    if (bytes <= im->workspace_bytes)
        return 0;
    int drc = stream_drain(be, "conv_prepare");
    if (drc)
        return drc;
    void *p = NULL;
    int rc = device_malloc(be, "conv_prepare: cuDNN workspace", &p, bytes);
    if (rc)
        return rc;
    device_free(im, im->workspace, im->workspace_bytes);
    im->workspace = p;
    im->workspace_bytes = bytes;
    return 0;
}

static void plan_destroy(conv_plan *p) {
    if (!p)
        return;
    if (p->x_desc)
        cudnnDestroyTensorDescriptor(p->x_desc);
    if (p->y_desc)
        cudnnDestroyTensorDescriptor(p->y_desc);
    if (p->w_desc)
        cudnnDestroyFilterDescriptor(p->w_desc);
    if (p->fwd_conv)
        cudnnDestroyConvolutionDescriptor(p->fwd_conv);
    if (p->data_conv)
        cudnnDestroyConvolutionDescriptor(p->data_conv);
    if (p->filter_conv)
        cudnnDestroyConvolutionDescriptor(p->filter_conv);
    free(p);
}

static int plan_create(wsml_backend *be, const wsml_conv_desc *d, conv_plan *p) {
    const char *op = "conv_prepare";
    CUDNN_TRY(op, cudnnCreateTensorDescriptor(&p->x_desc));
    CUDNN_TRY(op, cudnnCreateTensorDescriptor(&p->y_desc));
    CUDNN_TRY(op, cudnnCreateFilterDescriptor(&p->w_desc));
    CUDNN_TRY(op, cudnnSetFilter4dDescriptor(p->w_desc, conv_data_type(p), CUDNN_TENSOR_NHWC,
                                             d->out_channels, d->in_channels, d->kernel_h,
                                             d->kernel_w));
    cudnnConvolutionDescriptor_t *convs[3] = {&p->fwd_conv, &p->data_conv, &p->filter_conv};
    for (int i = 0; i < 3; i++) {
        CUDNN_TRY(op, cudnnCreateConvolutionDescriptor(convs[i]));
        CUDNN_TRY(op,
                  cudnnSetConvolution2dDescriptor(*convs[i], d->pad, d->pad, d->stride, d->stride,
                                                  1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    }
    p->active = -1;
    return 0;
}

static int cuda_conv_prepare(wsml_backend *be, wsml_conv_desc *d) {
    cuda_impl *im = impl_of(be);
    const char *op = "conv_prepare";
    d->plan = NULL;
    if (d->in_channels < 1 || d->out_channels < 1 || d->kernel_h < 1 || d->kernel_w < 1 ||
        d->stride < 1 || d->pad < 0 || d->max_batch < 1 ||
        d->out_h != (d->in_h + 2 * d->pad - d->kernel_h) / d->stride + 1 ||
        d->out_w != (d->in_w + 2 * d->pad - d->kernel_w) / d->stride + 1 || d->out_h < 1 ||
        d->out_w < 1)
        return wsml_errf(&be->err, WSML_EARG, "conv_prepare: inconsistent convolution shape");
    // cuDNN's legacy API indexes a tensor with 32-bit integers.
    double in_elems = (double)d->max_batch * d->in_h * d->in_w * d->in_channels;
    double out_elems = (double)d->max_batch * d->out_h * d->out_w * d->out_channels;
    if (in_elems > INT_MAX || out_elems > INT_MAX)
        return wsml_errf(&be->err, WSML_EARG,
                         "conv_prepare: a batch of %d images makes a %.0f-element tensor, over "
                         "cuDNN's 2^31 limit; try a smaller --batch",
                         d->max_batch, in_elems > out_elems ? in_elems : out_elems);
    conv_plan *p = NULL;
    int rc = 0;
    // bf16: a layer for which cuDNN offers no bf16 algorithm (e.g. a 3-channel stem on
    // some versions) runs in float32 with TF32 instead, rather than failing the run.
    for (int bf16 = im->precision == WSML_PRECISION_BF16; bf16 >= 0; bf16--) {
        p = (conv_plan *)calloc(1, sizeof(*p));
        if (!p)
            return wsml_errf(&be->err, WSML_ENOMEM, "conv_prepare: out of host memory");
        p->bf16 = bf16;
        rc = plan_create(be, d, p);
        if (rc == 0) {
            // Workspace limit: the cap, and never more than a quarter of what is free now
            // (the activations are already allocated when the network prepares its layers).
            size_t free_b = 0, total_b = 0, limit = im->workspace_cap;
            if (cudaMemGetInfo(&free_b, &total_b) == cudaSuccess && free_b / 4 < limit)
                limit = free_b / 4 > im->workspace_bytes ? free_b / 4 : im->workspace_bytes;
            rc = choose_algos(be, p, d, d->max_batch, limit, &p->slot[0], op);
            if (rc == 0)
                rc = grow_workspace(be, algos_bytes(&p->slot[0]));
            if (rc == WSML_ENOMEM) // fall back to algorithms that fit the workspace we have
                rc = choose_algos(be, p, d, d->max_batch, im->workspace_bytes, &p->slot[0], op);
            p->active = 0;
            if (rc == 0 && bf16)
                rc = grow_bf16(be, bf16_bytes_for(d));
        }
        if (rc == 0 || !bf16 || rc != WSML_EDEVICE)
            break;
        plan_destroy(p); // no bf16 algorithm: once more in float32
        p = NULL;
        im->bf16_fallback_layers++;
    }
    if (rc) {
        plan_destroy(p);
        return rc;
    }
    d->plan = p;
    return 0;
}

static void cuda_conv_release(wsml_backend *be, wsml_conv_desc *d) {
    (void)be;
    plan_destroy((conv_plan *)d->plan);
    d->plan = NULL;
}

// The plan's algorithms for batch n, with its descriptors set for n.
static int plan_for_batch(wsml_backend *be, const wsml_conv_desc *d, int n, const char *op,
                          conv_plan **pp, const conv_algos **ap) {
    conv_plan *p = (conv_plan *)d->plan;
    if (!p)
        return wsml_errf(&be->err, WSML_ESTATE, "%s: layer was not prepared", op);
    if (n < 1 || n > d->max_batch)
        return wsml_errf(&be->err, WSML_EARG, "%s: batch %d outside 1..%d", op, n, d->max_batch);
    int s = p->slot[0].n == n ? 0 : p->slot[1].n == n ? 1 : -1;
    if (s < 0) {
        // A new smaller batch: choose within the workspace we have (no allocation here).
        p->slot[1].n = 0;
        p->active = -1;
        int rc = choose_algos(be, p, d, n, impl_of(be)->workspace_bytes, &p->slot[1], op);
        if (rc)
            return rc;
        p->active = s = 1;
    }
    if (p->active != s) {
        int rc = set_tensor_descs(be, p, d, n, op);
        if (rc == 0)
            rc = set_math(be, p, &p->slot[s], op);
        if (rc)
            return rc;
        p->active = s;
    }
    *pp = p;
    *ap = &p->slot[s];
    return 0;
}

// y: (n, out_h, out_w, O) = conv(x: (n, in_h, in_w, I), w: (O, KH, KW, I))
static int cuda_conv_forward(wsml_backend *be, const wsml_conv_desc *d, int n, float *y,
                             const float *x, const float *w) {
    burst_begin(be);
    const char *op = "conv_forward";
    conv_plan *p;
    const conv_algos *a;
    int rc = plan_for_batch(be, d, n, op, &p, &a);
    if (rc)
        return rc;
    cuda_impl *im = impl_of(be);
    const float one = 1.0f, zero = 0.0f;
    if (p->bf16) {
        bf16_regions r = bf16_layout(im, d, n);
        if ((rc = to_bf16(be, op, r.in, x, r.in_elems)) ||
            (rc = to_bf16(be, op, r.filter, w, r.filter_elems)))
            return rc;
        CUDNN_TRY(op, cudnnConvolutionForward(im->cudnn, &one, p->x_desc, r.in, p->w_desc, r.filter,
                                              p->fwd_conv, a->fwd, im->workspace,
                                              im->workspace_bytes, &zero, p->y_desc, r.out));
        return from_bf16(be, op, y, r.out, r.out_elems, 0);
    }
    CUDNN_TRY(op, cudnnConvolutionForward(im->cudnn, &one, p->x_desc, x, p->w_desc, w, p->fwd_conv,
                                          a->fwd, im->workspace, im->workspace_bytes, &zero,
                                          p->y_desc, y));
    return 0;
}

// dx: (n, in_h, in_w, I) (+)= conv_transpose(dy: (n, out_h, out_w, O), w)
static int cuda_conv_backward_data(wsml_backend *be, const wsml_conv_desc *d, int n, float *dx,
                                   const float *dy, const float *w, int accumulate) {
    burst_begin(be);
    const char *op = "conv_backward_data";
    conv_plan *p;
    const conv_algos *a;
    int rc = plan_for_batch(be, d, n, op, &p, &a);
    if (rc)
        return rc;
    cuda_impl *im = impl_of(be);
    if (p->bf16) {
        const float one = 1.0f, zero = 0.0f;
        bf16_regions r = bf16_layout(im, d, n);
        if ((rc = to_bf16(be, op, r.out, dy, r.out_elems)) ||
            (rc = to_bf16(be, op, r.filter, w, r.filter_elems)))
            return rc;
        CUDNN_TRY(op, cudnnConvolutionBackwardData(im->cudnn, &one, p->w_desc, r.filter, p->y_desc,
                                                   r.out, p->data_conv, a->bwd_data, im->workspace,
                                                   im->workspace_bytes, &zero, p->x_desc, r.in));
        return from_bf16(be, op, dx, r.in, r.in_elems, accumulate);
    }
    const float one = 1.0f, beta = accumulate ? 1.0f : 0.0f;
    CUDNN_TRY(op, cudnnConvolutionBackwardData(im->cudnn, &one, p->w_desc, w, p->y_desc, dy,
                                               p->data_conv, a->bwd_data, im->workspace,
                                               im->workspace_bytes, &beta, p->x_desc, dx));
    return 0;
}

// dw: (O, KH, KW, I) += Σ over the batch of dy ⊗ x patches
static int cuda_conv_backward_filter(wsml_backend *be, const wsml_conv_desc *d, int n, float *dw,
                                     const float *dy, const float *x) {
    burst_begin(be);
    const char *op = "conv_backward_filter";
    conv_plan *p;
    const conv_algos *a;
    int rc = plan_for_batch(be, d, n, op, &p, &a);
    if (rc)
        return rc;
    cuda_impl *im = impl_of(be);
    const float one = 1.0f;
    if (p->bf16) {
        // dw in bf16 (as autocast's gradient of the bf16 weight copy), then += into fp32
        const float zero = 0.0f;
        bf16_regions r = bf16_layout(im, d, n);
        if ((rc = to_bf16(be, op, r.out, dy, r.out_elems)) ||
            (rc = to_bf16(be, op, r.in, x, r.in_elems)))
            return rc;
        CUDNN_TRY(op,
                  cudnnConvolutionBackwardFilter(im->cudnn, &one, p->x_desc, r.in, p->y_desc, r.out,
                                                 p->filter_conv, a->bwd_filter, im->workspace,
                                                 im->workspace_bytes, &zero, p->w_desc, r.filter));
        return from_bf16(be, op, dw, r.filter, r.filter_elems, 1);
    }
    CUDNN_TRY(op, cudnnConvolutionBackwardFilter(im->cudnn, &one, p->x_desc, x, p->y_desc, dy,
                                                 p->filter_conv, a->bwd_filter, im->workspace,
                                                 im->workspace_bytes, &one, p->w_desc, dw));
    return 0;
}

// ----------------------------------------------------------------------------
// kernels: vector helpers

// V consecutive floats; V = 4 only where the caller checked 16-byte alignment.
template <int V> __device__ inline void load_vec(float (&v)[V], const float *p) {
    if constexpr (V == 4) {
        float4 t = *reinterpret_cast<const float4 *>(p);
        v[0] = t.x, v[1] = t.y, v[2] = t.z, v[3] = t.w;
    } else {
#pragma unroll
        for (int k = 0; k < V; k++)
            v[k] = p[k];
    }
}

template <int V> __device__ inline void store_vec(float *p, const float (&v)[V]) {
    if constexpr (V == 4) {
        *reinterpret_cast<float4 *>(p) = make_float4(v[0], v[1], v[2], v[3]);
    } else {
#pragma unroll
        for (int k = 0; k < V; k++)
            p[k] = v[k];
    }
}

// Row tiling of a (rows, C) matrix for elementwise kernels: per_row threads cover one
// row's C/V vectors (looping when C/V > per_row), a block holds THREADS/per_row rows, so
// that narrow layers (C = 64) still use whole blocks. Host side of the same geometry:
static void row_tiling(wsml_backend *be, int C, int64_t rows, int V, int *per_row, int *blocks) {
    int cv = C / V;
    *per_row = cv < THREADS ? cv : THREADS;
    int64_t rows_per_block = THREADS / *per_row;
    int64_t b = ceil_div(rows, rows_per_block), max_b = (int64_t)impl_of(be)->sm_count * 16;
    *blocks = (int)(b < max_b ? b : max_b);
    if (*blocks < 1)
        *blocks = 1;
}

static int aligned16(const void *p) {
    return ((uintptr_t)p & 15) == 0;
}

// ----------------------------------------------------------------------------
// kernels: per-channel sums over rows

enum { SUMS_STATS, SUMS_BN_BACKWARD, SUMS_PLAIN };

// Per-channel sums over the rows of (rows, C) matrices, in double, one partial per chunk
// of rows_per_chunk rows; partials: (chunks, 2, C).
//   SUMS_STATS         [Σ a, Σ a²]                          (BN forward: a = x)
//   SUMS_BN_BACKWARD   [Σ dz, Σ dz·(x − mean)], dz = a masked by y's ReLU (a = dy, b = x)
//   SUMS_PLAIN         [Σ a, 0]                             (bias gradient)
// Block (32, 8): threadIdx.x = channel within a tile of 32 (a warp reads 128 contiguous
// bytes of a row), threadIdx.y = row lane; blockIdx.x = chunk, blockIdx.y = tile.
// The 8 lanes and the chunks are added in a fixed order: results are deterministic.
template <int MODE>
__global__ void column_sums_kernel(int C, int64_t rows, int64_t rows_per_chunk, const float *a,
                                   const float *b, const float *y, int relu, const float *mean,
                                   double *partials) {
    const int c = blockIdx.y * 32 + threadIdx.x;
    const int64_t r0 = (int64_t)blockIdx.x * rows_per_chunk;
    const int64_t r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    double s0 = 0.0, s1 = 0.0;
    if (c < C) {
        const float m = MODE == SUMS_BN_BACKWARD ? mean[c] : 0.0f;
        for (int64_t r = r0 + threadIdx.y; r < r1; r += 8) {
            const size_t i = (size_t)r * C + c;
            const float v = a[i];
            if (MODE == SUMS_STATS) {
                double dv = v;
                s0 += dv;
                s1 += dv * dv;
            } else if (MODE == SUMS_BN_BACKWARD) {
                float dz = (relu && !(y[i] > 0.0f)) ? 0.0f : v;
                s0 += dz;
                s1 += (double)dz * ((double)b[i] - (double)m);
            } else {
                s0 += v;
            }
        }
    }
    __shared__ double sh[2][8][32];
    sh[0][threadIdx.y][threadIdx.x] = s0;
    sh[1][threadIdx.y][threadIdx.x] = s1;
    __syncthreads();
    if (threadIdx.y == 0 && c < C) {
        for (int k = 1; k < 8; k++) {
            s0 += sh[0][k][threadIdx.x];
            s1 += sh[1][k][threadIdx.x];
        }
        partials[(size_t)blockIdx.x * 2 * C + c] = s0;
        partials[((size_t)blockIdx.x * 2 + 1) * C + c] = s1;
    }
}

// Layout of the scratch for one per-channel reduction: partials (chunks, 2, C) doubles,
// then coefficients (ncoef, C) floats. Chooses the chunk count (enough blocks to fill the
// GPU, at least 256 rows per chunk) and grows the scratch if even one chunk does not fit.
typedef struct {
    int chunks;
    int64_t rows_per_chunk;
    double *partials;
    float *coef;
} sums_plan;

static int plan_sums(wsml_backend *be, int C, int64_t rows, int ncoef, sums_plan *sp) {
    cuda_impl *im = impl_of(be);
    size_t coef_doubles = ((size_t)ncoef * C + 1) / 2 + 32; // + room to keep 16-byte alignment
    int rc = ensure_scratch(be, (2 * (size_t)C + coef_doubles) * sizeof(double));
    if (rc)
        return rc;
    size_t scratch_doubles = im->scratch_bytes / sizeof(double);
    int64_t tiles = ceil_div(C, 32);
    int64_t chunks = (int64_t)im->sm_count * 8 / tiles;
    int64_t by_rows = ceil_div(rows, 256);
    int64_t by_room = (int64_t)((scratch_doubles - coef_doubles) / (2 * (size_t)C));
    if (chunks > by_rows)
        chunks = by_rows;
    if (chunks > by_room)
        chunks = by_room;
    if (chunks > 65535)
        chunks = 65535;
    if (chunks < 1)
        chunks = 1;
    sp->rows_per_chunk = ceil_div(rows, chunks);
    sp->chunks = (int)ceil_div(rows, sp->rows_per_chunk);
    sp->partials = (double *)im->scratch;
    size_t coef_off = ((size_t)sp->chunks * 2 * C + 1) & ~(size_t)1; // 16-byte aligned
    sp->coef = (float *)(sp->partials + coef_off);
    return 0;
}

template <int MODE>
static int launch_sums(wsml_backend *be, const char *op, const sums_plan *sp, int C, int64_t rows,
                       const float *a, const float *b, const float *y, int relu,
                       const float *mean) {
    dim3 block(32, 8), grid((unsigned)sp->chunks, (unsigned)ceil_div(C, 32));
    column_sums_kernel<MODE><<<grid, block, 0, impl_of(be)->stream>>>(
        C, rows, sp->rows_per_chunk, a, b, y, relu, mean, sp->partials);
    LAUNCH_TRY(op, "column_sums_kernel");
    return 0;
}

// ----------------------------------------------------------------------------
// batch normalisation (rows, C), fused with the residual add and ReLU

// Batch statistics from the partial sums (as the cpu backend: biased variance from
// Σx²/rows − mean², clamped at 0; PyTorch's unbiased running_var), and the coefficients
// of y = (x − mean)·scale + shift: coef = [mean, scale, shift] (3, C).
// Numerics: the float32 inputs are summed exactly enough in double (53-bit) that the
// one-pass formula loses only log2(mean²/var) of those bits to cancellation: for
// |mean|/std up to 10^4 the variance keeps ~1e-8 relative accuracy, far below float32's,
// without a second pass over the activations (Welford in float32 would be worse).
__global__ void bn_train_finalize_kernel(int C, int chunks, int64_t rows, const double *partials,
                                         const float *gamma, const float *beta, float *running_mean,
                                         float *running_var, float *save_mean, float *save_invstd,
                                         float momentum, float eps, float *coef) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C)
        return;
    double sum = 0.0, sumsq = 0.0;
    for (int k = 0; k < chunks; k++) {
        sum += partials[(size_t)2 * k * C + c];
        sumsq += partials[((size_t)2 * k + 1) * C + c];
    }
    double mean = sum / (double)rows;
    double var = sumsq / (double)rows - mean * mean;
    if (var < 0.0)
        var = 0.0;
    double invstd = 1.0 / sqrt(var + (double)eps);
    save_mean[c] = (float)mean;
    save_invstd[c] = (float)invstd;
    double unbiased = var * (double)rows / (double)(rows - 1);
    running_mean[c] = (float)(momentum * mean + (1.0 - momentum) * running_mean[c]);
    running_var[c] = (float)(momentum * unbiased + (1.0 - momentum) * running_var[c]);
    coef[c] = (float)mean;
    coef[C + c] = __fmul_rn((float)invstd, gamma[c]);
    coef[2 * C + c] = beta[c];
}

// coef = [running_mean, invstd·gamma, beta] (3, C)
__global__ void bn_eval_coef_kernel(int C, const float *gamma, const float *beta,
                                    const float *running_mean, const float *running_var, float eps,
                                    float *coef) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C)
        return;
    float invstd = (float)(1.0 / sqrt((double)running_var[c] + (double)eps));
    coef[c] = running_mean[c];
    coef[C + c] = __fmul_rn(invstd, gamma[c]);
    coef[2 * C + c] = beta[c];
}

// y: (rows, C) = act((x − mean)·scale + shift + residual); coef = [mean, scale, shift]
// residual may be NULL; a NaN passes the ReLU (as torch.relu).
template <int V>
__global__ void bn_apply_kernel(int C, int64_t rows, int per_row, float *y, const float *x,
                                const float *residual, const float *coef, int relu) {
    const int cv_count = C / V, rows_per_block = blockDim.x / per_row;
    const int row_off = threadIdx.x / per_row, lane = threadIdx.x % per_row;
    if (row_off >= rows_per_block)
        return;
    for (int64_t r = (int64_t)blockIdx.x * rows_per_block + row_off; r < rows;
         r += (int64_t)gridDim.x * rows_per_block)
        for (int j = lane; j < cv_count; j += per_row) {
            const int c = j * V;
            const size_t i = (size_t)r * C + c;
            float xv[V], m[V], s[V], t[V], rv[V] = {}, out[V];
            load_vec<V>(xv, x + i);
            load_vec<V>(m, coef + c);
            load_vec<V>(s, coef + C + c);
            load_vec<V>(t, coef + 2 * C + c);
            if (residual)
                load_vec<V>(rv, residual + i);
#pragma unroll
            for (int k = 0; k < V; k++) {
                float v = __fadd_rn(__fmul_rn(__fsub_rn(xv[k], m[k]), s[k]), t[k]);
                if (residual)
                    v = __fadd_rn(v, rv[k]);
                if (relu && !(v > 0.0f))
                    v = isnan(v) ? v : 0.0f;
                out[k] = v;
            }
            store_vec<V>(y + i, out);
        }
}

static int launch_bn_apply(wsml_backend *be, const char *op, int C, int64_t rows, float *y,
                           const float *x, const float *residual, const float *coef, int relu) {
    int V = (C % 4 == 0 && aligned16(y) && aligned16(x) && aligned16(coef) &&
             (!residual || aligned16(residual)))
                ? 4
                : 1;
    int per_row, blocks;
    row_tiling(be, C, rows, V, &per_row, &blocks);
    cudaStream_t st = impl_of(be)->stream;
    if (V == 4)
        bn_apply_kernel<4>
            <<<blocks, THREADS, 0, st>>>(C, rows, per_row, y, x, residual, coef, relu);
    else
        bn_apply_kernel<1>
            <<<blocks, THREADS, 0, st>>>(C, rows, per_row, y, x, residual, coef, relu);
    LAUNCH_TRY(op, "bn_apply_kernel");
    return 0;
}

// y: (rows, C) = act(BN_batch(x: (rows, C)) + residual)
static int cuda_bn_forward_train(wsml_backend *be, int C, int64_t rows, float *y, const float *x,
                                 const float *gamma, const float *beta, const float *residual,
                                 int relu, float *running_mean, float *running_var,
                                 float *save_mean, float *save_invstd, float momentum, float eps) {
    burst_begin(be);
    const char *op = "bn_forward_train";
    if (rows < 2)
        return wsml_errf(&be->err, WSML_EARG,
                         "bn_forward_train: expected more than 1 value per channel, got %lld",
                         (long long)rows);
    sums_plan sp;
    int rc = plan_sums(be, C, rows, 3, &sp);
    if (rc)
        return rc;
    rc = launch_sums<SUMS_STATS>(be, op, &sp, C, rows, x, NULL, NULL, 0, NULL);
    if (rc)
        return rc;
    bn_train_finalize_kernel<<<(unsigned)ceil_div(C, THREADS), THREADS, 0, impl_of(be)->stream>>>(
        C, sp.chunks, rows, sp.partials, gamma, beta, running_mean, running_var, save_mean,
        save_invstd, momentum, eps, sp.coef);
    LAUNCH_TRY(op, "bn_train_finalize_kernel");
    return launch_bn_apply(be, op, C, rows, y, x, residual, sp.coef, relu);
}

// y: (rows, C) = act(BN_running(x: (rows, C)) + residual)
static int cuda_bn_forward_eval(wsml_backend *be, int C, int64_t rows, float *y, const float *x,
                                const float *gamma, const float *beta, const float *residual,
                                int relu, const float *running_mean, const float *running_var,
                                float eps) {
    burst_begin(be);
    const char *op = "bn_forward_eval";
    sums_plan sp;
    int rc = plan_sums(be, C, 1, 3, &sp);
    if (rc)
        return rc;
    bn_eval_coef_kernel<<<(unsigned)ceil_div(C, THREADS), THREADS, 0, impl_of(be)->stream>>>(
        C, gamma, beta, running_mean, running_var, eps, sp.coef);
    LAUNCH_TRY(op, "bn_eval_coef_kernel");
    return launch_bn_apply(be, op, C, rows, y, x, residual, sp.coef, relu);
}

// dx = gamma·invstd·(dz − mean(dz) − (x − mean)·invstd²·mean(dz·(x − mean))) as
// dx = dz·k_dz + (x − mean)·k_xc + k_bias; coef = [mean, k_dz, k_xc, k_bias] (4, C);
// dgamma += Σ dz·(x − mean)·invstd, dbeta += Σ dz.
__global__ void bn_backward_finalize_kernel(int C, int chunks, int64_t rows, const double *partials,
                                            const float *gamma, const float *save_mean,
                                            const float *save_invstd, float *dgamma, float *dbeta,
                                            float *coef) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C)
        return;
    double sdz = 0.0, sdzx = 0.0;
    for (int k = 0; k < chunks; k++) {
        sdz += partials[(size_t)2 * k * C + c];
        sdzx += partials[((size_t)2 * k + 1) * C + c];
    }
    double invstd = save_invstd[c];
    double g = (double)gamma[c] * invstd;
    coef[c] = save_mean[c];
    coef[C + c] = (float)g;
    coef[2 * C + c] = (float)(-g * invstd * invstd * sdzx / (double)rows);
    coef[3 * C + c] = (float)(-g * sdz / (double)rows);
    dgamma[c] = __fadd_rn(dgamma[c], (float)(sdzx * invstd));
    dbeta[c] = __fadd_rn(dbeta[c], (float)sdz);
}

// dx, dresidual: (rows, C); dz = dy masked by y's ReLU (y = the forward's output)
template <int V>
__global__ void bn_backward_apply_kernel(int C, int64_t rows, int per_row, float *dx,
                                         float *dresidual, const float *dy, const float *y,
                                         int relu, const float *x, const float *coef) {
    const int cv_count = C / V, rows_per_block = blockDim.x / per_row;
    const int row_off = threadIdx.x / per_row, lane = threadIdx.x % per_row;
    if (row_off >= rows_per_block)
        return;
    for (int64_t r = (int64_t)blockIdx.x * rows_per_block + row_off; r < rows;
         r += (int64_t)gridDim.x * rows_per_block)
        for (int j = lane; j < cv_count; j += per_row) {
            const int c = j * V;
            const size_t i = (size_t)r * C + c;
            float dyv[V], yv[V] = {}, xv[V], m[V], kdz[V], kxc[V], kb[V], dz[V], out[V];
            load_vec<V>(dyv, dy + i);
            load_vec<V>(xv, x + i);
            if (relu)
                load_vec<V>(yv, y + i);
            load_vec<V>(m, coef + c);
            load_vec<V>(kdz, coef + C + c);
            load_vec<V>(kxc, coef + 2 * C + c);
            load_vec<V>(kb, coef + 3 * C + c);
#pragma unroll
            for (int k = 0; k < V; k++) {
                dz[k] = (relu && !(yv[k] > 0.0f)) ? 0.0f : dyv[k];
                out[k] = __fadd_rn(
                    __fadd_rn(__fmul_rn(dz[k], kdz[k]), __fmul_rn(__fsub_rn(xv[k], m[k]), kxc[k])),
                    kb[k]);
            }
            if (dresidual)
                store_vec<V>(dresidual + i, dz);
            store_vec<V>(dx + i, out);
        }
}

static int cuda_bn_backward(wsml_backend *be, int C, int64_t rows, float *dx, float *dresidual,
                            const float *dy, const float *y, int relu, const float *x,
                            const float *gamma, const float *save_mean, const float *save_invstd,
                            float *dgamma, float *dbeta) {
    burst_begin(be);
    const char *op = "bn_backward";
    if (!y)
        y = dy; // as the cpu backend: without the output, dy's own sign masks
    sums_plan sp;
    int rc = plan_sums(be, C, rows, 4, &sp);
    if (rc)
        return rc;
    rc = launch_sums<SUMS_BN_BACKWARD>(be, op, &sp, C, rows, dy, x, y, relu, save_mean);
    if (rc)
        return rc;
    cudaStream_t st = impl_of(be)->stream;
    bn_backward_finalize_kernel<<<(unsigned)ceil_div(C, THREADS), THREADS, 0, st>>>(
        C, sp.chunks, rows, sp.partials, gamma, save_mean, save_invstd, dgamma, dbeta, sp.coef);
    LAUNCH_TRY(op, "bn_backward_finalize_kernel");
    int V = (C % 4 == 0 && aligned16(dx) && aligned16(dy) && aligned16(y) && aligned16(x) &&
             aligned16(sp.coef) && (!dresidual || aligned16(dresidual)))
                ? 4
                : 1;
    int per_row, blocks;
    row_tiling(be, C, rows, V, &per_row, &blocks);
    if (V == 4)
        bn_backward_apply_kernel<4>
            <<<blocks, THREADS, 0, st>>>(C, rows, per_row, dx, dresidual, dy, y, relu, x, sp.coef);
    else
        bn_backward_apply_kernel<1>
            <<<blocks, THREADS, 0, st>>>(C, rows, per_row, dx, dresidual, dy, y, relu, x, sp.coef);
    LAUNCH_TRY(op, "bn_backward_apply_kernel");
    return 0;
}

// ----------------------------------------------------------------------------
// pooling

// One thread per output element. PyTorch's rule: the first maximum in row-major window
// order wins, and a NaN always wins (the last NaN, as the cpu backend's loop).
// y, argmax: (n, out_h, out_w, C)  x: (n, in_h, in_w, C)
__global__ void maxpool_forward_kernel(wsml_pool_desc d, int64_t total, float *y, const float *x,
                                       int32_t *argmax) {
    const int C = d.channels, H = d.in_h, W = d.in_w, Ho = d.out_h, Wo = d.out_w;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % C);
        int64_t t = i / C;
        const int ow = (int)(t % Wo);
        t /= Wo;
        const int oh = (int)(t % Ho);
        const int64_t b = t / Ho;
        int h0 = oh * d.stride - d.pad, h1 = h0 + d.kernel;
        int w0 = ow * d.stride - d.pad, w1 = w0 + d.kernel;
        if (h0 < 0)
            h0 = 0;
        if (h1 > H)
            h1 = H;
        if (w0 < 0)
            w0 = 0;
        if (w1 > W)
            w1 = W;
        const float *xb = x + (size_t)b * H * W * C + c;
        float best = -INFINITY;
        int32_t pos = h0 * W + w0;
        for (int ih = h0; ih < h1; ih++)
            for (int iw = w0; iw < w1; iw++) {
                float v = xb[((size_t)ih * W + iw) * C];
                if (v > best || isnan(v)) {
                    best = v;
                    pos = ih * W + iw;
                }
            }
        y[i] = best;
        argmax[i] = pos;
    }
}

static int cuda_maxpool_forward(wsml_backend *be, const wsml_pool_desc *d, int n, float *y,
                                const float *x, int32_t *argmax) {
    burst_begin(be);
    int64_t total = (int64_t)n * d->out_h * d->out_w * d->channels;
    if (total <= 0)
        return 0;
    maxpool_forward_kernel<<<grid_for(be, total), THREADS, 0, impl_of(be)->stream>>>(*d, total, y,
                                                                                     x, argmax);
    LAUNCH_TRY("maxpool_forward", "maxpool_forward_kernel");
    return 0;
}

// Gather form (no atomics, deterministic): each input element sums the dy of the windows
// that contain it and chose it, in row-major window order (the cpu backend's order).
// dx: (n, in_h, in_w, C)  dy, argmax: (n, out_h, out_w, C)
__global__ void maxpool_backward_kernel(wsml_pool_desc d, int64_t total, float *dx, const float *dy,
                                        const int32_t *argmax) {
    const int C = d.channels, H = d.in_h, W = d.in_w, Ho = d.out_h, Wo = d.out_w;
    const int S = d.stride, P = d.pad, K = d.kernel;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % C);
        int64_t t = i / C;
        const int iw = (int)(t % W);
        t /= W;
        const int ih = (int)(t % H);
        const int64_t b = t / H;
        // windows oh with oh·S − P <= ih <= oh·S − P + K − 1
        int oh0 = ih + P - K + 1, oh1 = (ih + P) / S;
        oh0 = oh0 <= 0 ? 0 : (oh0 + S - 1) / S;
        if (oh1 > Ho - 1)
            oh1 = Ho - 1;
        int ow0 = iw + P - K + 1, ow1 = (iw + P) / S;
        ow0 = ow0 <= 0 ? 0 : (ow0 + S - 1) / S;
        if (ow1 > Wo - 1)
            ow1 = Wo - 1;
        const int32_t pos = ih * W + iw;
        float acc = 0.0f;
        for (int oh = oh0; oh <= oh1; oh++)
            for (int ow = ow0; ow <= ow1; ow++) {
                size_t o = (((size_t)b * Ho + oh) * Wo + ow) * C + c;
                if (argmax[o] == pos)
                    acc = __fadd_rn(acc, dy[o]);
            }
        dx[i] = acc;
    }
}

static int cuda_maxpool_backward(wsml_backend *be, const wsml_pool_desc *d, int n, float *dx,
                                 const float *dy, const float *x, const float *y,
                                 const int32_t *argmax) {
    burst_begin(be);
    (void)x;
    (void)y;
    int64_t total = (int64_t)n * d->in_h * d->in_w * d->channels;
    if (total <= 0)
        return 0;
    maxpool_backward_kernel<<<grid_for(be, total), THREADS, 0, impl_of(be)->stream>>>(*d, total, dx,
                                                                                      dy, argmax);
    LAUNCH_TRY("maxpool_backward", "maxpool_backward_kernel");
    return 0;
}

// One thread per (b, c), summing in double as the cpu backend; threads of a warp read
// consecutive channels.  y: (n, C)  x: (n, hw, C)
__global__ void avgpool_forward_kernel(int n, int hw, int C, float *y, const float *x) {
    const int64_t total = (int64_t)n * C;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t b = i / C;
        const int c = (int)(i % C);
        const float *xb = x + (size_t)b * hw * C + c;
        double s = 0.0;
        for (int p = 0; p < hw; p++)
            s += xb[(size_t)p * C];
        y[i] = (float)(s / hw);
    }
}

static int cuda_avgpool_forward(wsml_backend *be, int n, int hw, int C, float *y, const float *x) {
    burst_begin(be);
    int64_t total = (int64_t)n * C;
    if (total <= 0)
        return 0;
    avgpool_forward_kernel<<<grid_for(be, total), THREADS, 0, impl_of(be)->stream>>>(n, hw, C, y,
                                                                                     x);
    LAUNCH_TRY("avgpool_forward", "avgpool_forward_kernel");
    return 0;
}

// dx: (n, hw, C) = dy: (n, C) / hw
__global__ void avgpool_backward_kernel(int n, int hw, int C, float *dx, const float *dy) {
    const int64_t total = (int64_t)n * hw * C;
    const float fhw = (float)hw;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % C);
        const int64_t b = i / ((int64_t)hw * C);
        dx[i] = __fdiv_rn(dy[(size_t)b * C + c], fhw);
    }
}

static int cuda_avgpool_backward(wsml_backend *be, int n, int hw, int C, float *dx,
                                 const float *dy) {
    burst_begin(be);
    int64_t total = (int64_t)n * hw * C;
    if (total <= 0)
        return 0;
    avgpool_backward_kernel<<<grid_for(be, total), THREADS, 0, impl_of(be)->stream>>>(n, hw, C, dx,
                                                                                      dy);
    LAUNCH_TRY("avgpool_backward", "avgpool_backward_kernel");
    return 0;
}

// ----------------------------------------------------------------------------
// dense algebra and the heads

// Row-major C (M, N) = alpha·op(A)·op(B) + beta·C. A row-major matrix with row stride ld
// is its transpose in column-major order with leading dimension ld, so cuBLAS computes
// C^T (N, M) = op(B)^T · op(A)^T: the operands swap, the transpose flags stay.
static int cuda_gemm(wsml_backend *be, int trans_a, int trans_b, int M, int N, int K, float alpha,
                     const float *A, int lda, const float *B, int ldb, float beta, float *C,
                     int ldc) {
    burst_begin(be);
    if (M <= 0 || N <= 0)
        return 0;
    if (impl_of(be)->precision == WSML_PRECISION_BF16) {
        // float32 in and out, bf16 tensor-core products with float32 accumulation
        CUBLAS_TRY("gemm", cublasGemmEx(impl_of(be)->cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                        trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B,
                                        CUDA_R_32F, ldb, A, CUDA_R_32F, lda, &beta, C, CUDA_R_32F,
                                        ldc, CUBLAS_COMPUTE_32F_FAST_16BF, CUBLAS_GEMM_DEFAULT));
        return 0;
    }
    CUBLAS_TRY("gemm", cublasSgemm(impl_of(be)->cublas, trans_b ? CUBLAS_OP_T : CUBLAS_OP_N,
                                   trans_a ? CUBLAS_OP_T : CUBLAS_OP_N, N, M, K, &alpha, B, ldb, A,
                                   lda, &beta, C, ldc));
    return 0;
}

// y: (rows, cols) += bias: (cols)
__global__ void bias_add_kernel(int64_t rows, int cols, float *y, const float *bias) {
    const int64_t total = rows * cols;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x)
        y[i] = __fadd_rn(y[i], bias[i % cols]);
}

static int cuda_bias_add(wsml_backend *be, int64_t rows, int cols, float *y, const float *bias) {
    burst_begin(be);
    int64_t total = rows * cols;
    if (total <= 0)
        return 0;
    bias_add_kernel<<<grid_for(be, total), THREADS, 0, impl_of(be)->stream>>>(rows, cols, y, bias);
    LAUNCH_TRY("bias_add", "bias_add_kernel");
    return 0;
}

// dbias: (cols) += Σ over chunks of the partial column sums
__global__ void bias_backward_finalize_kernel(int C, int chunks, const double *partials,
                                              float *dbias) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C)
        return;
    double s = 0.0;
    for (int k = 0; k < chunks; k++)
        s += partials[(size_t)2 * k * C + c];
    dbias[c] = __fadd_rn(dbias[c], (float)s);
}

// dbias: (cols) += column sums of dy: (rows, cols)
static int cuda_bias_backward(wsml_backend *be, int64_t rows, int cols, float *dbias,
                              const float *dy) {
    burst_begin(be);
    const char *op = "bias_backward";
    if (rows <= 0 || cols <= 0)
        return 0;
    sums_plan sp;
    int rc = plan_sums(be, cols, rows, 0, &sp);
    if (rc)
        return rc;
    rc = launch_sums<SUMS_PLAIN>(be, op, &sp, cols, rows, dy, NULL, NULL, 0, NULL);
    if (rc)
        return rc;
    bias_backward_finalize_kernel<<<(unsigned)ceil_div(cols, THREADS), THREADS, 0,
                                    impl_of(be)->stream>>>(cols, sp.chunks, sp.partials, dbias);
    LAUNCH_TRY(op, "bias_backward_finalize_kernel");
    return 0;
}

// logits: (n, C) = mean_s boost(cam: (n, hw, C)), boost(v) = v > 0 ? alpha·v : v
// (SPEC §2); one thread per (b, c), double sum as the cpu backend.
__global__ void boostlu_forward_kernel(int n, int hw, int C, float alpha, float *logits,
                                       const float *cam) {
    const int64_t total = (int64_t)n * C;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int64_t b = i / C;
        const int c = (int)(i % C);
        const float *cb = cam + (size_t)b * hw * C + c;
        double s = 0.0;
        for (int p = 0; p < hw; p++) {
            float v = cb[(size_t)p * C];
            s += v > 0.0f ? __fmul_rn(v, alpha) : v;
        }
        logits[i] = (float)(s / hw);
    }
}

static int cuda_boostlu_forward(wsml_backend *be, int n, int hw, int C, float alpha, float *logits,
                                const float *cam) {
    burst_begin(be);
    int64_t total = (int64_t)n * C;
    if (total <= 0)
        return 0;
    boostlu_forward_kernel<<<grid_for(be, total), THREADS, 0, impl_of(be)->stream>>>(
        n, hw, C, alpha, logits, cam);
    LAUNCH_TRY("boostlu_forward", "boostlu_forward_kernel");
    return 0;
}

// dcam: (n, hw, C) = dlogits: (n, C) / hw · (cam > 0 ? alpha : 1)
__global__ void boostlu_backward_kernel(int n, int hw, int C, float alpha, float *dcam,
                                        const float *dlogits, const float *cam) {
    const int64_t total = (int64_t)n * hw * C;
    const float fhw = (float)hw;
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (int64_t)gridDim.x * blockDim.x) {
        const int c = (int)(i % C);
        const int64_t b = i / ((int64_t)hw * C);
        float g = __fdiv_rn(dlogits[(size_t)b * C + c], fhw);
        dcam[i] = cam[i] > 0.0f ? __fmul_rn(g, alpha) : g;
    }
}

static int cuda_boostlu_backward(wsml_backend *be, int n, int hw, int C, float alpha, float *dcam,
                                 const float *dlogits, const float *cam) {
    burst_begin(be);
    int64_t total = (int64_t)n * hw * C;
    if (total <= 0)
        return 0;
    boostlu_backward_kernel<<<grid_for(be, total), THREADS, 0, impl_of(be)->stream>>>(
        n, hw, C, alpha, dcam, dlogits, cam);
    LAUNCH_TRY("boostlu_backward", "boostlu_backward_kernel");
    return 0;
}

// ----------------------------------------------------------------------------
// optimiser (train/optim.h's rules on device arrays)

// params, grads, m, v: (n,). adam_update of train/optim.c: every rounding as there.
__global__ void adam_kernel(int64_t n, float *params, const float *grads, float *m, float *v,
                            float beta1, float beta2, float one_minus_beta1, float one_minus_beta2,
                            float weight_decay, int decay, float neg_step_size,
                            float bias_correction2_sqrt, float eps) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float p = params[i];
        float g = decay ? fmaf(p, weight_decay, grads[i]) : grads[i];
        float mi = fmaf(g, one_minus_beta1, __fmul_rn(m[i], beta1));
        float vi = fmaf(__fmul_rn(one_minus_beta2, g), g, __fmul_rn(v[i], beta2));
        m[i] = mi;
        v[i] = vi;
        float denom = __fadd_rn(__fdiv_rn(__fsqrt_rn(vi), bias_correction2_sqrt), eps);
        params[i] = __fadd_rn(p, __fdiv_rn(__fmul_rn(neg_step_size, mi), denom));
    }
}

// params, grads, buf: (n,). sgd_update of train/optim.c (dampening 0, no Nesterov).
__global__ void sgd_kernel(int64_t n, float *params, const float *grads, float *buf, float momentum,
                           float weight_decay, int decay, float neg_lr, int first_step) {
    for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (int64_t)gridDim.x * blockDim.x) {
        float p = params[i];
        float d = decay ? fmaf(p, weight_decay, grads[i]) : grads[i];
        if (buf) {
            float b = first_step ? d : __fadd_rn(__fmul_rn(buf[i], momentum), d);
            buf[i] = b;
            d = b;
        }
        params[i] = fmaf(d, neg_lr, p);
    }
}

static int cuda_optim_step(wsml_backend *be, wsml_optim *o, int g, float *params,
                           const float *grads, float *exp_avg, float *exp_avg_sq) {
    burst_begin(be);
    const char *op = "optimizer";
    if (g < 0 || g >= o->num_groups)
        return wsml_errf(&be->err, WSML_EARG, "optimizer: no parameter group %d", g);
    wsml_optim_group *grp = &o->group[g];
    const wsml_optim_config *cfg = &o->cfg;
    const int64_t n = (int64_t)grp->count;
    const int adam = cfg->kind == WSML_OPTIM_ADAM;
    if ((adam && (!exp_avg || !exp_avg_sq)) || (!adam && cfg->momentum != 0 && !exp_avg))
        return wsml_errf(&be->err, WSML_EARG, "optimizer: group '%s' needs its state arrays",
                         grp->name);
    grp->step++;
    if (n == 0)
        return 0;
    cudaStream_t st = impl_of(be)->stream;
    if (adam) {
        // host-side scalars exactly as adam_update computes them
        const double bc1 = 1 - pow(cfg->beta1, (double)grp->step);
        const double bc2 = 1 - pow(cfg->beta2, (double)grp->step);
        adam_kernel<<<grid_for(be, n), THREADS, 0, st>>>(
            n, params, grads, exp_avg, exp_avg_sq, (float)cfg->beta1, (float)cfg->beta2,
            (float)(1 - cfg->beta1), (float)(1 - cfg->beta2), (float)cfg->weight_decay,
            cfg->weight_decay != 0, (float)(-(grp->lr / bc1)), (float)sqrt(bc2), (float)cfg->eps);
        LAUNCH_TRY(op, "adam_kernel");
    } else {
        sgd_kernel<<<grid_for(be, n), THREADS, 0, st>>>(
            n, params, grads, cfg->momentum != 0 ? exp_avg : NULL, (float)cfg->momentum,
            (float)cfg->weight_decay, cfg->weight_decay != 0, (float)(-grp->lr), grp->step == 1);
        LAUNCH_TRY(op, "sgd_kernel");
    }
    return 0;
}

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
        return wsml_errf(&be->err, WSML_EARG, "cuda device %d: this machine has %d (0..%d)",
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
