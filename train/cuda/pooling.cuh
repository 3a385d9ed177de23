// Pooling of the cuda backend: the stem's max pool (with argmax, PyTorch's first-max
// rule) and the global average pool. Part of backend_cuda.cu's one translation unit.
// CPU twin: train/backend_cpu.c cpu_maxpool_forward, cpu_maxpool_backward,
// cpu_avgpool_forward, cpu_avgpool_backward.

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
