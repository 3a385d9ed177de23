// Log lines and the progress bar. All output goes to stderr under one mutex, so that an
// info line printed while a bar is on screen first clears the bar's line (the bar is
// redrawn on its next update) instead of being glued to it.
#include "common/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <time.h>
#include <unistd.h>

static _Atomic int g_quiet;
static const char *_Atomic g_prog = "wsml";
static pthread_mutex_t g_out = PTHREAD_MUTEX_INITIALIZER; // serialises stderr output
static int g_bar_on_screen; // a bar line is drawn, no newline yet (under g_out)

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

static void vlog(const char *fmt, va_list ap) {
    char line[2048];
    vsnprintf(line, sizeof line, fmt, ap);
    pthread_mutex_lock(&g_out);
    if (g_bar_on_screen) {
        fputs("\r\033[K", stderr);
        g_bar_on_screen = 0;
    }
    fprintf(stderr, "%s: %s\n", g_prog, line);
    fflush(stderr);
    pthread_mutex_unlock(&g_out);
}

void wsml_info(const char *fmt, ...) {
    if (g_quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
}

void wsml_warn(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vlog(fmt, ap);
    va_end(ap);
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
    p->active = !g_quiet && isatty(STDERR_FILENO);
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
