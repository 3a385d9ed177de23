// The communicator of data-parallel training (docs/train.md "Data-parallel training"): one
// process per GPU (or per CPU share), launched by mpirun or srun. A table of the
// collective operations the trainer needs, with two implementations:
//   single  one process: every collective is the identity (nothing is sent or copied
//           beyond what the caller asks), so a plain `wsml-train` runs exactly as it
//           did before data parallelism existed;
//   mpi     MPI_COMM_WORLD (Open MPI from Debian's libopenmpi-dev, or any MPI with the
//           same C API), in the build when tools/config.sh found MPI (WSML_HAVE_MPI).
// Only the thread that called wsml_comm_init may call the operations (MPI_THREAD_FUNNELED).
//
// Every collective must be called by every process in the same order with the same
// sizes (as MPI's), and fails with one line naming the operation and MPI's error text.
#ifndef WSML_COMM_H
#define WSML_COMM_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

typedef struct wsml_comm wsml_comm;

struct wsml_comm {
    const char *kind; // "single" or "mpi"
    int rank, size;   // 0 <= rank < size
    int local_rank;   // the rank among the processes of this node (the default GPU)
    int forced;       // WSML_MPI=1: the data-parallel code path even for one process
                      // (to measure its cost: one rank all-reduces with itself)
    // Element-wise sums over all processes, in place; every process receives the same
    // bits (MPI_Allreduce; with one process: nothing happens).
    int (*allreduce_f32)(wsml_comm *c, float *buf, size_t n, wsml_err *err);
    int (*allreduce_f64)(wsml_comm *c, double *buf, size_t n, wsml_err *err);
    int (*allreduce_i64)(wsml_comm *c, int64_t *buf, size_t n, wsml_err *err);
    // Every process's `bytes` bytes, concatenated in rank order into recv (size·bytes).
    int (*allgather)(wsml_comm *c, const void *send, size_t bytes, void *recv, wsml_err *err);
    // Variable sizes: counts[r] bytes from rank r (every process passes the same counts,
    // e.g. from an allgather of the sizes), concatenated in rank order into recv.
    int (*allgatherv)(wsml_comm *c, const void *send, const size_t *counts, void *recv,
                      wsml_err *err);
    // root's bytes into every other process's buf.
    int (*broadcast)(wsml_comm *c, void *buf, size_t bytes, int root, wsml_err *err);
    int (*barrier)(wsml_comm *c, wsml_err *err);
    // Ends every process of the job with exit status `status` (MPI_Abort); returns only
    // for a single process (the caller exits). Print the reason first.
    void (*abort)(wsml_comm *c, int status);
    void *impl;
};

// The communicator of one process (static; never finalize it).
wsml_comm *wsml_comm_single(void);

// How many processes the launcher started, from its environment: OMPI_COMM_WORLD_SIZE
// (Open MPI's mpirun), PMI_SIZE (MPICH, Intel MPI, srun --mpi=pmi2), SLURM_STEP_NUM_TASKS
// (srun); 1 when none is set.
int wsml_comm_launched_size(void);

// The communicator of this process. Uses MPI when the launcher started more than one
// process, or WSML_MPI=1 asks for it (e.g. one rank with NCCL, for benchmarks);
// WSML_MPI=0 never does. A build without MPI launched with more than one process fails
// with WSML_ESTATE saying so (every process would train alone and write the same run
// directory); so does one whose MPI world is not the launched size (WSML_EARG: srun
// without --mpi=pmix gives each process a world of one). On failure *out is NULL.
int wsml_comm_init(int *argc, char ***argv, wsml_comm **out, wsml_err *err);
// MPI_Finalize (mpi) and frees the communicator; NULL is a no-op.
void wsml_comm_finalize(wsml_comm *c);

#endif
