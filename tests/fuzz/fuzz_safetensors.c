// libFuzzer target: safetensors reading (common/safetensors.c) on arbitrary bytes. A file
// that reads must have every tensor inside the file buffer (converted to float32 where
// its dtype allows, which touches every byte), its metadata readable, and must survive a
// write + re-read round trip; anything else must be a clean one-line error.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/safetensors.h"
#include "tests/fuzz/fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const char *path = fuzz_write("in.safetensors", data, size);
    wsml_err err;
    wsml_err_clear(&err);
    wsml_safetensors st;
    if (wsml_st_read(path, &st, &err) != 0) {
        if (!err.msg[0] || strchr(err.msg, '\n'))
            abort();
        return 0;
    }
    const char *base = st.file_buf, *end = base + st.file_len;
    size_t total = 0;
    for (size_t i = 0; i < st.n; i++) {
        const wsml_tensor_view *t = &st.tensors[i];
        if ((const char *)t->data < base || (const char *)t->data + t->nbytes > end)
            abort();
        if (wsml_st_find(&st, t->name) == NULL)
            abort();
        total += t->nbytes;
        if (t->count <= (1u << 16)) {
            float *dst = malloc((t->count ? t->count : 1) * sizeof *dst);
            if (!dst)
                abort();
            wsml_st_get_f32(&st, t->name, t->ndim, t->shape, dst, &err);
            free(dst);
        }
    }
    char buf[64];
    wsml_st_meta(&st, "format", buf, sizeof buf);
    if (total <= (1u << 16)) {
        const char *out = fuzz_path("out.safetensors");
        if (wsml_st_write(out, st.tensors, st.n, st.metadata_json, &err) != 0)
            abort();
        wsml_safetensors b;
        if (wsml_st_read(out, &b, &err) != 0)
            abort();
        if (b.n != st.n)
            abort();
        for (size_t i = 0; i < st.n; i++) {
            const wsml_tensor_view *t = &st.tensors[i], *u = wsml_st_find(&b, t->name);
            if (!u || u->dtype != t->dtype || u->ndim != t->ndim || u->nbytes != t->nbytes ||
                memcmp(u->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim) != 0 ||
                (t->nbytes && memcmp(u->data, t->data, t->nbytes) != 0))
                abort();
        }
        wsml_st_free(&b);
    }
    wsml_st_free(&st);
    return 0;
}
