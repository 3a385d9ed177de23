// libFuzzer target: .npy reading (common/npy.c) on arbitrary bytes. A file that reads
// must also convert (wsml_npy_as_f64 / wsml_npy_string) and survive a write + re-read
// round trip with identical shape and bytes; anything else must be a clean error.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/npy.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("in.npy", data, size);
    wsml_err err;
    wsml_err_clear(&err);
    wsml_npy a;
    if (wsml_npy_read(path, &a, &err) != 0) {
        if (!err.msg[0] || strchr(err.msg, '\n'))
            abort(); // errors are one non-empty line
        return 0;
    }
    if (a.dtype == WSML_DT_STR) {
        char buf[256];
        for (size_t i = 0; i < a.count && i < 64; i++)
            wsml_npy_string(&a, i, buf, sizeof buf);
    } else {
        double *d = NULL;
        if (wsml_npy_as_f64(&a, &d, &err) == 0)
            free(d);
    }
    // Round trip (small arrays only: keep executions fast).
    if (a.count * a.itemsize <= (1u << 16)) {
        const char *out = fuzz_path("out.npy");
        if (wsml_npy_write(out, a.dtype, a.itemsize, a.ndim, a.shape, a.data, &err) != 0)
            abort();
        wsml_npy b;
        if (wsml_npy_read(out, &b, &err) != 0)
            abort();
        if (b.dtype != a.dtype || b.itemsize != a.itemsize || b.ndim != a.ndim ||
            memcmp(b.shape, a.shape, sizeof(int64_t) * (size_t)a.ndim) != 0 ||
            memcmp(b.data, a.data, a.count * a.itemsize) != 0)
            abort();
        wsml_npy_free(&b);
    }
    wsml_npy_free(&a);
    return 0;
}
