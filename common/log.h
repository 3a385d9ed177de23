// Logging, the run log and the one progress bar every long-running stage uses.
#ifndef WSML_LOG_H
#define WSML_LOG_H

#include <stdint.h>

#include "common/err.h"

// Global quiet switch (--quiet): silences info lines and the progress bar.
void wsml_set_quiet(int quiet);
int wsml_is_quiet(void);

// "PROG: HH:MM:SS [RUN] message" on stderr ("[RUN] " only once wsml_set_run_dir named
// one); info is silenced by --quiet, warn never is. Both also go to the run log, if open,
// --quiet or not.
void wsml_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void wsml_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// Sets the program name used as prefix (default "wsml").
void wsml_set_prog(const char *prog);
const char *wsml_prog(void);

// Names the run shown in every line: the last two components of dir ("runs/table1/voc/an"
// -> "voc/an"), so that lines of concurrent runs (make -j, job arrays) say whose they are.
// NULL clears it.
void wsml_set_run_dir(const char *dir);

// ---- the run log ----------------------------------------------------------------------
// A file that receives every info and warn line, the error that ends the program
// (wsml_err_print) and wsml_log_note lines, each as "YYYY-MM-DD HH:MM:SS [RUN] PROG:
// message", written with one write(2) in append mode, so that a kill never leaves half a
// line and concurrent writers never mix lines. truncate != 0 starts the file afresh.
// Writing errors are ignored (the log never stops a run). Returns 0 or WSML_EIO naming
// path.
int wsml_log_open(const char *path, int truncate, wsml_err *err);
void wsml_log_close(void);
// A line for the run log only (not stderr); a no-op when no log is open.
void wsml_log_note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
// The lines that open a run's log: the command line (shell-quoted), working directory,
// host, pid, CPUs this process may use, Slurm's job ids and CUDA_VISIBLE_DEVICES when set,
// and the version block of --version (common/sysinfo.h).
void wsml_log_header(int argc, char **argv);

// Progress bar on stderr with count, rate and ETA. Drawn only when stderr is a TTY, the
// process is in the terminal's foreground process group (not `cmd &`, not a job that
// lost its terminal) and not quiet; otherwise every call is a cheap no-op. Never goes to
// the run log. Thread-safe: any thread may call wsml_progress_add; redraws are
// rate-limited (~10/s).
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
