// common/log: log line format and --quiet, the progress bar on a real terminal (a pty)
// with concurrent updates, rate limiting and ETA, and silence when stderr is not a TTY.
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <poll.h>
#include <pthread.h>
#include <pty.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/log.h"

Test(log, info_warn_and_quiet, .init = cr_redirect_stderr) {
    wsml_set_prog("wsml-test");
    wsml_info("stage %d of %s", 2, "ingest");
    wsml_warn("skipped %s", "a.jpg");
    wsml_set_quiet(1);
    cr_assert(wsml_is_quiet());
    wsml_info("must not appear");
    wsml_warn("warnings always appear");
    wsml_set_quiet(0);
    cr_assert(!wsml_is_quiet());
    wsml_set_prog(NULL);
    wsml_info("default prefix");
    fflush(stderr);
    cr_assert_stderr_eq_str("wsml-test: stage 2 of ingest\n"
                            "wsml-test: skipped a.jpg\n"
                            "wsml-test: warnings always appear\n"
                            "wsml: default prefix\n");
}

Test(log, progress_is_silent_when_not_a_tty, .init = cr_redirect_stderr) {
    wsml_progress *p = wsml_progress_start("ingest", 100, "img");
    cr_assert(p);
    for (int i = 0; i < 100; i++)
        wsml_progress_add(p, 1);
    wsml_progress_status(p, "loss 0.5");
    wsml_progress_set(p, 100);
    wsml_progress_end(p);
    wsml_progress_add(NULL, 1); // NULL is a valid no-op handle
    wsml_progress_status(NULL, "x");
    wsml_progress_end(NULL);
    fflush(stderr);
    cr_assert_stderr_eq_str("");
}

Test(log, now_is_monotonic_seconds) {
    double a = wsml_now();
    struct timespec ts = {0, 50 * 1000 * 1000};
    nanosleep(&ts, NULL);
    double b = wsml_now();
    cr_assert(b - a >= 0.049 && b - a < 1.0, "slept 50 ms, measured %.3f s", b - a);
}

static wsml_progress *shared_bar;

static void *worker(void *arg) {
    (void)arg;
    for (int i = 0; i < 50; i++) {
        for (int k = 0; k < 1000; k++)
            wsml_progress_add(shared_bar, 1);
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return NULL;
}

// Runs `quiet` / 4 threads x 50000 updates over ~0.5 s with stderr on a pty; returns what
// the terminal received.
static char *run_on_pty(int quiet, int columns, double *seconds) {
    int master, slave;
    struct winsize ws = {.ws_row = 24, .ws_col = (unsigned short)columns};
    cr_assert_eq(openpty(&master, &slave, NULL, NULL, &ws), 0);
    double t0 = wsml_now();
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        close(master);
        dup2(slave, STDERR_FILENO);
        wsml_set_quiet(quiet);
        shared_bar = wsml_progress_start("train epoch 1", 200000, "img");
        wsml_progress_status(shared_bar, "loss 0.123");
        pthread_t th[4];
        for (int i = 0; i < 4; i++)
            pthread_create(&th[i], NULL, worker, NULL);
        for (int i = 0; i < 4; i++)
            pthread_join(th[i], NULL);
        wsml_info("an info line between bars");
        wsml_progress_end(shared_bar);
        _exit(0);
    }
    close(slave);
    size_t cap = 1 << 20, n = 0;
    char *out = malloc(cap);
    for (;;) {
        struct pollfd pfd = {master, POLLIN, 0};
        if (poll(&pfd, 1, 5000) <= 0)
            break;
        ssize_t got = read(master, out + n, cap - n - 1);
        if (got <= 0)
            break; // EIO once the child has exited and closed the pty
        n += (size_t)got;
    }
    int st;
    waitpid(pid, &st, 0);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0);
    close(master);
    out[n] = '\0';
    *seconds = wsml_now() - t0;
    return out;
}

Test(log, progress_bar_on_a_terminal) {
    double secs;
    char *out = run_on_pty(0, 100, &secs);
    int redraws = 0;
    for (char *p = out; (p = strchr(p, '\r')); p++)
        if (p[1] != '\n')
            redraws++; // the pty turns "\n" into "\r\n"
    cr_assert_geq(redraws, 2, "the bar must be drawn: %s", out);
    // ~10 redraws per second at most, plus the final one and the info line's clear
    cr_assert_leq(redraws, (int)(secs * 10) + 4, "%d redraws in %.2f s", redraws, secs);
    cr_assert(strstr(out, "train epoch 1 ["), "%s", out);
    cr_assert(strstr(out, "ETA "), "an ETA while running: %s", out);
    cr_assert(strstr(out, "img/s"), "%s", out);
    cr_assert(strstr(out, "loss 0.123"), "%s", out);
    cr_assert(strstr(out, "wsml: an info line between bars"), "%s", out);
    char *final = strstr(out, "100% 200000/200000 ");
    cr_assert(final, "the final count is exact: %s", out);
    cr_assert(!strstr(final, "ETA"), "no ETA once finished: %s", final);
    size_t len = strlen(out);
    cr_assert(len >= 2 && out[len - 1] == '\n', "the last line ends with a newline");
    // no drawn line is wider than the terminal
    for (char *p = out; *p;) {
        size_t w = strcspn(p, "\r\n\033");
        cr_assert_lt(w, 100, "line of %zu columns: %.*s", w, (int)w, p);
        p += w;
        if (*p == '\033')
            p += 3; // ESC [ K
        else if (*p)
            p++;
    }
    free(out);
}

Test(log, progress_bar_fits_a_narrow_terminal) {
    double secs;
    char *out = run_on_pty(0, 50, &secs);
    for (char *p = out; *p;) {
        size_t w = strcspn(p, "\r\n\033");
        cr_assert_lt(w, 50, "line of %zu columns: %.*s", w, (int)w, p);
        p += w;
        if (*p == '\033')
            p += 3;
        else if (*p)
            p++;
    }
    free(out);
}

Test(log, progress_bar_quiet_on_a_terminal) {
    double secs;
    char *out = run_on_pty(1, 100, &secs);
    cr_assert_str_eq(out, "", "--quiet silences the bar and info lines");
    free(out);
}
