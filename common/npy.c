// .npy: magic "\x93NUMPY", version (1|2|3).0, header length (u16 for v1, u32 for v2/3),
// a Python dict literal {'descr': ..., 'fortran_order': False, 'shape': (...), } padded
// with spaces to a 16/64-byte boundary and ending in '\n', then the C-order data.
#include "common/npy.h"

#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/fileio.h"

// descr (unquoted) -> dtype and bytes per element; 0 or -1 when unsupported.
static int parse_descr(const char *d, wsml_dtype *dt, size_t *itemsize) {
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
        int64_t n;
        if (wsml_parse_i64(d + 2, 1, 1 << 20, &n))
            return -1;
        *dt = WSML_DT_STR;
        *itemsize = 4 * (size_t)n;
        return 0;
    }
    return -1;
}

static const char *descr_of(wsml_dtype dt, size_t itemsize, char *buf, size_t cap) {
    switch (dt) {
    case WSML_DT_F32:
        return "<f4";
    case WSML_DT_F64:
        return "<f8";
    case WSML_DT_F16:
        return "<f2";
    case WSML_DT_I8:
        return "|i1";
    case WSML_DT_U8:
        return "|u1";
    case WSML_DT_I32:
        return "<i4";
    case WSML_DT_I64:
        return "<i8";
    case WSML_DT_BOOL:
        return "|b1";
    case WSML_DT_STR:
        snprintf(buf, cap, "<U%zu", itemsize / 4);
        return buf;
    default:
        return NULL;
    }
}

// The header dict is a Python literal; numpy reads it with ast.literal_eval and
// requires exactly the keys descr, fortran_order and shape. This is a strict parser of
// the subset numpy writes: {'key': value, ...} with string keys, a string descr,
// True/False, and a tuple of non-negative integers (a 1-tuple needs its comma), then
// only whitespace. Anything else is an error, never a guess.
typedef struct {
    const char *p, *end;
} cursor;

static void skip_ws(cursor *c) {
    while (c->p < c->end && (*c->p == ' ' || *c->p == '\t' || *c->p == '\n' || *c->p == '\r'))
        c->p++;
}

static int eat(cursor *c, char ch) {
    skip_ws(c);
    if (c->p < c->end && *c->p == ch) {
        c->p++;
        return 1;
    }
    return 0;
}

// A quoted string without escapes into buf; 0 or -1.
static int parse_str(cursor *c, char *buf, size_t cap) {
    skip_ws(c);
    if (c->p >= c->end || (*c->p != '\'' && *c->p != '"'))
        return -1;
    char q = *c->p++;
    size_t n = 0;
    while (c->p < c->end && *c->p != q) {
        if (*c->p == '\\' || n + 1 >= cap)
            return -1;
        buf[n++] = *c->p++;
    }
    if (c->p >= c->end)
        return -1;
    c->p++;
    buf[n] = '\0';
    return 0;
}

static int parse_header(const char *path, const char *text, size_t len, wsml_npy *a,
                        wsml_err *err) {
    cursor c = {text, text + len};
    int have_descr = 0, have_fortran = 0, have_shape = 0;
    if (!eat(&c, '{'))
        return wsml_errf(err, WSML_EFORMAT, "%s: malformed .npy header dict (no '{')", path);
    while (!eat(&c, '}')) {
        char key[32], val[64];
        if (parse_str(&c, key, sizeof key) != 0 || !eat(&c, ':'))
            return wsml_errf(err, WSML_EFORMAT, "%s: malformed .npy header dict (bad key)", path);
        if (!strcmp(key, "descr") && !have_descr) {
            have_descr = 1;
            if (parse_str(&c, val, sizeof val) != 0)
                return wsml_errf(err, WSML_EFORMAT,
                                 "%s: unsupported 'descr' in .npy header (structured dtype?)",
                                 path);
            if (parse_descr(val, &a->dtype, &a->itemsize) != 0)
                return wsml_errf(err, WSML_EFORMAT,
                                 "%s: unsupported 'descr' '%s' in .npy header (supported: <f4 <f8 "
                                 "<f2 |i1 |u1 <i4 "
                                 "<i8 |b1 <U{n})",
                                 path, val);
        } else if (!strcmp(key, "fortran_order") && !have_fortran) {
            have_fortran = 1;
            skip_ws(&c);
            size_t left = (size_t)(c.end - c.p);
            if (left >= 4 && !memcmp(c.p, "True", 4))
                return wsml_errf(err, WSML_EFORMAT,
                                 "%s: Fortran-order arrays are not supported (save C order)", path);
            if (left < 5 || memcmp(c.p, "False", 5))
                return wsml_errf(err, WSML_EFORMAT, "%s: bad 'fortran_order' value in .npy header",
                                 path);
            c.p += 5;
        } else if (!strcmp(key, "shape") && !have_shape) {
            have_shape = 1;
            if (!eat(&c, '('))
                return wsml_errf(err, WSML_EFORMAT, "%s: bad 'shape' in .npy header (not a tuple)",
                                 path);
            a->ndim = 0;
            a->count = 1;
            int comma = 0; // a 1-tuple must be written (n,)
            while (!eat(&c, ')')) {
                skip_ws(&c);
                if (a->ndim && !comma)
                    return wsml_errf(err, WSML_EFORMAT, "%s: bad 'shape' in .npy header", path);
                if (c.p >= c.end || *c.p < '0' || *c.p > '9')
                    return wsml_errf(err, WSML_EFORMAT, "%s: bad 'shape' in .npy header", path);
                if (a->ndim == WSML_MAX_DIMS)
                    return wsml_errf(err, WSML_EFORMAT,
                                     "%s: more than %d dimensions in .npy header", path,
                                     WSML_MAX_DIMS);
                uint64_t n = 0;
                while (c.p < c.end && *c.p >= '0' && *c.p <= '9') {
                    n = n * 10 + (uint64_t)(*c.p++ - '0');
                    if (n > (1ull << 48))
                        return wsml_errf(err, WSML_EFORMAT,
                                         "%s: dimension too large in .npy header", path);
                }
                a->shape[a->ndim++] = (int64_t)n;
                if (n && a->count > SIZE_MAX / n)
                    return wsml_errf(err, WSML_EFORMAT, "%s: array too large in .npy header", path);
                a->count *= (size_t)n;
                comma = eat(&c, ',');
            }
            if (a->ndim == 1 && !comma)
                return wsml_errf(err, WSML_EFORMAT,
                                 "%s: bad 'shape' in .npy header ((n) is not a tuple)", path);
        } else {
            return wsml_errf(err, WSML_EFORMAT,
                             "%s: unexpected or repeated key '%s' in .npy header", path, key);
        }
        if (!eat(&c, ',')) {
            if (!eat(&c, '}'))
                return wsml_errf(err, WSML_EFORMAT, "%s: malformed .npy header dict", path);
            break;
        }
    }
    skip_ws(&c);
    if (c.p != c.end)
        return wsml_errf(err, WSML_EFORMAT, "%s: malformed .npy header dict (trailing text)", path);
    if (!have_descr)
        return wsml_errf(err, WSML_EFORMAT, "%s: missing 'descr' in .npy header", path);
    if (!have_fortran)
        return wsml_errf(err, WSML_EFORMAT, "%s: missing 'fortran_order' in .npy header", path);
    if (!have_shape)
        return wsml_errf(err, WSML_EFORMAT, "%s: missing 'shape' in .npy header", path);
    if (a->itemsize && a->count > SIZE_MAX / a->itemsize)
        return wsml_errf(err, WSML_EFORMAT, "%s: array too large in .npy header", path);
    return 0;
}

// Reads exactly n bytes at the current position; 0, or -1 on a short read / error.
static int read_exact(FILE *f, void *buf, size_t n) {
    return fread(buf, 1, n, f) == n ? 0 : -1;
}

int wsml_npy_read(const char *path, wsml_npy *out, wsml_err *err) {
    memset(out, 0, sizeof *out);
    // Streamed (header, then the data straight into the array): no second copy of a
    // large label matrix in memory.
    FILE *f;
    size_t len;
    int rc = wsml_open_regular(path, &f, &len, err);
    if (rc)
        return rc;
    unsigned char pre[12];
    if (len < 10 || read_exact(f, pre, 10) != 0 || memcmp(pre, "\x93NUMPY", 6) != 0) {
        fclose(f);
        return wsml_errf(err, WSML_EFORMAT,
                         "%s: not a .npy file (bad magic or shorter than 10 bytes)", path);
    }
    int major = pre[6];
    size_t hlen, hstart;
    if (major == 1) {
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8);
        hstart = 10;
    } else if (major == 2 || major == 3) {
        if (len < 12 || read_exact(f, pre + 10, 2) != 0) {
            fclose(f);
            return wsml_errf(err, WSML_EFORMAT, "%s: truncated .npy header", path);
        }
        hlen = (size_t)pre[8] | ((size_t)pre[9] << 8) | ((size_t)pre[10] << 16) |
               ((size_t)pre[11] << 24);
        hstart = 12;
    } else {
        fclose(f);
        return wsml_errf(err, WSML_EFORMAT, "%s: unsupported .npy format version %d.%d", path,
                         major, pre[7]);
    }
    if (hlen > len - hstart || hlen > (1u << 20)) {
        fclose(f);
        return wsml_errf(err, WSML_EFORMAT,
                         "%s: .npy header length %zu exceeds the file (%zu bytes)", path, hlen,
                         len);
    }
    char *text = malloc(hlen + 1);
    if (!text) {
        fclose(f);
        return wsml_errf(err, WSML_ENOMEM, "%s: out of memory", path);
    }
    if (read_exact(f, text, hlen) != 0)
        rc = wsml_errf(err, WSML_EIO, "%s: short read of the .npy header", path);
    else if (memchr(text, '\0', hlen))
        rc = wsml_errf(err, WSML_EFORMAT, "%s: malformed .npy header (NUL byte)", path);
    else
        rc = parse_header(path, text, hlen, out, err);
    free(text);
    if (rc) {
        fclose(f);
        return rc;
    }
    size_t nbytes = out->count * out->itemsize, have = len - hstart - hlen;
    if (have != nbytes) {
        fclose(f);
        return wsml_errf(err, WSML_EFORMAT,
                         "%s: .npy data is %zu bytes but the header's shape and dtype need %zu",
                         path, have, nbytes);
    }
    out->data = malloc(nbytes ? nbytes : 1);
    if (!out->data) {
        fclose(f);
        return wsml_errf(err, WSML_ENOMEM, "%s: out of memory (%zu bytes)", path, nbytes);
    }
    if (read_exact(f, out->data, nbytes) != 0) {
        int e = ferror(f) ? errno : 0;
        fclose(f);
        wsml_npy_free(out);
        return wsml_errf(err, WSML_EIO, "%s: short read of .npy data: %s", path,
                         e ? strerror(e) : "file shrank");
    }
    fclose(f);
    if (out->dtype == WSML_DT_BOOL)
        for (size_t i = 0; i < out->count; i++)
            if (((unsigned char *)out->data)[i] > 1) {
                wsml_npy_free(out);
                return wsml_errf(err, WSML_EFORMAT,
                                 "%s: bool array holds a byte other than 0/1 at element %zu", path,
                                 i);
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
    if (dtype == WSML_DT_STR && (itemsize == 0 || itemsize % 4 != 0 || itemsize > (4u << 20)))
        return wsml_errf(err, WSML_EARG, "%s: string itemsize %zu is not 4 * characters", path,
                         itemsize);
    if (dtype != WSML_DT_STR)
        itemsize = wsml_dtype_size(dtype, 0);
    char dict[512];
    // numpy's shape text: () for scalars, (5,) for one dim, (3, 4) otherwise.
    char shape_txt[256] = "(";
    size_t count = 1;
    for (int i = 0; i < ndim; i++) {
        if (shape[i] < 0 || (shape[i] && count > SIZE_MAX / itemsize / (size_t)shape[i]))
            return wsml_errf(err, WSML_EARG, "%s: bad shape (dimension %d is %lld)", path, i,
                             (long long)shape[i]);
        size_t used = strlen(shape_txt);
        snprintf(shape_txt + used, sizeof shape_txt - used, "%s%lld", i ? ", " : "",
                 (long long)shape[i]);
        count *= (size_t)shape[i];
    }
    if (count && !data)
        return wsml_errf(err, WSML_EARG, "%s: no data to write", path);
    strcat(shape_txt, ndim == 1 ? ",)" : ")");
    int n = snprintf(dict, sizeof dict, "{'descr': '%s', 'fortran_order': False, 'shape': %s, }",
                     descr, shape_txt);
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
    if (rc)
        return rc;
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
    if (!a)
        return;
    free(a->data);
    a->data = NULL;
}

int wsml_npy_string(const wsml_npy *a, size_t i, char *buf, size_t cap) {
    if (a->dtype != WSML_DT_STR || i >= a->count || cap == 0)
        return -1;
    const unsigned char *p = (const unsigned char *)a->data + i * a->itemsize;
    size_t n = a->itemsize / 4, o = 0;
    for (size_t k = 0; k < n; k++) {
        uint32_t c = (uint32_t)p[4 * k] | ((uint32_t)p[4 * k + 1] << 8) |
                     ((uint32_t)p[4 * k + 2] << 16) | ((uint32_t)p[4 * k + 3] << 24);
        if (c == 0)
            break;
        unsigned char u[4];
        size_t m;
        if (c < 0x80)
            u[0] = (unsigned char)c, m = 1;
        else if (c < 0x800)
            u[0] = (unsigned char)(0xc0 | (c >> 6)), u[1] = (unsigned char)(0x80 | (c & 0x3f)),
            m = 2;
        else if (c < 0x10000) {
            if (c >= 0xd800 && c < 0xe000)
                return -1;
            u[0] = (unsigned char)(0xe0 | (c >> 12)),
            u[1] = (unsigned char)(0x80 | ((c >> 6) & 0x3f));
            u[2] = (unsigned char)(0x80 | (c & 0x3f)), m = 3;
        } else if (c < 0x110000) {
            u[0] = (unsigned char)(0xf0 | (c >> 18)),
            u[1] = (unsigned char)(0x80 | ((c >> 12) & 0x3f));
            u[2] = (unsigned char)(0x80 | ((c >> 6) & 0x3f)),
            u[3] = (unsigned char)(0x80 | (c & 0x3f)), m = 4;
        } else
            return -1;
        if (o + m + 1 > cap)
            return -1;
        memcpy(buf + o, u, m);
        o += m;
    }
    buf[o] = '\0';
    return (int)o;
}

int wsml_npy_as_f64(const wsml_npy *a, double **out, wsml_err *err) {
    double *d = malloc((a->count ? a->count : 1) * sizeof *d);
    if (!d)
        return wsml_errf(err, WSML_ENOMEM, "out of memory converting %zu values", a->count);
    for (size_t i = 0; i < a->count; i++) {
        const unsigned char *p = (const unsigned char *)a->data + i * a->itemsize;
        switch (a->dtype) {
        case WSML_DT_F32: {
            float f;
            memcpy(&f, p, 4);
            d[i] = f;
            break;
        }
        case WSML_DT_F64:
            memcpy(&d[i], p, 8);
            break;
        case WSML_DT_F16: {
            uint16_t h;
            memcpy(&h, p, 2);
            d[i] = wsml_f16_to_f32(h);
            break;
        }
        case WSML_DT_I8:
            d[i] = (int8_t)*p;
            break;
        case WSML_DT_U8:
        case WSML_DT_BOOL:
            d[i] = *p;
            break;
        case WSML_DT_I32: {
            int32_t v;
            memcpy(&v, p, 4);
            d[i] = v;
            break;
        }
        case WSML_DT_I64: {
            int64_t v;
            memcpy(&v, p, 8);
            d[i] = (double)v;
            break;
        }
        default:
            free(d);
            return wsml_errf(err, WSML_EFORMAT, "array of %s is not numeric",
                             wsml_dtype_name(a->dtype));
        }
    }
    *out = d;
    return 0;
}
