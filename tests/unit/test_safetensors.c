// common/safetensors: round trips of every dtype; our files pass the reference
// implementation's validation rules (checked in Python with struct+json, since the
// safetensors module is not a Debian package) and hold numpy-identical values; files
// laid out by the reference writer's rules load in ours; malformed files are errors.
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fileio.h"
#include "common/safetensors.h"
#include "tests/unit/common_testutil.h"

// The reference implementation's checks (safetensors Metadata::validate and
// read_metadata), then per-tensor values against expectations given as numpy code.
#define PY_VALIDATE                                                                                \
    "import sys, json, struct, numpy as np\n"                                                      \
    "def load(path):\n"                                                                            \
    "    b = open(path, 'rb').read()\n"                                                            \
    "    n = struct.unpack('<Q', b[:8])[0]\n"                                                      \
    "    assert n % 8 == 0 and n <= 100 << 20 and 8 + n <= len(b), 'header length'\n"              \
    "    text = b[8:8 + n].decode('utf-8')\n"                                                      \
    "    assert text.startswith('{')\n"                                                            \
    "    h = json.loads(text); data = b[8 + n:]\n"                                                 \
    "    meta = h.pop('__metadata__', None)\n"                                                     \
    "    assert meta is None or all(isinstance(v, str) for v in meta.values())\n"                  \
    "    size = {'F64': 8, 'F32': 4, 'F16': 2, 'BF16': 2, 'I64': 8, 'I32': 4, 'I8': 1, 'U8': 1, "  \
    "'BOOL': 1}\n"                                                                                 \
    "    end = 0\n"                                                                                \
    "    for k, t in sorted(h.items(), key=lambda kv: kv[1]['data_offsets']):\n"                   \
    "        s, e = t['data_offsets']\n"                                                           \
    "        assert s == end and e >= s, ('offsets', k)\n"                                         \
    "        assert int(np.prod(t['shape'])) * size[t['dtype']] == e - s, ('size', k)\n"           \
    "        assert s % size[t['dtype']] == 0, ('alignment', k)\n"                                 \
    "        end = e\n"                                                                            \
    "    assert end == len(data), 'data section not fully used'\n"                                 \
    "    np_dt = {'F64': '<f8', 'F32': '<f4', 'F16': '<f2', 'BF16': '<u2', 'I64': '<i8', 'I32': "  \
    "'<i4', 'I8': 'i1', 'U8': 'u1', 'BOOL': '?'}\n"                                                \
    "    out = {}\n"                                                                               \
    "    for k, t in h.items():\n"                                                                 \
    "        s, e = t['data_offsets']\n"                                                           \
    "        a = np.frombuffer(data[s:e], np_dt[t['dtype']]).reshape(t['shape'])\n"                \
    "        if t['dtype'] == 'BF16': a = (a.astype('<u4') << 16).view('<f4')\n"                   \
    "        out[k] = (t['dtype'], a)\n"                                                           \
    "    return meta, out\n"

static float f32s[2][3] = {{1, -2, 3.5f}, {0.25f, -0.125f, 1e-3f}};
static double f64s[4] = {0.1, -1e-30, 1e30, 3};
static int64_t i64s[1] = {42};
static int32_t i32s[3] = {-7, 0, 1 << 30};
static int8_t i8s[5] = {-128, -1, 0, 1, 127};
static uint8_t u8s[3] = {0, 128, 255};
static uint8_t bools[2] = {1, 0};
static uint16_t f16s[3], bf16s[3];

static size_t make_tensors(wsml_tensor_view *t) {
    const float src[3] = {1.5f, -65504.0f, 3.14159f};
    for (int i = 0; i < 3; i++)
        f16s[i] = wsml_f32_to_f16(src[i]), bf16s[i] = wsml_f32_to_bf16(src[i]);
    wsml_tensor_view v[] = {
        {.name = "conv1.weight",
         .dtype = WSML_DT_F32,
         .ndim = 2,
         .shape = {2, 3},
         .data = f32s,
         .nbytes = 24},
        {.name = "bn1.num_batches_tracked",
         .dtype = WSML_DT_I64,
         .ndim = 0,
         .data = i64s,
         .nbytes = 8},
        {.name = "half", .dtype = WSML_DT_F16, .ndim = 1, .shape = {3}, .data = f16s, .nbytes = 6},
        {.name = "brain",
         .dtype = WSML_DT_BF16,
         .ndim = 2,
         .shape = {3, 1},
         .data = bf16s,
         .nbytes = 6},
        {.name = "f64",
         .dtype = WSML_DT_F64,
         .ndim = 2,
         .shape = {2, 2},
         .data = f64s,
         .nbytes = 32},
        {.name = "i32", .dtype = WSML_DT_I32, .ndim = 1, .shape = {3}, .data = i32s, .nbytes = 12},
        {.name = "i8", .dtype = WSML_DT_I8, .ndim = 1, .shape = {5}, .data = i8s, .nbytes = 5},
        {.name = "u8",
         .dtype = WSML_DT_U8,
         .ndim = 3,
         .shape = {1, 3, 1},
         .data = u8s,
         .nbytes = 3},
        {.name = "mask",
         .dtype = WSML_DT_BOOL,
         .ndim = 1,
         .shape = {2},
         .data = bools,
         .nbytes = 2},
        {.name = "empty",
         .dtype = WSML_DT_F32,
         .ndim = 2,
         .shape = {0, 4},
         .data = NULL,
         .nbytes = 0},
    };
    memcpy(t, v, sizeof v);
    return sizeof v / sizeof *v;
}

Test(safetensors, round_trip_every_dtype_and_python_validates) {
    char dir[128], path[256];
    ct_tmpdir(dir, sizeof dir, "st");
    snprintf(path, sizeof path, "%s/a.safetensors", dir);
    wsml_tensor_view t[16];
    size_t n = make_tensors(t);
    wsml_err err = {0};
    cr_assert_eq(wsml_st_write(path, t, n,
                               "{\"format\":\"pt\",\"arch\":\"resnet50\",\"note\":\"\\u00e9\"}",
                               &err),
                 0, "%s", err.msg);
    wsml_safetensors st;
    cr_assert_eq(wsml_st_read(path, &st, &err), 0, "%s", err.msg);
    cr_assert_eq(st.n, n);
    for (size_t i = 0; i < n; i++) {
        const wsml_tensor_view *r = wsml_st_find(&st, t[i].name);
        cr_assert(r, "%s missing", t[i].name);
        cr_assert_eq(r->dtype, t[i].dtype);
        cr_assert_eq(r->ndim, t[i].ndim);
        cr_assert_eq(memcmp(r->shape, t[i].shape, sizeof(int64_t) * (size_t)t[i].ndim), 0);
        cr_assert_eq(r->nbytes, t[i].nbytes);
        cr_assert(r->nbytes == 0 || memcmp(r->data, t[i].data, r->nbytes) == 0, "%s bytes",
                  t[i].name);
        cr_assert_eq((uintptr_t)((const char *)r->data - ((const char *)st.file_buf + 8)) %
                         wsml_dtype_size(r->dtype, 0),
                     0, "%s is not aligned to its element size", t[i].name);
    }
    cr_assert_null(wsml_st_find(&st, "nope"));
    char buf[64];
    cr_assert_str_eq(wsml_st_meta(&st, "arch", buf, sizeof buf), "resnet50");
    cr_assert_str_eq(wsml_st_meta(&st, "note", buf, sizeof buf), "\xc3\xa9");
    cr_assert_null(wsml_st_meta(&st, "missing", buf, sizeof buf));
    // float conversions
    float got[6];
    int64_t s3[1] = {3}, s31[2] = {3, 1}, s22[2] = {2, 2}, s23[2] = {2, 3};
    cr_assert_eq(wsml_st_get_f32(&st, "half", 1, s3, got, &err), 0, "%s", err.msg);
    cr_assert(got[0] == 1.5f && got[1] == -65504.0f &&
              got[2] == wsml_f16_to_f32(wsml_f32_to_f16(3.14159f)));
    cr_assert_eq(wsml_st_get_f32(&st, "brain", 2, s31, got, &err), 0, "%s", err.msg);
    cr_assert(got[0] == 1.5f && got[2] == wsml_bf16_to_f32(wsml_f32_to_bf16(3.14159f)));
    cr_assert_eq(wsml_st_get_f32(&st, "f64", 2, s22, got, &err), 0, "%s", err.msg);
    cr_assert(got[0] == (float)0.1 && got[1] == (float)-1e-30 && got[2] == (float)1e30);
    cr_assert_eq(wsml_st_get_f32(&st, "conv1.weight", 2, s23, got, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(got, f32s, 24), 0);
    wsml_st_free(&st);
    char *out = ct_python(
        PY_VALIDATE
        "meta, t = load(sys.argv[1])\n"
        // wsml's checksum (common/safetensors.h), recomputed independently
        "import zlib\n"
        "b = open(sys.argv[1], 'rb').read(); n = struct.unpack('<Q', b[:8])[0]\n"
        "h = json.loads(b[8:8 + n]); data = b[8 + n:]; h.pop('__metadata__')\n"
        "c = 0\n"
        "for k in sorted(h, key=lambda x: x.encode()):\n"
        "    sh = h[k]['shape']; s0, e0 = h[k]['data_offsets']\n"
        "    c = zlib.crc32(k.encode() + b'\\0' + h[k]['dtype'].encode() + b'\\0' +\n"
        "                   struct.pack('<%dQ' % (len(sh) + 1), len(sh), *sh) + data[s0:e0], c)\n"
        "for k in sorted((k for k in meta if k != 'wsml.crc32'), key=lambda x: x.encode()):\n"
        "    c = zlib.crc32(k.encode() + b'\\0' + meta[k].encode() + b'\\0', c)\n"
        "assert meta.pop('wsml.crc32') == '%08x' % c, 'checksum'\n"
        "assert meta == {'format': 'pt', 'arch': 'resnet50', 'note': '\\u00e9'}, meta\n"
        "want = {\n"
        " 'conv1.weight': ('F32', np.array([[1, -2, 3.5], [0.25, -0.125, 1e-3]], np.float32)),\n"
        " 'bn1.num_batches_tracked': ('I64', np.array(42)),\n"
        " 'half': ('F16', np.array([1.5, -65504, 3.14159], np.float32).astype(np.float16)),\n"
        " 'brain': ('BF16', np.array([[1.5], [-65536], [3.140625]], np.float32)),\n"
        " 'f64': ('F64', np.array([[0.1, -1e-30], [1e30, 3]])),\n"
        " 'i32': ('I32', np.array([-7, 0, 2**30])),\n"
        " 'i8': ('I8', np.array([-128, -1, 0, 1, 127])),\n"
        " 'u8': ('U8', np.array([0, 128, 255]).reshape(1, 3, 1)),\n"
        " 'mask': ('BOOL', np.array([True, False])),\n"
        " 'empty': ('F32', np.zeros((0, 4), np.float32)),\n"
        "}\n"
        "assert set(t) == set(want), set(t) ^ set(want)\n"
        "for k, (dt, a) in want.items():\n"
        "    assert t[k][0] == dt and t[k][1].shape == a.shape and (t[k][1] == a).all(), (k, t[k], "
        "a)\n"
        "print('ok')\n",
        path, NULL);
    cr_assert_str_eq(out, "ok\n");
    free(out);
    ct_rmdir(dir);
}

Test(safetensors, reads_files_laid_out_by_the_reference_rules) {
    char dir[128], path[256];
    ct_tmpdir(dir, sizeof dir, "stpy");
    snprintf(path, sizeof path, "%s/b.safetensors", dir);
    // The reference writer: metadata first, tensors sorted by (alignment desc, name),
    // contiguous, header padded with spaces to 8.
    free(ct_python(
        "import sys, json, struct, numpy as np\n"
        "ts = {'fc.weight': ('F32', np.arange(6, dtype='<f4').reshape(2, 3) / 4),\n"
        "      'fc.bias': ('F64', np.array([-1.5, 2.0])),\n"
        "      'emb': ('F16', np.array([0.5, 1e-7, -3], np.float32).astype('<f2')),\n"
        "      'bf': ('BF16', (np.array([1.0, -2.5], np.float32).view('<u4') >> "
        "16).astype('<u2')),\n"
        "      'steps': ('I64', np.array(7, '<i8'))}\n"
        "size = {'F64': 8, 'F32': 4, 'F16': 2, 'BF16': 2, 'I64': 8}\n"
        "order = sorted(ts, key=lambda k: (-size[ts[k][0]], k))\n"
        "h = {'__metadata__': {'format': 'pt'}}; off = 0; blob = b''\n"
        "for k in order:\n"
        "    dt, a = ts[k]; b = a.tobytes()\n"
        "    h[k] = {'dtype': dt, 'shape': list(a.shape), 'data_offsets': [off, off + len(b)]}\n"
        "    off += len(b); blob += b\n"
        "j = json.dumps(h, separators=(',', ':')).encode(); j += b' ' * (-len(j) % 8)\n"
        "open(sys.argv[1], 'wb').write(struct.pack('<Q', len(j)) + j + blob)\n",
        path, NULL));
    wsml_safetensors st;
    wsml_err err = {0};
    cr_assert_eq(wsml_st_read(path, &st, &err), 0, "%s", err.msg);
    cr_assert_eq(st.n, 5);
    float w[6], b[2], e[3], bf[2];
    int64_t s23[2] = {2, 3}, s2[1] = {2}, s3[1] = {3}, bad[2] = {3, 2};
    cr_assert_eq(wsml_st_get_f32(&st, "fc.weight", 2, s23, w, &err), 0, "%s", err.msg);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(w[i], (float)i / 4);
    cr_assert_eq(wsml_st_get_f32(&st, "fc.bias", 1, s2, b, &err), 0, "%s", err.msg);
    cr_assert(b[0] == -1.5f && b[1] == 2.0f);
    cr_assert_eq(wsml_st_get_f32(&st, "emb", 1, s3, e, &err), 0, "%s", err.msg);
    cr_assert(e[0] == 0.5f && e[1] == wsml_f16_to_f32(wsml_f32_to_f16(1e-7f)) && e[2] == -3.0f);
    cr_assert_eq(wsml_st_get_f32(&st, "bf", 1, s2, bf, &err), 0, "%s", err.msg);
    cr_assert(bf[0] == 1.0f && bf[1] == -2.5f);
    // errors name the tensor and both shapes
    cr_assert_eq(wsml_st_get_f32(&st, "fc.weight", 2, bad, w, &err), WSML_EFORMAT);
    cr_assert(strstr(err.msg, "'fc.weight' has shape [2,3], expected [3,2]"), "%s", err.msg);
    cr_assert_neq(wsml_st_get_f32(&st, "fc.weight", 1, s23, w, &err), 0);
    cr_assert(strstr(err.msg, "[2,3]") && strstr(err.msg, "expected [2]"), "%s", err.msg);
    cr_assert_neq(wsml_st_get_f32(&st, "layer4.0.conv1.weight", 2, s23, w, &err), 0);
    cr_assert(strstr(err.msg, "layer4.0.conv1.weight"), "%s", err.msg);
    cr_assert_neq(wsml_st_get_f32(&st, "steps", 0, NULL, w, &err), 0, "I64 is not a float tensor");
    cr_assert(strstr(err.msg, "steps") && strstr(err.msg, "I64"), "%s", err.msg);
    char m[16];
    cr_assert_str_eq(wsml_st_meta(&st, "format", m, sizeof m), "pt");
    wsml_st_free(&st);
    wsml_st_free(&st); // freeing twice is harmless (the struct is zeroed)
    ct_rmdir(dir);
}

// One file: u64 header length + header (as given) + data bytes.
static size_t make_st(unsigned char *buf, const char *hdr, size_t data) {
    size_t n = strlen(hdr);
    for (int k = 0; k < 8; k++)
        buf[k] = (unsigned char)((uint64_t)n >> (8 * k));
    memcpy(buf + 8, hdr, n);
    memset(buf + 8 + n, 0, data);
    return 8 + n + data;
}

static void expect_reject(const char *path, const void *bytes, size_t n, const char *substr,
                          const char *what) {
    ct_write_bytes(path, bytes, n);
    wsml_safetensors st;
    wsml_err err = {0};
    ct_expect_rejected(wsml_st_read(path, &st, &err), &err, path, substr, what);
    cr_assert_null(st.tensors, "%s: nothing left allocated", what);
}

#define T(name, dt, shape, b, e)                                                                   \
    "\"" name "\":{\"dtype\":\"" dt "\",\"shape\":" shape ",\"data_offsets\":[" #b "," #e "]}"

Test(safetensors, malformed_files_are_errors) {
    char dir[128], path[256];
    ct_tmpdir(dir, sizeof dir, "stbad");
    snprintf(path, sizeof path, "%s/bad.safetensors", dir);
    static const ct_reject_case cases[] = {
        {"{" T("a", "F32", "[2]", 0, 16) "}", 8, "outside"},
        {"{" T("a", "F32", "[3]", 0, 8) "}", 8, "'a'"},
        {"{" T("a", "Q99", "[2]", 0, 8) "}", 8, "Q99"},
        {"{" T("a", "F32", "[2]", 0, 8) "," T("b", "F32", "[1]", 4, 8) "}", 8, "overlap"},
        {"{" T("a", "F32", "[1]", 0, 4) "," T("b", "F32", "[1]", 8, 12) "}", 12, "unused"},
        {"{" T("a", "F32", "[1]", 4, 8) "}", 8, "unused"},
        {"{" T("a", "F32", "[1]", 0, 4) "}", 8, "after the last"},
        {"{" T("a", "F32", "[2]", 8, 0) "}", 8, "outside"},
        {"{" T("a", "F32", "[-2]", 0, 8) "}", 8, "shape"},
        {"{" T("a", "F32", "[2.0]", 0, 8) "}", 8, "shape"},
        {"{" T("a", "F32", "2", 0, 8) "}", 8, "'a'"},
        {"{" T("a", "F32", "[1,1,1,1,1,1,1,1,2]", 0, 8) "}", 8, "dimensions"},
        {"{" T("a", "F32", "[4294967296,4294967296,4294967296]", 0, 8) "}", 8, "large"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,\"8\"]}}", 8, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-8,0]}}", 8, "data_offsets"},
        {"{\"a\":{\"dtype\":32,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype"},
        {"{\"a\":[1,2]}", 8, "'a'"},
        {"{" T("a", "F32", "[2]", 0, 8) "", 8, "JSON"},
        {"{" T("a", "F32", "[2]", 0, 8) "," T("a", "F32", "[2]", 0, 8) "}", 8, "JSON"},
        {"[1,2]", 8, "object"},
        {"\"x\"", 8, "object"},
        {"{\"__metadata__\":{\"k\":1}}", 0, "'k'"},
        {"{\"__metadata__\":[\"k\"]}", 0, "__metadata__"},
        {"{}  junk", 0, "JSON"},
    };
    unsigned char buf[512];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char what[32];
        snprintf(what, sizeof what, "case %zu", i);
        expect_reject(path, buf, make_st(buf, cases[i].header, cases[i].data), cases[i].expect,
                      what);
    }
    // The well-formed neighbours are accepted (zero tensors; an empty tensor anywhere).
    const char *fine[] = {"{}", "{\"__metadata__\":{}}",
                          "{" T("a", "F32", "[2]", 0, 8) "," T("z", "F32", "[0]", 8, 8) "," T(
                              "e", "I8", "[0]", 0, 0) "}"};
    for (size_t i = 0; i < 3; i++) {
        size_t n = make_st(buf, fine[i], i == 2 ? 8 : 0);
        ct_write_bytes(path, buf, n);
        wsml_safetensors st;
        wsml_err err = {0};
        cr_assert_eq(wsml_st_read(path, &st, &err), 0, "fine %zu: %s", i, err.msg);
        wsml_st_free(&st);
    }
    // Every truncation of a valid file is an error.
    size_t n = make_st(buf, "{" T("w", "F32", "[2,2]", 0, 16) "}   ", 16);
    for (size_t k = 0; k < n; k++) {
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu", k);
        expect_reject(path, buf, k, NULL, what);
    }
    // Header length absurd, zero, larger than the file.
    unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, '{', '}'};
    expect_reject(path, huge, 16, "header length", "u64 max header length");
    memset(huge, 0, 8);
    expect_reject(path, huge, 16, "header length", "zero header length");
    huge[0] = 9;
    expect_reject(path, huge, 16, "header length", "header past the end");
    ct_rmdir(dir);
}

Test(safetensors, write_rejects_bad_input_and_leaves_nothing) {
    char dir[128], path[256];
    ct_tmpdir(dir, sizeof dir, "starg");
    snprintf(path, sizeof path, "%s/w.safetensors", dir);
    float x[2] = {1, 2};
    wsml_tensor_view ok = {
        .name = "x", .dtype = WSML_DT_F32, .ndim = 1, .shape = {2}, .data = x, .nbytes = 8};
    wsml_tensor_view two[2] = {ok, ok};
    wsml_err err = {0};
    cr_assert_eq(wsml_st_write(path, two, 2, NULL, &err), WSML_EARG, "repeated name");
    cr_assert(strstr(err.msg, "'x'"), "%s", err.msg);
    wsml_tensor_view t = ok;
    t.name = "__metadata__";
    cr_assert_eq(wsml_st_write(path, &t, 1, NULL, &err), WSML_EARG);
    t = ok, t.nbytes = 12;
    cr_assert_eq(wsml_st_write(path, &t, 1, NULL, &err), WSML_EARG, "bytes != shape");
    t = ok, t.dtype = WSML_DT_STR;
    cr_assert_eq(wsml_st_write(path, &t, 1, NULL, &err), WSML_EARG, "no string tensors");
    t = ok, t.shape[0] = -2;
    cr_assert_eq(wsml_st_write(path, &t, 1, NULL, &err), WSML_EARG);
    t = ok, t.name = NULL;
    cr_assert_eq(wsml_st_write(path, &t, 1, NULL, &err), WSML_EARG);
    cr_assert_eq(wsml_st_write(path, &ok, 1, "{\"epoch\":3}", &err), WSML_EARG,
                 "metadata values are strings");
    cr_assert_eq(wsml_st_write(path, &ok, 1, "[\"a\"]", &err), WSML_EARG);
    cr_assert_eq(wsml_st_write(path, &ok, 1, "{\"a\":", &err), WSML_EARG);
    struct stat st;
    cr_assert_neq(stat(path, &st), 0, "nothing written");
    cr_assert_eq(wsml_st_write(path, &ok, 1, "{\"epoch\":\"3\"}", &err), 0, "%s", err.msg);
    cr_assert_eq(wsml_st_write(path, NULL, 0, NULL, &err), 0, "an empty file is valid: %s",
                 err.msg);
    wsml_safetensors s;
    cr_assert_eq(wsml_st_read(path, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(s.n, 0);
    cr_assert_null(s.metadata_json);
    char m[8];
    cr_assert_null(wsml_st_meta(&s, "epoch", m, sizeof m));
    wsml_st_free(&s);
    ct_rmdir(dir);
}
