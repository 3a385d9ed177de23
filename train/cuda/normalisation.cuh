// Batch normalisation of the cuda backend over (rows, C), fused with the residual add
// and ReLU. Part of backend_cuda.cu's one translation unit. CPU twin:
// train/backend_cpu.c cpu_bn_forward_train, cpu_bn_forward_eval, cpu_bn_backward.

// ----------------------------------------------------------------------------
// batch normalisation (rows, C), fused with the residual add and ReLU

// --sync-bn (train/backend.h bn_allreduce): the chunks' per-channel partial sums to the
// host, summed over the chunks in the finalize kernels' order, then over the processes
// with rows (*rows becomes the global batch's); the two sums go back as ONE chunk
// (partials[0..2C)) for the finalize kernel. Through the host, one synchronisation per
// layer: correct, slower than NCCL would be. Not run on a GPU yet.
static int bn_sync_sums(wsml_backend *be, const char *op, const sums_plan *sp, int C,
                        int64_t *rows) {
    cuda_impl *im = impl_of(be);
    size_t n = (size_t)sp->chunks * 2 * C;
    double *h = (double *)malloc((n + 2 * (size_t)C + 1) * sizeof(double));
    if (!h)
        return wsml_errf(&be->err, WSML_ENOMEM, "%s (--sync-bn): out of memory", op);
    double *sums = h + n;
    cudaError_t e =
        cudaMemcpyAsync(h, sp->partials, n * sizeof(double), cudaMemcpyDeviceToHost, im->stream);
    if (e == cudaSuccess)
        e = cudaStreamSynchronize(im->stream);
    if (e != cudaSuccess) {
        free(h);
        return cuda_fail(be, op, "cudaMemcpyAsync(partials)", e);
    }
    for (int c = 0; c < C; c++) {
        double a = 0.0, b = 0.0;
        for (int k = 0; k < sp->chunks; k++) {
            a += h[(size_t)2 * k * C + c];
            b += h[((size_t)2 * k + 1) * C + c];
        }
        sums[c] = a;
        sums[C + c] = b;
    }
    sums[2 * C] = (double)*rows;
    int rc = be->bn_allreduce(be->bn_allreduce_ctx, sums, 2 * (size_t)C + 1, &be->err);
    if (rc == 0) {
        *rows = (int64_t)sums[2 * C];
        e = cudaMemcpyAsync(sp->partials, sums, 2 * (size_t)C * sizeof(double),
                            cudaMemcpyHostToDevice, im->stream);
        if (e == cudaSuccess)
            e = cudaStreamSynchronize(im->stream); // h is freed below
        if (e != cudaSuccess)
            rc = cuda_fail(be, op, "cudaMemcpyAsync(sums)", e);
    } else {
        wsml_err_prefix(&be->err, "%s (--sync-bn)", op);
    }
    free(h);
    return rc;
}

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
    int64_t n = rows; // the global batch's rows with --sync-bn
    if (be->sync_bn && be->bn_allreduce) {
        if ((rc = bn_sync_sums(be, op, &sp, C, &n)) != 0)
            return rc;
        sp.chunks = 1;
    }
    bn_train_finalize_kernel<<<(unsigned)ceil_div(C, THREADS), THREADS, 0, impl_of(be)->stream>>>(
        C, sp.chunks, n, sp.partials, gamma, beta, running_mean, running_var, save_mean,
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
// (param_grads 0: coef only; --sync-bn adds this process's dgamma/dbeta in a first pass
// over its own sums, then makes coef from the global ones)
__global__ void bn_backward_finalize_kernel(int C, int chunks, int64_t rows, const double *partials,
                                            const float *gamma, const float *save_mean,
                                            const float *save_invstd, float *dgamma, float *dbeta,
                                            float *coef, int param_grads) {
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
    if (!param_grads)
        return;
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
        C, sp.chunks, rows, sp.partials, gamma, save_mean, save_invstd, dgamma, dbeta, sp.coef, 1);
    LAUNCH_TRY(op, "bn_backward_finalize_kernel");
    if (be->sync_bn && be->bn_allreduce) {
        // this process's dgamma/dbeta are in (the trainer sums them with the other
        // gradients); the coefficients of dx from the global batch's sums
        int64_t n = rows;
        if ((rc = bn_sync_sums(be, op, &sp, C, &n)) != 0)
            return rc;
        bn_backward_finalize_kernel<<<(unsigned)ceil_div(C, THREADS), THREADS, 0, st>>>(
            C, 1, n, sp.partials, gamma, save_mean, save_invstd, dgamma, dbeta, sp.coef, 0);
        LAUNCH_TRY(op, "bn_backward_finalize_kernel");
    }
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
