// Device memory of the cuda backend: be->alloc/free (tracked for memory_info),
// copy_to_host, copy, zero, synchronize, busy_seconds and the kernels' scratch. Part of
// backend_cuda.cu's one translation unit. CPU twin: train/backend_cpu.c cpu_alloc,
// cpu_free, cpu_copy, cpu_zero, cpu_synchronize, ensure_partials.

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
