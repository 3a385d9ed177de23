// CPUs, versions and the CUDA library lookup (common/sysinfo.h).
#define _GNU_SOURCE
#include "common/sysinfo.h"

#include <cblas.h>
#include <dlfcn.h>
#include <errno.h>
#include <jansson.h>
#include <libgen.h>
#include <lmdb.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "common/cli.h"
#include "common/log.h"

// jpeglib.h needs stdio.h's FILE first (included by sysinfo.h).
#include <jpeglib.h>

// The GNUmakefile force-includes $(BUILD)/commit.h here (WSML_GIT_COMMIT).
#ifndef WSML_GIT_COMMIT
#define WSML_GIT_COMMIT "unknown"
#endif

#define STR2(x) #x
#define STR(x) STR2(x)

int wsml_cpu_count(void) {
    // The mask is as large as the kernel's CPU limit: grow the set until it fits (EINVAL
    // means too small), from 1024 CPUs, so that machines with more CPUs still count right.
    for (int ncpu = 1024; ncpu <= (1 << 20); ncpu *= 2) {
        cpu_set_t *set = CPU_ALLOC(ncpu);
        if (!set)
            break;
        size_t size = CPU_ALLOC_SIZE(ncpu);
        CPU_ZERO_S(size, set);
        int rc = sched_getaffinity(0, size, set), saved = errno;
        int n = rc == 0 ? CPU_COUNT_S(size, set) : 0;
        CPU_FREE(set);
        if (rc == 0 && n > 0)
            return n;
        if (rc != 0 && saved == EINVAL)
            continue;
        break;
    }
    long online = sysconf(_SC_NPROCESSORS_ONLN);
    return online > 0 ? (int)online : 1;
}

long wsml_env_first_long(const char *const *vars, int n, long lo, long hi, long fallback) {
    for (int i = 0; i < n; i++) {
        const char *v = getenv(vars[i]);
        int64_t x;
        if (v && wsml_parse_i64(v, lo, hi, &x) == 0)
            return (long)x;
    }
    return fallback;
}

int wsml_local_rank(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID",
                                       "SLURM_LOCALID"};
    return (int)wsml_env_first_long(vars, 3, 0, (1 << 20) - 1, -1);
}

const char *wsml_git_commit(void) {
    return WSML_GIT_COMMIT;
}

// ---- the CUDA backend library ---------------------------------------------------------

static pthread_once_t cuda_once = PTHREAD_ONCE_INIT;
static void *cuda_lib;
static char cuda_why[1024], cuda_path[4200];

static void try_open(const char *path) {
    if (cuda_lib)
        return;
    cuda_lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
    if (cuda_lib)
        snprintf(cuda_path, sizeof cuda_path, "%s", path);
    else if (!cuda_why[0] && access(path, F_OK) == 0)
        snprintf(cuda_why, sizeof cuda_why, "%s", dlerror()); // there, but does not load
}

static void open_cuda_library(void) {
    const char *env = getenv("WSML_CUDA_LIB");
    if (env && *env) {
        try_open(env);
        if (!cuda_lib && !cuda_why[0])
            snprintf(cuda_why, sizeof cuda_why, "WSML_CUDA_LIB=%s: no such file", env);
    }
    char exe[4096];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 64);
    if (!cuda_lib && n > 0) {
        exe[n] = '\0';
        char *dir = dirname(exe), path[4200];
        snprintf(path, sizeof path, "%s/libwsml-cuda.so", dir);
        try_open(path);
        snprintf(path, sizeof path, "%s/../libwsml-cuda.so", dir);
        try_open(path);
    }
    if (!cuda_lib && !cuda_why[0])
        snprintf(cuda_why, sizeof cuda_why,
                 "libwsml-cuda.so not found next to the executable (built without nvcc?)");
}

void *wsml_cuda_library(char *why, size_t why_cap, char *path, size_t path_cap) {
    pthread_once(&cuda_once, open_cuda_library);
    if (why && why_cap)
        snprintf(why, why_cap, "%s", cuda_lib ? "" : cuda_why);
    if (path && path_cap)
        snprintf(path, path_cap, "%s", cuda_lib ? cuda_path : "");
    return cuda_lib;
}

// ---- versions -------------------------------------------------------------------------

// "CUDA backend ...": what libwsml-cuda.so's wsml_cuda_versions (train/cuda/versions.cu)
// reports, or why there is no CUDA backend.
static void cuda_versions(char *buf, size_t cap) {
    char why[1024], path[4200];
    void *lib = wsml_cuda_library(why, sizeof why, path, sizeof path);
    if (!lib) {
        snprintf(buf, cap, "CUDA backend: none (%s)", why);
        return;
    }
    int (*versions)(char *, size_t) = NULL;
    *(void **)&versions = dlsym(lib, "wsml_cuda_versions");
    char line[768] = "";
    if (versions)
        versions(line, sizeof line);
    else
        snprintf(line, sizeof line, "no wsml_cuda_versions in it (an older build?)");
    snprintf(buf, cap, "CUDA backend %s: %s", path, line);
}

void wsml_print_version(FILE *f) {
    int lmdb_major = 0, lmdb_minor = 0, lmdb_patch = 0;
    mdb_version(&lmdb_major, &lmdb_minor, &lmdb_patch);
    const char *core = openblas_get_corename(), *config = openblas_get_config();
    char cuda[6000];
    cuda_versions(cuda, sizeof cuda);
    fprintf(f, "%s %s (git %s)\n", wsml_prog(), WSML_VERSION, wsml_git_commit());
    fprintf(f, "%s; core in use %s\n", config ? config : "OpenBLAS (no config string)",
            core ? core : "unknown");
    fprintf(f, "LMDB %d.%d.%d, jansson %s, zlib %s, libjpeg %d", lmdb_major, lmdb_minor, lmdb_patch,
            JANSSON_VERSION, zlibVersion(), JPEG_LIB_VERSION);
#ifdef LIBJPEG_TURBO_VERSION
    fprintf(f, " (libjpeg-turbo %s)", STR(LIBJPEG_TURBO_VERSION));
#endif
    fprintf(f, "\n%s\n", cuda);
}
