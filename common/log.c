// Log lines, the run log and the progress bar. All output goes to stderr under one mutex,
// so that an info line printed while a bar is on screen first clears the bar's line (the
// bar is redrawn on its next update) instead of being glued to it.
#define _GNU_SOURCE
#include "common/log.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

#include "common/sysinfo.h"

static _Atomic int g_quiet;
static const char *_Atomic g_prog = "wsml";
static pthread_mutex_t g_out = PTHREAD_MUTEX_INITIALIZER; // serialises stderr and the run log
static int g_bar_on_screen; // a bar line is drawn, no newline yet (under g_out)
static char g_run[256];     // "[RUN] " or "" (under g_out)
static int g_log_fd = -1;   // the run log (under g_out)

void wsml_set_quiet(int quiet) {
    g_quiet = quiet ? 1 : 0;
}
int wsml_is_quiet(void) {
    return g_quiet;
}
void wsml_set_prog(const char *prog) {
    g_prog = prog ? prog : "wsml";
}
const char *wsml_prog(void) {
    return g_prog;
}

void wsml_set_run_dir(const char *dir) {
    char name[256] = "";
    if (dir) {
        // the last two components, trailing slashes and "." components left out
        char copy[4096];
        snprintf(copy, sizeof copy, "%s", dir);
        const char *part[2] = {NULL, NULL};
        for (char *save = NULL, *tok = strtok_r(copy, "/", &save); tok;
             tok = strtok_r(NULL, "/", &save))
            if (strcmp(tok, ".")) {
                part[0] = part[1];
                part[1] = tok;
            }
        if (part[1])
            snprintf(name, sizeof name, "[%.120s%s%.120s] ", part[0] ? part[0] : "",
                     part[0] ? "/" : "", part[1]);
    }
    pthread_mutex_lock(&g_out);
    snprintf(g_run, sizeof g_run, "%s", name);
    pthread_mutex_unlock(&g_out);
}

// Local wall-clock time as strftime(fmt).
static void wall_time(const char *fmt, char *buf, size_t cap) {
    time_t now = time(NULL);
    struct tm tm;
    if (!localtime_r(&now, &tm) || !strftime(buf, cap, fmt, &tm))
        snprintf(buf, cap, "?");
}

// "YYYY-MM-DD HH:MM:SS [RUN] PROG: LINE\n" to the run log, one write (g_out held).
static void log_write_locked(const char *line) {
    if (g_log_fd < 0)
        return;
    char when[32], buf[4096];
    wall_time("%Y-%m-%d %H:%M:%S", when, sizeof when);
    int n = snprintf(buf, sizeof buf, "%s %s%s: %s\n", when, g_run, g_prog, line);
    if (n >= (int)sizeof buf) {
        n = (int)sizeof buf - 1;
        buf[n - 1] = '\n';
    }
    if (n > 0 && write(g_log_fd, buf, (size_t)n) < 0) {
        // ignored: a full disk is reported by the run's real outputs
    }
}

static void vlog(const char *fmt, va_list ap, int to_stderr) {
    char line[2048], when[16];
    vsnprintf(line, sizeof line, fmt, ap);
    wall_time("%H:%M:%S", when, sizeof when);
    pthread_mutex_lock(&g_out);
    if (to_stderr) {
        if (g_bar_on_screen) {
            fputs("\r\033[K", stderr);
            g_bar_on_screen = 0;
        }
        fprintf(stderr, "%s: %s %s%s\n", g_prog, when, g_run, line);
        fflush(stderr);
    }
    log_write_locked(line);
    pthread_mutex_unlock(&g_out);
}

void wsml_info(const char *fmt, ...) {
    if (g_quiet && g_log_fd < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap, !g_quiet);
    va_end(ap);
}

void wsml_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap, 1);
    va_end(ap);
}

void wsml_log_note(const char *fmt, ...) {
    if (g_log_fd < 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap, 0);
    va_end(ap);
}

int wsml_log_open(const char *path, int truncate, wsml_err *err) {
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC | (truncate ? O_TRUNC : 0), 0644);
    if (fd < 0)
        return wsml_errf(err, WSML_EIO, "%s: cannot open the run log: %s", path, strerror(errno));
    pthread_mutex_lock(&g_out);
    if (g_log_fd >= 0)
        close(g_log_fd);
    g_log_fd = fd;
    pthread_mutex_unlock(&g_out);
    return 0;
}

void wsml_log_close(void) {
    pthread_mutex_lock(&g_out);
    if (g_log_fd >= 0)
        close(g_log_fd);
    g_log_fd = -1;
    pthread_mutex_unlock(&g_out);
}

// Appends s to buf (at *len), single-quoted for a POSIX shell when it needs quoting.
static void append_quoted(char *buf, size_t cap, size_t *len, const char *s) {
    int plain = *s != '\0';
    for (const char *c = s; *c; c++)
        if (!strchr("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_=./:,+@%", *c))
            plain = 0;
    size_t n = *len;
    if (n + 1 < cap && n)
        buf[n++] = ' ';
    if (!plain && n + 1 < cap)
        buf[n++] = '\'';
    for (const char *c = s; *c && n + 5 < cap; c++) {
        if (*c == '\'' && !plain) {
            memcpy(buf + n, "'\\''", 4); // close, escaped quote, reopen
            n += 4;
        } else {
            buf[n++] = *c;
        }
    }
    if (!plain && n + 1 < cap)
        buf[n++] = '\'';
    buf[n < cap ? n : cap - 1] = '\0';
    *len = n < cap ? n : cap - 1;
}

void wsml_log_header(int argc, char **argv) {
    if (g_log_fd < 0)
        return;
    char cmd[8192] = "", cwd[4096], host[256] = "?", when[64];
    size_t len = 0;
    for (int i = 0; i < argc; i++)
        append_quoted(cmd, sizeof cmd, &len, argv[i]);
    if (!getcwd(cwd, sizeof cwd))
        snprintf(cwd, sizeof cwd, "?");
    gethostname(host, sizeof host - 1);
    wall_time("%z %Z", when, sizeof when);
    wsml_log_note("start (time zone %s): %s", when, cmd);
    wsml_log_note("cwd %s, host %s, pid %ld, CPUs: %d usable (affinity) of %ld online", cwd, host,
                  (long)getpid(), wsml_cpu_count(), sysconf(_SC_NPROCESSORS_ONLN));
    const char *env[] = {"SLURM_JOB_ID",     "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID",
                         "SLURM_STEP_ID",    "SLURM_NODELIST",     "CUDA_VISIBLE_DEVICES",
                         "OPENBLAS_CORETYPE"};
    for (size_t i = 0; i < sizeof env / sizeof *env; i++) {
        const char *v = getenv(env[i]);
        if (v)
            wsml_log_note("%s=%s", env[i], v);
    }
    // the --version block, a line each
    char *text = NULL;
    size_t size = 0;
    FILE *mem = open_memstream(&text, &size);
    if (!mem)
        return;
    wsml_print_version(mem);
    fclose(mem);
    for (char *save = NULL, *l = strtok_r(text, "\n", &save); l; l = strtok_r(NULL, "\n", &save))
        wsml_log_note("version: %s", l);
    free(text);
}

double wsml_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int64_t now_ns(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

#define REDRAW_NS 100000000 // at most ~10 redraws per second

struct wsml_progress {
    char label[64], unit[16], status[96];
    uint64_t total;
    _Atomic uint64_t done;
    int64_t start_ns;
    _Atomic int64_t last_draw_ns; // 0: never drawn
    int active;                   // drawing enabled (stderr is a TTY and not quiet)
    int width;                    // terminal columns
    int bar_width;                // columns of the [####----] bar
    pthread_mutex_t lock;         // guards status and drawing
};

static void fmt_time(double s, char *buf, size_t cap) {
    if (!(s >= 0) || s > 1e7) {
        snprintf(buf, cap, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600)
        snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else
        snprintf(buf, cap, "%02ld:%02ld", t / 60, t % 60);
}

// Human-readable count rate: 12.3, 1.2k, 3.4M.
static void fmt_rate(double r, char *buf, size_t cap) {
    if (r >= 1e6)
        snprintf(buf, cap, "%.1fM", r / 1e6);
    else if (r >= 1e4)
        snprintf(buf, cap, "%.1fk", r / 1e3);
    else
        snprintf(buf, cap, "%.1f", r);
}

// Draws the bar line (p->lock held). final: full elapsed time, no ETA, newline.
static void draw(wsml_progress *p, int final) {
    int64_t now = now_ns();
    double el = (double)(now - p->start_ns) * 1e-9;
    uint64_t done = atomic_load(&p->done);
    double rate = el > 0 ? (double)done / el : 0;
    char line[512], elapsed[32], eta[48] = "", r[32];
    fmt_time(el, elapsed, sizeof elapsed);
    fmt_rate(rate, r, sizeof r);
    int n;
    if (p->total) {
        double frac = (double)done / (double)p->total;
        if (frac > 1)
            frac = 1;
        if (!final) {
            char t[16];
            if (rate > 0)
                fmt_time((double)(p->total - (done < p->total ? done : p->total)) / rate, t,
                         sizeof t);
            else
                snprintf(t, sizeof t, "--:--");
            snprintf(eta, sizeof eta, " ETA %s", t);
        }
        // "label [####------]  56% 112001/200000 345.7k img/s 00:01 ETA 00:02 status":
        // the bar's width is fixed at start from the terminal width (5..30 columns), so
        // that it does not jitter; a long status is cut at the terminal's edge.
        char rest[320];
        snprintf(rest, sizeof rest, " %3d%% %llu/%llu %s %s/s %s%s %s", (int)(frac * 100),
                 (unsigned long long)done, (unsigned long long)p->total, r, p->unit, elapsed, eta,
                 p->status);
        int bw = p->bar_width;
        char bar[31];
        int fill = (int)(frac * bw);
        for (int i = 0; i < bw; i++)
            bar[i] = i < fill ? '#' : '-';
        bar[bw] = '\0';
        n = snprintf(line, sizeof line, "%s [%s]%s", p->label, bar, rest);
    } else {
        n = snprintf(line, sizeof line, "%s %llu %s %s %s/s %s %s", p->label,
                     (unsigned long long)done, p->unit, r, p->unit, elapsed, p->status);
    }
    // Never wrap: a wrapped line breaks the carriage-return redraw.
    if (n >= p->width)
        n = p->width - 1;
    if (n >= (int)sizeof line)
        n = (int)sizeof line - 1;
    while (n > 0 && line[n - 1] == ' ')
        n--;
    line[n < 0 ? 0 : n] = '\0';
    pthread_mutex_lock(&g_out);
    fprintf(stderr, "\r%s\033[K%s", line, final ? "\n" : "");
    fflush(stderr);
    g_bar_on_screen = !final;
    pthread_mutex_unlock(&g_out);
    atomic_store(&p->last_draw_ns, now);
}

wsml_progress *wsml_progress_start(const char *label, uint64_t total, const char *unit) {
    wsml_progress *p = calloc(1, sizeof *p);
    if (!p)
        return NULL;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    snprintf(p->unit, sizeof p->unit, "%s", unit ? unit : "it");
    p->total = total;
    p->start_ns = now_ns();
    // A background job (`cmd &`, a job control stop/continue) still has the terminal as
    // stderr but is not in its foreground group: drawing there would garble the shell.
    p->active = !g_quiet && isatty(STDERR_FILENO) && tcgetpgrp(STDERR_FILENO) == getpgrp();
    struct winsize ws;
    p->width = ioctl(STDERR_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col >= 20 ? ws.ws_col : 80;
    // Room left by the rest of a typical line: " 100% N/N 123.4k unit/s 00:00 ETA 00:00 " + a short
    // status.
    int digits = snprintf(NULL, 0, "%llu", (unsigned long long)total);
    p->bar_width = p->width - (int)strlen(p->label) - 2 * digits - 2 * (int)strlen(p->unit) - 44;
    p->bar_width = p->bar_width < 5 ? 5 : p->bar_width > 30 ? 30 : p->bar_width;
    pthread_mutex_init(&p->lock, NULL);
    return p;
}

static void maybe_draw(wsml_progress *p) {
    if (!p->active)
        return;
    int64_t now = now_ns(), last = atomic_load(&p->last_draw_ns);
    if (last && now - last < REDRAW_NS)
        return; // the common case: one clock read, no lock
    if (pthread_mutex_trylock(&p->lock) != 0)
        return; // another thread is drawing
    last = atomic_load(&p->last_draw_ns);
    if (!last || now - last >= REDRAW_NS)
        draw(p, 0);
    pthread_mutex_unlock(&p->lock);
}

void wsml_progress_add(wsml_progress *p, uint64_t n) {
    if (!p)
        return;
    atomic_fetch_add(&p->done, n);
    maybe_draw(p);
}

void wsml_progress_set(wsml_progress *p, uint64_t done) {
    if (!p)
        return;
    atomic_store(&p->done, done);
    maybe_draw(p);
}

void wsml_progress_status(wsml_progress *p, const char *status) {
    if (!p || !p->active)
        return;
    pthread_mutex_lock(&p->lock);
    snprintf(p->status, sizeof p->status, "%s", status ? status : "");
    pthread_mutex_unlock(&p->lock);
}

void wsml_progress_end(wsml_progress *p) {
    if (!p)
        return;
    if (p->active) {
        pthread_mutex_lock(&p->lock);
        draw(p, 1);
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_destroy(&p->lock);
    free(p);
}
