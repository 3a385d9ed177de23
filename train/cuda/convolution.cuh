// Convolutions of the cuda backend on cuDNN: algorithm choice and cache, the shared
// workspace, per-layer plans, bf16 operand copies, forward and both backwards. Part of
// backend_cuda.cu's one translation unit. CPU twin: train/backend_cpu.c
// cpu_conv_prepare, cpu_conv_release, cpu_conv_forward, cpu_conv_backward_data,
// cpu_conv_backward_filter.

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
