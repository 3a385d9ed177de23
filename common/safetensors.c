// safetensors: u64 LE header size N, N bytes of JSON, then the data section. Every
// tensor's [begin, end) is relative to the data section, must lie inside it, match
// prod(shape) * dtype size, and not overlap another tensor.
#include "common/safetensors.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "common/checksum.h"
#include "common/fileio.h"

static const struct {
    const char *name;
    wsml_dtype dt;
} st_types[] = {{"F32", WSML_DT_F32},   {"F64", WSML_DT_F64}, {"F16", WSML_DT_F16},
                {"BF16", WSML_DT_BF16}, {"I8", WSML_DT_I8},   {"U8", WSML_DT_U8},
                {"I32", WSML_DT_I32},   {"I64", WSML_DT_I64}, {"BOOL", WSML_DT_BOOL}};

static int st_dtype_parse(const char *s, wsml_dtype *dt) {
    for (size_t i = 0; i < sizeof st_types / sizeof *st_types; i++)
        if (!strcmp(s, st_types[i].name)) {
            *dt = st_types[i].dt;
            return 0;
        }
    return -1;
}

static const char *st_dtype_name(wsml_dtype dt) {
    for (size_t i = 0; i < sizeof st_types / sizeof *st_types; i++)
        if (st_types[i].dt == dt)
            return st_types[i].name;
    return NULL;
}

// ---- checksum -------------------------------------------------------------------------
// The safetensors format has no checksum, so a flipped bit in a checkpoint's weights
// would load silently. Files wsml writes with metadata (every checkpoint) carry
// "wsml.crc32" in __metadata__: a CRC32 (zlib) over the tensors taken by name (name,
// dtype, shape, bytes) and the other metadata pairs taken by key. It is independent of
// layout and whitespace, so a file re-saved by another tool with the same content still
// checks; files without the key (other tools' files) are validated structurally only.

static int cmp_str_ptr(const void *a, const void *b) {
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}
static int cmp_view_name(const void *a, const void *b) {
    return strcmp((*(const wsml_tensor_view *const *)a)->name,
                  (*(const wsml_tensor_view *const *)b)->name);
}

// The checksum of n tensors and a metadata object (its WSML_ST_CRC_KEY entry skipped).
// Returns 0, or -1 when out of memory.
static int st_checksum(const wsml_tensor_view *tensors, size_t n, json_t *meta, uint32_t *out) {
    const wsml_tensor_view **byname = malloc((n ? n : 1) * sizeof *byname);
    size_t nk = json_is_object(meta) ? json_object_size(meta) : 0;
    const char **keys = malloc((nk ? nk : 1) * sizeof *keys);
    if (!byname || !keys) {
        free(byname);
        free(keys);
        return -1;
    }
    for (size_t i = 0; i < n; i++)
        byname[i] = &tensors[i];
    qsort(byname, n, sizeof *byname, cmp_view_name);
    uint32_t crc = 0;
    for (size_t i = 0; i < n; i++) {
        const wsml_tensor_view *t = byname[i];
        crc = wsml_crc32(crc, t->name, strlen(t->name) + 1);
        const char *dn = st_dtype_name(t->dtype);
        crc = wsml_crc32(crc, dn, strlen(dn) + 1);
        unsigned char dims[8 * (WSML_MAX_DIMS + 1)];
        uint64_t v[WSML_MAX_DIMS + 1];
        v[0] = (uint64_t)t->ndim;
        for (int d = 0; d < t->ndim; d++)
            v[d + 1] = (uint64_t)t->shape[d];
        for (int d = 0; d <= t->ndim; d++)
            for (int k = 0; k < 8; k++)
                dims[8 * d + k] = (unsigned char)(v[d] >> (8 * k));
        crc = wsml_crc32(crc, dims, 8 * ((size_t)t->ndim + 1));
        if (t->nbytes)
            crc = wsml_crc32(crc, t->data, t->nbytes);
    }
    size_t m = 0;
    const char *key;
    json_t *val;
    if (nk)
        json_object_foreach(meta, key, val) if (strcmp(key, WSML_ST_CRC_KEY)) keys[m++] = key;
    qsort(keys, m, sizeof *keys, cmp_str_ptr);
    for (size_t i = 0; i < m; i++) {
        const char *v = json_string_value(json_object_get(meta, keys[i]));
        crc = wsml_crc32(crc, keys[i], strlen(keys[i]) + 1);
        crc = wsml_crc32(crc, v ? v : "", strlen(v ? v : "") + 1);
    }
    free(byname);
    free(keys);
    *out = crc;
    return 0;
}

// Orders tensors by where their bytes begin (empty ones first at equal offsets).
static int cmp_begin(const void *a, const void *b) {
    const wsml_tensor_view *x = a, *y = b;
    const char *xa = x->data, *ya = y->data;
    if (xa != ya)
        return xa < ya ? -1 : 1;
    return x->nbytes < y->nbytes ? -1 : x->nbytes > y->nbytes;
}

void wsml_st_free(wsml_safetensors *st) {
    if (!st)
        return;
    for (size_t i = 0; i < st->n; i++)
        free(st->tensors[i].name);
    free(st->tensors);
    free(st->metadata_json);
    free(st->file_buf);
    memset(st, 0, sizeof *st);
}

int wsml_st_read(const char *path, wsml_safetensors *out, wsml_err *err) {
    memset(out, 0, sizeof *out);
    char *buf;
    size_t len;
    int rc = wsml_read_file(path, &buf, &len, err);
    if (rc)
        return rc;
    out->file_buf = buf;
    out->file_len = len;
    if (len < 8) {
        wsml_st_free(out);
        return wsml_errf(err, WSML_EFORMAT, "%s: truncated safetensors file (%zu bytes)", path,
                         len);
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--)
        hlen = (hlen << 8) | (unsigned char)buf[i];
    if (hlen < 2 || hlen > len - 8 || hlen > (100u << 20)) {
        wsml_st_free(out);
        return wsml_errf(err, WSML_EFORMAT,
                         "%s: safetensors header length %llu does not fit the file (%zu bytes)",
                         path, (unsigned long long)hlen, len);
    }
    json_error_t je;
    json_t *root = json_loadb(buf + 8, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root || !json_is_object(root)) {
        json_decref(root);
        wsml_st_free(out);
        return wsml_errf(err, WSML_EFORMAT,
                         "%s: safetensors header is not a JSON object (%s at offset %d)", path,
                         root ? "not an object" : je.text, root ? 0 : je.position + 8);
    }
    const char *data = buf + 8 + hlen;
    size_t data_len = len - 8 - (size_t)hlen;
    size_t cap = json_object_size(root);
    out->tensors = calloc(cap ? cap : 1, sizeof *out->tensors);
    if (!out->tensors) {
        json_decref(root);
        wsml_st_free(out);
        return wsml_errf(err, WSML_ENOMEM, "%s: out of memory", path);
    }
    const char *key;
    json_t *val, *meta = NULL;
    rc = 0;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            meta = val;
            if (!json_is_object(val)) {
                rc = wsml_errf(err, WSML_EFORMAT, "%s: __metadata__ is not an object", path);
                break;
            }
            const char *mk;
            json_t *mv;
            json_object_foreach(val, mk, mv) if (!json_is_string(mv)) {
                rc = wsml_errf(err, WSML_EFORMAT, "%s: __metadata__ value '%s' is not a string",
                               path, mk);
                break;
            }
            if (rc)
                break;
            out->metadata_json = json_dumps(val, JSON_COMPACT | JSON_SORT_KEYS);
            continue;
        }
        json_t *jd = json_object_get(val, "dtype"), *js = json_object_get(val, "shape"),
               *jo = json_object_get(val, "data_offsets");
        wsml_tensor_view *t = &out->tensors[out->n];
        if (!json_is_object(val) || !json_is_string(jd) || !json_is_array(js) ||
            !json_is_array(jo) || json_array_size(jo) != 2) {
            rc = wsml_errf(err, WSML_EFORMAT,
                           "%s: tensor '%s': needs dtype, shape and data_offsets", path, key);
            break;
        }
        if (st_dtype_parse(json_string_value(jd), &t->dtype) != 0) {
            rc = wsml_errf(err, WSML_EFORMAT, "%s: tensor '%s': unsupported dtype %s", path, key,
                           json_string_value(jd));
            break;
        }
        if (json_array_size(js) > WSML_MAX_DIMS) {
            rc = wsml_errf(err, WSML_EFORMAT, "%s: tensor '%s': too many dimensions", path, key);
            break;
        }
        t->ndim = (int)json_array_size(js);
        t->count = 1;
        for (int d = 0; d < t->ndim; d++) {
            json_t *e = json_array_get(js, (size_t)d);
            if (!json_is_integer(e) || json_integer_value(e) < 0 ||
                json_integer_value(e) > (1LL << 40)) {
                rc = wsml_errf(err, WSML_EFORMAT, "%s: tensor '%s': bad shape", path, key);
                break;
            }
            t->shape[d] = json_integer_value(e);
            if (t->shape[d] && t->count > (SIZE_MAX / 16) / (size_t)t->shape[d]) {
                rc = wsml_errf(err, WSML_EFORMAT, "%s: tensor '%s': shape too large", path, key);
                break;
            }
            t->count *= (size_t)t->shape[d];
        }
        if (rc)
            break;
        json_t *b = json_array_get(jo, 0), *e = json_array_get(jo, 1);
        if (!json_is_integer(b) || !json_is_integer(e) || json_integer_value(b) < 0 ||
            json_integer_value(e) < json_integer_value(b) ||
            (uint64_t)json_integer_value(e) > data_len) {
            rc = wsml_errf(err, WSML_ECORRUPT,
                           "%s: tensor '%s': data_offsets outside the data section (%zu bytes)",
                           path, key, data_len);
            break;
        }
        size_t begin = (size_t)json_integer_value(b), end = (size_t)json_integer_value(e);
        t->nbytes = end - begin;
        if (t->nbytes != t->count * wsml_dtype_size(t->dtype, 0)) {
            rc = wsml_errf(err, WSML_EFORMAT,
                           "%s: tensor '%s': %zu bytes for shape of %zu %s elements", path, key,
                           t->nbytes, t->count, st_dtype_name(t->dtype));
            break;
        }
        t->data = data + begin;
        t->name = strdup(key);
        if (!t->name) {
            rc = wsml_errf(err, WSML_ENOMEM, "%s: out of memory", path);
            break;
        }
        out->n++;
    }
    // A file wsml wrote with metadata carries a checksum of its contents (see above).
    json_t *jcrc = meta ? json_object_get(meta, WSML_ST_CRC_KEY) : NULL;
    if (!rc && jcrc) {
        const char *hex = json_string_value(jcrc);
        uint32_t got;
        char want[16];
        if (st_checksum(out->tensors, out->n, meta, &got) != 0)
            rc = wsml_errf(err, WSML_ENOMEM, "%s: out of memory", path);
        else if (snprintf(want, sizeof want, "%08x", got), !hex || strcmp(hex, want))
            rc = wsml_errf(err, WSML_ECORRUPT,
                           "%s: damaged file: checksum mismatch (stored %.16s, contents give %s)",
                           path, hex ? hex : "(not a string)", want);
    }
    json_decref(root);
    // Like the reference implementation (safetensors' Metadata::validate): the tensors,
    // taken in offset order, tile the data section exactly: no overlap, no gap, and
    // nothing after the last one.
    if (!rc) {
        wsml_tensor_view *sorted = malloc((out->n ? out->n : 1) * sizeof *sorted);
        if (!sorted)
            rc = wsml_errf(err, WSML_ENOMEM, "%s: out of memory", path);
        else {
            memcpy(sorted, out->tensors, out->n * sizeof *sorted);
            qsort(sorted, out->n, sizeof *sorted, cmp_begin);
            const char *expect = data;
            for (size_t i = 0; i < out->n && !rc; i++) {
                const char *b = sorted[i].data;
                if (b < expect)
                    rc = wsml_errf(err, WSML_ECORRUPT, "%s: tensors '%s' and '%s' overlap", path,
                                   sorted[i - 1].name, sorted[i].name);
                else if (b > expect)
                    rc =
                        wsml_errf(err, WSML_ECORRUPT,
                                  "%s: tensor '%s': %zu unused bytes before it in the data section",
                                  path, sorted[i].name, (size_t)(b - expect));
                expect = b + sorted[i].nbytes;
            }
            if (!rc && expect != data + data_len)
                rc = wsml_errf(err, WSML_ECORRUPT,
                               "%s: %zu bytes after the last tensor (truncated or padded file?)",
                               path, (size_t)(data + data_len - expect));
            free(sorted);
        }
    }
    if (rc)
        wsml_st_free(out);
    return rc;
}

const wsml_tensor_view *wsml_st_find(const wsml_safetensors *st, const char *name) {
    for (size_t i = 0; i < st->n; i++)
        if (!strcmp(st->tensors[i].name, name))
            return &st->tensors[i];
    return NULL;
}

static void shape_str(int ndim, const int64_t *shape, char *buf, size_t cap) {
    size_t o = (size_t)snprintf(buf, cap, "[");
    for (int i = 0; i < ndim && o < cap; i++)
        o += (size_t)snprintf(buf + o, cap - o, "%s%lld", i ? "," : "", (long long)shape[i]);
    if (o < cap)
        snprintf(buf + o, cap - o, "]");
}

int wsml_st_get_f32(const wsml_safetensors *st, const char *name, int ndim, const int64_t *shape,
                    float *dst, wsml_err *err) {
    const wsml_tensor_view *t = wsml_st_find(st, name);
    if (!t)
        return wsml_errf(err, WSML_EFORMAT, "tensor '%s' is missing", name);
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++)
        same = t->shape[i] == shape[i];
    if (!same) {
        char a[128], b[128];
        shape_str(t->ndim, t->shape, a, sizeof a);
        shape_str(ndim, shape, b, sizeof b);
        return wsml_errf(err, WSML_EFORMAT, "tensor '%s' has shape %s, expected %s", name, a, b);
    }
    const unsigned char *p = t->data;
    for (size_t i = 0; i < t->count; i++) {
        switch (t->dtype) {
        case WSML_DT_F32:
            memcpy(&dst[i], p + 4 * i, 4);
            break;
        case WSML_DT_F64: {
            double d;
            memcpy(&d, p + 8 * i, 8);
            dst[i] = (float)d;
            break;
        }
        case WSML_DT_F16: {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = wsml_f16_to_f32(h);
            break;
        }
        case WSML_DT_BF16: {
            uint16_t h;
            memcpy(&h, p + 2 * i, 2);
            dst[i] = wsml_bf16_to_f32(h);
            break;
        }
        default:
            return wsml_errf(err, WSML_EFORMAT, "tensor '%s' has dtype %s, expected a float type",
                             name, st_dtype_name(t->dtype));
        }
    }
    return 0;
}

const char *wsml_st_meta(const wsml_safetensors *st, const char *key, char *buf, size_t cap) {
    if (!st->metadata_json || cap == 0)
        return NULL;
    json_t *m = json_loads(st->metadata_json, 0, NULL);
    const char *r = NULL;
    json_t *v = m ? json_object_get(m, key) : NULL;
    if (json_is_string(v)) {
        snprintf(buf, cap, "%s", json_string_value(v));
        r = buf;
    }
    json_decref(m);
    return r;
}

// Layout order of the reference writer (safetensors' prepare): larger dtypes first, then
// by name, so that every tensor starts aligned to its element size.
static int cmp_layout(const void *a, const void *b) {
    const wsml_tensor_view *x = *(const wsml_tensor_view *const *)a,
                           *y = *(const wsml_tensor_view *const *)b;
    size_t sx = wsml_dtype_size(x->dtype, 0), sy = wsml_dtype_size(y->dtype, 0);
    if (sx != sy)
        return sx > sy ? -1 : 1;
    return strcmp(x->name, y->name);
}

int wsml_st_write(const char *path, const wsml_tensor_view *tensors, size_t n,
                  const char *metadata_json, wsml_err *err) {
    json_t *root = json_object();
    const wsml_tensor_view **order = malloc((n ? n : 1) * sizeof *order);
    if (!root || !order) {
        json_decref(root);
        free(order);
        return wsml_errf(err, WSML_ENOMEM, "%s: out of memory", path);
    }
    int rc = 0;
    if (metadata_json) {
        json_error_t je;
        json_t *m = json_loads(metadata_json, JSON_REJECT_DUPLICATES, &je);
        const char *k;
        json_t *v;
        int strings = json_is_object(m);
        if (strings)
            json_object_foreach(m, k, v) strings = strings && json_is_string(v);
        if (!strings) {
            json_decref(m);
            rc = wsml_errf(err, WSML_EARG, "%s: metadata must be a JSON object of strings", path);
        } else {
            json_object_del(m, WSML_ST_CRC_KEY); // recomputed below, over this content
            json_object_set_new(root, "__metadata__", m);
        }
    }
    for (size_t i = 0; i < n && !rc; i++) {
        const wsml_tensor_view *t = &tensors[i];
        order[i] = t;
        const char *dn = st_dtype_name(t->dtype);
        size_t count = 1, size = wsml_dtype_size(t->dtype, 0);
        int ok =
            t->name && dn && t->ndim >= 0 && t->ndim <= WSML_MAX_DIMS && (t->data || !t->nbytes);
        for (int d = 0; ok && d < t->ndim; d++) {
            ok = t->shape[d] >= 0 &&
                 (t->shape[d] == 0 || count <= SIZE_MAX / size / (size_t)t->shape[d]);
            if (ok)
                count *= (size_t)t->shape[d];
        }
        if (!ok || count * size != t->nbytes)
            rc = wsml_errf(err, WSML_EARG, "%s: tensor '%s': bad name, dtype, shape or byte size",
                           path, t->name ? t->name : "(null)");
        else if (!strcmp(t->name, "__metadata__") || json_object_get(root, t->name))
            rc = wsml_errf(err, WSML_EARG, "%s: tensor name '%s' is reserved or repeated", path,
                           t->name);
        else
            json_object_set_new(root, t->name, json_null()); // placeholder: detects repeats
    }
    if (rc) {
        json_decref(root);
        free(order);
        return rc;
    }
    json_t *meta = json_object_get(root, "__metadata__");
    if (meta) {
        uint32_t crc;
        char hex[16];
        if (st_checksum(tensors, n, meta, &crc) != 0) {
            json_decref(root);
            free(order);
            return wsml_errf(err, WSML_ENOMEM, "%s: out of memory", path);
        }
        snprintf(hex, sizeof hex, "%08x", crc);
        json_object_set_new(meta, WSML_ST_CRC_KEY, json_string(hex));
    }
    qsort(order, n, sizeof *order, cmp_layout);
    size_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const wsml_tensor_view *t = order[i];
        json_t *shape = json_array();
        for (int d = 0; d < t->ndim; d++)
            json_array_append_new(shape, json_integer(t->shape[d]));
        json_t *e =
            json_pack("{s:s, s:o, s:[I,I]}", "dtype", st_dtype_name(t->dtype), "shape", shape,
                      "data_offsets", (json_int_t)off, (json_int_t)(off + t->nbytes));
        json_object_set_new(root, t->name, e);
        off += t->nbytes;
    }
    char *hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    json_decref(root);
    if (!hdr) {
        free(order);
        return wsml_errf(err, WSML_ENOMEM, "%s: cannot serialise header", path);
    }
    // The header is padded with spaces to a multiple of 8 bytes, as the reference writer does.
    size_t hlen = strlen(hdr), padded = (hlen + 7) / 8 * 8;
    unsigned char lenbuf[8];
    for (int i = 0; i < 8; i++)
        lenbuf[i] = (unsigned char)((uint64_t)padded >> (8 * i));
    wsml_atomic_file af;
    rc = wsml_atomic_open(&af, path, err);
    if (rc) {
        free(hdr);
        free(order);
        return rc;
    }
    int ok = fwrite(lenbuf, 1, 8, af.f) == 8 && fwrite(hdr, 1, hlen, af.f) == hlen;
    for (size_t i = hlen; ok && i < padded; i++)
        ok = fputc(' ', af.f) != EOF;
    for (size_t i = 0; ok && i < n; i++)
        ok = order[i]->nbytes == 0 ||
             fwrite(order[i]->data, 1, order[i]->nbytes, af.f) == order[i]->nbytes;
    free(hdr);
    free(order);
    if (!ok) {
        int e = errno;
        wsml_atomic_abort(&af);
        return wsml_errf(err, WSML_EIO, "%s: write failed: %s", path, strerror(e ? e : EIO));
    }
    return wsml_atomic_commit(&af, err);
}
