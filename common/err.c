#include "common/err.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "common/log.h"

// Messages are one line whatever they quote: control characters that come from input
// (a JSON parser's "near '...'" text, a file name) become spaces. Found by fuzzing
// (tests/fuzz/regressions/store_meta).
static void one_line(char *s) {
    for (; *s; s++)
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            *s = ' ';
}

int wsml_errf(wsml_err *err, int code, const char *fmt, ...) {
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        one_line(err->msg);
        err->code = code;
    }
    return code;
}

int wsml_err_prefix(wsml_err *err, const char *fmt, ...) {
    if (!err)
        return WSML_OK;
    char prefix[512], old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    if (snprintf(err->msg, sizeof err->msg, "%s: %s", prefix, old) < 0)
        err->msg[0] = 0;
    one_line(err->msg);
    return err->code;
}

void wsml_err_clear(wsml_err *err) {
    if (!err)
        return;
    err->code = WSML_OK;
    err->msg[0] = '\0';
}

void wsml_err_print(const char *prog, const wsml_err *err) {
    const char *msg = err && err->msg[0] ? err->msg : "unknown error";
    fprintf(stderr, "%s: error: %s\n", prog, msg);
    wsml_log_note("error: %s", msg);
}
