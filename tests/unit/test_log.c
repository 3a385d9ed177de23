// common/log: log line format (time, run name) and --quiet, the run log file, the
// progress bar on a real terminal (a pty that is the process' controlling terminal) with
// concurrent updates, rate limiting and ETA, and silence when stderr is not a TTY or the
// process is a background job.
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <poll.h>
#include <pthread.h>
#include <pty.h>
#include <regex.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/log.h"
#include "common/sysinfo.h"
#include "tests/unit/common_testutil.h"

// Reads a whole stream (a redirected stderr) into a malloc'd string.
static char *slurp(FILE *f) {
    size_t cap = 1 << 16, n = 0, got;
    char *out = malloc(cap);
    while ((got = fread(out + n, 1, cap - n - 1, f)) > 0)
        n += got;
    out[n] = '\0';
    return out;
}

// Replaces every match of the extended regex `re` in text with "T" (the time stamps, whose
// value the test checks separately), in place.
static void mask(char *text, const char *re) {
    regex_t rx;
    cr_assert_eq(regcomp(&rx, re, REG_EXTENDED | REG_NEWLINE), 0, "%s", re);
    regmatch_t m;
    char *p = text;
    while (regexec(&rx, p, 1, &m, 0) == 0) {
        p[m.rm_so] = 'T';
        memmove(p + m.rm_so + 1, p + m.rm_eo, strlen(p + m.rm_eo) + 1);
        p += m.rm_so + 1;
    }
    regfree(&rx);
}

// The local time now as strftime(fmt) (for checking a stamp against the clock).
static void now_as(const char *fmt, char *buf, size_t cap) {
    time_t t = time(NULL);
    struct tm tm;
    localtime_r(&t, &tm);
    strftime(buf, cap, fmt, &tm);
}

Test(log, info_warn_and_quiet, .init = cr_redirect_stderr) {
    char before[16], after[16];
    now_as("%H:%M:%S", before, sizeof before);
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
    wsml_set_run_dir("runs/table1/voc/an-lr1e-5/");
    wsml_info("with the run");
    wsml_set_run_dir(NULL);
    wsml_info("no run again");
    fflush(stderr);
    now_as("%H:%M:%S", after, sizeof after);
    char *out = slurp(cr_get_redirected_stderr());
    // each line's time is the wall clock when it was printed
    regex_t rx;
    cr_assert_eq(
        regcomp(&rx, "^[a-z-]+: ([0-9]{2}:[0-9]{2}:[0-9]{2}) ", REG_EXTENDED | REG_NEWLINE), 0);
    regmatch_t m[2];
    int lines = 0;
    for (const char *p = out; regexec(&rx, p, 2, m, 0) == 0; p += m[0].rm_eo, lines++) {
        char t[16];
        snprintf(t, sizeof t, "%.*s", (int)(m[1].rm_eo - m[1].rm_so), p + m[1].rm_so);
        cr_assert(strcmp(t, before) >= 0 && strcmp(t, after) <= 0, "%s not in [%s, %s]", t, before,
                  after);
    }
    regfree(&rx);
    cr_assert_eq(lines, 6, "every line has a time: %s", out);
    mask(out, "[0-9]{2}:[0-9]{2}:[0-9]{2}");
    cr_assert_str_eq(out, "wsml-test: T stage 2 of ingest\n"
                          "wsml-test: T skipped a.jpg\n"
                          "wsml-test: T warnings always appear\n"
                          "wsml: T default prefix\n"
                          "wsml: T [voc/an-lr1e-5] with the run\n"
                          "wsml: T no run again\n");
    free(out);
}

Test(log, run_name_is_the_last_two_components, .init = cr_redirect_stderr) {
    const char *dirs[] = {"a", "/abs/runs/x/", "./x/./y//", "/", "."};
    for (int i = 0; i < 5; i++) {
        wsml_set_run_dir(dirs[i]);
        wsml_warn("w");
    }
    fflush(stderr);
    char *out = slurp(cr_get_redirected_stderr());
    mask(out, "[0-9]{2}:[0-9]{2}:[0-9]{2}");
    cr_assert_str_eq(out, "wsml: T [a] w\nwsml: T [runs/x] w\nwsml: T [x/y] w\nwsml: T w\n"
                          "wsml: T w\n");
    free(out);
}

// The run log: info (also under --quiet), warn, notes (file only) and the final error,
// each line "YYYY-MM-DD HH:MM:SS [RUN] PROG: message"; append or truncate; the header's
// shell-quoted command line and version block.
Test(log, run_log_file, .init = cr_redirect_stderr) {
    char dir[128], path[256], day[32];
    ct_tmpdir(dir, sizeof dir, "runlog");
    snprintf(path, sizeof path, "%s/train.log", dir);
    ct_write_bytes(path, "an older invocation\n", 20);
    wsml_err err;
    wsml_set_prog("wsml-train");
    now_as("%Y-%m-%d", day, sizeof day);
    cr_assert_eq(wsml_log_open(path, 0, &err), 0, "%s", err.msg);
    wsml_set_run_dir("runs/voc/ll-r");
    char *argv[] = {"wsml-train", "--out", "a b", "it's", "--lr=1e-5", ""};
    wsml_log_header(6, argv);
    wsml_set_quiet(1);
    wsml_info("epoch %d", 1);
    wsml_set_quiet(0);
    wsml_warn("careful");
    wsml_log_note("note only");
    wsml_errf(&err, WSML_EIO, "x.safetensors: disk full");
    wsml_err_print("wsml-train", &err);
    wsml_log_close();
    wsml_info("after close");
    fflush(stderr);
    char *out = slurp(cr_get_redirected_stderr());
    cr_assert(!strstr(out, "epoch 1"), "--quiet keeps info off stderr: %s", out);
    cr_assert(!strstr(out, "note only"), "notes are for the file: %s", out);
    cr_assert(strstr(out, "careful") && strstr(out, "wsml-train: error: x.safetensors: disk full"));
    free(out);

    char *text = NULL;
    size_t len = 0;
    cr_assert_eq(wsml_read_file(path, &text, &len, &err), 0, "%s", err.msg);
    cr_assert(!strncmp(text, "an older invocation\n", 20), "appended, not truncated");
    char *body = text + 20;
    // every line: the date of today, a time, the run, the program
    regex_t rx;
    cr_assert_eq(regcomp(&rx,
                         "^([0-9]{4}-[0-9]{2}-[0-9]{2}) [0-9]{2}:[0-9]{2}:[0-9]{2} "
                         "\\[voc/ll-r\\] wsml-train: [^\n]+$",
                         REG_EXTENDED | REG_NEWLINE),
                 0);
    regmatch_t m[2];
    int lines = 0;
    for (const char *p = body; *p; lines++) {
        cr_assert_eq(regexec(&rx, p, 2, m, 0), 0, "line %d: %s", lines + 1, p);
        cr_assert_eq(m[0].rm_so, 0, "line %d: %s", lines + 1, p);
        cr_assert(!strncmp(p + m[1].rm_so, day, 10), "today is %s: %s", day, p);
        p += m[0].rm_eo + (p[m[0].rm_eo] == '\n');
    }
    regfree(&rx);
    cr_assert(strstr(body, "wsml-train: start (time zone "), "%s", body);
    cr_assert(strstr(body, "): wsml-train --out 'a b' 'it'\\''s' --lr=1e-5 ''\n"),
              "the command line, quoted for a shell: %s", body);
    char ver[128];
    snprintf(ver, sizeof ver, "version: wsml-train %s (git %s)\n", WSML_VERSION, wsml_git_commit());
    cr_assert(strstr(body, ver), "%s in %s", ver, body);
    cr_assert(strstr(body, "version: OpenBLAS "), "%s", body);
    cr_assert(strstr(body, "version: CUDA backend"), "%s", body);
    char cpus[64];
    snprintf(cpus, sizeof cpus, "CPUs: %d usable (affinity)", wsml_cpu_count());
    cr_assert(strstr(body, cpus), "%s", body);
    cr_assert(strstr(body, "] wsml-train: epoch 1\n"), "info under --quiet: %s", body);
    cr_assert(strstr(body, "] wsml-train: careful\n"), "%s", body);
    cr_assert(strstr(body, "] wsml-train: note only\n"), "%s", body);
    cr_assert(strstr(body, "] wsml-train: error: x.safetensors: disk full\n"), "%s", body);
    cr_assert(!strstr(body, "after close"), "%s", body);
    free(text);

    // truncate = 1 starts afresh
    cr_assert_eq(wsml_log_open(path, 1, &err), 0, "%s", err.msg);
    wsml_log_note("fresh");
    wsml_log_close();
    cr_assert_eq(wsml_read_file(path, &text, &len, &err), 0, "%s", err.msg);
    cr_assert(strstr(text, "fresh") && !strstr(text, "older") && !strstr(text, "careful"), "%s",
              text);
    free(text);
    ct_rmdir(dir);
}

Test(log, run_log_open_error_names_the_file) {
    wsml_err err;
    cr_assert_eq(wsml_log_open("/nonexistent-dir/train.log", 0, &err), WSML_EIO);
    cr_assert(strstr(err.msg, "/nonexistent-dir/train.log") && strstr(err.msg, "No such file"),
              "%s", err.msg);
    wsml_log_note("no log open: a no-op");
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

// The body of run_on_pty: 4 threads x 50000 updates over ~0.5 s, an info line, the end.
static void bar_body(int quiet) {
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
}

// Runs bar_body with stderr on a pty that is the controlling terminal of a new session (as
// a shell's terminal is); background = 1 runs it in a second process group of that
// session, as `cmd &` does. Returns what the terminal received.
static char *run_on_pty(int quiet, int columns, double *seconds, int background) {
    int master, slave;
    struct winsize ws = {.ws_row = 24, .ws_col = (unsigned short)columns};
    cr_assert_eq(openpty(&master, &slave, NULL, NULL, &ws), 0);
    double t0 = wsml_now();
    pid_t pid = fork();
    cr_assert(pid >= 0);
    if (pid == 0) {
        close(master);
        if (setsid() < 0 || ioctl(slave, TIOCSCTTY, 0) != 0)
            _exit(3);
        dup2(slave, STDERR_FILENO);
        if (!background) {
            bar_body(quiet);
            _exit(0);
        }
        pid_t job = fork();
        if (job == 0) {
            setpgid(0, 0); // its own group, not the terminal's foreground one
            bar_body(quiet);
            _exit(0);
        }
        int st;
        waitpid(job, &st, 0);
        _exit(WIFEXITED(st) ? WEXITSTATUS(st) : 4);
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

// The widest line drawn (between \r, \n and ESC [ K), asserted narrower than columns.
static size_t widest_line(const char *out, size_t columns) {
    size_t widest = 0;
    for (const char *p = out; *p;) {
        size_t w = strcspn(p, "\r\n\033");
        cr_assert_lt(w, columns, "line of %zu columns: %.*s", w, (int)w, p);
        if (w > widest)
            widest = w;
        p += w;
        if (*p == '\033')
            p += 3;
        else if (*p)
            p++;
    }
    return widest;
}

Test(log, progress_bar_on_a_terminal) {
    double secs;
    char *out = run_on_pty(0, 100, &secs, 0);
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
    cr_assert(strstr(out, " an info line between bars"), "%s", out);
    char *final = strstr(out, "100% 200000/200000 ");
    cr_assert(final, "the final count is exact: %s", out);
    cr_assert(!strstr(final, "ETA"), "no ETA once finished: %s", final);
    size_t len = strlen(out);
    cr_assert(len >= 2 && out[len - 1] == '\n', "the last line ends with a newline");
    widest_line(out, 100); // no drawn line is wider than the terminal
    free(out);
}

// 50 columns: the bar is drawn (label, bar, exact final count, the info line) and cut at
// the edge: its full line (rate, times, status) is wider, so the widest line drawn is
// exactly 49 columns, never more.
Test(log, progress_bar_fits_a_narrow_terminal) {
    double secs;
    char *out = run_on_pty(0, 50, &secs, 0);
    int redraws = 0;
    for (char *p = out; (p = strchr(p, '\r')); p++)
        if (p[1] != '\n')
            redraws++;
    cr_assert_geq(redraws, 2, "the bar must be drawn: %s", out);
    cr_assert(strstr(out, "train epoch 1 ["), "%s", out);
    cr_assert(strstr(out, "100% 200000/200000"), "the final count is shown: %s", out);
    cr_assert(strstr(out, " an info line between bars"), "%s", out);
    size_t widest = widest_line(out, 50);
    cr_assert_eq(widest, 49, "the bar is cut at the terminal's edge, widest line %zu: %s", widest,
                 out);
    free(out);
}

Test(log, progress_bar_quiet_on_a_terminal) {
    double secs;
    char *out = run_on_pty(1, 100, &secs, 0);
    cr_assert_str_eq(out, "", "--quiet silences the bar and info lines");
    free(out);
}

Test(log, progress_bar_not_for_a_background_job) {
    double secs;
    char *out = run_on_pty(0, 100, &secs, 1);
    cr_assert(strstr(out, " an info line between bars"), "info lines still appear: %s", out);
    cr_assert(!strstr(out, "train epoch 1"), "no bar for a background job: %s", out);
    cr_assert(!strchr(out, '\033'), "no terminal control sequences: %s", out);
    free(out);
}
