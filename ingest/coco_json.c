// A streaming reader for COCO instances JSON: one pass over the bytes, a fixed-size
// read buffer, no tree. It extracts categories[].id/.name, images[].id/.file_name and
// annotations[].image_id/.category_id, validates the JSON grammar of everything it
// skips (segmentations, bboxes, info, licenses), and reports a malformed or truncated
// file with its byte offset. Memory: the 1 MiB buffer plus the longest string kept
// (names), whatever the file size (the train JSON is ~330 MB).
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/ingest.h"

#define CHUNK (1u << 20)
#define MAX_DEPTH 256
#define MAX_KEPT_STRING (1u << 20)

typedef struct {
    const char *name;   // file name for errors
    FILE *f;            // file source, or
    const uint8_t *mem; // memory source, fed chunk bytes at a time (tests: any split)
    size_t mem_len, mem_pos, chunk_size;
    const uint8_t *buf; // current chunk
    size_t len, pos;
    uint64_t base; // file offset of buf[0]
    uint8_t *chunk;
    const coco_json_handlers *h;
    wsml_err *err;
    char *sbuf; // kept string
    size_t slen, scap;
    int failed;
} jr;

static int refill(jr *r) {
    r->base += r->len;
    if (!r->f) {
        size_t n = r->mem_len - r->mem_pos;
        if (n > r->chunk_size)
            n = r->chunk_size;
        r->buf = r->mem + r->mem_pos;
        r->len = n;
        r->pos = 0;
        r->mem_pos += n;
        return n > 0;
    }
    r->len = fread(r->chunk, 1, CHUNK, r->f);
    r->pos = 0;
    r->buf = r->chunk;
    if (r->len == 0 && ferror(r->f)) {
        wsml_errf(r->err, WSML_EIO, "%s: byte %llu: read error: %s", r->name,
                  (unsigned long long)r->base, strerror(errno));
        r->failed = 1;
    }
    return r->len > 0;
}

// Next byte without consuming it, or -1 at end of input (or after a read error).
static inline int peek(jr *r) {
    if (r->pos < r->len)
        return r->buf[r->pos];
    if (r->failed || !refill(r))
        return -1;
    return r->buf[r->pos];
}

static inline uint64_t offset(const jr *r) {
    return r->base + r->pos;
}

static int fail(jr *r, const char *what) {
    if (!r->failed)
        wsml_errf(r->err, WSML_EFORMAT, "%s: byte %llu: %s", r->name, (unsigned long long)offset(r),
                  what);
    r->failed = 1;
    return WSML_EFORMAT;
}

static int fail_eof_or(jr *r, const char *what) {
    if (r->failed)
        return r->err->code;
    if (peek(r) < 0)
        return fail(r, "unexpected end of file (truncated JSON?)");
    char msg[160];
    int c = peek(r);
    if (c >= 0x20 && c < 0x7f)
        snprintf(msg, sizeof msg, "%s, found '%c'", what, c);
    else
        snprintf(msg, sizeof msg, "%s, found byte 0x%02x", what, c);
    return fail(r, msg);
}

static inline void skip_ws(jr *r) {
    for (;;) {
        int c = peek(r);
        if (c == ' ' || c == '\n' || c == '\r' || c == '\t')
            r->pos++;
        else
            return;
    }
}

static int expect(jr *r, int ch, const char *what) {
    skip_ws(r);
    if (peek(r) != ch)
        return fail_eof_or(r, what);
    r->pos++;
    return 0;
}

static int keep_byte(jr *r, char c) {
    if (r->slen + 2 > r->scap) {
        if (r->scap >= MAX_KEPT_STRING)
            return fail(r, "string too long");
        size_t cap = r->scap ? r->scap * 2 : 256;
        char *p = realloc(r->sbuf, cap);
        if (!p) {
            wsml_errf(r->err, WSML_ENOMEM, "%s: out of memory", r->name);
            r->failed = 1;
            return WSML_ENOMEM;
        }
        r->sbuf = p;
        r->scap = cap;
    }
    r->sbuf[r->slen++] = c;
    return 0;
}

static int keep_utf8(jr *r, uint32_t cp) {
    char b[4];
    int n;
    if (cp < 0x80) {
        b[0] = (char)cp;
        n = 1;
    } else if (cp < 0x800) {
        b[0] = (char)(0xC0 | (cp >> 6));
        b[1] = (char)(0x80 | (cp & 0x3F));
        n = 2;
    } else if (cp < 0x10000) {
        b[0] = (char)(0xE0 | (cp >> 12));
        b[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (char)(0x80 | (cp & 0x3F));
        n = 3;
    } else {
        b[0] = (char)(0xF0 | (cp >> 18));
        b[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (char)(0x80 | (cp & 0x3F));
        n = 4;
    }
    for (int i = 0; i < n; i++)
        if (keep_byte(r, b[i]))
            return r->err->code;
    return 0;
}

static int hex4(jr *r, uint32_t *out) {
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int c = peek(r);
        int d = c >= '0' && c <= '9'   ? c - '0'
                : c >= 'a' && c <= 'f' ? c - 'a' + 10
                : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                       : -1;
        if (d < 0)
            return fail_eof_or(r, "expected 4 hex digits after \\u");
        v = v * 16 + (uint32_t)d;
        r->pos++;
    }
    *out = v;
    return 0;
}

// A string at the cursor (after whitespace). keep != 0 copies it (UTF-8, NUL-terminated)
// into r->sbuf; otherwise it is only validated.
static int parse_string(jr *r, int keep) {
    skip_ws(r);
    if (peek(r) != '"')
        return fail_eof_or(r, "expected a string");
    r->pos++;
    r->slen = 0;
    for (;;) {
        // Fast path: run over plain bytes inside the current chunk.
        if (r->pos < r->len) {
            const uint8_t *p = r->buf + r->pos, *end = r->buf + r->len;
            const uint8_t *q = p;
            while (q < end && *q != '"' && *q != '\\' && *q >= 0x20)
                q++;
            if (keep)
                for (const uint8_t *k = p; k < q; k++)
                    if (keep_byte(r, (char)*k))
                        return r->err->code;
            r->pos += (size_t)(q - p);
            if (q == end)
                continue;
        }
        int c = peek(r); // refills at a chunk boundary
        if (c < 0)
            return fail_eof_or(r, "unterminated string");
        if (c != '"' && c != '\\' && c >= 0x20)
            continue; // plain byte: back to the fast path
        if (c == '"') {
            r->pos++;
            break;
        }
        if (c < 0x20)
            return fail(r, "control character inside a string");
        // c == '\\'
        r->pos++;
        c = peek(r);
        uint32_t cp;
        switch (c) {
        case '"':
            cp = '"';
            break;
        case '\\':
            cp = '\\';
            break;
        case '/':
            cp = '/';
            break;
        case 'b':
            cp = '\b';
            break;
        case 'f':
            cp = '\f';
            break;
        case 'n':
            cp = '\n';
            break;
        case 'r':
            cp = '\r';
            break;
        case 't':
            cp = '\t';
            break;
        case 'u': {
            r->pos++;
            if (hex4(r, &cp))
                return r->err->code;
            if (cp >= 0xD800 && cp < 0xDC00) { // high surrogate: needs its low half
                uint32_t lo;
                if (peek(r) != '\\')
                    return fail_eof_or(r, "unpaired surrogate in \\u escape");
                r->pos++;
                if (peek(r) != 'u')
                    return fail_eof_or(r, "unpaired surrogate in \\u escape");
                r->pos++;
                if (hex4(r, &lo))
                    return r->err->code;
                if (lo < 0xDC00 || lo > 0xDFFF)
                    return fail(r, "invalid low surrogate");
                cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
            } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
                return fail(r, "unpaired low surrogate in \\u escape");
            }
            if (keep && keep_utf8(r, cp))
                return r->err->code;
            continue;
        }
        default:
            return fail_eof_or(r, "invalid escape in string");
        }
        r->pos++;
        if (keep && keep_byte(r, (char)cp))
            return r->err->code;
    }
    if (keep) {
        if (keep_byte(r, '\0'))
            return r->err->code;
        r->slen--;
    }
    return 0;
}

// A JSON number. *is_int = 1 and *v = its value when it is an integer literal that fits
// in int64 (no fraction, no exponent).
static int parse_number(jr *r, int64_t *v, int *is_int) {
    skip_ws(r);
    char buf[64];
    size_t n = 0;
    int c = peek(r);
    int neg = 0, digits = 0, frac = 0, exp = 0;
    if (c == '-') {
        neg = 1;
        buf[n++] = '-';
        r->pos++;
        c = peek(r);
    }
    if (c < '0' || c > '9')
        return fail_eof_or(r, "expected a digit");
    int leading_zero = c == '0';
    while ((c = peek(r)) >= '0' && c <= '9') {
        if (digits == 1 && leading_zero)
            return fail(r, "leading zero in a number");
        if (n < sizeof buf - 1)
            buf[n++] = (char)c;
        digits++;
        r->pos++;
    }
    if (c == '.') {
        frac = 1;
        r->pos++;
        int fd = 0;
        while ((c = peek(r)) >= '0' && c <= '9') {
            fd++;
            r->pos++;
        }
        if (!fd)
            return fail_eof_or(r, "expected a digit after '.'");
    }
    if (c == 'e' || c == 'E') {
        exp = 1;
        r->pos++;
        c = peek(r);
        if (c == '+' || c == '-')
            r->pos++;
        int ed = 0;
        while ((c = peek(r)) >= '0' && c <= '9') {
            ed++;
            r->pos++;
        }
        if (!ed)
            return fail_eof_or(r, "expected a digit in the exponent");
    }
    *is_int = 0;
    if (!frac && !exp && digits <= 18) {
        buf[n] = '\0';
        *v = strtoll(buf, NULL, 10);
        *is_int = 1;
    }
    (void)neg;
    return 0;
}

static int parse_literal(jr *r, const char *lit) {
    for (const char *p = lit; *p; p++) {
        if (peek(r) != *p)
            return fail_eof_or(r, "invalid literal");
        r->pos++;
    }
    return 0;
}

static int skip_value(jr *r, int depth);

static int skip_container(jr *r, int depth, int close) {
    if (depth > MAX_DEPTH)
        return fail(r, "nesting too deep");
    r->pos++; // the opening bracket
    skip_ws(r);
    if (peek(r) == close) {
        r->pos++;
        return 0;
    }
    for (;;) {
        if (close == '}') {
            if (parse_string(r, 0) || expect(r, ':', "expected ':'"))
                return r->err->code;
        }
        if (skip_value(r, depth + 1))
            return r->err->code;
        skip_ws(r);
        int c = peek(r);
        if (c == ',') {
            r->pos++;
            continue;
        }
        if (c == close) {
            r->pos++;
            return 0;
        }
        return fail_eof_or(r, close == '}' ? "expected ',' or '}'" : "expected ',' or ']'");
    }
}

static int skip_value(jr *r, int depth) {
    skip_ws(r);
    int c = peek(r);
    int64_t v;
    int is_int;
    switch (c) {
    case '{':
        return skip_container(r, depth, '}');
    case '[':
        return skip_container(r, depth, ']');
    case '"':
        return parse_string(r, 0);
    case 't':
        return parse_literal(r, "true");
    case 'f':
        return parse_literal(r, "false");
    case 'n':
        return parse_literal(r, "null");
    default:
        if (c == '-' || (c >= '0' && c <= '9'))
            return parse_number(r, &v, &is_int);
        return fail_eof_or(r, "expected a JSON value");
    }
}

enum { KIND_CATEGORY, KIND_IMAGE, KIND_ANNOTATION };

static int parse_int_field(jr *r, const char *field, int64_t *v) {
    skip_ws(r);
    uint64_t at = offset(r);
    int is_int;
    if (parse_number(r, v, &is_int))
        return r->err->code;
    if (!is_int) {
        wsml_errf(r->err, WSML_EFORMAT, "%s: byte %llu: \"%s\" must be an integer", r->name,
                  (unsigned long long)at, field);
        r->failed = 1;
        return WSML_EFORMAT;
    }
    return 0;
}

// One element of categories/images/annotations.
static int parse_record(jr *r, int kind, size_t index) {
    static const char *const arrays[] = {"categories", "images", "annotations"};
    skip_ws(r);
    uint64_t start = offset(r);
    if (peek(r) != '{')
        return fail_eof_or(r, "expected an object");
    r->pos++;
    int64_t a = 0, b = 0;
    int have_a = 0, have_b = 0;
    char *name = NULL;
    int rc = 0;
    skip_ws(r);
    if (peek(r) == '}') {
        r->pos++;
    } else {
        for (;;) {
            if (parse_string(r, 1) || expect(r, ':', "expected ':'")) {
                rc = r->err->code;
                break;
            }
            const char *key = r->sbuf;
            // ids first: the key buffer is reused by the next string
            if ((kind == KIND_CATEGORY || kind == KIND_IMAGE) && !strcmp(key, "id")) {
                if ((rc = parse_int_field(r, "id", &a)))
                    break;
                have_a = 1;
            } else if (kind == KIND_ANNOTATION && !strcmp(key, "image_id")) {
                if ((rc = parse_int_field(r, "image_id", &a)))
                    break;
                have_a = 1;
            } else if (kind == KIND_ANNOTATION && !strcmp(key, "category_id")) {
                if ((rc = parse_int_field(r, "category_id", &b)))
                    break;
                have_b = 1;
            } else if ((kind == KIND_CATEGORY && !strcmp(key, "name")) ||
                       (kind == KIND_IMAGE && !strcmp(key, "file_name"))) {
                const char *field = kind == KIND_CATEGORY ? "name" : "file_name";
                skip_ws(r);
                if (peek(r) != '"') {
                    char msg[64];
                    snprintf(msg, sizeof msg, "\"%s\" must be a string", field);
                    rc = fail_eof_or(r, msg);
                    break;
                }
                if ((rc = parse_string(r, 1)))
                    break;
                free(name);
                name = strdup(r->sbuf);
                if (!name) {
                    rc = wsml_errf(r->err, WSML_ENOMEM, "%s: out of memory", r->name);
                    r->failed = 1;
                    break;
                }
                have_b = 1;
            } else {
                if ((rc = skip_value(r, 2)))
                    break;
            }
            skip_ws(r);
            int c = peek(r);
            if (c == ',') {
                r->pos++;
                continue;
            }
            if (c == '}') {
                r->pos++;
                break;
            }
            rc = fail_eof_or(r, "expected ',' or '}'");
            break;
        }
    }
    if (rc == 0) {
        const char *missing = NULL;
        if (!have_a)
            missing = kind == KIND_ANNOTATION ? "image_id" : "id";
        else if (!have_b && kind == KIND_ANNOTATION)
            missing = "category_id";
        else if (!have_b && kind == KIND_CATEGORY)
            missing = "name";
        if (missing) {
            rc = wsml_errf(r->err, WSML_EFORMAT, "%s: byte %llu: %s[%zu] has no \"%s\"", r->name,
                           (unsigned long long)start, arrays[kind], index, missing);
            r->failed = 1;
        }
    }
    if (rc == 0) {
        const coco_json_handlers *h = r->h;
        if (kind == KIND_CATEGORY && h->category)
            rc = h->category(h->ctx, a, name, r->err);
        if (kind == KIND_IMAGE && h->image)
            rc = h->image(h->ctx, a, name, r->err);
        if (kind == KIND_ANNOTATION && h->annotation)
            rc = h->annotation(h->ctx, a, b, r->err);
        if (rc) {
            wsml_err_prefix(r->err, "%s: %s[%zu]", r->name, arrays[kind], index);
            r->failed = 1;
        }
    }
    free(name);
    return rc;
}

static int parse_record_array(jr *r, int kind) {
    if (expect(r, '[', "expected '['"))
        return r->err->code;
    skip_ws(r);
    if (peek(r) == ']') {
        r->pos++;
        return 0;
    }
    for (size_t i = 0;; i++) {
        if ((i & 4095) == 0 && ingest_interrupted) {
            r->failed = 1;
            return wsml_errf(r->err, WSML_ESTATE, "interrupted by signal");
        }
        if (parse_record(r, kind, i))
            return r->err->code;
        skip_ws(r);
        int c = peek(r);
        if (c == ',') {
            r->pos++;
            continue;
        }
        if (c == ']') {
            r->pos++;
            return 0;
        }
        return fail_eof_or(r, "expected ',' or ']'");
    }
}

static int parse_top(jr *r) {
    if (expect(r, '{', "expected '{' (a COCO instances file is one JSON object)"))
        return r->err->code;
    skip_ws(r);
    if (peek(r) == '}') {
        r->pos++;
    } else {
        for (;;) {
            if (parse_string(r, 1) || expect(r, ':', "expected ':'"))
                return r->err->code;
            int kind = !strcmp(r->sbuf, "categories")    ? KIND_CATEGORY
                       : !strcmp(r->sbuf, "images")      ? KIND_IMAGE
                       : !strcmp(r->sbuf, "annotations") ? KIND_ANNOTATION
                                                         : -1;
            if (kind >= 0 ? parse_record_array(r, kind) : skip_value(r, 1))
                return r->err->code;
            skip_ws(r);
            int c = peek(r);
            if (c == ',') {
                r->pos++;
                continue;
            }
            if (c == '}') {
                r->pos++;
                break;
            }
            return fail_eof_or(r, "expected ',' or '}'");
        }
    }
    skip_ws(r);
    if (peek(r) >= 0)
        return fail(r, "unexpected data after the top-level object");
    return r->failed ? r->err->code : 0;
}

int coco_json_parse_file(const char *path, const coco_json_handlers *h, wsml_err *err) {
    jr r = {.name = path, .h = h, .err = err};
    r.f = fopen(path, "rb");
    if (!r.f)
        return wsml_errf(err, WSML_EIO, "%s: %s", path, strerror(errno));
    r.chunk = malloc(CHUNK);
    int rc;
    if (!r.chunk)
        rc = wsml_errf(err, WSML_ENOMEM, "%s: out of memory", path);
    else
        rc = parse_top(&r);
    fclose(r.f);
    free(r.chunk);
    free(r.sbuf);
    return rc;
}

int coco_json_parse_buffer(const char *name, const void *buf, size_t len, size_t chunk,
                           const coco_json_handlers *h, wsml_err *err) {
    jr r = {.name = name,
            .h = h,
            .err = err,
            .mem = buf,
            .mem_len = len,
            .chunk_size = chunk ? chunk : (len ? len : 1)};
    int rc = parse_top(&r);
    free(r.sbuf);
    return rc;
}
