// The runner of bench/shim/criterion/criterion.h: runs every registered test (or those
// whose "suite/name" matches GLOB) in a forked child, prints one line per test with its
// time and Criterion's summary line, exits 0 only if nothing failed, crashed or hung.
//
// Usage: wsml-cudatest [--timeout S] [GLOB]      (default GLOB '*')
//   --timeout S  caps every test at S seconds (default: the test's own .timeout, else
//                600 s). The PARENT kills a test that runs past its time with SIGKILL:
//                a test stuck in a driver call or ignoring signals still ends, and the
//                next test runs (bench/gpu.sh uses --timeout 45).
#include <errno.h>
#include <fnmatch.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "criterion/criterion.h"

#define MAX_TESTS 256
#define DEFAULT_TIMEOUT 600
#define EXIT_SKIPPED 77

static shim_test tests[MAX_TESTS];
static int num_tests;
static int failed; // in the child: some cr_expect failed

void shim_register(const char *suite, const char *name, void (*fn)(void),
                   struct shim_test_options opts) {
    if (num_tests == MAX_TESTS || opts.disabled)
        return;
    tests[num_tests++] = (shim_test){suite, name, fn, opts.timeout};
}

void shim_check(int ok, int fatal, const char *file, int line, const char *expr, const char *fmt,
                ...) {
    if (ok)
        return;
    fprintf(stderr, "[----] %s:%d: %s failed: ", file, line, fatal ? "assertion" : "expectation");
    if (fmt[0]) {
        va_list ap;
        va_start(ap, fmt);
        vfprintf(stderr, fmt, ap);
        va_end(ap);
    } else {
        fputs(expr, stderr);
    }
    fputc('\n', stderr);
    failed = 1;
    if (fatal) {
        fflush(NULL);
        _exit(1);
    }
}

void shim_skip(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[SKIP] ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    fflush(NULL);
    _exit(EXIT_SKIPPED);
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int usage(void) {
    fprintf(stderr, "Usage: wsml-cudatest [--timeout SECONDS] [GLOB]\n"
                    "Runs the tests whose suite/name match GLOB (default '*'), each in its "
                    "own process.\n"
                    "Example: wsml-cudatest --timeout 45 'cuda/*'\n");
    return 2;
}

// Waits for pid for at most `limit` seconds; then kills it (SIGKILL) and reaps it.
// Returns the wait status; *timed_out says whether it was killed for time.
static int wait_capped(pid_t pid, double limit, int *timed_out) {
    int status = 0;
    double t0 = now();
    *timed_out = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid)
            return status;
        if (r < 0 && errno != EINTR)
            return status;
        if (now() - t0 > limit) {
            kill(pid, SIGKILL);
            waitpid(pid, &status, 0);
            *timed_out = 1;
            return status;
        }
        struct timespec ts = {0, 20 * 1000 * 1000}; // 20 ms
        nanosleep(&ts, NULL);
    }
}

int main(int argc, char **argv) {
    const char *filter = "*";
    int cap = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--timeout") && i + 1 < argc) {
            char *end;
            long v = strtol(argv[++i], &end, 10);
            if (*end || v < 1 || v > 86400) {
                fprintf(stderr, "wsml-cudatest: --timeout '%s': expected seconds in 1..86400\n",
                        argv[i]);
                return 2;
            }
            cap = (int)v;
        } else if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage();
            return 0;
        } else if (argv[i][0] == '-') {
            fprintf(stderr, "wsml-cudatest: unknown option '%s'\n", argv[i]);
            return usage();
        } else {
            filter = argv[i];
        }
    }
    int ran = 0, passed = 0, fails = 0, crashes = 0, skipped = 0;
    for (int i = 0; i < num_tests; i++) {
        char full[256];
        snprintf(full, sizeof full, "%s/%s", tests[i].suite, tests[i].name);
        if (fnmatch(filter, full, 0) != 0)
            continue;
        int limit = tests[i].timeout > 0 ? tests[i].timeout : DEFAULT_TIMEOUT;
        if (cap > 0 && cap < limit)
            limit = cap;
        fprintf(stderr, "[RUN ] %s\n", full);
        fflush(NULL);
        double t0 = now();
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            tests[i].fn();
            fflush(NULL);
            _exit(failed ? 1 : 0);
        }
        int timed_out = 0;
        int status = wait_capped(pid, limit, &timed_out);
        double dt = now() - t0;
        if (!timed_out && WIFEXITED(status) && WEXITSTATUS(status) == EXIT_SKIPPED) {
            skipped++;
            fprintf(stderr, "[SKIP] %s (%.1f s)\n", full, dt);
            continue;
        }
        ran++;
        if (timed_out) {
            crashes++;
            fprintf(stderr, "[FAIL] %s: timeout, killed after %d s\n", full, limit);
        } else if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            passed++;
            fprintf(stderr, "[PASS] %s (%.1f s)\n", full, dt);
        } else if (WIFEXITED(status)) {
            fails++;
            fprintf(stderr, "[FAIL] %s (%.1f s)\n", full, dt);
        } else {
            crashes++;
            fprintf(stderr, "[FAIL] %s: crashed (signal %d) after %.1f s\n", full, WTERMSIG(status),
                    dt);
        }
    }
    fprintf(stderr,
            "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: %d "
            "| Skipped: %d\n",
            ran, passed, fails, crashes, skipped);
    return fails || crashes ? 1 : 0;
}
