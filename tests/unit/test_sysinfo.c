// common/sysinfo: the CPU count follows the affinity mask the test sets (as taskset or a
// Slurm/cgroup cpuset would) and agrees with coreutils' nproc; the version block names the
// build's git commit (git's own answer), OpenBLAS and the CUDA side, and never loads cuBLAS.
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/sysinfo.h"

// The first line of `cmd`'s output (trailing newline removed), or "" when it fails.
static void first_line(const char *cmd, char *buf, size_t cap) {
    buf[0] = '\0';
    FILE *p = popen(cmd, "r");
    cr_assert(p, "%s", cmd);
    if (!fgets(buf, (int)cap, p))
        buf[0] = '\0';
    buf[strcspn(buf, "\n")] = '\0';
    if (pclose(p) != 0)
        buf[0] = '\0';
}

Test(sysinfo, cpu_count_is_nproc) {
    char out[64];
    first_line("nproc", out, sizeof out);
    cr_assert_eq(wsml_cpu_count(), atoi(out), "nproc says %s", out);
}

// Criterion runs each test in its own process, so narrowing the mask here stays here.
Test(sysinfo, cpu_count_follows_the_affinity_mask) {
    cpu_set_t all;
    cr_assert_eq(sched_getaffinity(0, sizeof all, &all), 0);
    int first = -1, second = -1;
    for (int c = 0; c < CPU_SETSIZE && second < 0; c++)
        if (CPU_ISSET(c, &all)) {
            if (first < 0)
                first = c;
            else
                second = c;
        }
    cpu_set_t one;
    CPU_ZERO(&one);
    CPU_SET(first, &one);
    cr_assert_eq(sched_setaffinity(0, sizeof one, &one), 0);
    cr_assert_eq(wsml_cpu_count(), 1, "taskset -c %d", first);
    char out[64];
    first_line("nproc", out, sizeof out); // the child inherits the mask
    cr_assert_str_eq(out, "1");
    if (second >= 0) {
        CPU_SET(second, &one);
        cr_assert_eq(sched_setaffinity(0, sizeof one, &one), 0);
        cr_assert_eq(wsml_cpu_count(), 2, "taskset -c %d,%d", first, second);
    } else {
        fprintf(stderr, "sysinfo: one CPU only: the two-CPU mask is not tried\n");
    }
}

static char *version_text(void) {
    char *text = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&text, &size);
    cr_assert(mem);
    wsml_set_prog("wsml-test");
    wsml_print_version(mem);
    fclose(mem);
    return text;
}

Test(sysinfo, version_block) {
    char *text = version_text();
    char want[128];
    snprintf(want, sizeof want, "wsml-test %s (git %s)\n", WSML_VERSION, wsml_git_commit());
    cr_assert(!strncmp(text, want, strlen(want)), "%s", text);
    // the commit is git's HEAD when this tree is a git checkout
    char head[64];
    first_line("git rev-parse --short=12 HEAD 2>/dev/null", head, sizeof head);
    if (head[0])
        cr_assert(!strncmp(wsml_git_commit(), head, strlen(head)), "built from %s, HEAD is %s",
                  wsml_git_commit(), head);
    else
        fprintf(stderr, "sysinfo: not a git checkout: commit %s not compared\n", wsml_git_commit());
    cr_assert(strstr(text, "\nOpenBLAS 0."), "%s", text);
    const char *core = getenv("OPENBLAS_CORETYPE");
    if (core && *core) {
        char c[80];
        snprintf(c, sizeof c, "core in use %s\n", core);
        cr_assert(strcasestr(text, c), "OPENBLAS_CORETYPE=%s: %s", core, text);
    }
    cr_assert(strstr(text, "\nLMDB 0."), "%s", text);
    cr_assert(strstr(text, "\nCUDA backend"), "%s", text); // " /path: ..." or ": none (why)"
    free(text);
}

// With libwsml-cuda.so built, the CUDA line gives the runtime nvcc's release names and a
// cuDNN version, and cuBLAS stays unloaded (seconds of start-up for every CPU command).
Test(sysinfo, version_cuda_line_without_cublas) {
    char why[1024];
    if (!wsml_cuda_library(why, sizeof why, NULL, 0)) {
        char *text = version_text();
        cr_assert(strstr(text, "CUDA backend: none ("), "%s", text);
        free(text);
        cr_skip_test("no CUDA backend library: %s", why);
    }
    char *text = version_text();
    char release[256];
    first_line("${CUDA_HOME:-/usr/local/cuda}/bin/nvcc --version | grep -o 'release [0-9.]*' | "
               "cut -d' ' -f2",
               release, sizeof release);
    if (release[0]) {
        char want[300];
        snprintf(want, sizeof want, "CUDA runtime %s (static)", release);
        cr_assert(strstr(text, want), "nvcc says release %s: %s", release, text);
    }
    cr_assert(strstr(text, "cuDNN 9."), "%s", text);
    cr_assert(strstr(text, "cuBLAS built with "), "%s", text);
    free(text);
    FILE *maps = fopen("/proc/self/maps", "r");
    cr_assert(maps);
    char line[4096];
    int cublas = 0, cuda_backend = 0;
    while (fgets(line, sizeof line, maps)) {
        cublas |= strstr(line, "libcublas") != NULL;
        cuda_backend |= strstr(line, "libwsml-cuda.so") != NULL;
    }
    fclose(maps);
    cr_assert(cuda_backend, "the versions come from libwsml-cuda.so");
    cr_assert(!cublas, "--version must not load cuBLAS");
}

// The launchers' variables: the first one set to a whole number in range counts.
Test(sysinfo, first_environment_number_in_range) {
    static const char *const vars[] = {"WSML_T_A", "WSML_T_B"};
    unsetenv("WSML_T_A");
    unsetenv("WSML_T_B");
    cr_expect_eq(wsml_env_first_long(vars, 2, 0, 9, -1), -1);
    setenv("WSML_T_B", "7", 1);
    cr_expect_eq(wsml_env_first_long(vars, 2, 0, 9, -1), 7);
    const char *skipped[] = {"", "3x", "x", "-1", "10", "99999999999999999999"};
    for (size_t i = 0; i < sizeof skipped / sizeof *skipped; i++) {
        setenv("WSML_T_A", skipped[i], 1);
        cr_expect_eq(wsml_env_first_long(vars, 2, 0, 9, -1), 7, "WSML_T_A='%s'", skipped[i]);
    }
    setenv("WSML_T_A", "0", 1);
    cr_expect_eq(wsml_env_first_long(vars, 2, 0, 9, -1), 0);
    unsetenv("WSML_T_A");
    unsetenv("WSML_T_B");
}
