// The cpu backend (train/backend.h): OpenBLAS sgemm for every convolution and GEMM,
// a small pthread pool for the memory-bound rest (im2col, col2im, batch norm, pools).
//
// Convolutions, NHWC activations and OHWI weights: a (n, H, W, C) tensor is a
// (n·H·W, C) row-major matrix, and with K ordered (kh, kw, i) an im2col row is a few
// contiguous runs of the input, so
//   forward          Y (M, O)  = col(X) (M, K) · W^T (K, O)       M = n·out_h·out_w
//   backward data    dcol (M, K) = dY (M, O) · W (O, K), then col2im (gather form)
//   backward filter  dW (O, K) += dY^T (O, M) · col(X) (M, K)
// over the whole batch at once (one GEMM instead of one per image: ResNet's late
// stages have only a few positions per image). A 1x1 stride-1 convolution needs no
// im2col at all: X itself is the (M, Cin) matrix. Each thread makes its rows' im2col in
// cache-sized blocks (COL_BLOCK_FLOATS) and multiplies each block right away, so the
// column matrix never streams through memory; the workspace stays bounded
// (WORKSPACE_CAP_FLOATS) for large inputs.
//
// Sums over rows (BN statistics, pools, bias gradients) accumulate in double.
#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/sysinfo.h"
#include "train/backend.h"

// The memory-bound loops below are compiled for AVX-512, AVX2+FMA and baseline x86-64,
// chosen at load time (GNU ifunc): the build flags target baseline x86-64 only.
// optimize("O3") turns on loop vectorisation with a cost model that accepts remainders;
// no-trapping-math lets the masks (ReLU, max) become vector selects (we never trap).
// (clang, used only for the fuzz build, has no optimize attribute.)
#ifdef __clang__
#define SIMD_KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define SIMD_KERNEL                                                                                \
    __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default"),                   \
                   optimize("O3", "no-trapping-math")))
#endif

// Default largest im2col chunk (floats): 32 Mi floats = 128 MiB, at least one image.
#define WORKSPACE_CAP_FLOATS ((size_t)32 << 20)
// im2col blocks (floats) sized for a core's L2 cache; see col_block_rows.
#define COL_BLOCK_FLOATS ((int64_t)128 << 10)
#define COL_BLOCK_MIN_ROWS 16
// Below this many elements an operation runs on the calling thread only.
#define PARALLEL_MIN_WORK ((int64_t)1 << 14)

// ----------------------------------------------------------------------------
// thread pool: pool_for(n, fn) runs fn(arg, begin, end, tid) over T even ranges of
// [0, n), range t on thread t (the caller runs range 0), and returns when all are done.

typedef void (*range_fn)(void *arg, int64_t begin, int64_t end, int tid);

typedef struct {
    int num_threads; // including the caller
    pthread_t *threads;
    pthread_mutex_t mu;
    pthread_cond_t start_cv, done_cv;
    uint64_t generation;
    int pending, stop;
    range_fn fn;
    void *arg;
    int64_t n;
} thread_pool;

typedef struct {
    thread_pool *pool;
    int tid;
} worker_arg;

static void run_range(thread_pool *p, range_fn fn, void *arg, int64_t n, int tid) {
    int64_t begin = n * tid / p->num_threads, end = n * (tid + 1) / p->num_threads;
    if (begin < end)
        fn(arg, begin, end, tid);
}

static void *worker_main(void *argp) {
    worker_arg *wa = argp;
    thread_pool *p = wa->pool;
    int tid = wa->tid;
    free(wa);
    uint64_t seen = 0;
    for (;;) {
        pthread_mutex_lock(&p->mu);
        while (p->generation == seen && !p->stop)
            pthread_cond_wait(&p->start_cv, &p->mu);
        if (p->stop) {
            pthread_mutex_unlock(&p->mu);
            return NULL;
        }
        seen = p->generation;
        range_fn fn = p->fn;
        void *arg = p->arg;
        int64_t n = p->n;
        pthread_mutex_unlock(&p->mu);
        run_range(p, fn, arg, n, tid);
        pthread_mutex_lock(&p->mu);
        if (--p->pending == 0)
            pthread_cond_signal(&p->done_cv);
        pthread_mutex_unlock(&p->mu);
    }
}

// work: a rough element count; small work runs inline (thread wake-ups cost ~10 us).
static void pool_for(thread_pool *p, int64_t n, int64_t work, range_fn fn, void *arg) {
    if (n <= 0)
        return;
    if (p->num_threads == 1 || n == 1 || work < PARALLEL_MIN_WORK) {
        // Still hand out per-thread ranges so that per-tid scratch stays valid.
        for (int t = 0; t < p->num_threads; t++)
            run_range(p, fn, arg, n, t);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->arg = arg;
    p->n = n;
    p->pending = p->num_threads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->start_cv);
    pthread_mutex_unlock(&p->mu);
    run_range(p, fn, arg, n, 0);
    pthread_mutex_lock(&p->mu);
    while (p->pending > 0)
        pthread_cond_wait(&p->done_cv, &p->mu);
    pthread_mutex_unlock(&p->mu);
}

static int pool_init(thread_pool *p, int num_threads) {
    memset(p, 0, sizeof(*p));
    p->num_threads = num_threads;
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->start_cv, NULL);
    pthread_cond_init(&p->done_cv, NULL);
    p->threads = calloc((size_t)num_threads, sizeof(pthread_t));
    if (!p->threads)
        return -1;
    for (int t = 1; t < num_threads; t++) {
        worker_arg *wa = malloc(sizeof(*wa));
        if (!wa) {
            p->num_threads = t;
            return -1;
        }
        wa->pool = p;
        wa->tid = t;
        if (pthread_create(&p->threads[t], NULL, worker_main, wa) != 0) {
            free(wa);
            p->num_threads = t;
            return -1;
        }
    }
    return 0;
}

static void pool_destroy(thread_pool *p) {
    pthread_mutex_lock(&p->mu);
    p->stop = 1;
    pthread_cond_broadcast(&p->start_cv);
    pthread_mutex_unlock(&p->mu);
    for (int t = 1; t < p->num_threads; t++)
        pthread_join(p->threads[t], NULL);
    free(p->threads);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->start_cv);
    pthread_cond_destroy(&p->done_cv);
}

// ----------------------------------------------------------------------------
// backend state

typedef struct {
    thread_pool pool;
    float *workspace; // im2col / col2im blocks, one equal slice per thread
    size_t workspace_floats;
    size_t workspace_cap_floats;
    float *dw_partial; // per-thread filter gradients of threads 1..T-1
    size_t dw_partial_floats;
    double *partials; // per-thread per-channel sums (BN), 2 arrays of C per thread
    size_t partials_doubles;
    double *bn_sums; // BN's per-channel sums of the whole batch (bn_sums)
    size_t bn_sums_cap;
} cpu_impl;

static cpu_impl *impl_of(wsml_backend *be) {
    return be->impl;
}

static int ensure_partials(wsml_backend *be, size_t doubles) {
    cpu_impl *im = impl_of(be);
    if (im->partials_doubles >= doubles)
        return 0;
    double *p = realloc(im->partials, doubles * sizeof(double));
    if (!p)
        return wsml_errf(&be->err, WSML_ENOMEM, "cpu backend: cannot allocate %zu bytes",
                         doubles * sizeof(double));
    im->partials = p;
    im->partials_doubles = doubles;
    return 0;
}

// ----------------------------------------------------------------------------
// memory

static void *cpu_alloc(wsml_backend *be, size_t bytes) {
    size_t rounded = (bytes + 63) / 64 * 64;
    if (rounded == 0)
        rounded = 64;
    void *p = aligned_alloc(64, rounded);
    if (!p)
        wsml_errf(&be->err, WSML_ENOMEM, "cpu backend: cannot allocate %zu bytes", bytes);
    return p;
}

static void cpu_free(wsml_backend *be, void *ptr) {
    (void)be;
    free(ptr);
}

static int cpu_copy(wsml_backend *be, void *dst, const void *src, size_t bytes) {
    (void)be;
    if (bytes)
        memmove(dst, src, bytes);
    return 0;
}

static void zero_range(void *argp, int64_t begin, int64_t end, int tid) {
    (void)tid;
    memset((char *)argp + begin * 4096, 0, (size_t)(end - begin) * 4096);
}

static int cpu_zero(wsml_backend *be, void *dst, size_t bytes) {
    size_t pages = bytes / 4096;
    pool_for(&impl_of(be)->pool, (int64_t)pages, (int64_t)pages * 1024, zero_range, dst);
    memset((char *)dst + pages * 4096, 0, bytes - pages * 4096);
    return 0;
}

static int cpu_synchronize(wsml_backend *be) {
    (void)be;
    return 0;
}

// ----------------------------------------------------------------------------
// convolution
//
// Threads: OpenBLAS runs single-threaded and each of our threads calls sgemm on its own
// share of the rows, right after making that share's im2col (one threading model, no
// spinning BLAS workers competing with the pool, the column block still warm in cache).
//   forward, 1x1 backward data: rows (output positions) split across threads;
//   backward data (im2col):      images split across threads, so that the scatter of
//                                col2im never crosses threads;
//   backward filter (im2col):    rows split; each thread sums into its own dW (thread
//                                0 into dw itself), then the partial sums are added;
//   backward filter (1x1):       dW's rows (or columns) split, the full batch each.

static int is_pointwise(const wsml_conv_desc *d) {
    return d->kernel_h == 1 && d->kernel_w == 1 && d->stride == 1 && d->pad == 0;
}

static size_t conv_k(const wsml_conv_desc *d) {
    return (size_t)d->kernel_h * d->kernel_w * d->in_channels;
}

static size_t grow(float **buf, size_t *have, size_t need) {
    if (need <= *have)
        return *have;
    free(*buf);
    *buf = aligned_alloc(64, (need * sizeof(float) + 63) / 64 * 64);
    *have = *buf ? need : 0;
    return *have;
}

static int cpu_conv_prepare(wsml_backend *be, wsml_conv_desc *d) {
    cpu_impl *im = impl_of(be);
    if (d->in_channels < 1 || d->out_channels < 1 || d->kernel_h < 1 || d->kernel_w < 1 ||
        d->stride < 1 || d->pad < 0 || d->max_batch < 1 ||
        d->out_h != (d->in_h + 2 * d->pad - d->kernel_h) / d->stride + 1 ||
        d->out_w != (d->in_w + 2 * d->pad - d->kernel_w) / d->stride + 1 || d->out_h < 1 ||
        d->out_w < 1)
        return wsml_errf(&be->err, WSML_EARG, "conv_prepare: inconsistent convolution shape");
    d->plan = NULL;
    if (is_pointwise(d))
        return 0;
    const int T = im->pool.num_threads;
    const size_t K = conv_k(d), hwo = (size_t)d->out_h * d->out_w;
    // A thread's slice: one column block (col_block_rows), no more than its largest
    // share of ceil(n/T) images, within the cap, and at least one whole image (backward
    // data works on whole images).
    size_t rows = ((size_t)d->max_batch + T - 1) / T * hwo;
    size_t block = (size_t)COL_BLOCK_FLOATS / K > COL_BLOCK_MIN_ROWS ? (size_t)COL_BLOCK_FLOATS / K
                                                                     : COL_BLOCK_MIN_ROWS;
    size_t cap = im->workspace_cap_floats / (size_t)T;
    size_t col = (rows < block ? rows : block) * K;
    if (col > cap)
        col = cap;
    if (col < hwo * K)
        col = hwo * K;
    size_t dw = (size_t)(T - 1) * d->out_channels * K;
    if (grow(&im->workspace, &im->workspace_floats, col * T) < col * T ||
        grow(&im->dw_partial, &im->dw_partial_floats, dw) < dw)
        return wsml_errf(&be->err, WSML_ENOMEM,
                         "conv_prepare: cannot allocate a %zu-byte convolution workspace",
                         (col * T + dw) * sizeof(float));
    return 0;
}

static void cpu_conv_release(wsml_backend *be, wsml_conv_desc *d) {
    (void)be;
    d->plan = NULL;
}

// dst: (n) += src: (n)
SIMD_KERNEL static void add_to(int64_t n, float *restrict dst, const float *restrict src) {
    for (int64_t i = 0; i < n; i++)
        dst[i] += src[i];
}

// dst: (n) = src: (n). im2col and col2im copy many short runs (KW·Cin floats for a
// 3-channel stem, Cin for narrow layers): below 64 floats, inline 16-byte moves beat a
// call into memcpy.
static inline void copy_floats(float *restrict dst, const float *restrict src, size_t n) {
    if (n > 64) {
        memcpy(dst, src, n * sizeof(float));
        return;
    }
    size_t i = 0;
    for (; i + 4 <= n; i += 4)
        memcpy(dst + i, src + i, 4 * sizeof(float)); // one unaligned 16-byte move
    if (i + 2 <= n) {
        memcpy(dst + i, src + i, 2 * sizeof(float));
        i += 2;
    }
    if (i < n)
        dst[i] = src[i];
}

// Rows [m0, m1) of the im2col matrix, row m = output position (b, oh, ow).
// col: (m1 − m0, KH, KW, Cin)  x: (n, in_h, in_w, Cin)
static void im2col_rows(const wsml_conv_desc *d, const float *x, int64_t m0, int64_t m1,
                        float *col) {
    const int H = d->in_h, W = d->in_w, Cin = d->in_channels, KH = d->kernel_h, KW = d->kernel_w,
              S = d->stride, P = d->pad, Ho = d->out_h, Wo = d->out_w;
    const size_t K = conv_k(d), row_bytes = (size_t)KW * Cin * sizeof(float);
    for (int64_t m = m0; m < m1; m++, col += K) {
        int ow = (int)(m % Wo), oh = (int)(m / Wo % Ho);
        int64_t b = m / ((int64_t)Wo * Ho);
        const float *xb = x + (size_t)b * H * W * Cin;
        int iw0 = ow * S - P;
        for (int kh = 0; kh < KH; kh++) {
            int ih = oh * S - P + kh;
            float *dst = col + (size_t)kh * KW * Cin;
            if (ih < 0 || ih >= H) {
                memset(dst, 0, row_bytes);
                continue;
            }
            const float *src = xb + (size_t)ih * W * Cin;
            if (iw0 >= 0 && iw0 + KW <= W) { // the kernel row is one contiguous run
                copy_floats(dst, src + (size_t)iw0 * Cin, (size_t)KW * Cin);
                continue;
            }
            for (int kw = 0; kw < KW; kw++) {
                int iw = iw0 + kw;
                if (iw < 0 || iw >= W)
                    memset(dst + (size_t)kw * Cin, 0, (size_t)Cin * sizeof(float));
                else
                    copy_floats(dst + (size_t)kw * Cin, src + (size_t)iw * Cin, (size_t)Cin);
            }
        }
    }
}

// The inverse of im2col for whole images [i0, i1): every dx element gathers the column
// entries that read it, so it is written once (no zeroing, no read-modify-write per tap).
// dx: (n, in_h, in_w, Cin) (+)=  col: ((i1 − i0)·out_h·out_w, KH, KW, Cin)
static void col2im_images(const wsml_conv_desc *d, float *dx, int64_t i0, int64_t i1,
                          const float *col, int accumulate) {
    const int H = d->in_h, W = d->in_w, Cin = d->in_channels, KH = d->kernel_h, KW = d->kernel_w,
              S = d->stride, P = d->pad, Ho = d->out_h, Wo = d->out_w;
    const size_t K = conv_k(d);
    for (int64_t b = i0; b < i1; b++) {
        const float *colb = col + (size_t)(b - i0) * Ho * Wo * K;
        float *dst = dx + (size_t)b * H * W * Cin;
        for (int ih = 0; ih < H; ih++)
            for (int iw = 0; iw < W; iw++, dst += Cin) {
                int first = !accumulate;
                for (int kh = 0; kh < KH; kh++) {
                    int th = ih + P - kh;
                    if (th < 0 || th % S)
                        continue;
                    int oh = th / S;
                    if (oh >= Ho)
                        continue;
                    for (int kw = 0; kw < KW; kw++) {
                        int tw = iw + P - kw;
                        if (tw < 0 || tw % S)
                            continue;
                        int ow = tw / S;
                        if (ow >= Wo)
                            continue;
                        const float *src =
                            colb + ((size_t)oh * Wo + ow) * K + ((size_t)kh * KW + kw) * Cin;
                        if (first)
                            copy_floats(dst, src, (size_t)Cin);
                        else
                            add_to(Cin, dst, src);
                        first = 0;
                    }
                }
                if (first)
                    memset(dst, 0, (size_t)Cin * sizeof(float)); // read by no window
            }
    }
}

typedef struct {
    cpu_impl *im;
    const wsml_conv_desc *d;
    int n;
    float *out;      // y (forward), dx (backward data), dw (backward filter)
    const float *in; // x (forward, filter), dy (backward data)
    const float *w;  // weights (forward, data)
    const float *dy; // backward filter
    int accumulate;  // backward data
    int used[256];   // backward filter: threads that wrote a partial dW
} conv_arg;

static void split(int64_t total, int T, int tid, int64_t *begin, int64_t *end) {
    *begin = total * tid / T;
    *end = total * (tid + 1) / T;
}

// Rows of a column block: as many as fit in COL_BLOCK_FLOATS (im2col and the GEMM that
// reads it then share a cache-sized block instead of a column matrix streamed through
// memory), at least COL_BLOCK_MIN_ROWS, at most what a thread's workspace slice holds.
static int64_t col_block_rows(const cpu_impl *im, int K) {
    int64_t slice = (int64_t)(im->workspace_floats / (size_t)im->pool.num_threads / (size_t)K);
    int64_t rows = COL_BLOCK_FLOATS / K;
    if (rows < COL_BLOCK_MIN_ROWS)
        rows = COL_BLOCK_MIN_ROWS;
    return rows < slice ? rows : slice;
}

// One task per thread: rows of y.   y: (n·Ho·Wo, O) = col(x) · w^T
static void conv_fwd_task(void *argp, int64_t t0, int64_t t1, int tid) {
    (void)t1;
    conv_arg *a = argp;
    const wsml_conv_desc *d = a->d;
    const int T = a->im->pool.num_threads, O = d->out_channels, Cin = d->in_channels;
    const int K = (int)conv_k(d);
    int64_t m0, m1;
    split((int64_t)a->n * d->out_h * d->out_w, T, (int)t0, &m0, &m1);
    if (is_pointwise(d)) {
        if (m1 > m0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(m1 - m0), O, Cin, 1.0f,
                        a->in + (size_t)m0 * Cin, Cin, a->w, Cin, 0.0f, a->out + (size_t)m0 * O, O);
        return;
    }
    float *col = a->im->workspace + (size_t)tid * (a->im->workspace_floats / T);
    int64_t block = col_block_rows(a->im, K);
    for (int64_t b0 = m0; b0 < m1; b0 += block) {
        int64_t b1 = b0 + block < m1 ? b0 + block : m1;
        im2col_rows(d, a->in, b0, b1, col);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, (int)(b1 - b0), O, K, 1.0f, col, K,
                    a->w, K, 0.0f, a->out + (size_t)b0 * O, O);
    }
}

// One task per thread: rows (1x1) or whole images (col2im) of dx.
// dx (+)= conv_transpose(dy, w)
static void conv_bwd_data_task(void *argp, int64_t t0, int64_t t1, int tid) {
    (void)t1;
    conv_arg *a = argp;
    const wsml_conv_desc *d = a->d;
    const int T = a->im->pool.num_threads, O = d->out_channels, Cin = d->in_channels;
    const int K = (int)conv_k(d);
    const int64_t hwo = (int64_t)d->out_h * d->out_w;
    int64_t m0, m1;
    if (is_pointwise(d)) {
        split((int64_t)a->n * hwo, T, (int)t0, &m0, &m1);
        if (m1 > m0)
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)(m1 - m0), Cin, O, 1.0f,
                        a->in + (size_t)m0 * O, O, a->w, Cin, a->accumulate ? 1.0f : 0.0f,
                        a->out + (size_t)m0 * Cin, Cin);
        return;
    }
    int64_t i0, i1;
    split(a->n, T, (int)t0, &i0, &i1);
    float *col = a->im->workspace + (size_t)tid * (a->im->workspace_floats / T);
    int64_t block = col_block_rows(a->im, K) / hwo; // whole images
    if (block < 1)
        block = 1; // conv_prepare sized the slice for at least one image
    for (int64_t b0 = i0; b0 < i1; b0 += block) {
        int64_t b1 = b0 + block < i1 ? b0 + block : i1;
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, (int)((b1 - b0) * hwo), K, O, 1.0f,
                    a->in + (size_t)b0 * hwo * O, O, a->w, K, 0.0f, col, K);
        col2im_images(d, a->out, b0, b1, col, a->accumulate);
    }
}

// One task per thread.   dw (+)= dy^T · col(x)
static void conv_bwd_filter_task(void *argp, int64_t t0, int64_t t1, int tid) {
    (void)t1;
    conv_arg *a = argp;
    const wsml_conv_desc *d = a->d;
    const int T = a->im->pool.num_threads, O = d->out_channels, Cin = d->in_channels;
    const int K = (int)conv_k(d);
    const int64_t M = (int64_t)a->n * d->out_h * d->out_w;
    if (is_pointwise(d)) {
        // split dW by rows (O) or columns (Cin), the whole batch as GEMM depth
        int64_t c0, c1;
        if (O >= Cin) {
            split(O, T, (int)t0, &c0, &c1);
            if (c1 > c0)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, (int)(c1 - c0), Cin, (int)M,
                            1.0f, a->dy + c0, O, a->in, Cin, 1.0f, a->out + (size_t)c0 * Cin, Cin);
        } else {
            split(Cin, T, (int)t0, &c0, &c1);
            if (c1 > c0)
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, (int)(c1 - c0), (int)M,
                            1.0f, a->dy, O, a->in + c0, Cin, 1.0f, a->out + c0, Cin);
        }
        return;
    }
    int64_t m0, m1;
    split(M, T, (int)t0, &m0, &m1);
    a->used[t0] = m1 > m0;
    if (m1 <= m0)
        return;
    float *col = a->im->workspace + (size_t)tid * (a->im->workspace_floats / T);
    float *target = t0 == 0 ? a->out : a->im->dw_partial + (size_t)(t0 - 1) * O * K;
    float beta = t0 == 0 ? 1.0f : 0.0f;
    int64_t block = col_block_rows(a->im, K);
    for (int64_t b0 = m0; b0 < m1; b0 += block) {
        int64_t b1 = b0 + block < m1 ? b0 + block : m1;
        im2col_rows(d, a->in, b0, b1, col);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, K, (int)(b1 - b0), 1.0f,
                    a->dy + (size_t)b0 * O, O, col, K, beta, target, K);
        beta = 1.0f;
    }
}

// dw += Σ partial dW of threads 1..T-1 that had rows.
static void dw_reduce_range(void *argp, int64_t begin, int64_t end, int tid) {
    (void)tid;
    conv_arg *a = argp;
    const size_t size = (size_t)a->d->out_channels * conv_k(a->d);
    for (int t = 1; t < a->im->pool.num_threads; t++) {
        if (!a->used[t])
            continue;
        const float *p = a->im->dw_partial + (size_t)(t - 1) * size;
        add_to(end - begin, a->out + begin, p + begin);
    }
}

static int check_conv(wsml_backend *be, const wsml_conv_desc *d, int n, const char *op) {
    if (n < 1 || n > d->max_batch)
        return wsml_errf(&be->err, WSML_EARG, "%s: batch %d outside 1..%d", op, n, d->max_batch);
    cpu_impl *im = impl_of(be);
    if (!is_pointwise(d) &&
        (im->workspace_floats / (size_t)im->pool.num_threads < conv_k(d) * d->out_h * d->out_w ||
         im->dw_partial_floats < (size_t)(im->pool.num_threads - 1) * d->out_channels * conv_k(d)))
        return wsml_errf(&be->err, WSML_ESTATE, "%s: layer was not prepared", op);
    return 0;
}

static void run_per_thread(wsml_backend *be, range_fn fn, void *arg) {
    cpu_impl *im = impl_of(be);
    // one task per thread; the work estimate only has to defeat the inline shortcut
    pool_for(&im->pool, im->pool.num_threads, PARALLEL_MIN_WORK, fn, arg);
}

// y: (n, out_h, out_w, O) = conv(x: (n, in_h, in_w, Cin), w: (O, KH, KW, Cin))
static int cpu_conv_forward(wsml_backend *be, const wsml_conv_desc *d, int n, float *y,
                            const float *x, const float *w) {
    int rc = check_conv(be, d, n, "conv_forward");
    if (rc)
        return rc;
    conv_arg a = {.im = impl_of(be), .d = d, .n = n, .out = y, .in = x, .w = w};
    run_per_thread(be, conv_fwd_task, &a);
    return 0;
}

// dx: (n, in_h, in_w, Cin) (+)= conv_transpose(dy: (n, out_h, out_w, O), w: (O, KH, KW, Cin))
static int cpu_conv_backward_data(wsml_backend *be, const wsml_conv_desc *d, int n, float *dx,
                                  const float *dy, const float *w, int accumulate) {
    int rc = check_conv(be, d, n, "conv_backward_data");
    if (rc)
        return rc;
    conv_arg a = {
        .im = impl_of(be), .d = d, .n = n, .out = dx, .in = dy, .w = w, .accumulate = accumulate};
    run_per_thread(be, conv_bwd_data_task, &a);
    return 0;
}

// dw: (O, KH, KW, Cin) += Σ_rows dy: (n·out_h·out_w, O)^T · col(x): (n·out_h·out_w, K)
static int cpu_conv_backward_filter(wsml_backend *be, const wsml_conv_desc *d, int n, float *dw,
                                    const float *dy, const float *x) {
    int rc = check_conv(be, d, n, "conv_backward_filter");
    if (rc)
        return rc;
    conv_arg a = {.im = impl_of(be), .d = d, .n = n, .out = dw, .in = x, .dy = dy};
    run_per_thread(be, conv_bwd_filter_task, &a);
    if (!is_pointwise(d)) {
        int64_t size = (int64_t)d->out_channels * (int64_t)conv_k(d);
        pool_for(&impl_of(be)->pool, size, size, dw_reduce_range, &a);
    }
    return 0;
}

// ----------------------------------------------------------------------------
// batch normalisation (rows, C), fused with residual add and ReLU

typedef struct {
    int C;
    int64_t rows;
    float *y;
    const float *x, *residual;
    // per channel: y = act((x − mean)·scale + shift + residual); subtracting the mean
    // first keeps the rounding error relative to the output, not to |mean|.
    const float *mean, *scale, *shift;
    int relu;
    double *partials; // stats: per thread [sum (C), sumsq (C)]
} bn_fwd_arg;

// sum, sumsq: (C) += x, x² of one row
SIMD_KERNEL static void bn_stats_row(int C, const float *restrict x, double *restrict sum,
                                     double *restrict sumsq) {
    for (int c = 0; c < C; c++) {
        double v = x[c];
        sum[c] += v;
        sumsq[c] += v * v;
    }
}

static void bn_stats_range(void *argp, int64_t begin, int64_t end, int tid) {
    bn_fwd_arg *a = argp;
    const int C = a->C;
    double *sum = a->partials + (size_t)tid * 2 * C, *sumsq = sum + C;
    for (int c = 0; c < C; c++)
        sum[c] = sumsq[c] = 0.0;
    for (int64_t r = begin; r < end; r++)
        bn_stats_row(C, a->x + (size_t)r * C, sum, sumsq);
}

// y = act((x − mean)·scale + shift (+ residual)) for `count` consecutive rows of C
// (ReLU keeps NaN, as torch.relu).
SIMD_KERNEL static void bn_apply_rows(int C, int64_t count, const float *restrict x,
                                      const float *restrict mean, const float *restrict scale,
                                      const float *restrict shift, const float *restrict residual,
                                      int relu, float *restrict y) {
    for (int64_t r = 0; r < count; r++, x += C, y += C) {
        if (residual && relu) {
            for (int c = 0; c < C; c++) {
                float v = (x[c] - mean[c]) * scale[c] + shift[c] + residual[c];
                y[c] = (v > 0.0f || v != v) ? v : 0.0f;
            }
        } else if (residual) {
            for (int c = 0; c < C; c++)
                y[c] = (x[c] - mean[c]) * scale[c] + shift[c] + residual[c];
        } else if (relu) {
            for (int c = 0; c < C; c++) {
                float v = (x[c] - mean[c]) * scale[c] + shift[c];
                y[c] = (v > 0.0f || v != v) ? v : 0.0f;
            }
        } else {
            for (int c = 0; c < C; c++)
                y[c] = (x[c] - mean[c]) * scale[c] + shift[c];
        }
        if (residual)
            residual += C;
    }
}

static void bn_apply_range(void *argp, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const bn_fwd_arg *a = argp;
    const size_t off = (size_t)begin * a->C;
    bn_apply_rows(a->C, end - begin, a->x + off, a->mean, a->scale, a->shift,
                  a->residual ? a->residual + off : NULL, a->relu, a->y + off);
}

// n doubles of per-channel sums (BatchNorm's statistics before they are used), kept in
// the backend; NULL (be->err set) when out of memory.
static double *bn_sums(wsml_backend *be, size_t n) {
    cpu_impl *im = impl_of(be);
    if (im->bn_sums_cap < n) {
        double *p = realloc(im->bn_sums, n * sizeof(double));
        if (!p) {
            wsml_errf(&be->err, WSML_ENOMEM, "BatchNorm: out of memory for %zu sums", n);
            return NULL;
        }
        im->bn_sums = p;
        im->bn_sums_cap = n;
    }
    return im->bn_sums;
}

// scale/shift scratch: 2·C floats after the partials.
static int bn_scratch(wsml_backend *be, int C, double **partials, float **scale, float **shift) {
    cpu_impl *im = impl_of(be);
    size_t nd = (size_t)im->pool.num_threads * 2 * C + (size_t)C; // + C doubles = 2C floats
    int rc = ensure_partials(be, nd);
    if (rc)
        return rc;
    *partials = im->partials;
    *scale = (float *)(im->partials + (size_t)im->pool.num_threads * 2 * C);
    *shift = *scale + C;
    return 0;
}

// y: (rows, C) = act(BN_batch(x: (rows, C)) + residual)
static int cpu_bn_forward_train(wsml_backend *be, int C, int64_t rows, float *y, const float *x,
                                const float *gamma, const float *beta, const float *residual,
                                int relu, float *running_mean, float *running_var, float *save_mean,
                                float *save_invstd, float momentum, float eps) {
    if (rows < 2)
        return wsml_errf(&be->err, WSML_EARG,
                         "bn_forward_train: expected more than 1 value per channel, got %lld",
                         (long long)rows);
    cpu_impl *im = impl_of(be);
    double *partials;
    float *scale, *shift;
    int rc = bn_scratch(be, C, &partials, &scale, &shift);
    if (rc)
        return rc;
    bn_fwd_arg a = {C, rows, y, x, residual, save_mean, scale, shift, relu, partials};
    int T = im->pool.num_threads;
    pool_for(&im->pool, rows, rows * C, bn_stats_range, &a);
    // per channel Σx, Σx² (threads in order), then rows: the global batch's with --sync-bn
    double *sums = bn_sums(be, 2 * C + 1);
    if (!sums)
        return WSML_ENOMEM;
    for (int c = 0; c < C; c++) {
        double sum = 0.0, sumsq = 0.0;
        for (int t = 0; t < T; t++) {
            // Ranges of threads that got no rows were zeroed by pool_for's inline path
            // or never touched: only count threads that own rows.
            int64_t b = rows * t / T, e = rows * (t + 1) / T;
            if (b >= e)
                continue;
            sum += partials[(size_t)t * 2 * C + c];
            sumsq += partials[(size_t)t * 2 * C + C + c];
        }
        sums[c] = sum;
        sums[C + c] = sumsq;
    }
    sums[2 * C] = (double)rows;
    if (be->sync_bn && be->bn_allreduce &&
        (rc = be->bn_allreduce(be->bn_allreduce_ctx, sums, 2 * (size_t)C + 1, &be->err)) < 0)
        return wsml_err_prefix(&be->err, "bn_forward_train (--sync-bn)");
    const double n = sums[2 * C];
    for (int c = 0; c < C; c++) {
        double mean = sums[c] / n;
        double var = sums[C + c] / n - mean * mean;
        if (var < 0.0)
            var = 0.0;
        double invstd = 1.0 / sqrt(var + (double)eps);
        save_mean[c] = (float)mean;
        save_invstd[c] = (float)invstd;
        double unbiased = var * n / (n - 1);
        running_mean[c] = (float)(momentum * mean + (1.0 - momentum) * running_mean[c]);
        running_var[c] = (float)(momentum * unbiased + (1.0 - momentum) * running_var[c]);
        scale[c] = (float)invstd * gamma[c];
        shift[c] = beta[c];
    }
    pool_for(&im->pool, rows, rows * C, bn_apply_range, &a);
    return 0;
}

// y: (rows, C) = act(BN_running(x: (rows, C)) + residual)
static int cpu_bn_forward_eval(wsml_backend *be, int C, int64_t rows, float *y, const float *x,
                               const float *gamma, const float *beta, const float *residual,
                               int relu, const float *running_mean, const float *running_var,
                               float eps) {
    double *partials;
    float *scale, *shift;
    int rc = bn_scratch(be, C, &partials, &scale, &shift);
    if (rc)
        return rc;
    for (int c = 0; c < C; c++) {
        float invstd = (float)(1.0 / sqrt((double)running_var[c] + (double)eps));
        scale[c] = invstd * gamma[c];
        shift[c] = beta[c];
    }
    bn_fwd_arg a = {C, rows, y, x, residual, running_mean, scale, shift, relu, partials};
    pool_for(&impl_of(be)->pool, rows, rows * C, bn_apply_range, &a);
    return 0;
}

typedef struct {
    int C;
    int64_t rows;
    float *dx, *dresidual;
    const float *dy, *y, *x;
    int relu;
    const float *mean, *k_dz, *k_xc, *k_bias; // dx = dz·k_dz + (x - mean)·k_xc + k_bias
    double *partials;                         // per thread [Σ dz (C), Σ dz·(x − mean) (C)]
} bn_bwd_arg;

// sdz += dz, sdzx += dz·(x − mean) over one row, dz = dy masked by y > 0 (when y != NULL)
SIMD_KERNEL static void bn_bwd_stats_row(int C, const float *restrict dy, const float *restrict y,
                                         const float *restrict x, const float *restrict mean,
                                         double *restrict sdz, double *restrict sdzx) {
    if (y) {
        for (int c = 0; c < C; c++) {
            float dz = y[c] > 0.0f ? dy[c] : 0.0f;
            sdz[c] += dz;
            sdzx[c] += (double)dz * ((double)x[c] - (double)mean[c]);
        }
    } else {
        for (int c = 0; c < C; c++) {
            sdz[c] += dy[c];
            sdzx[c] += (double)dy[c] * ((double)x[c] - (double)mean[c]);
        }
    }
}

static void bn_bwd_stats_range(void *argp, int64_t begin, int64_t end, int tid) {
    bn_bwd_arg *a = argp;
    const int C = a->C;
    double *sdz = a->partials + (size_t)tid * 2 * C, *sdzx = sdz + C;
    for (int c = 0; c < C; c++)
        sdz[c] = sdzx[c] = 0.0;
    for (int64_t r = begin; r < end; r++) {
        size_t o = (size_t)r * C;
        bn_bwd_stats_row(C, a->dy + o, a->relu ? a->y + o : NULL, a->x + o, a->mean, sdz, sdzx);
    }
}

// dx = dz·k_dz + (x − mean)·k_xc + k_bias, dresidual = dz, for `count` rows
SIMD_KERNEL static void bn_bwd_apply_rows(int C, int64_t count, const float *restrict dy,
                                          const float *restrict y, const float *restrict x,
                                          const float *restrict mean, const float *restrict k_dz,
                                          const float *restrict k_xc, const float *restrict k_bias,
                                          float *restrict dx, float *restrict dresidual) {
    for (int64_t r = 0; r < count; r++, dy += C, x += C, dx += C) {
        if (y) {
            for (int c = 0; c < C; c++) {
                float dz = y[c] > 0.0f ? dy[c] : 0.0f;
                dx[c] = dz * k_dz[c] + (x[c] - mean[c]) * k_xc[c] + k_bias[c];
            }
            if (dresidual)
                for (int c = 0; c < C; c++)
                    dresidual[c] = y[c] > 0.0f ? dy[c] : 0.0f;
            y += C;
        } else {
            for (int c = 0; c < C; c++)
                dx[c] = dy[c] * k_dz[c] + (x[c] - mean[c]) * k_xc[c] + k_bias[c];
            if (dresidual)
                for (int c = 0; c < C; c++)
                    dresidual[c] = dy[c];
        }
        if (dresidual)
            dresidual += C;
    }
}

static void bn_bwd_apply_range(void *argp, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const bn_bwd_arg *a = argp;
    const size_t o = (size_t)begin * a->C;
    bn_bwd_apply_rows(a->C, end - begin, a->dy + o, a->relu ? a->y + o : NULL, a->x + o, a->mean,
                      a->k_dz, a->k_xc, a->k_bias, a->dx + o,
                      a->dresidual ? a->dresidual + o : NULL);
}

// dx, dresidual: (rows, C); dgamma, dbeta: (C) accumulated
static int cpu_bn_backward(wsml_backend *be, int C, int64_t rows, float *dx, float *dresidual,
                           const float *dy, const float *y, int relu, const float *x,
                           const float *gamma, const float *save_mean, const float *save_invstd,
                           float *dgamma, float *dbeta) {
    cpu_impl *im = impl_of(be);
    int T = im->pool.num_threads;
    // partials (T·2C doubles) + 3 coefficient arrays (3C floats <= 2C doubles).
    int rc = ensure_partials(be, (size_t)T * 2 * C + 2 * (size_t)C);
    if (rc)
        return rc;
    double *partials = im->partials;
    float *k_dz = (float *)(partials + (size_t)T * 2 * C), *k_xc = k_dz + C, *k_bias = k_xc + C;
    bn_bwd_arg a = {C,    rows,      dx,   dresidual, dy,     y ? y : dy, x,
                    relu, save_mean, k_dz, k_xc,      k_bias, partials};
    pool_for(&im->pool, rows, rows * C, bn_bwd_stats_range, &a);
    double *sums = bn_sums(be, 2 * C + 1);
    if (!sums)
        return WSML_ENOMEM;
    for (int c = 0; c < C; c++) {
        double sdz = 0.0, sdzx = 0.0;
        for (int t = 0; t < T; t++) {
            int64_t b = rows * t / T, e = rows * (t + 1) / T;
            if (b >= e)
                continue;
            sdz += partials[(size_t)t * 2 * C + c];
            sdzx += partials[(size_t)t * 2 * C + C + c];
        }
        sums[c] = sdz;
        sums[C + c] = sdzx;
        // the parameters' gradients are this process's share (summed with the others'
        // by the trainer's all-reduce of every gradient)
        dgamma[c] += (float)(sdzx * (double)save_invstd[c]);
        dbeta[c] += (float)sdz;
    }
    sums[2 * C] = (double)rows;
    if (be->sync_bn && be->bn_allreduce &&
        (rc = be->bn_allreduce(be->bn_allreduce_ctx, sums, 2 * (size_t)C + 1, &be->err)) < 0)
        return wsml_err_prefix(&be->err, "bn_backward (--sync-bn)");
    const double n = sums[2 * C];
    for (int c = 0; c < C; c++) {
        double invstd = save_invstd[c];
        // dx = gamma·invstd·(dz − mean(dz) − (x − mean)·invstd²·mean(dz·(x − mean)))
        double g = (double)gamma[c] * invstd;
        k_dz[c] = (float)g;
        k_xc[c] = (float)(-g * invstd * invstd * sums[C + c] / n);
        k_bias[c] = (float)(-g * sums[c] / n);
    }
    pool_for(&im->pool, rows, rows * C, bn_bwd_apply_range, &a);
    return 0;
}

// ----------------------------------------------------------------------------
// pooling

typedef struct {
    const wsml_pool_desc *d;
    float *y;
    float *dx;
    const float *x, *dy;
    int32_t *argmax;
    const int32_t *argmax_in;
} pool_arg;

// y, argmax: (C) updated with one window position x: (C) at flat position pos
SIMD_KERNEL static void max_update(int C, const float *restrict x, int32_t pos, float *restrict y,
                                   int32_t *restrict argmax) {
    for (int c = 0; c < C; c++) {
        float v = x[c];
        int take = v > y[c] || v != v;
        y[c] = take ? v : y[c];
        argmax[c] = take ? pos : argmax[c];
    }
}

// Task t = (image b, output row oh). PyTorch's rule: the first maximum in row-major
// window order wins, and a NaN always wins (and propagates).
// y, argmax: (n, out_h, out_w, C)  x: (n, in_h, in_w, C)
static void maxpool_fwd_range(void *argp, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const pool_arg *a = argp;
    const wsml_pool_desc *d = a->d;
    const int C = d->channels, H = d->in_h, W = d->in_w, Ho = d->out_h, Wo = d->out_w;
    for (int64_t t = begin; t < end; t++) {
        int b = (int)(t / Ho), oh = (int)(t % Ho);
        const float *xb = a->x + (size_t)b * H * W * C;
        int h0 = oh * d->stride - d->pad, h1 = h0 + d->kernel;
        if (h0 < 0)
            h0 = 0;
        if (h1 > H)
            h1 = H;
        for (int ow = 0; ow < Wo; ow++) {
            int w0 = ow * d->stride - d->pad, w1 = w0 + d->kernel;
            if (w0 < 0)
                w0 = 0;
            if (w1 > W)
                w1 = W;
            size_t o = (((size_t)b * Ho + oh) * Wo + ow) * C;
            float *yo = a->y + o;
            int32_t *ao = a->argmax + o;
            for (int c = 0; c < C; c++) {
                yo[c] = -INFINITY;
                ao[c] = h0 * W + w0;
            }
            for (int ih = h0; ih < h1; ih++)
                for (int iw = w0; iw < w1; iw++)
                    max_update(C, xb + ((size_t)ih * W + iw) * C, ih * W + iw, yo, ao);
        }
    }
}

static int cpu_maxpool_forward(wsml_backend *be, const wsml_pool_desc *d, int n, float *y,
                               const float *x, int32_t *argmax) {
    pool_arg a = {d, y, NULL, x, NULL, argmax, NULL};
    pool_for(&impl_of(be)->pool, (int64_t)n * d->out_h,
             (int64_t)n * d->out_h * d->out_w * d->channels * d->kernel * d->kernel,
             maxpool_fwd_range, &a);
    return 0;
}

// Task = image b: windows overlap, so one thread owns all of an image's dx.
// dx: (n, in_h, in_w, C)  dy, argmax: (n, out_h, out_w, C)
static void maxpool_bwd_range(void *argp, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const pool_arg *a = argp;
    const wsml_pool_desc *d = a->d;
    const int C = d->channels;
    const size_t in_hw = (size_t)d->in_h * d->in_w, out_hw = (size_t)d->out_h * d->out_w;
    for (int64_t b = begin; b < end; b++) {
        float *dxb = a->dx + (size_t)b * in_hw * C;
        memset(dxb, 0, in_hw * C * sizeof(float));
        const float *dyb = a->dy + (size_t)b * out_hw * C;
        const int32_t *ab = a->argmax_in + (size_t)b * out_hw * C;
        for (size_t p = 0; p < out_hw; p++)
            for (int c = 0; c < C; c++)
                dxb[(size_t)ab[p * C + c] * C + c] += dyb[p * C + c];
    }
}

static int cpu_maxpool_backward(wsml_backend *be, const wsml_pool_desc *d, int n, float *dx,
                                const float *dy, const float *x, const float *y,
                                const int32_t *argmax) {
    (void)x;
    (void)y;
    pool_arg a = {d, NULL, dx, NULL, dy, NULL, argmax};
    pool_for(&impl_of(be)->pool, n, (int64_t)n * d->in_h * d->in_w * d->channels, maxpool_bwd_range,
             &a);
    return 0;
}

typedef struct {
    int hw, C;
    float *out;
    const float *in;
} gap_arg;

// Task = image b.  y: (n, C)  x: (n, hw, C)
static void avgpool_fwd_range(void *argp, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const gap_arg *a = argp;
    const int C = a->C, hw = a->hw;
    for (int64_t b = begin; b < end; b++) {
        float *yb = a->out + (size_t)b * C;
        const float *xb = a->in + (size_t)b * hw * C;
        for (int c = 0; c < C; c++) {
            double s = 0.0;
            for (int p = 0; p < hw; p++)
                s += xb[(size_t)p * C + c];
            yb[c] = (float)(s / hw);
        }
    }
}

static int cpu_avgpool_forward(wsml_backend *be, int n, int hw, int C, float *y, const float *x) {
    gap_arg a = {hw, C, y, x};
    pool_for(&impl_of(be)->pool, n, (int64_t)n * hw * C, avgpool_fwd_range, &a);
    return 0;
}

// dx: (n, hw, C) = dy: (n, C) / hw
static void avgpool_bwd_range(void *argp, int64_t begin, int64_t end, int tid) {
    (void)tid;
    const gap_arg *a = argp;
    const int C = a->C, hw = a->hw;
    for (int64_t b = begin; b < end; b++) {
        const float *dyb = a->in + (size_t)b * C;
        float *dxb = a->out + (size_t)b * hw * C;
        for (int p = 0; p < hw; p++)
            for (int c = 0; c < C; c++)
                dxb[(size_t)p * C + c] = dyb[c] / (float)hw;
    }
}

static int cpu_avgpool_backward(wsml_backend *be, int n, int hw, int C, float *dx,
                                const float *dy) {
    gap_arg a = {hw, C, dx, dy};
    pool_for(&impl_of(be)->pool, n, (int64_t)n * hw * C, avgpool_bwd_range, &a);
    return 0;
}

// ----------------------------------------------------------------------------
// dense algebra and the heads (small: single-threaded apart from sgemm)

typedef struct {
    int trans_a, trans_b, M, N, K, lda, ldb, ldc, split_m, T;
    float alpha, beta;
    const float *A, *B;
    float *C;
} gemm_arg;

// One task per thread: a block of C's rows (split_m) or columns.
static void gemm_task(void *argp, int64_t t0, int64_t t1, int tid) {
    (void)t1;
    (void)tid;
    const gemm_arg *g = argp;
    int64_t b, e;
    split(g->split_m ? g->M : g->N, g->T, (int)t0, &b, &e);
    if (e <= b)
        return;
    const float *A = g->A, *B = g->B;
    float *C = g->C;
    int M = g->M, N = g->N;
    if (g->split_m) {
        A += g->trans_a ? (size_t)b : (size_t)b * g->lda;
        C += (size_t)b * g->ldc;
        M = (int)(e - b);
    } else {
        B += g->trans_b ? (size_t)b * g->ldb : (size_t)b;
        C += b;
        N = (int)(e - b);
    }
    cblas_sgemm(CblasRowMajor, g->trans_a ? CblasTrans : CblasNoTrans,
                g->trans_b ? CblasTrans : CblasNoTrans, M, N, g->K, g->alpha, A, g->lda, B, g->ldb,
                g->beta, C, g->ldc);
}

static int cpu_gemm(wsml_backend *be, int trans_a, int trans_b, int M, int N, int K, float alpha,
                    const float *A, int lda, const float *B, int ldb, float beta, float *C,
                    int ldc) {
    cpu_impl *im = impl_of(be);
    gemm_arg g = {trans_a, trans_b, M, N, K, lda, ldb, ldc, M >= N, im->pool.num_threads,
                  alpha,   beta,    A, B, C};
    if ((double)M * N * K < 1e6)
        g.T = 1; // not worth waking threads
    if (g.T == 1)
        gemm_task(&g, 0, 1, 0);
    else
        run_per_thread(be, gemm_task, &g);
    return 0;
}

// y: (rows, cols) += bias: (cols)
static int cpu_bias_add(wsml_backend *be, int64_t rows, int cols, float *y, const float *bias) {
    (void)be;
    for (int64_t r = 0; r < rows; r++)
        for (int c = 0; c < cols; c++)
            y[(size_t)r * cols + c] += bias[c];
    return 0;
}

// dbias: (cols) += Σ_rows dy: (rows, cols)
static int cpu_bias_backward(wsml_backend *be, int64_t rows, int cols, float *dbias,
                             const float *dy) {
    for (int c = 0; c < cols; c++) {
        double s = 0.0;
        for (int64_t r = 0; r < rows; r++)
            s += dy[(size_t)r * cols + c];
        dbias[c] += (float)s;
    }
    (void)be;
    return 0;
}

// logits: (n, C) = mean_s boost(cam: (n, hw, C))
static int cpu_boostlu_forward(wsml_backend *be, int n, int hw, int C, float alpha, float *logits,
                               const float *cam) {
    (void)be;
    for (int b = 0; b < n; b++)
        for (int c = 0; c < C; c++) {
            double s = 0.0;
            for (int p = 0; p < hw; p++) {
                float v = cam[((size_t)b * hw + p) * C + c];
                s += v > 0.0f ? v * alpha : v;
            }
            logits[(size_t)b * C + c] = (float)(s / hw);
        }
    return 0;
}

// dcam: (n, hw, C) = dlogits: (n, C) / hw · (cam > 0 ? alpha : 1)
static int cpu_boostlu_backward(wsml_backend *be, int n, int hw, int C, float alpha, float *dcam,
                                const float *dlogits, const float *cam) {
    (void)be;
    for (int b = 0; b < n; b++)
        for (int p = 0; p < hw; p++)
            for (int c = 0; c < C; c++) {
                size_t i = ((size_t)b * hw + p) * C + c;
                float g = dlogits[(size_t)b * C + c] / (float)hw;
                dcam[i] = cam[i] > 0.0f ? g * alpha : g;
            }
    return 0;
}

// ----------------------------------------------------------------------------
// optimizer: train/optim.c's update on the host arrays themselves

static int cpu_optim_step(wsml_backend *be, wsml_optim *o, int g, float *params, const float *grads,
                          float *exp_avg, float *exp_avg_sq) {
    if (g < 0 || g >= o->num_groups)
        return wsml_errf(&be->err, WSML_EARG, "optimizer: no parameter group %d", g);
    wsml_optim_step_state(o, g, params, grads, exp_avg, exp_avg_sq);
    return 0;
}

// ----------------------------------------------------------------------------
// creation

static void cpu_destroy(wsml_backend *be) {
    cpu_impl *im = impl_of(be);
    if (im) {
        pool_destroy(&im->pool);
        free(im->workspace);
        free(im->dw_partial);
        free(im->partials);
        free(im->bn_sums);
        free(im);
    }
    free(be);
}

const char *wsml_backend_blas_core(void) {
    const char *core = openblas_get_corename();
    return core ? core : "";
}

int wsml_backend_cpu_create(const wsml_backend_options *opt, wsml_backend **out, wsml_err *err) {
    *out = NULL;
    int threads = opt ? opt->num_threads : 0;
    if (threads <= 0)
        threads = wsml_cpu_count();
    if (threads > 256)
        return wsml_errf(err, WSML_EARG, "--threads %d: at most 256", threads);
    wsml_backend *be = calloc(1, sizeof(*be));
    cpu_impl *im = calloc(1, sizeof(*im));
    if (!be || !im) {
        free(be);
        free(im);
        return wsml_errf(err, WSML_ENOMEM, "cpu backend: out of memory");
    }
    be->impl = im;
    im->workspace_cap_floats =
        opt && opt->workspace_bytes ? opt->workspace_bytes / sizeof(float) : WORKSPACE_CAP_FLOATS;
    if (pool_init(&im->pool, threads) != 0) {
        pool_destroy(&im->pool);
        free(im);
        free(be);
        return wsml_errf(err, WSML_ENOMEM, "cpu backend: cannot start %d threads", threads);
    }
    // Our threads split every GEMM (see "convolution"); OpenBLAS itself runs on the calling
    // thread. This is process-wide: other OpenBLAS users in the process get 1 thread too.
    openblas_set_num_threads(1);
    be->name = "cpu";
    be->host_memory = 1;
    be->num_threads = threads;
    be->destroy = cpu_destroy;
    be->alloc = cpu_alloc;
    be->free = cpu_free;
    be->copy_to_device = cpu_copy;
    be->copy_to_host = cpu_copy;
    be->copy = cpu_copy;
    be->zero = cpu_zero;
    be->synchronize = cpu_synchronize;
    be->conv_prepare = cpu_conv_prepare;
    be->conv_release = cpu_conv_release;
    be->conv_forward = cpu_conv_forward;
    be->conv_backward_data = cpu_conv_backward_data;
    be->conv_backward_filter = cpu_conv_backward_filter;
    be->bn_forward_train = cpu_bn_forward_train;
    be->bn_forward_eval = cpu_bn_forward_eval;
    be->bn_backward = cpu_bn_backward;
    be->maxpool_forward = cpu_maxpool_forward;
    be->maxpool_backward = cpu_maxpool_backward;
    be->avgpool_forward = cpu_avgpool_forward;
    be->avgpool_backward = cpu_avgpool_backward;
    be->gemm = cpu_gemm;
    be->bias_add = cpu_bias_add;
    be->bias_backward = cpu_bias_backward;
    be->boostlu_forward = cpu_boostlu_forward;
    be->boostlu_backward = cpu_boostlu_backward;
    be->optim_step = cpu_optim_step;
    *out = be;
    return 0;
}
