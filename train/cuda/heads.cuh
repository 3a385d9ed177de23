// The heads' algebra on the cuda backend: cuBLAS GEMM, bias, BoostLU. Part of
// backend_cuda.cu's one translation unit. CPU twin: train/backend_cpu.c cpu_gemm,
// cpu_bias_add, cpu_bias_backward, cpu_boostlu_forward, cpu_boostlu_backward.

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
// (docs/methods.md §2); one thread per (b, c), double sum as the cpu backend.
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
