// Logging and the one progress bar every long-running stage uses.
#ifndef WSML_LOG_H
#define WSML_LOG_H

#include <stdint.h>

// Global quiet switch (--quiet): silences info lines and the progress bar.
void wsml_set_quiet(int quiet);
int wsml_is_quiet(void);

// "PROG: message" on stderr; info is silenced by --quiet, warn never is.
void wsml_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void wsml_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Sets the program name used as prefix (default "wsml").
void wsml_set_prog(const char *prog);
const char *wsml_prog(void);

// Progress bar on stderr with count, rate and ETA. Drawn only when stderr is a
// TTY and not quiet; otherwise every call is a cheap no-op. Thread-safe: any
// thread may call wsml_progress_add; redraws are rate-limited (~10/s).
typedef struct wsml_progress wsml_progress;
// total = 0 means unknown (no ETA). unit names what is counted ("img", "batch").
wsml_progress *wsml_progress_start(const char *label, uint64_t total, const char *unit);
void wsml_progress_add(wsml_progress *p, uint64_t n);
void wsml_progress_set(wsml_progress *p, uint64_t done);
// Sets a short status text shown after the bar (e.g. "loss 0.123").
void wsml_progress_status(wsml_progress *p, const char *status);
// Finishes the line and frees p (NULL is fine).
void wsml_progress_end(wsml_progress *p);

// Monotonic seconds.
double wsml_now(void);

#endif
