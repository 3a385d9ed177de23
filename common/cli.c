// Command-line helpers (common/cli.h).
#include "common/cli.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "common/log.h"
#include "common/sysinfo.h"

int wsml_usage_error(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "%s: ", wsml_prog());
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, " (see --help)\n");
    va_end(ap);
    return 2;
}

int wsml_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out) {
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end || v < lo || v > hi)
        return -1;
    *out = v;
    return 0;
}

int wsml_parse_int(const char *s, int lo, int hi, int *out) {
    int64_t v;
    if (wsml_parse_i64(s, lo, hi, &v))
        return -1;
    *out = (int)v;
    return 0;
}

int wsml_parse_double(const char *s, double lo, double hi, double *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end || isnan(v) || !(v >= lo && v <= hi))
        return -1;
    *out = v;
    return 0;
}

int wsml_shared_option(int opt, void (*usage)(FILE *), const char *context, const char *arg) {
    switch (opt) {
    case 'q':
        wsml_set_quiet(1);
        return -1;
    case 'h':
        usage(stdout);
        return 0;
    case 'V':
        wsml_print_version(stdout);
        return 0;
    default:
        return wsml_usage_error("%sunknown option or missing value: '%s'", context, arg);
    }
}
