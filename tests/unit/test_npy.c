// common/npy: files numpy writes (every supported dtype, versions 1.0/2.0/3.0, 0-d,
// empty, non-ASCII strings) read exactly; files we write load in numpy with identical
// values; malformed headers and truncated files are errors naming the file.
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "common/fileio.h"
#include "common/npy.h"
#include "tests/unit/common_testutil.h"

// name, expected dtype, python expression of the array, format version
static const struct {
    const char *name;
    wsml_dtype dt;
    const char *expr;
    const char *version;
} np_cases[] = {
    {"f4", WSML_DT_F32, "np.arange(12, dtype='<f4').reshape(3, 4) / 7", "None"},
    {"f8", WSML_DT_F64, "np.array([-1e300, -0.0, 5e-324, np.pi, np.inf])", "None"},
    {"f2", WSML_DT_F16, "np.array([1.5, -65504, 6e-8], np.float16)", "None"},
    {"i1", WSML_DT_I8, "np.array([[-128, 0, 127]], dtype=np.int8)", "None"},
    {"u1", WSML_DT_U8, "np.arange(256, dtype=np.uint8).reshape(4, 8, 8)", "None"},
    {"i4", WSML_DT_I32, "np.array([-2**31, 2**31 - 1, 7], dtype=np.int32)", "None"},
    {"i8", WSML_DT_I64, "np.array([-(2**62), 3, 2**53 + 1], dtype=np.int64)", "None"},
    {"b1", WSML_DT_BOOL, "np.array([[True, False], [False, True], [True, True]])", "None"},
    {"u", WSML_DT_STR,
     "np.array(['COCO_val2014_000000000042.jpg', 'x/\\u00e9\\u6f22 b.jpg', '', '\\U0001F600'])",
     "None"},
    {"scalar", WSML_DT_F64, "np.array(2.5)", "None"},
    {"empty", WSML_DT_F32, "np.zeros((0, 5), dtype=np.float32)", "None"},
    {"empty1", WSML_DT_I64, "np.zeros((0,), dtype=np.int64)", "None"},
    {"v2", WSML_DT_F32, "np.arange(6, dtype='<f4').reshape(2, 3)", "(2, 0)"},
    {"v3", WSML_DT_STR, "np.array(['\\u00fcber', 'na\\u00efve'])", "(3, 0)"},
    {"big", WSML_DT_I8, "np.random.RandomState(0).randint(-1, 2, size=(3000, 80)).astype(np.int8)",
     "None"},
    {"noncontig", WSML_DT_F32,
     "np.asfortranarray(np.arange(6, dtype='<f4').reshape(2, 3)).T.copy(order='C')", "None"},
};
#define NCASES (sizeof np_cases / sizeof *np_cases)

Test(npy, reads_what_numpy_writes) {
    char dir[128], code[8192];
    ct_tmpdir(dir, sizeof dir, "npy");
    size_t o = (size_t)snprintf(
        code, sizeof code,
        "import sys, numpy as np\n"
        "from numpy.lib import format as F\n"
        "d = sys.argv[1]\n"
        "def save(name, a, version):\n"
        "    with open(d + '/' + name + '.npy', 'wb') as f: F.write_array(f, a, version)\n"
        "    open(d + '/' + name + '.raw', 'wb').write(np.ascontiguousarray(a).tobytes())\n"
        "    if a.dtype.kind == 'U':\n"
        "        open(d + '/' + name + '.txt', "
        "'wb').write('\\n'.join(a.ravel().tolist()).encode())\n"
        "    else:\n"
        "        open(d + '/' + name + '.f64', 'wb').write(a.astype('<f8').tobytes())\n"
        "    print(name, a.dtype.itemsize, a.ndim, *a.shape)\n");
    for (size_t i = 0; i < NCASES; i++)
        o += (size_t)snprintf(code + o, sizeof code - o, "save('%s', %s, %s)\n", np_cases[i].name,
                              np_cases[i].expr, np_cases[i].version);
    char *manifest = ct_python(code, dir, NULL), *line = manifest;
    for (size_t i = 0; i < NCASES; i++) {
        char name[32], path[256];
        int nread = 0;
        size_t itemsize;
        int ndim;
        cr_assert_eq(sscanf(line, "%31s %zu %d%n", name, &itemsize, &ndim, &nread), 3);
        line += nread;
        int64_t shape[8];
        for (int k = 0; k < ndim; k++) {
            long long v;
            cr_assert_eq(sscanf(line, "%lld%n", &v, &nread), 1);
            shape[k] = v;
            line += nread;
        }
        line = strchr(line, '\n') + 1;
        cr_assert_str_eq(name, np_cases[i].name);

        wsml_npy a;
        wsml_err err = {0};
        snprintf(path, sizeof path, "%s/%s.npy", dir, name);
        cr_assert_eq(wsml_npy_read(path, &a, &err), 0, "%s: %s", name, err.msg);
        cr_assert_eq(a.dtype, np_cases[i].dt, "%s: dtype", name);
        cr_assert_eq(a.itemsize, itemsize, "%s: itemsize", name);
        cr_assert_eq(a.ndim, ndim, "%s: ndim", name);
        size_t count = 1;
        for (int k = 0; k < ndim; k++) {
            cr_assert_eq(a.shape[k], shape[k], "%s: shape[%d]", name, k);
            count *= (size_t)shape[k];
        }
        cr_assert_eq(a.count, count);
        char *raw;
        size_t rawlen;
        snprintf(path, sizeof path, "%s/%s.raw", dir, name);
        cr_assert_eq(wsml_read_file(path, &raw, &rawlen, &err), 0, "%s", err.msg);
        cr_assert_eq(rawlen, a.count * a.itemsize, "%s: data size", name);
        cr_assert(rawlen == 0 || memcmp(raw, a.data, rawlen) == 0, "%s: data differs from numpy's",
                  name);
        free(raw);
        if (a.dtype == WSML_DT_STR) {
            char *txt;
            size_t tl;
            snprintf(path, sizeof path, "%s/%s.txt", dir, name);
            cr_assert_eq(wsml_read_file(path, &txt, &tl, &err), 0, "%s", err.msg);
            char *want = txt;
            for (size_t e = 0; e < a.count; e++) {
                char *nl = strchr(want, '\n');
                if (nl)
                    *nl = '\0';
                char s[256];
                int n = wsml_npy_string(&a, e, s, sizeof s);
                cr_assert_eq(n, (int)strlen(want), "%s[%zu]: length %d, numpy's UTF-8 has %zu",
                             name, e, n, strlen(want));
                cr_assert_str_eq(s, want, "%s[%zu]", name, e);
                want = nl ? nl + 1 : want + strlen(want);
            }
            free(txt);
            double *d = NULL;
            cr_assert_neq(wsml_npy_as_f64(&a, &d, &err), 0, "strings are not numbers");
        } else {
            char *f64;
            size_t fl;
            snprintf(path, sizeof path, "%s/%s.f64", dir, name);
            cr_assert_eq(wsml_read_file(path, &f64, &fl, &err), 0, "%s", err.msg);
            double *d;
            cr_assert_eq(wsml_npy_as_f64(&a, &d, &err), 0, "%s", err.msg);
            cr_assert_eq(fl, a.count * 8);
            cr_assert(fl == 0 || memcmp(d, f64, fl) == 0,
                      "%s: as_f64 differs from numpy's astype(float64)", name);
            free(d);
            free(f64);
        }
        wsml_npy_free(&a);
    }
    free(manifest);
    ct_rmdir(dir);
}

Test(npy, numpy_loads_what_we_write) {
    char dir[128], path[256];
    ct_tmpdir(dir, sizeof dir, "npyw");
    wsml_err err = {0};
    // float32 3-D, int8 labels, uint8 image, int64, bool, float64 0-d, empty, strings
    float f4[2 * 3 * 4];
    for (int i = 0; i < 24; i++)
        f4[i] = (float)i / 3.0f - 2.0f;
    int8_t i1[5 * 7];
    for (int i = 0; i < 35; i++)
        i1[i] = (int8_t)(i % 3 - 1);
    uint8_t u1[4 * 5 * 3];
    for (int i = 0; i < 60; i++)
        u1[i] = (uint8_t)(i * 17);
    int64_t i8[3] = {INT64_MIN, 0, INT64_MAX};
    int32_t i4[2] = {-5, 1 << 30};
    uint8_t b1[4] = {1, 0, 0, 1};
    double f8 = -0.1;
    uint16_t f2[2] = {0x3c00, 0xfbff};
    // <U6: "a.jpg", "é漢😀" (UTF-32LE), "" -- widths padded with NULs
    uint32_t u[3][6] = {{'a', '.', 'j', 'p', 'g', 0}, {0xe9, 0x6f22, 0x1f600, 0, 0, 0}, {0}};
    struct {
        const char *name;
        wsml_dtype dt;
        size_t itemsize;
        int ndim;
        int64_t shape[3];
        const void *data;
        const char *check; // python expression that must be True for array `a`
    } w[] = {
        {"f4",
         WSML_DT_F32,
         4,
         3,
         {2, 3, 4},
         f4,
         "a.dtype == '<f4' and (a == (np.arange(24, dtype='<f4') / np.float32(3) - 2).reshape(2, "
         "3, 4)).all()"},
        {"i1",
         WSML_DT_I8,
         1,
         2,
         {5, 7},
         i1,
         "a.dtype == np.int8 and (a.ravel() == np.arange(35) % 3 - 1).all()"},
        {"u1",
         WSML_DT_U8,
         1,
         3,
         {4, 5, 3},
         u1,
         "a.dtype == np.uint8 and (a.ravel() == (np.arange(60) * 17) % 256).all()"},
        {"i8",
         WSML_DT_I64,
         8,
         1,
         {3},
         i8,
         "a.dtype == np.int64 and a.tolist() == [-2**63, 0, 2**63 - 1]"},
        {"i4", WSML_DT_I32, 4, 1, {2}, i4, "a.dtype == np.int32 and a.tolist() == [-5, 2**30]"},
        {"b1",
         WSML_DT_BOOL,
         1,
         2,
         {2, 2},
         b1,
         "a.dtype == bool and a.tolist() == [[True, False], [False, True]]"},
        {"f8",
         WSML_DT_F64,
         8,
         0,
         {0},
         &f8,
         "a.dtype == np.float64 and a.shape == () and a == -0.1"},
        {"f2",
         WSML_DT_F16,
         2,
         1,
         {2},
         f2,
         "a.dtype == np.float16 and a.tolist() == [1.0, -65504.0]"},
        {"empty", WSML_DT_F32, 4, 2, {0, 3}, NULL, "a.dtype == '<f4' and a.shape == (0, 3)"},
        {"u",
         WSML_DT_STR,
         24,
         1,
         {3},
         u,
         "a.dtype == '<U6' and a.tolist() == ['a.jpg', '\\u00e9\\u6f22\\U0001F600', '']"},
    };
    char code[8192];
    size_t o = (size_t)snprintf(
        code, sizeof code,
        "import sys, numpy as np\n"
        "d = sys.argv[1]\n"
        "def check(name, ok):\n"
        "    raw = open(d + '/' + name + '.npy', 'rb').read()\n"
        "    hlen = int.from_bytes(raw[8:10], 'little')\n"
        "    assert raw[6:8] == b'\\x01\\x00' and (10 + hlen) %% 64 == 0 and raw[9 + hlen:10 + "
        "hlen] == b'\\n', name\n"
        "    a = np.load(d + '/' + name + '.npy')\n"
        "    assert np.load(d + '/' + name + '.npy', mmap_mode='r').shape == a.shape\n"
        "    assert ok(a), (name, a)\n");
    for (size_t i = 0; i < sizeof w / sizeof *w; i++) {
        snprintf(path, sizeof path, "%s/%s.npy", dir, w[i].name);
        cr_assert_eq(
            wsml_npy_write(path, w[i].dt, w[i].itemsize, w[i].ndim, w[i].shape, w[i].data, &err), 0,
            "%s: %s", w[i].name, err.msg);
        o += (size_t)snprintf(code + o, sizeof code - o, "check('%s', lambda a: %s)\n", w[i].name,
                              w[i].check);
        // and we read back what we wrote, byte for byte
        wsml_npy b;
        cr_assert_eq(wsml_npy_read(path, &b, &err), 0, "%s", err.msg);
        cr_assert_eq(b.dtype, w[i].dt);
        cr_assert_eq(b.ndim, w[i].ndim);
        cr_assert_eq(b.itemsize, w[i].itemsize);
        cr_assert(b.count == 0 || memcmp(b.data, w[i].data, b.count * b.itemsize) == 0);
        wsml_npy_free(&b);
    }
    free(ct_python(code, dir, NULL));
    ct_rmdir(dir);
}

static void expect_reject(const char *path, const void *bytes, size_t n, const char *substr,
                          const char *what) {
    ct_write_bytes(path, bytes, n);
    wsml_npy a;
    wsml_err err = {0};
    ct_expect_rejected(wsml_npy_read(path, &a, &err), &err, path, substr, what);
}

// A v1.0 file with the given dict text (padded to 64) and data bytes of zeros.
static size_t make_npy(unsigned char *buf, const char *dict, size_t data) {
    size_t dl = strlen(dict), hlen = dl + 1;
    hlen += (64 - (10 + hlen) % 64) % 64;
    memcpy(buf, "\x93NUMPY\x01\x00", 8);
    buf[8] = (unsigned char)(hlen & 0xff);
    buf[9] = (unsigned char)(hlen >> 8);
    memset(buf + 10, ' ', hlen);
    memcpy(buf + 10, dict, dl);
    buf[10 + hlen - 1] = '\n';
    memset(buf + 10 + hlen, 0, data);
    return 10 + hlen + data;
}

Test(npy, malformed_headers_are_errors) {
    char dir[128], path[256];
    ct_tmpdir(dir, sizeof dir, "npybad");
    snprintf(path, sizeof path, "%s/bad.npy", dir);
    static const ct_reject_case cases[] = {
        {"{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16, "'<c8'"},
        {"{'descr': '>f4', 'fortran_order': False, 'shape': (2,), }", 8, "'>f4'"},
        {"{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", 8, "descr"},
        {"{'descr': '<U0', 'fortran_order': False, 'shape': (2,), }", 0, "descr"},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", 8, "Fortran"},
        {"{'descr': '<f4', 'fortran_order': 0, 'shape': (2,), }", 8, "fortran_order"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 7, "7 bytes"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 9, "need 8"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (3, 4), }", 95, "need 96"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (x,), }", 8, "shape"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (-2,), }", 8, "shape"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2), }", 8, "tuple"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': [2], }", 8, "shape"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2 3,), }", 8, "shape"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,,), }", 8, "shape"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (1,1,1,1,1,1,1,1,1,), }", 4,
         "dimensions"},
        {"{'descr': '<f4', 'shape': (2,), }", 8, "fortran_order"},
        {"{'fortran_order': False, 'shape': (2,), }", 8, "descr"},
        {"{'descr': '<f4', 'fortran_order': False, }", 8, "shape"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), 'extra': 1, }", 8, "'extra'"},
        {"{'descr': '<f4', 'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8,
         "repeated"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 8,
         "too large"},
        {"{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), "
         "}",
         8, "too large"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,) }junk", 8, "dict"},
        {"{'descr': '<f4' 'fortran_order': False, 'shape': (2,), }", 8, "dict"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), ", 8, "dict"},
        {"{'descr: '<f4', 'fortran_order': False, 'shape': (2,), }", 8, NULL},
        {"{'descr': '<f\\4', 'fortran_order': False, 'shape': (2,), }", 8, "descr"},
        {"('descr', '<f4')", 8, "dict"},
        {"garbage", 8, "dict"},
        {"", 8, "dict"},
    };
    unsigned char buf[1024];
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char what[64];
        snprintf(what, sizeof what, "case %zu", i);
        expect_reject(path, buf, make_npy(buf, cases[i].header, cases[i].data), cases[i].expect,
                      what);
    }
    // The well-formed neighbour of those cases is accepted (so the cases test what they say).
    size_t n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8);
    ct_write_bytes(path, buf, n);
    wsml_npy a;
    wsml_err err = {0};
    cr_assert_eq(wsml_npy_read(path, &a, &err), 0, "%s", err.msg);
    wsml_npy_free(&a);
    // Every truncation of a valid file is an error (the header length then exceeds the
    // file, or the data is short).
    for (size_t k = 0; k < n; k++) {
        char what[64];
        snprintf(what, sizeof what, "truncated to %zu", k);
        expect_reject(path, buf, k, NULL, what);
    }
    // Header length beyond the file, bad magic, unknown version, NUL in the header, bool bytes.
    unsigned char b2[64] = "\x93NUMPY\x01\x00\xff\x00{";
    expect_reject(path, b2, 20, "exceeds", "header length");
    memcpy(b2, "\x93NUMPY\x02\x00\xff\xff\xff\x7f", 12);
    expect_reject(path, b2, 40, "exceeds", "v2 header length");
    expect_reject(path, "PK\x03\x04 this is a zip file", 24, "magic", "magic");
    n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8);
    buf[6] = 4;
    expect_reject(path, buf, n, "version 4", "version");
    n = make_npy(buf, "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 8);
    buf[30] = '\0';
    expect_reject(path, buf, n, "NUL", "NUL");
    n = make_npy(buf, "{'descr': '|b1', 'fortran_order': False, 'shape': (3,), }", 3);
    buf[n - 2] = 7;
    expect_reject(path, buf, n, "0/1", "bool");
    expect_reject(path, "", 0, "magic", "empty file");
    snprintf(path, sizeof path, "%s/missing.npy", dir);
    cr_assert_neq(wsml_npy_read(path, &a, &err), 0);
    cr_assert(strstr(err.msg, "missing.npy"), "%s", err.msg);
    cr_assert_neq(wsml_npy_read(dir, &a, &err), 0, "a directory is not a .npy file");
    ct_rmdir(dir);
}

// Random corruption of header bytes: every outcome is a clean error or a valid array
// (this is the unit-test cousin of tests/fuzz/fuzz_npy.c; ASan runs it too).
Test(npy, corrupted_headers_never_crash) {
    char dir[128], path[256];
    ct_tmpdir(dir, sizeof dir, "npyfz");
    snprintf(path, sizeof path, "%s/x.npy", dir);
    unsigned char good[256], buf[256];
    size_t n = make_npy(good, "{'descr': '<i8', 'fortran_order': False, 'shape': (3, 2), }", 48);
    uint32_t s = 12345;
    int accepted = 0;
    for (int it = 0; it < 400; it++) {
        memcpy(buf, good, n);
        for (int k = 0; k < 1 + it % 4; k++) {
            s = s * 1103515245u + 12345u;
            size_t pos = (s >> 8) % 74;
            s = s * 1103515245u + 12345u;
            buf[pos] = (unsigned char)(s >> 16);
        }
        ct_write_bytes(path, buf, n);
        wsml_npy a;
        wsml_err err = {0};
        if (wsml_npy_read(path, &a, &err) == 0) {
            accepted++;
            cr_assert_leq(a.count * a.itemsize, n - 10, "accepted data must lie in the file");
            wsml_npy_free(&a);
        } else {
            cr_assert(err.msg[0] && !strchr(err.msg, '\n'));
        }
    }
    cr_assert_lt(accepted, 400);
    ct_rmdir(dir);
}

Test(npy, string_conversion_edges) {
    uint32_t cells[4][3] = {
        {'a', 'b', 'c'},  // full width, no NUL
        {0x10ffff, 0, 0}, // largest code point: 4 UTF-8 bytes
        {0xd800, 0, 0},   // a surrogate is not a character
        {0x110000, 0, 0}, // beyond Unicode
    };
    wsml_npy a = {
        .dtype = WSML_DT_STR, .itemsize = 12, .ndim = 1, .shape = {4}, .count = 4, .data = cells};
    char buf[16];
    cr_assert_eq(wsml_npy_string(&a, 0, buf, sizeof buf), 3);
    cr_assert_str_eq(buf, "abc");
    cr_assert_eq(wsml_npy_string(&a, 0, buf, 3), -1, "no room for the NUL");
    cr_assert_eq(wsml_npy_string(&a, 0, buf, 4), 3);
    cr_assert_eq(wsml_npy_string(&a, 1, buf, sizeof buf), 4);
    cr_assert_str_eq(buf, "\xf4\x8f\xbf\xbf");
    cr_assert_eq(wsml_npy_string(&a, 2, buf, sizeof buf), -1);
    cr_assert_eq(wsml_npy_string(&a, 3, buf, sizeof buf), -1);
    cr_assert_eq(wsml_npy_string(&a, 4, buf, sizeof buf), -1, "index out of range");
    wsml_npy f = {.dtype = WSML_DT_F32, .itemsize = 4, .count = 1, .data = cells};
    cr_assert_eq(wsml_npy_string(&f, 0, buf, sizeof buf), -1, "not a string array");
}

Test(npy, write_rejects_bad_arguments_and_leaves_nothing) {
    char dir[128], path[256];
    ct_tmpdir(dir, sizeof dir, "npyarg");
    snprintf(path, sizeof path, "%s/x.npy", dir);
    wsml_err err = {0};
    int64_t neg[1] = {-1}, two[1] = {2};
    float d[2] = {1, 2};
    cr_assert_eq(wsml_npy_write(path, WSML_DT_F32, 4, 1, neg, d, &err), WSML_EARG);
    cr_assert_eq(wsml_npy_write(path, WSML_DT_BF16, 2, 1, two, d, &err), WSML_EARG,
                 "no bf16 in numpy");
    cr_assert_eq(wsml_npy_write(path, WSML_DT_STR, 6, 1, two, d, &err), WSML_EARG,
                 "itemsize not 4*n");
    cr_assert_eq(wsml_npy_write(path, WSML_DT_F32, 4, 9, two, d, &err), WSML_EARG);
    cr_assert_eq(wsml_npy_write(path, WSML_DT_F32, 4, 1, two, NULL, &err), WSML_EARG);
    struct stat st;
    cr_assert_neq(stat(path, &st), 0, "nothing written");
    snprintf(path, sizeof path, "%s/no/such/dir/x.npy", dir);
    cr_assert_eq(wsml_npy_write(path, WSML_DT_F32, 4, 1, two, d, &err), WSML_EIO);
    cr_assert(strstr(err.msg, "no/such/dir"), "%s", err.msg);
    ct_rmdir(dir);
}
