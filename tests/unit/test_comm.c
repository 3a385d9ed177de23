// common/comm: which communicator a process gets from its launcher's environment (MPI
// itself is tested end to end under mpirun, tests/e2e/train_mpi.sh): one process without
// a launcher, whose collectives leave buffers as they are (allgather copies); the local
// rank (--device's default) from Open MPI's, MPICH's or Slurm's variable; a launch of
// several processes that would not use MPI is refused with one line.
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "common/comm.h"
#include "common/sysinfo.h"

static const char *const LAUNCH_VARS[] = {
    "OMPI_COMM_WORLD_SIZE",       "PMI_SIZE",        "SLURM_STEP_NUM_TASKS", "WSML_MPI",
    "OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"};

static void clear_launcher(void) {
    for (size_t i = 0; i < sizeof LAUNCH_VARS / sizeof *LAUNCH_VARS; i++)
        unsetenv(LAUNCH_VARS[i]);
}

Test(comm, one_process_without_a_launcher) {
    clear_launcher();
    wsml_comm *c = NULL;
    wsml_err err;
    cr_assert_eq(wsml_comm_launched_size(), 1);
    cr_assert_eq(wsml_comm_init(NULL, NULL, &c, &err), 0, "%s", err.msg);
    cr_assert_str_eq(c->kind, "single");
    cr_assert_eq(c->rank, 0);
    cr_assert_eq(c->size, 1);
    cr_assert_eq(c->forced, 0);
    float f[3] = {1.5f, -2, 3};
    double d[2] = {0.25, 7};
    int64_t i[2] = {5, -9};
    cr_assert_eq(c->allreduce_f32(c, f, 3, &err), 0);
    cr_assert_eq(c->allreduce_f64(c, d, 2, &err), 0);
    cr_assert_eq(c->allreduce_i64(c, i, 2, &err), 0);
    cr_assert(f[0] == 1.5f && f[1] == -2 && f[2] == 3 && d[0] == 0.25 && d[1] == 7 && i[0] == 5 &&
              i[1] == -9);
    char got[4] = "";
    cr_assert_eq(c->allgather(c, "abc", 4, got, &err), 0);
    cr_assert_str_eq(got, "abc");
    size_t counts[1] = {2};
    char part[3] = "";
    cr_assert_eq(c->allgatherv(c, "xy", counts, part, &err), 0);
    cr_assert(part[0] == 'x' && part[1] == 'y');
    cr_assert_eq(c->broadcast(c, got, 4, 0, &err), 0);
    cr_assert_eq(c->barrier(c, &err), 0);
    wsml_comm_finalize(c);
}

Test(comm, launcher_sizes_and_local_ranks) {
    clear_launcher();
    setenv("SLURM_STEP_NUM_TASKS", "8", 1);
    cr_assert_eq(wsml_comm_launched_size(), 8);
    setenv("PMI_SIZE", "4", 1); // MPICH's before Slurm's
    cr_assert_eq(wsml_comm_launched_size(), 4);
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1); // Open MPI's first
    cr_assert_eq(wsml_comm_launched_size(), 2);
    setenv("OMPI_COMM_WORLD_SIZE", "x", 1); // unreadable: the next one
    cr_assert_eq(wsml_comm_launched_size(), 4);
    cr_assert_eq(wsml_local_rank(), -1);
    setenv("SLURM_LOCALID", "5", 1);
    cr_assert_eq(wsml_local_rank(), 5);
    setenv("OMPI_COMM_WORLD_LOCAL_RANK", "3", 1);
    cr_assert_eq(wsml_local_rank(), 3);
    clear_launcher();
}

Test(comm, several_processes_without_mpi_are_refused) {
    clear_launcher();
    setenv("OMPI_COMM_WORLD_SIZE", "2", 1);
    setenv("WSML_MPI", "0", 1);
    wsml_comm *c = (wsml_comm *)1;
    wsml_err err;
    cr_assert_eq(wsml_comm_init(NULL, NULL, &c, &err), WSML_ESTATE);
    cr_assert_null(c);
    cr_assert(strstr(err.msg, "one of 2 processes"), "%s", err.msg);
    clear_launcher();
}
