// What every part of the cuda backend shares: sizes, the backend's state (cuda_impl and
// the per-layer plans), errors as "op: call: status" (CUDA_TRY, CUDNN_TRY, CUBLAS_TRY,
// LAUNCH_TRY), grids, and the busy-time bursts. Part of backend_cuda.cu's one translation
// unit, included after libs.cuh. CPU twin: train/backend_cpu.c's thread pool, cpu_impl.

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
    // Data parallel (dataparallel.cuh): NCCL's communicator (ncclComm_t), its stream, and
    // events ordering it against the compute stream.
    void *nccl;
    int nccl_aborted; // dp_abort: teardown does not wait for comm_stream
    cudaStream_t comm_stream;
    cudaEvent_t grads_ready, reduced;
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
