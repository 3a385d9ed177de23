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
    X(ncclCommAbort)                                                                               \
    X(ncclAllReduce)                                                                               \
    X(ncclGetVersion)                                                                              \
    X(ncclGetErrorString)

#define DECLARE_NCCL_POINTER(name) static decltype(&::name) dl_##name;
NCCL_FUNCS(DECLARE_NCCL_POINTER)
#undef DECLARE_NCCL_POINTER
static pthread_once_t nccl_once = PTHREAD_ONCE_INIT;
static char nccl_error[1024];
static char nccl_desc[64]; // "NCCL 2.21.5" once loaded (be->dp_desc)

// Where libnccl.so.2 is looked for, in order: WSML_NCCL (a path to the library: e.g. pip's
// wheel, site-packages/nvidia/nccl/lib/libnccl.so.2; when set, nothing else is tried),
// the dynamic linker's search (LD_LIBRARY_PATH, the system's), then NCCL_HOME/lib and
// CUDA_HOME/lib64. The error names every place tried and the last dlerror.
static void nccl_load(void) {
    char tried[6][512];
    int n = 0;
    const char *own = getenv("WSML_NCCL");
    if (own && *own) {
        snprintf(tried[n++], sizeof tried[0], "%s", own);
    } else {
        snprintf(tried[n++], sizeof tried[0], "libnccl.so.2");
        snprintf(tried[n++], sizeof tried[0], "libnccl.so");
        const char *home = getenv("NCCL_HOME"), *cuda = getenv("CUDA_HOME");
        if (home && *home)
            snprintf(tried[n++], sizeof tried[0], "%s/lib/libnccl.so.2", home);
        if (cuda && *cuda)
            snprintf(tried[n++], sizeof tried[0], "%s/lib64/libnccl.so.2", cuda);
    }
    void *h = NULL;
    const char *why = "";
    for (int i = 0; i < n && !h; i++)
        if (!(h = dlopen(tried[i], RTLD_NOW | RTLD_LOCAL)))
            why = dlerror();
    if (!h) {
        char list[1024] = "";
        for (int i = 0; i < n; i++)
            snprintf(list + strlen(list), sizeof list - strlen(list), "%s%s", i ? ", " : "",
                     tried[i]);
        snprintf(nccl_error, sizeof nccl_error,
                 "NCCL not found (tried %s%s; last: %s): install it (pip nvidia-nccl-cu13, then "
                 "WSML_NCCL=<site-packages>/nvidia/nccl/lib/libnccl.so.2; or CUDA's libnccl2 on "
                 "LD_LIBRARY_PATH)",
                 list, own && *own ? " (WSML_NCCL)" : " (LD_LIBRARY_PATH, the system's)", why);
        return;
    }
#define LOAD_NCCL(name)                                                                            \
    if (!(dl_##name = (decltype(dl_##name))dlsym(h, #name)) && !nccl_error[0])                     \
        snprintf(nccl_error, sizeof nccl_error, "libnccl lacks %s", #name);
    NCCL_FUNCS(LOAD_NCCL)
#undef LOAD_NCCL
    int v = 0;
    if (!nccl_error[0] && dl_ncclGetVersion(&v) == ncclSuccess) // 22105 = 2.21.5
        snprintf(nccl_desc, sizeof nccl_desc, "NCCL %d.%d.%d", v / 10000, v / 100 % 100, v % 100);
    else if (!nccl_error[0])
        snprintf(nccl_desc, sizeof nccl_desc, "NCCL");
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
    int rc = nccl_loaded(be, "data parallel");
    if (rc == 0)
        be->dp_desc = nccl_desc;
    return rc;
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

// A failure of this process alone: the others may wait in an all-reduce (or never join
// one this process queued), so the communicator is aborted — its queued operations too —
// rather than destroyed, and teardown does not wait for its stream.
static void cuda_dp_abort(wsml_backend *be) {
    cuda_impl *im = impl_of(be);
    if (im->nccl)
        dl_ncclCommAbort((ncclComm_t)im->nccl);
    im->nccl = NULL;
    im->nccl_aborted = 1;
}

static void cuda_dp_destroy(cuda_impl *im) {
    if (im->comm_stream && !im->nccl_aborted)
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
    be->dp_abort = cuda_dp_abort;
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
