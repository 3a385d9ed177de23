// Command-line helpers shared by the wsml-* programs' option parsing (GNU conventions:
// one error line on stderr, exit status 2 for a usage error).
#ifndef WSML_CLI_H
#define WSML_CLI_H

#include <stdint.h>
#include <stdio.h>

// Prints "PROG: MESSAGE (see --help)" to stderr (PROG as set by wsml_set_prog) and
// returns 2, the exit status of a usage error: `return wsml_usage_error(...)` in main.
int wsml_usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// Strict number parsing of option values: the whole string must be the number (no
// trailing text, no empty string). 0 on success, -1 (and *out untouched) otherwise.
// A decimal integer in [lo, hi] (one that overflows int64 is out of range):
int wsml_parse_int(const char *s, int lo, int hi, int *out);
int wsml_parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *out);
// A number in strtod's syntax within [lo, hi]: NaN is refused, and so are the
// infinities unless lo = -HUGE_VAL / hi = HUGE_VAL (e.g. a checkpoint's -inf):
int wsml_parse_double(const char *s, double lo, double hi, double *out);

// The options every wsml program has, for the `default:` of its getopt switch: 'q'
// (-q/--quiet) silences info lines and returns -1 (parsing goes on); 'h' (-h/--help)
// prints usage(stdout) and returns 0; 'V' (--version) prints the version block
// (wsml_print_version) and returns 0; anything else is an unknown option or a missing
// value, "PROG: CONTEXTunknown option or missing value: 'ARG'" (arg = argv[optind - 1]),
// and returns 2. main returns what is not -1.
int wsml_shared_option(int opt, void (*usage)(FILE *), const char *context, const char *arg);

#endif
