// Kernel helpers of the cuda backend: vector loads/stores and per-channel column sums
// over rows in double (batch norm's statistics, bias gradients). Part of
// backend_cuda.cu's one translation unit. CPU twin: train/backend_cpu.c bn_stats_range,
// bn_bwd_stats_range (their per-thread partial sums).

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
