#include "common/log.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static int g_quiet;
static const char *g_prog = "wsml";

void wsml_set_quiet(int quiet) { g_quiet = quiet; }
int wsml_is_quiet(void) { return g_quiet; }
void wsml_set_prog(const char *prog) { g_prog = prog ? prog : "wsml"; }

static void vlog(const char *fmt, va_list ap) {
    char line[2048];
    vsnprintf(line, sizeof line, fmt, ap);
    fprintf(stderr, "%s: %s\n", g_prog, line);
}

void wsml_info(const char *fmt, ...) {
    if (g_quiet) return;
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

struct wsml_progress {
    char label[64], unit[16], status[96];
    uint64_t total;
    _Atomic uint64_t done;
    double start, last_draw;
    int active; // drawing enabled (TTY and not quiet)
    pthread_mutex_t lock;
};

static void fmt_time(double s, char *buf, size_t cap) {
    if (s < 0 || s > 1e7) {
        snprintf(buf, cap, "--:--");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, cap, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
    else snprintf(buf, cap, "%02ld:%02ld", t / 60, t % 60);
}

static void draw(wsml_progress *p, int final) {
    double now = wsml_now(), el = now - p->start;
    uint64_t done = atomic_load(&p->done);
    double rate = el > 0 ? (double)done / el : 0;
    char eta[32] = "", elapsed[32];
    fmt_time(el, elapsed, sizeof elapsed);
    char bar[32] = "";
    if (p->total) {
        double frac = (double)done / (double)p->total;
        if (frac > 1) frac = 1;
        int w = 20, fill = (int)(frac * w);
        for (int i = 0; i < w; i++) bar[i] = i < fill ? '#' : '.';
        bar[w] = '\0';
        if (!final && rate > 0) {
            char t[16];
            fmt_time((double)(p->total - (done < p->total ? done : p->total)) / rate, t, sizeof t);
            snprintf(eta, sizeof eta, " ETA %s", t);
        }
        fprintf(stderr, "\r%s [%s] %llu/%llu %s %.1f %s/s %s%s %s\033[K", p->label, bar,
                (unsigned long long)done, (unsigned long long)p->total, "", rate, p->unit,
                elapsed, eta, p->status);
    } else {
        fprintf(stderr, "\r%s %llu %s %.1f %s/s %s %s\033[K", p->label, (unsigned long long)done,
                p->unit, rate, p->unit, elapsed, p->status);
    }
    if (final) fputc('\n', stderr);
    fflush(stderr);
    p->last_draw = now;
}

wsml_progress *wsml_progress_start(const char *label, uint64_t total, const char *unit) {
    wsml_progress *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    snprintf(p->label, sizeof p->label, "%s", label ? label : "");
    snprintf(p->unit, sizeof p->unit, "%s", unit ? unit : "it");
    p->total = total;
    p->start = wsml_now();
    p->active = !g_quiet && isatty(STDERR_FILENO);
    pthread_mutex_init(&p->lock, NULL);
    return p;
}

static void maybe_draw(wsml_progress *p) {
    if (!p->active) return;
    double now = wsml_now();
    if (now - p->last_draw < 0.1) return;
    if (pthread_mutex_trylock(&p->lock) != 0) return;
    if (now - p->last_draw >= 0.1) draw(p, 0);
    pthread_mutex_unlock(&p->lock);
}

void wsml_progress_add(wsml_progress *p, uint64_t n) {
    if (!p) return;
    atomic_fetch_add(&p->done, n);
    maybe_draw(p);
}

void wsml_progress_set(wsml_progress *p, uint64_t done) {
    if (!p) return;
    atomic_store(&p->done, done);
    maybe_draw(p);
}

void wsml_progress_status(wsml_progress *p, const char *status) {
    if (!p || !p->active) return;
    pthread_mutex_lock(&p->lock);
    snprintf(p->status, sizeof p->status, "%s", status ? status : "");
    pthread_mutex_unlock(&p->lock);
}

void wsml_progress_end(wsml_progress *p) {
    if (!p) return;
    if (p->active) {
        pthread_mutex_lock(&p->lock);
        draw(p, 1);
        pthread_mutex_unlock(&p->lock);
    }
    pthread_mutex_destroy(&p->lock);
    free(p);
}
