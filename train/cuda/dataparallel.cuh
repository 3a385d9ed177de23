// The cuda backend's data-parallel gradient all-reduce (train/backend.h dp_*): NCCL,
// loaded with dlopen (libnccl.so.2: PyTorch's pip wheel nvidia-nccl-cu*, or CUDA_HOME's)
// only when a run has several processes, so that one-GPU runs never need it. The
// communicator is made from rank 0's ncclUniqueId, which the trainer broadcasts over MPI.
// All-reduces run on a stream of their own: each waits (an event) for the compute queued
// before it — the gradients of the layers backward has finished — so that the buckets the
// trainer launches during backward overlap the backward of the layers before them;
// dp_wait makes the compute stream wait for all of them (the optimizer reads the sums).
// Part of backend_cuda.cu's one translation unit. CPU twin: none (the trainer all-reduces
// host memory through common/comm.h).

#ifdef WSML_HAVE_NCCL
#include <nccl.h>

#define NCCL_FUNCS(X)                                                                              \
    X(ncclGetUniqueId)                                                                             \
    X(ncclCommInitRank)                                                                            \
    X(ncclCommDestroy)                                                                             \
    X(ncclAllReduce)                                                                               \
    X(ncclGetErrorString)

#define DECLARE_NCCL_POINTER(name) static decltype(&::name) dl_##name;
NCCL_FUNCS(DECLARE_NCCL_POINTER)
#undef DECLARE_NCCL_POINTER
static pthread_once_t nccl_once = PTHREAD_ONCE_INIT;
static char nccl_error[512];

static void nccl_load(void) {
    const char *names[] = {"libnccl.so.2", "libnccl.so"};
    void *h = NULL;
    for (size_t i = 0; i < sizeof names / sizeof *names && !h; i++)
        h = dlopen(names[i], RTLD_NOW | RTLD_LOCAL);
    if (!h) {
        snprintf(nccl_error, sizeof nccl_error,
                 "NCCL not found (%s): install it (pip nvidia-nccl-cu13, or CUDA's libnccl2) and "
                 "put it on LD_LIBRARY_PATH",
                 dlerror());
        return;
    }
#define LOAD_NCCL(name)                                                                            \
    if (!(dl_##name = (decltype(dl_##name))dlsym(h, #name)) && !nccl_error[0])                     \
        snprintf(nccl_error, sizeof nccl_error, "libnccl lacks %s", #name);
    NCCL_FUNCS(LOAD_NCCL)
#undef LOAD_NCCL
}

static int nccl_loaded(wsml_backend *be, const char *op) {
    pthread_once(&nccl_once, nccl_load);
    if (nccl_error[0] || !dl_ncclAllReduce)
        return wsml_errf(&be->err, WSML_EDEVICE, "%s: %s", op,
                         nccl_error[0] ? nccl_error : "NCCL not loaded");
    return 0;
}

#define NCCL_TRY(op, call)                                                                         \
    do {                                                                                           \
        ncclResult_t nccl_rc_ = (call);                                                            \
        if (nccl_rc_ != ncclSuccess)                                                               \
            return wsml_errf(&be->err, WSML_EDEVICE, "%s: %s: %s", op, #call,                      \
                             dl_ncclGetErrorString(nccl_rc_));                                     \
    } while (0)

static int cuda_dp_load(wsml_backend *be) {
    return nccl_loaded(be, "data parallel");
}

static int cuda_dp_unique_id(wsml_backend *be, void *id, size_t cap, size_t *len) {
    const char *op = "data parallel: ncclGetUniqueId";
    int rc = nccl_loaded(be, op);
    if (rc)
        return rc;
    ncclUniqueId u;
    if (cap < sizeof u)
        return wsml_errf(&be->err, WSML_EARG, "%s: %zu bytes of room, needs %zu", op, cap,
                         sizeof u);
    NCCL_TRY(op, dl_ncclGetUniqueId(&u));
    memcpy(id, &u, sizeof u);
    *len = sizeof u;
    return 0;
}

static int cuda_dp_init(wsml_backend *be, const void *id, size_t len, int rank, int size) {
    cuda_impl *im = impl_of(be);
    const char *op = "data parallel: ncclCommInitRank";
    int rc = nccl_loaded(be, op);
    if (rc)
        return rc;
    ncclUniqueId u;
    if (len != sizeof u)
        return wsml_errf(&be->err, WSML_EARG, "%s: an id of %zu bytes, expected %zu", op, len,
                         sizeof u);
    memcpy(&u, id, sizeof u);
    CUDA_TRY(op, cudaSetDevice(im->device));
    ncclComm_t comm;
    NCCL_TRY(op, dl_ncclCommInitRank(&comm, size, u, rank));
    im->nccl = comm;
    CUDA_TRY(op, cudaStreamCreateWithFlags(&im->comm_stream, cudaStreamNonBlocking));
    CUDA_TRY(op, cudaEventCreateWithFlags(&im->grads_ready, cudaEventDisableTiming));
    CUDA_TRY(op, cudaEventCreateWithFlags(&im->reduced, cudaEventDisableTiming));
    return 0;
}

static int cuda_dp_allreduce(wsml_backend *be, float *buf, size_t n) {
    cuda_impl *im = impl_of(be);
    const char *op = "data parallel: gradient all-reduce";
    if (!im->nccl)
        return wsml_errf(&be->err, WSML_ESTATE, "%s: dp_init was not called", op);
    // after the compute queued so far (the gradients of buf), beside what follows it
    CUDA_TRY(op, cudaEventRecord(im->grads_ready, im->stream));
    CUDA_TRY(op, cudaStreamWaitEvent(im->comm_stream, im->grads_ready, 0));
    NCCL_TRY(op, dl_ncclAllReduce(buf, buf, n, ncclFloat32, ncclSum, (ncclComm_t)im->nccl,
                                  im->comm_stream));
    return 0;
}

static int cuda_dp_wait(wsml_backend *be) {
    cuda_impl *im = impl_of(be);
    const char *op = "data parallel: waiting for the all-reduce";
    if (!im->nccl)
        return 0;
    CUDA_TRY(op, cudaEventRecord(im->reduced, im->comm_stream));
    CUDA_TRY(op, cudaStreamWaitEvent(im->stream, im->reduced, 0));
    return 0;
}

static void cuda_dp_destroy(cuda_impl *im) {
    if (im->comm_stream)
        cudaStreamSynchronize(im->comm_stream);
    if (im->nccl)
        dl_ncclCommDestroy((ncclComm_t)im->nccl);
    if (im->grads_ready)
        cudaEventDestroy(im->grads_ready);
    if (im->reduced)
        cudaEventDestroy(im->reduced);
    if (im->comm_stream)
        cudaStreamDestroy(im->comm_stream);
}

static void cuda_dp_register(wsml_backend *be) {
    be->dp_load = cuda_dp_load;
    be->dp_unique_id = cuda_dp_unique_id;
    be->dp_init = cuda_dp_init;
    be->dp_allreduce = cuda_dp_allreduce;
    be->dp_wait = cuda_dp_wait;
}
#else
// Built without nccl.h: the trainer all-reduces through host memory (common/comm.h).
static void cuda_dp_destroy(cuda_impl *im) {
    (void)im;
}
static void cuda_dp_register(wsml_backend *be) {
    (void)be;
}
#endif
