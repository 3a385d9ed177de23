// Error reporting shared by every wsml library.
//
// Library functions return 0 on success or a negative wsml_code, and fill a
// caller-owned wsml_err with one line naming what failed and where (file, record,
// line, flag). They never print and never exit; main() prints err.msg and exits 1.
#ifndef WSML_ERR_H
#define WSML_ERR_H

#include <stddef.h>

typedef enum {
    WSML_OK = 0,
    WSML_EARG = -1,     // bad argument or flag value
    WSML_EIO = -2,      // open/read/write/fsync failed (errno text in the message)
    WSML_EFORMAT = -3,  // malformed input file (header, JSON, CSV line, ...)
    WSML_ECORRUPT = -4, // CRC mismatch, truncated record, damaged store/checkpoint
    WSML_ENOMEM = -5,   // allocation failed
    WSML_ESTATE = -6,   // incomplete store, wrong version, existing output, ...
    WSML_ENUMERIC = -7, // NaN/Inf loss or other numeric failure
    WSML_EDEVICE = -8,  // CUDA/cuDNN/cuBLAS failure
} wsml_code;

typedef struct {
    int code;       // a wsml_code, WSML_OK when nothing failed
    char msg[1024]; // one line, no trailing newline
} wsml_err;

// Sets err (if not NULL) from a printf-style message; returns code, so that
// `return wsml_errf(err, WSML_EIO, "%s: %s", path, strerror(errno));` reads naturally.
int wsml_errf(wsml_err *err, int code, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

// Prepends "context: " to an existing message (e.g. the file being parsed).
int wsml_err_prefix(wsml_err *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

// Clears err to WSML_OK.
void wsml_err_clear(wsml_err *err);

// Prints "PROG: error: MSG" to stderr (and to the run log, common/log.h, if one is open).
void wsml_err_print(const char *prog, const wsml_err *err);

#endif
