// The communicator of data-parallel training (common/comm.h): one process, or MPI.
#include "common/comm.h"

#include <stdlib.h>
#include <string.h>

#include "common/sysinfo.h"

#ifdef WSML_HAVE_MPI
#include <mpi.h>
#endif

// ---- one process -------------------------------------------------------------------------

static int single_allreduce_f32(wsml_comm *c, float *buf, size_t n, wsml_err *err) {
    (void)c, (void)buf, (void)n, (void)err;
    return 0;
}
static int single_allreduce_f64(wsml_comm *c, double *buf, size_t n, wsml_err *err) {
    (void)c, (void)buf, (void)n, (void)err;
    return 0;
}
static int single_allreduce_i64(wsml_comm *c, int64_t *buf, size_t n, wsml_err *err) {
    (void)c, (void)buf, (void)n, (void)err;
    return 0;
}
static int single_allgather(wsml_comm *c, const void *send, size_t bytes, void *recv,
                            wsml_err *err) {
    (void)c, (void)err;
    if (bytes && recv != send)
        memmove(recv, send, bytes);
    return 0;
}
static int single_allgatherv(wsml_comm *c, const void *send, const size_t *counts, void *recv,
                             wsml_err *err) {
    return single_allgather(c, send, counts[0], recv, err);
}
static int single_broadcast(wsml_comm *c, void *buf, size_t bytes, int root, wsml_err *err) {
    (void)c, (void)buf, (void)bytes, (void)root, (void)err;
    return 0;
}
static int single_barrier(wsml_comm *c, wsml_err *err) {
    (void)c, (void)err;
    return 0;
}
static void single_abort(wsml_comm *c, int status) {
    (void)c, (void)status;
}

static const wsml_comm SINGLE = {
    .kind = "single",
    .rank = 0,
    .size = 1,
    .local_rank = 0,
    .allreduce_f32 = single_allreduce_f32,
    .allreduce_f64 = single_allreduce_f64,
    .allreduce_i64 = single_allreduce_i64,
    .allgather = single_allgather,
    .allgatherv = single_allgatherv,
    .broadcast = single_broadcast,
    .barrier = single_barrier,
    .abort = single_abort,
};

wsml_comm *wsml_comm_single(void) {
    static wsml_comm one;
    one = SINGLE;
    return &one;
}

// ---- MPI -----------------------------------------------------------------------------------

#ifdef WSML_HAVE_MPI
// MPI's counts are ints: larger buffers go in pieces of at most this many elements.
#define MPI_CHUNK ((size_t)1 << 28)

static int mpi_fail(wsml_err *err, const char *op, int code) {
    char text[MPI_MAX_ERROR_STRING];
    int len = 0;
    if (MPI_Error_string(code, text, &len) != MPI_SUCCESS)
        snprintf(text, sizeof text, "MPI error %d", code);
    return wsml_errf(err, WSML_EIO, "%s: %s", op, text);
}

static int mpi_allreduce(void *buf, size_t n, size_t elem, MPI_Datatype type, const char *op,
                         wsml_err *err) {
    for (size_t done = 0; done < n;) {
        size_t k = n - done < MPI_CHUNK ? n - done : MPI_CHUNK;
        int rc = MPI_Allreduce(MPI_IN_PLACE, (char *)buf + done * elem, (int)k, type, MPI_SUM,
                               MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            return mpi_fail(err, op, rc);
        done += k;
    }
    return 0;
}
static int mpi_allreduce_f32(wsml_comm *c, float *buf, size_t n, wsml_err *err) {
    (void)c;
    return mpi_allreduce(buf, n, sizeof *buf, MPI_FLOAT, "MPI_Allreduce (float)", err);
}
static int mpi_allreduce_f64(wsml_comm *c, double *buf, size_t n, wsml_err *err) {
    (void)c;
    return mpi_allreduce(buf, n, sizeof *buf, MPI_DOUBLE, "MPI_Allreduce (double)", err);
}
static int mpi_allreduce_i64(wsml_comm *c, int64_t *buf, size_t n, wsml_err *err) {
    (void)c;
    return mpi_allreduce(buf, n, sizeof *buf, MPI_INT64_T, "MPI_Allreduce (int64)", err);
}

static int mpi_allgatherv(wsml_comm *c, const void *send, const size_t *counts, void *recv,
                          wsml_err *err) {
    int *cnt = malloc(sizeof(int) * (size_t)c->size), *disp = malloc(sizeof(int) * (size_t)c->size);
    size_t total = 0;
    int rc = cnt && disp ? 0 : wsml_errf(err, WSML_ENOMEM, "MPI_Allgatherv: out of memory");
    for (int r = 0; r < c->size && rc == 0; r++) {
        if (counts[r] > (size_t)0x7fffffff || total > (size_t)0x7fffffff)
            rc = wsml_errf(err, WSML_EARG, "MPI_Allgatherv: %zu bytes from rank %d: too many",
                           counts[r], r);
        cnt[r] = (int)counts[r];
        disp[r] = (int)total;
        total += counts[r];
    }
    if (rc == 0) {
        int m =
            MPI_Allgatherv(send, cnt[c->rank], MPI_BYTE, recv, cnt, disp, MPI_BYTE, MPI_COMM_WORLD);
        if (m != MPI_SUCCESS)
            rc = mpi_fail(err, "MPI_Allgatherv", m);
    }
    free(cnt);
    free(disp);
    return rc;
}

static int mpi_allgather(wsml_comm *c, const void *send, size_t bytes, void *recv, wsml_err *err) {
    size_t *counts = malloc(sizeof(size_t) * (size_t)c->size);
    if (!counts)
        return wsml_errf(err, WSML_ENOMEM, "MPI_Allgather: out of memory");
    for (int r = 0; r < c->size; r++)
        counts[r] = bytes;
    int rc = mpi_allgatherv(c, send, counts, recv, err);
    free(counts);
    return rc;
}

static int mpi_broadcast(wsml_comm *c, void *buf, size_t bytes, int root, wsml_err *err) {
    (void)c;
    for (size_t done = 0; done < bytes;) {
        size_t k = bytes - done < MPI_CHUNK ? bytes - done : MPI_CHUNK;
        int rc = MPI_Bcast((char *)buf + done, (int)k, MPI_BYTE, root, MPI_COMM_WORLD);
        if (rc != MPI_SUCCESS)
            return mpi_fail(err, "MPI_Bcast", rc);
        done += k;
    }
    return 0;
}

static int mpi_barrier(wsml_comm *c, wsml_err *err) {
    (void)c;
    int rc = MPI_Barrier(MPI_COMM_WORLD);
    return rc == MPI_SUCCESS ? 0 : mpi_fail(err, "MPI_Barrier", rc);
}

static void mpi_abort(wsml_comm *c, int status) {
    (void)c;
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, status);
}

static int mpi_init(int *argc, char ***argv, wsml_comm *c, wsml_err *err) {
    int provided = 0, rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS)
        return mpi_fail(err, "MPI_Init_thread", rc);
    // errors come back as codes, so that the message names the operation
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &c->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &c->size);
    MPI_Comm node;
    c->local_rank = 0;
    if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, c->rank, MPI_INFO_NULL, &node) ==
        MPI_SUCCESS) {
        MPI_Comm_rank(node, &c->local_rank);
        MPI_Comm_free(&node);
    }
    c->kind = "mpi";
    c->allreduce_f32 = mpi_allreduce_f32;
    c->allreduce_f64 = mpi_allreduce_f64;
    c->allreduce_i64 = mpi_allreduce_i64;
    c->allgather = mpi_allgather;
    c->allgatherv = mpi_allgatherv;
    c->broadcast = mpi_broadcast;
    c->barrier = mpi_barrier;
    c->abort = mpi_abort;
    return 0;
}
#endif

// ---- choosing ----------------------------------------------------------------------------

int wsml_comm_launched_size(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"};
    return (int)wsml_env_first_long(vars, 3, 1, (1 << 24) - 1, 1);
}

int wsml_comm_init(int *argc, char ***argv, wsml_comm **out, wsml_err *err) {
    *out = NULL;
    const char *want = getenv("WSML_MPI");
    int size = wsml_comm_launched_size();
    int use_mpi = want && !strcmp(want, "1") ? 1 : want && !strcmp(want, "0") ? 0 : size > 1;
    if (!use_mpi && size > 1) // every process would train alone into the same run directory
        return wsml_errf(err, WSML_ESTATE,
                         "WSML_MPI=0, but launched as one of %d processes (mpirun/srun): unset "
                         "it, or run one process",
                         size);
    wsml_comm *c = malloc(sizeof *c);
    if (!c)
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    *c = SINGLE;
    int local = wsml_local_rank();
    c->local_rank = local > 0 ? local : 0;
    if (use_mpi) {
#ifdef WSML_HAVE_MPI
        int rc = mpi_init(argc, argv, c, err);
        if (rc < 0) {
            free(c);
            return rc;
        }
        if (size > 1 && c->size != size) { // MPI did not join what the launcher started
            wsml_errf(err, WSML_EARG,
                      "launched as one of %d processes, but MPI sees %d: the launcher did not "
                      "wire MPI up (srun: srun --mpi=pmix, or the MPI plugin your MPI was "
                      "built for); every process would train alone",
                      size, c->size);
            MPI_Finalize();
            free(c);
            return WSML_EARG;
        }
        c->forced = want && !strcmp(want, "1");
#else
        (void)argc, (void)argv;
        free(c);
        return wsml_errf(err, WSML_ESTATE,
                         "launched as one of %d processes (mpirun/srun), but this wsml was built "
                         "without MPI: install libopenmpi-dev (make deps) and rebuild, or run one "
                         "process",
                         size);
#endif
    }
    *out = c;
    return 0;
}

void wsml_comm_finalize(wsml_comm *c) {
    if (!c)
        return;
#ifdef WSML_HAVE_MPI
    if (!strcmp(c->kind, "mpi"))
        MPI_Finalize();
#endif
    free(c);
}
