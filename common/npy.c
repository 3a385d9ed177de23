// .npy: magic "\x93NUMPY", version (1|2|3).0, header length (u16 for v1, u32 for v2/3),
// a Python dict literal {'descr': ..., 'fortran_order': False, 'shape': (...), } padded
// with spaces to a 16/64-byte boundary and ending in '\n', then the C-order data.
#include "common/npy.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"

// Finds the value text after 'key': in the dict; returns a pointer or NULL.
static const char *dict_value(const char *dict, const char *key) {
    char pat[32];
    snprintf(pat, sizeof pat, "'%s'", key);
    const char *p = strstr(dict, pat);
    if (!p) return NULL;
    p += strlen(pat);
    while (*p == ' ') p++;
    if (*p != ':') return NULL;
    p++;
    while (*p == ' ') p++;
    return p;
}

static int parse_descr(const char *v, wsml_dtype *dt, size_t *itemsize) {
    if (*v != '\'' && *v != '"') return -1;
    char q = *v++;
    const char *end = strchr(v, q);
    if (!end || end - v > 16) return -1;
    char d[20];
    memcpy(d, v, (size_t)(end - v));
    d[end - v] = '\0';
    static const struct {
        const char *name;
        wsml_dtype dt;
        size_t size;
    } known[] = {{"<f4", WSML_DT_F32, 4}, {"<f8", WSML_DT_F64, 8}, {"|i1", WSML_DT_I8, 1},
                 {"<i1", WSML_DT_I8, 1},  {"|u1", WSML_DT_U8, 1},  {"<u1", WSML_DT_U8, 1},
                 {"<i8", WSML_DT_I64, 8}, {"<i4", WSML_DT_I32, 4}, {"|b1", WSML_DT_BOOL, 1},
                 {"<f2", WSML_DT_F16, 2}};
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (!strcmp(d, known[i].name)) {
            *dt = known[i].dt;
            *itemsize = known[i].size;
            return 0;
        }
    if (d[0] == '<' && d[1] == 'U' && isdigit((unsigned char)d[2])) {
        char *e;
        long n = strtol(d + 2, &e, 10);
        if (*e || n <= 0 || n > (1 << 20)) return -1;
        *dt = WSML_DT_STR;
        *itemsize = 4 * (size_t)n;
        return 0;
    }
    return -1;
}

static const char *descr_of(wsml_dtype dt, size_t itemsize, char *buf, size_t cap) {
    switch (dt) {
    case WSML_DT_F32: return "<f4";
    case WSML_DT_F64: return "<f8";
    case WSML_DT_F16: return "<f2";
    case WSML_DT_I8: return "|i1";
    case WSML_DT_U8: return "|u1";
    case WSML_DT_I32: return "<i4";
    case WSML_DT_I64: return "<i8";
    case WSML_DT_BOOL: return "|b1";
    case WSML_DT_STR: snprintf(buf, cap, "<U%zu", itemsize / 4); return buf;
    default: return NULL;
    }
}

// Parses the header dict; fills everything but data.
static int parse_header(const char *path, const char *dict, wsml_npy *a, wsml_err *err) {
    const char *v = dict_value(dict, "descr");
    if (!v || parse_descr(v, &a->dtype, &a->itemsize) != 0)
        return wsml_errf(err, WSML_EFORMAT, "%s: unsupported or missing 'descr' in .npy header", path);
    v = dict_value(dict, "fortran_order");
    if (!v) return wsml_errf(err, WSML_EFORMAT, "%s: missing 'fortran_order' in .npy header", path);
    if (!strncmp(v, "True", 4))
        return wsml_errf(err, WSML_EFORMAT, "%s: Fortran-order arrays are not supported (save C order)", path);
    if (strncmp(v, "False", 5))
        return wsml_errf(err, WSML_EFORMAT, "%s: bad 'fortran_order' value in .npy header", path);
    v = dict_value(dict, "shape");
    if (!v || *v != '(') return wsml_errf(err, WSML_EFORMAT, "%s: missing 'shape' in .npy header", path);
    v++;
    a->ndim = 0;
    a->count = 1;
    for (;;) {
        while (*v == ' ') v++;
        if (*v == ')') break;
        if (!isdigit((unsigned char)*v))
            return wsml_errf(err, WSML_EFORMAT, "%s: bad 'shape' in .npy header", path);
        if (a->ndim == WSML_MAX_DIMS)
            return wsml_errf(err, WSML_EFORMAT, "%s: more than %d dimensions", path, WSML_MAX_DIMS);
        errno = 0;
        char *e;
        long long n = strtoll(v, &e, 10);
        if (errno || n < 0 || n > (1LL << 40))
            return wsml_errf(err, WSML_EFORMAT, "%s: bad dimension in .npy header", path);
        a->shape[a->ndim++] = n;
        if (n && a->count > (SIZE_MAX / 16) / (size_t)n)
            return wsml_errf(err, WSML_EFORMAT, "%s: array too large in .npy header", path);
        a->count *= (size_t)n;
        v = e;
        while (*v == ' ') v++;
        if (*v == ',') v++;
        else if (*v != ')') return wsml_errf(err, WSML_EFORMAT, "%s: bad 'shape' in .npy header", path);
    }
    if (a->itemsize && a->count > SIZE_MAX / a->itemsize)
        return wsml_errf(err, WSML_EFORMAT, "%s: array too large in .npy header", path);
    return 0;
}

int wsml_npy_read(const char *path, wsml_npy *out, wsml_err *err) {
    memset(out, 0, sizeof *out);
    char *buf;
    size_t len;
    int rc = wsml_read_file(path, &buf, &len, err);
    if (rc) return rc;
    const unsigned char *u = (const unsigned char *)buf;
    if (len < 10 || memcmp(buf, "\x93NUMPY", 6) != 0) {
        free(buf);
        return wsml_errf(err, WSML_EFORMAT, "%s: not a .npy file (bad magic)", path);
    }
    int major = u[6];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)u[8] | ((size_t)u[9] << 8);
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12) {
            free(buf);
            return wsml_errf(err, WSML_EFORMAT, "%s: truncated .npy header", path);
        }
        hlen = (size_t)u[8] | ((size_t)u[9] << 8) | ((size_t)u[10] << 16) | ((size_t)u[11] << 24);
        hstart = 12;
    } else {
        free(buf);
        return wsml_errf(err, WSML_EFORMAT, "%s: unsupported .npy version %d", path, major);
    }
    if (hlen > len - hstart || hlen > (1u << 20)) {
        free(buf);
        return wsml_errf(err, WSML_EFORMAT, "%s: .npy header length %zu exceeds the file (%zu bytes)", path, hlen, len);
    }
    char *dict = malloc(hlen + 1);
    if (!dict) {
        free(buf);
        return wsml_errf(err, WSML_ENOMEM, "%s: out of memory", path);
    }
    memcpy(dict, buf + hstart, hlen);
    dict[hlen] = '\0';
    if (strlen(dict) != hlen || dict[0] != '{' || !strchr(dict, '}')) {
        free(dict);
        free(buf);
        return wsml_errf(err, WSML_EFORMAT, "%s: malformed .npy header dict", path);
    }
    rc = parse_header(path, dict, out, err);
    free(dict);
    if (rc) {
        free(buf);
        return rc;
    }
    size_t data_off = hstart + hlen, nbytes = out->count * out->itemsize;
    if (len - data_off != nbytes) {
        free(buf);
        return wsml_errf(err, WSML_EFORMAT, "%s: .npy data is %zu bytes, header says %zu", path,
                         len - data_off, nbytes);
    }
    out->data = malloc(nbytes ? nbytes : 1);
    if (!out->data) {
        free(buf);
        return wsml_errf(err, WSML_ENOMEM, "%s: out of memory (%zu bytes)", path, nbytes);
    }
    memcpy(out->data, buf + data_off, nbytes);
    free(buf);
    if (out->dtype == WSML_DT_BOOL)
        for (size_t i = 0; i < out->count; i++)
            if (((unsigned char *)out->data)[i] > 1) {
                wsml_npy_free(out);
                return wsml_errf(err, WSML_EFORMAT, "%s: bool array holds a value other than 0/1", path);
            }
    return 0;
}

int wsml_npy_write(const char *path, wsml_dtype dtype, size_t itemsize, int ndim,
                   const int64_t *shape, const void *data, wsml_err *err) {
    char dbuf[32];
    const char *descr = descr_of(dtype, itemsize, dbuf, sizeof dbuf);
    if (!descr || ndim < 0 || ndim > WSML_MAX_DIMS)
        return wsml_errf(err, WSML_EARG, "%s: cannot write dtype %s with %d dims as .npy", path,
                         wsml_dtype_name(dtype), ndim);
    if (dtype != WSML_DT_STR) itemsize = wsml_dtype_size(dtype, 0);
    char dict[512];
    // numpy's shape text: () for scalars, (5,) for one dim, (3, 4) otherwise.
    char shape_txt[256] = "(";
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        size_t used = strlen(shape_txt);
        snprintf(shape_txt + used, sizeof shape_txt - used, "%s%lld", i ? ", " : "", (long long)shape[i]);
        count *= (size_t)shape[i];
    }
    strcat(shape_txt, ndim == 1 ? ",)" : ")");
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }", descr, shape_txt);
    // Pad so that data starts on a 64-byte boundary; header ends with '\n'.
    size_t total = 10 + (size_t)n + 1, pad = (64 - total % 64) % 64;
    size_t hlen = (size_t)n + pad + 1;
    unsigned char head[600];
    memcpy(head, "\x93NUMPY\x01\x00", 8);
    head[8] = (unsigned char)(hlen & 0xff);
    head[9] = (unsigned char)(hlen >> 8);
    memcpy(head + 10, dict, (size_t)n);
    memset(head + 10 + n, ' ', pad);
    head[10 + n + pad] = '\n';
    wsml_atomic_file af;
    int rc = wsml_atomic_open(&af, path, err);
    if (rc) return rc;
    size_t nbytes = count * itemsize;
    if (fwrite(head, 1, 10 + hlen, af.f) != 10 + hlen ||
        (nbytes && fwrite(data, 1, nbytes, af.f) != nbytes)) {
        int e = errno;
        wsml_atomic_abort(&af);
        return wsml_errf(err, WSML_EIO, "%s: write failed: %s", path, strerror(e ? e : EIO));
    }
    return wsml_atomic_commit(&af, err);
}

void wsml_npy_free(wsml_npy *a) {
    if (!a) return;
    free(a->data);
    a->data = NULL;
}

int wsml_npy_string(const wsml_npy *a, size_t i, char *buf, size_t cap) {
    if (a->dtype != WSML_DT_STR || i >= a->count || cap == 0) return -1;
    const unsigned char *p = (const unsigned char *)a->data + i * a->itemsize;
    size_t n = a->itemsize / 4, o = 0;
    for (size_t k = 0; k < n; k++) {
        uint32_t c = (uint32_t)p[4 * k] | ((uint32_t)p[4 * k + 1] << 8) |
                     ((uint32_t)p[4 * k + 2] << 16) | ((uint32_t)p[4 * k + 3] << 24);
        if (c == 0) break;
        unsigned char u[4];
        size_t m;
        if (c < 0x80) u[0] = (unsigned char)c, m = 1;
        else if (c < 0x800) u[0] = (unsigned char)(0xc0 | (c >> 6)), u[1] = (unsigned char)(0x80 | (c & 0x3f)), m = 2;
        else if (c < 0x10000) {
            if (c >= 0xd800 && c < 0xe000) return -1;
            u[0] = (unsigned char)(0xe0 | (c >> 12)), u[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
            u[2] = (unsigned char)(0x80 | (c & 0x3f)), m = 3;
        } else if (c < 0x110000) {
            u[0] = (unsigned char)(0xf0 | (c >> 18)), u[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3f));
            u[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3f)), u[3] = (unsigned char)(0x80 | (c & 0x3f)), m = 4;
        } else return -1;
        if (o + m + 1 > cap) return -1;
        memcpy(buf + o, u, m);
        o += m;
    }
    buf[o] = '\0';
    return (int)o;
}

int wsml_npy_as_f64(const wsml_npy *a, double **out, wsml_err *err) {
    double *d = malloc((a->count ? a->count : 1) * sizeof *d);
    if (!d) return wsml_errf(err, WSML_ENOMEM, "out of memory converting %zu values", a->count);
    for (size_t i = 0; i < a->count; i++) {
        const unsigned char *p = (const unsigned char *)a->data + i * a->itemsize;
        switch (a->dtype) {
        case WSML_DT_F32: { float f; memcpy(&f, p, 4); d[i] = f; break; }
        case WSML_DT_F64: memcpy(&d[i], p, 8); break;
        case WSML_DT_F16: { uint16_t h; memcpy(&h, p, 2); d[i] = wsml_f16_to_f32(h); break; }
        case WSML_DT_I8: d[i] = (int8_t)*p; break;
        case WSML_DT_U8:
        case WSML_DT_BOOL: d[i] = *p; break;
        case WSML_DT_I32: { int32_t v; memcpy(&v, p, 4); d[i] = v; break; }
        case WSML_DT_I64: { int64_t v; memcpy(&v, p, 8); d[i] = (double)v; break; }
        default:
            free(d);
            return wsml_errf(err, WSML_EFORMAT, "array of %s is not numeric", wsml_dtype_name(a->dtype));
        }
    }
    *out = d;
    return 0;
}
