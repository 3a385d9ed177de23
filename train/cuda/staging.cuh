// Input staging of the cuda backend: the loader's pinned host buffers (host_alloc,
// host_free), copied on a second stream beside the compute (stage_input), and
// copy_to_device, which takes a staged batch from the device when there is one. Part of
// backend_cuda.cu's one translation unit. CPU twin: cpu_copy (the cpu backend has no
// staging: its device memory is host memory).

// ----------------------------------------------------------------------------
// staging
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
