// The runner of bench/shim/criterion/criterion.h: runs every registered test (or those
// whose "suite/name" matches the glob in argv[1]) in a forked child, prints one line per
// test and Criterion's summary line, exits 0 only if nothing failed or crashed.
// Usage: wsml-cudatest ['cuda/*']
#include <fnmatch.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
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

int main(int argc, char **argv) {
    const char *filter = argc > 1 ? argv[1] : "*";
    int ran = 0, passed = 0, fails = 0, crashes = 0, skipped = 0;
    for (int i = 0; i < num_tests; i++) {
        char full[256];
        snprintf(full, sizeof full, "%s/%s", tests[i].suite, tests[i].name);
        if (fnmatch(filter, full, 0) != 0)
            continue;
        fprintf(stderr, "[RUN ] %s\n", full);
        fflush(NULL);
        pid_t pid = fork();
        if (pid < 0) {
            perror("fork");
            return 1;
        }
        if (pid == 0) {
            alarm(tests[i].timeout > 0 ? (unsigned)tests[i].timeout : DEFAULT_TIMEOUT);
            tests[i].fn();
            fflush(NULL);
            _exit(failed ? 1 : 0);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        if (WIFEXITED(status) && WEXITSTATUS(status) == EXIT_SKIPPED) {
            skipped++;
            continue;
        }
        ran++;
        if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
            passed++;
            fprintf(stderr, "[PASS] %s\n", full);
        } else if (WIFEXITED(status)) {
            fails++;
            fprintf(stderr, "[FAIL] %s\n", full);
        } else {
            crashes++;
            fprintf(stderr, "[FAIL] %s: crashed (signal %d%s)\n", full, WTERMSIG(status),
                    WTERMSIG(status) == SIGALRM ? ", timeout" : "");
        }
    }
    fprintf(stderr,
            "[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: %d "
            "| Skipped: %d\n",
            ran, passed, fails, crashes, skipped);
    return fails || crashes ? 1 : 0;
}
