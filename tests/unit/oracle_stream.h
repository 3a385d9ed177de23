// The array stream of tests/oracles/losses_ref.py (its `emit`): per array an int32 dtype
// code, an int32 element count, then the elements. Shared by test_loss.c and test_optim.c.
#ifndef WSML_ORACLE_STREAM_H
#define WSML_ORACLE_STREAM_H

#include <criterion/criterion.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

enum { DT_I8 = 1, DT_U8 = 2, DT_I32 = 3, DT_I64 = 4, DT_F32 = 5, DT_F64 = 6 };

// Any element count (for read_array's expect).
#define ANY ((size_t)-1)

// Starts `losses_ref.py MODE` ($PYTHON, $WSML_TESTS) with its stdout on a pipe.
static inline FILE *oracle_open(const char *mode) {
    const char *python = getenv("PYTHON");
    const char *tests = getenv("WSML_TESTS");
    char cmd[2048];
    snprintf(cmd, sizeof(cmd), "%s -W ignore %s/oracles/losses_ref.py %s",
             python && *python ? python : "/usr/bin/python3", tests && *tests ? tests : "tests",
             mode);
    FILE *fp = popen(cmd, "r");
    cr_assert(fp, "cannot start %s", cmd);
    return fp;
}

static inline void oracle_close(FILE *fp) {
    int status = pclose(fp);
    cr_assert_eq(status, 0, "the oracle exited with status %d", status);
}

// Reads one array of dtype (malloc'd); its count must equal `expect` unless that is ANY.
static inline void *read_array(FILE *fp, int dtype, size_t expect, size_t *count_out) {
    static const size_t elem[] = {0, 1, 1, 4, 8, 4, 8};
    int32_t header[2];
    cr_assert_eq(fread(header, sizeof(header), 1, fp), 1, "oracle stream ended early");
    cr_assert_eq(header[0], dtype, "oracle stream: dtype %d where %d was expected", header[0],
                 dtype);
    size_t count = (size_t)header[1];
    if (expect != ANY)
        cr_assert_eq(count, expect, "oracle stream: %zu elements where %zu were expected", count,
                     expect);
    void *data = malloc(count * elem[dtype] + 8);
    cr_assert(data);
    if (count)
        cr_assert_eq(fread(data, elem[dtype] * count, 1, fp), 1, "oracle stream truncated");
    if (count_out)
        *count_out = count;
    return data;
}

#endif
