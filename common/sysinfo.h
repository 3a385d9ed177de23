// What this process runs on and what it was built from: the CPUs it may use (thread
// defaults of every stage), the version block of --version and of run logs, and the
// lookup of the CUDA backend library (build/libwsml-cuda.so).
#ifndef WSML_SYSINFO_H
#define WSML_SYSINFO_H

#include <stddef.h>
#include <stdio.h>

#define WSML_VERSION "0.1.0"

// The number of CPUs this process may run on: its affinity mask (sched_getaffinity), which
// taskset, cgroup cpusets (containers, Slurm's task/cgroup plugin) and Slurm's CPU binding
// set; the online CPU count only when the mask cannot be read. Always >= 1. CPU quotas
// (cgroup cpu.max, docker --cpus) are not read: pass --threads there.
int wsml_cpu_count(void);

// The value of the first of vars[0..n) that is set in the environment to a whole number
// in [lo, hi] (a set variable holding anything else is passed over); fallback when none.
// How the launchers' rank and size variables are read.
long wsml_env_first_long(const char *const *vars, int n, long lo, long hi, long fallback);

// This process's rank among the processes of its node, as the launcher tells it:
// OMPI_COMM_WORLD_LOCAL_RANK (Open MPI's mpirun), MPI_LOCALRANKID (MPICH's Hydra),
// SLURM_LOCALID (srun), in this order; -1 outside a launcher. --device's default.
int wsml_local_rank(void);

// The git commit the executables were built from ("6a6cf214b8e0", "...-dirty", or
// "unknown" outside a git checkout).
const char *wsml_git_commit(void);

// The version block, one item per line: "PROG VERSION (git COMMIT)", the OpenBLAS build
// and core in use, LMDB/jansson/zlib/libjpeg versions, and the CUDA side as
// libwsml-cuda.so reports it (runtime, driver, cuDNN loaded, cuBLAS built with), or why
// there is none. Never loads cuBLAS (seconds of start-up) and never fails: a machine
// without CUDA gets a line saying so.
void wsml_print_version(FILE *f);

// The CUDA backend library, dlopen'ed once per process (RTLD_NOW | RTLD_LOCAL) from
// $WSML_CUDA_LIB if set, else next to the running executable, else one directory up
// (build/tests/unit -> build/). Returns the handle, or NULL with the reason in why (the
// path tried and dlerror(), or "libwsml-cuda.so not found"). path (may be NULL) receives
// the file that was opened.
void *wsml_cuda_library(char *why, size_t why_cap, char *path, size_t path_cap);

#endif
