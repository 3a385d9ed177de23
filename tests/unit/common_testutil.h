// Helpers shared by the common/ unit tests: running the Python oracle ($PYTHON, Debian's
// python3 with numpy/PIL/torch) and scratch directories.
#ifndef WSML_COMMON_TESTUTIL_H
#define WSML_COMMON_TESTUTIL_H

#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/err.h"

static inline const char *ct_python_exe(void) {
    const char *p = getenv("PYTHON");
    return p && *p ? p : "/usr/bin/python3";
}

// Runs `code` with $PYTHON (extra argv: args, may be NULL) and returns its stdout,
// malloc'd and NUL-terminated (*len = bytes, binary safe). Fails the test when Python
// exits non-zero.
static inline char *ct_python(const char *code, const char *args, size_t *len) {
    char path[] = "/tmp/wsml-oracle-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0, "mkstemp");
    cr_assert_eq(write(fd, code, strlen(code)), (ssize_t)strlen(code));
    close(fd);
    char cmd[4096];
    snprintf(cmd, sizeof cmd, "%s %s %s", ct_python_exe(), path, args ? args : "");
    FILE *p = popen(cmd, "r");
    cr_assert(p, "popen %s", cmd);
    size_t cap = 1 << 16, n = 0, got;
    char *out = malloc(cap);
    while ((got = fread(out + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (n + 1 == cap)
            out = realloc(out, cap *= 2);
    }
    out[n] = '\0';
    int st = pclose(p);
    unlink(path);
    cr_assert_eq(st, 0, "the Python oracle failed (status %d) running:\n%s", st, code);
    if (len)
        *len = n;
    return out;
}

// A fresh scratch directory under /tmp (path written to dir, >= 64 bytes).
static inline void ct_tmpdir(char *dir, size_t cap, const char *tag) {
    snprintf(dir, cap, "/tmp/wsml-test-%s-XXXXXX", tag);
    cr_assert(mkdtemp(dir), "mkdtemp");
}

static inline void ct_rmdir(const char *dir) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static inline void ct_write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    cr_assert(f, "cannot write %s", path);
    cr_assert_eq(fwrite(b, 1, n, f), n);
    cr_assert_eq(fclose(f), 0);
}

// One case of a reader's malformed-file table: the header text, how many data bytes
// follow it, and what the error must mention (NULL: any error).
typedef struct {
    const char *header;
    size_t data;
    const char *expect;
} ct_reject_case;

// A reader's rejection of the file at path: rc is a wsml_code (err->code the same), the
// message is one line naming the file and, when substr is not NULL, mentioning substr.
// `what` names the case in a failure.
static inline void ct_expect_rejected(int rc, const wsml_err *err, const char *path,
                                      const char *substr, const char *what) {
    cr_assert_neq(rc, 0, "%s: accepted", what);
    cr_assert_eq(err->code, rc);
    cr_assert(strstr(err->msg, path), "%s: error must name the file: %s", what, err->msg);
    cr_assert(!strchr(err->msg, '\n'), "%s: one line: %s", what, err->msg);
    if (substr)
        cr_assert(strstr(err->msg, substr), "%s: '%s' does not mention '%s'", what, err->msg,
                  substr);
}

#endif
