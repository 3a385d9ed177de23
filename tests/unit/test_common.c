// common/: numpy-compatible RNG, .npy, safetensors, f16/bf16 and the image codec,
// each checked against Debian's numpy/PIL (the oracle) through $PYTHON.
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/image.h"
#include "common/npy.h"
#include "common/rng.h"
#include "common/safetensors.h"

static const char *py(void) { return getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3"; }

// Runs python code, returns its stdout (malloc'd).
static char *python(const char *code) {
    char path[] = "/tmp/wsml-py-XXXXXX";
    int fd = mkstemp(path);
    cr_assert(fd >= 0);
    cr_assert_eq(write(fd, code, strlen(code)), (ssize_t)strlen(code));
    close(fd);
    char cmd[512];
    snprintf(cmd, sizeof cmd, "%s %s", py(), path);
    FILE *p = popen(cmd, "r");
    cr_assert(p);
    size_t cap = 1 << 20, n = 0;
    char *out = malloc(cap);
    size_t got;
    while ((got = fread(out + n, 1, cap - n - 1, p)) > 0) {
        n += got;
        if (n + 1 == cap) out = realloc(out, cap *= 2);
    }
    out[n] = '\0';
    int st = pclose(p);
    unlink(path);
    cr_assert_eq(st, 0, "python failed:\n%s", code);
    return out;
}

Test(common, rng_matches_numpy) {
    static const uint32_t seeds[] = {0, 999, 1200, 2147483647u, 4294967295u};
    static const size_t sizes[] = {1, 2, 10, 1000, 100000};
    for (size_t si = 0; si < 5; si++) {
        char code[2048];
        snprintf(code, sizeof code,
                 "import numpy as np\n"
                 "for n in (1, 2, 10, 1000, 100000):\n"
                 "    r = np.random.RandomState(%u)\n"
                 "    p = r.permutation(n)\n"
                 "    h = 0\n"
                 "    for v in p.tolist(): h = (h * 1000003 + v) %% (1 << 64)\n"
                 "    a = np.arange(7); r.shuffle(a)\n"
                 "    print(h, r.random_sample().hex(), r.randint(0, 10), r.randint(-5, 5000000000),\n"
                 "          r.uniform(-2, 3).hex(), r.standard_normal().hex(), r.standard_normal().hex(), *a.tolist())\n",
                 seeds[si]);
        char *want = python(code), *line = want;
        for (size_t k = 0; k < 5; k++) {
            wsml_rng r;
            wsml_rng_seed(&r, seeds[si]);
            size_t n = sizes[k];
            int64_t *p = malloc(n * sizeof *p);
            wsml_rng_permutation(&r, p, n);
            unsigned long long h = 0;
            for (size_t i = 0; i < n; i++) h = h * 1000003ull + (unsigned long long)p[i];
            free(p);
            int64_t a[7] = {0, 1, 2, 3, 4, 5, 6};
            wsml_rng_shuffle(&r, a, 7, sizeof *a);
            double d = wsml_rng_double(&r);
            long long i1 = wsml_rng_randint(&r, 0, 10), i2 = wsml_rng_randint(&r, -5, 5000000000LL);
            double u = wsml_rng_uniform(&r, -2, 3), g1 = wsml_rng_normal(&r), g2 = wsml_rng_normal(&r);
            char got[1024];
            snprintf(got, sizeof got, "%llu %.13a %lld %lld %.13a %.13a %.13a %lld %lld %lld %lld %lld %lld %lld", h, d, i1, i2, u,
                     g1, g2, (long long)a[0], (long long)a[1], (long long)a[2], (long long)a[3], (long long)a[4],
                     (long long)a[5], (long long)a[6]);
            char *eol = strchr(line, '\n');
            cr_assert(eol);
            *eol = '\0';
            // python's float.hex() and C's %a spell the same double the same way
            cr_assert_str_eq(got, line, "seed %u size %zu:\n ours  %s\n numpy %s", seeds[si], n, got, line);
            line = eol + 1;
        }
        free(want);
    }
}

Test(common, npy_round_trip_with_numpy) {
    char dir[] = "/tmp/wsml-npy-XXXXXX";
    cr_assert(mkdtemp(dir));
    char p[128], code[2048];
    // numpy writes every supported dtype; we read, then write back; numpy compares.
    snprintf(code, sizeof code,
             "import numpy as np\n"
             "d = '%s'\n"
             "np.save(d + '/f4.npy', np.arange(12, dtype='<f4').reshape(3, 4) / 7)\n"
             "np.save(d + '/f8.npy', np.linspace(-1, 1, 5))\n"
             "np.save(d + '/i1.npy', np.array([[-1, 0, 1]], dtype=np.int8))\n"
             "np.save(d + '/u1.npy', np.arange(256, dtype=np.uint8))\n"
             "np.save(d + '/i8.npy', np.array([-(2**40), 3], dtype=np.int64))\n"
             "np.save(d + '/b1.npy', np.array([True, False, True]))\n"
             "np.save(d + '/u.npy', np.array(['Flickr/a b.jpg', 'x/\\u00e9\\u6f22.jpg', '']))\n"
             "np.save(d + '/empty.npy', np.zeros((0, 5), dtype=np.float32))\n",
             dir);
    free(python(code));
    static const char *names[] = {"f4", "f8", "i1", "u1", "i8", "b1", "u", "empty"};
    for (int i = 0; i < 8; i++) {
        wsml_npy a;
        wsml_err err = {0};
        snprintf(p, sizeof p, "%s/%s.npy", dir, names[i]);
        cr_assert_eq(wsml_npy_read(p, &a, &err), 0, "%s", err.msg);
        snprintf(p, sizeof p, "%s/%s.out.npy", dir, names[i]);
        cr_assert_eq(wsml_npy_write(p, a.dtype, a.itemsize, a.ndim, a.shape, a.data, &err), 0, "%s", err.msg);
        if (i == 6) {
            char s[64];
            cr_assert_eq(wsml_npy_string(&a, 1, s, sizeof s), (int)strlen("x/\xc3\xa9\xe6\xbc\xa2.jpg"));
            cr_assert_str_eq(s, "x/\xc3\xa9\xe6\xbc\xa2.jpg");
        }
        wsml_npy_free(&a);
    }
    snprintf(code, sizeof code,
             "import numpy as np\n"
             "for n in %s:\n"
             "    a = np.load('%s/' + n + '.npy'); b = np.load('%s/' + n + '.out.npy')\n"
             "    assert a.dtype == b.dtype and a.shape == b.shape and (a == b).all(), n\n",
             "['f4','f8','i1','u1','i8','b1','u','empty']", dir, dir);
    free(python(code));
    snprintf(code, sizeof code, "rm -rf %s", dir);
    cr_assert_eq(system(code), 0);
}

static int write_bytes(const char *path, const void *b, size_t n) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    fwrite(b, 1, n, f);
    return fclose(f);
}

Test(common, npy_malformed_headers_rejected) {
    char path[] = "/tmp/wsml-bad-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    const char *hdr_ok = "{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }";
    struct {
        const char *dict;
        size_t data;
        const char *expect;
    } cases[] = {
        {"{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", 16, "descr"},
        {"{'descr': '<f4', 'fortran_order': True, 'shape': (2,), }", 8, "Fortran"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (2,), }", 7, "header says"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (x,), }", 8, "shape"},
        {"{'descr': '<f4', 'shape': (2,), }", 8, "fortran_order"},
        {"{'descr': '<f4', 'fortran_order': False, 'shape': (99999999999999999999,), }", 8, "dimension"},
        {"garbage", 8, "dict"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        unsigned char buf[512] = "\x93NUMPY\x01\x00";
        size_t dl = strlen(cases[i].dict);
        buf[8] = (unsigned char)dl;
        buf[9] = 0;
        memcpy(buf + 10, cases[i].dict, dl);
        memset(buf + 10 + dl, 0, cases[i].data);
        write_bytes(path, buf, 10 + dl + cases[i].data);
        wsml_npy a;
        wsml_err err = {0};
        cr_assert_neq(wsml_npy_read(path, &a, &err), 0, "case %zu accepted", i);
        cr_assert(strstr(err.msg, cases[i].expect), "case %zu: %s", i, err.msg);
        cr_assert(strstr(err.msg, path), "error must name the file: %s", err.msg);
    }
    // header length beyond the file, bad magic, truncated
    unsigned char buf[64] = "\x93NUMPY\x01\x00\xff\x00";
    write_bytes(path, buf, 20);
    wsml_npy a;
    wsml_err err = {0};
    cr_assert_neq(wsml_npy_read(path, &a, &err), 0);
    write_bytes(path, "PK\x03\x04", 4);
    cr_assert_neq(wsml_npy_read(path, &a, &err), 0);
    cr_assert(strstr(err.msg, "magic"), "%s", err.msg);
    (void)hdr_ok;
    unlink(path);
}

Test(common, safetensors_round_trip_and_python) {
    char dir[] = "/tmp/wsml-st-XXXXXX";
    cr_assert(mkdtemp(dir));
    char p[128], code[4096];
    float w[6] = {1, -2, 3.5f, 0.25f, -0.125f, 1e-3f};
    int64_t n[1] = {42};
    uint16_t h[3] = {wsml_f32_to_f16(1.5f), wsml_f32_to_bf16(-2.0f), 0};
    wsml_tensor_view t[3] = {
        {.name = "conv1.weight", .dtype = WSML_DT_F32, .ndim = 2, .shape = {2, 3}, .data = w, .nbytes = 24},
        {.name = "bn1.num_batches_tracked", .dtype = WSML_DT_I64, .ndim = 0, .data = n, .nbytes = 8},
        {.name = "half", .dtype = WSML_DT_F16, .ndim = 1, .shape = {1}, .data = h, .nbytes = 2},
    };
    snprintf(p, sizeof p, "%s/a.safetensors", dir);
    wsml_err err = {0};
    cr_assert_eq(wsml_st_write(p, t, 3, "{\"arch\":\"resnet18\"}", &err), 0, "%s", err.msg);
    // python parses the format by hand (the safetensors module may be absent) and writes one back
    snprintf(code, sizeof code,
             "import json, struct, numpy as np\n"
             "b = open('%s/a.safetensors', 'rb').read(); n = struct.unpack('<Q', b[:8])[0]; h = json.loads(b[8:8+n]); d = b[8+n:]\n"
             "def get(k, dt):\n"
             "    s, e = h[k]['data_offsets']; return np.frombuffer(d[s:e], dt).reshape(h[k]['shape'])\n"
             "assert h['__metadata__'] == {'arch': 'resnet18'}\n"
             "assert (get('conv1.weight', '<f4') == np.array([[1, -2, 3.5], [0.25, -0.125, 1e-3]], np.float32)).all()\n"
             "assert get('bn1.num_batches_tracked', '<i8') == 42\n"
             "assert get('half', '<f2')[0] == 1.5\n"
             "x = np.arange(4, dtype=np.float64).reshape(2, 2); y = np.array([1.0, -3.0], np.float32).astype(np.float16)\n"
             "hdr = {'x': {'dtype': 'F64', 'shape': [2, 2], 'data_offsets': [0, 32]}, 'y': {'dtype': 'F16', 'shape': [2], 'data_offsets': [32, 36]}}\n"
             "j = json.dumps(hdr).encode(); j += b' ' * (-len(j) %% 8)\n"
             "open('%s/b.safetensors', 'wb').write(struct.pack('<Q', len(j)) + j + x.tobytes() + y.tobytes())\n",
             dir, dir);
    free(python(code));
    wsml_safetensors st;
    snprintf(p, sizeof p, "%s/b.safetensors", dir);
    cr_assert_eq(wsml_st_read(p, &st, &err), 0, "%s", err.msg);
    float x[4], y[2];
    int64_t sx[2] = {2, 2}, sy[1] = {2}, bad[2] = {4, 1};
    cr_assert_eq(wsml_st_get_f32(&st, "x", 2, sx, x, &err), 0, "%s", err.msg);
    cr_assert_eq(wsml_st_get_f32(&st, "y", 1, sy, y, &err), 0, "%s", err.msg);
    cr_assert(x[3] == 3.0f && y[1] == -3.0f);
    cr_assert_neq(wsml_st_get_f32(&st, "x", 2, bad, x, &err), 0);
    cr_assert(strstr(err.msg, "'x' has shape [2,2], expected [4,1]"), "%s", err.msg);
    cr_assert_neq(wsml_st_get_f32(&st, "fc.weight", 2, sx, x, &err), 0);
    cr_assert(strstr(err.msg, "fc.weight"), "%s", err.msg);
    wsml_st_free(&st);
    snprintf(code, sizeof code, "rm -rf %s", dir);
    cr_assert_eq(system(code), 0);
}

Test(common, safetensors_malformed_rejected) {
    char path[] = "/tmp/wsml-stbad-XXXXXX";
    int fd = mkstemp(path);
    close(fd);
    const char *cases[] = {
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,16]}}",  // beyond data
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",   // size mismatch
        "{\"a\":{\"dtype\":\"Q99\",\"shape\":[2],\"data_offsets\":[0,8]}}",   // dtype
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
        "\"b\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[4,8]}}",   // overlap
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}",                          // offsets missing
        "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}",    // bad JSON
        "[1,2]",                                                              // not an object
        "{\"__metadata__\":{\"k\":1}}",                                       // metadata value
    };
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        unsigned char buf[512];
        size_t n = strlen(cases[i]);
        for (int k = 0; k < 8; k++) buf[k] = (unsigned char)((uint64_t)n >> (8 * k));
        memcpy(buf + 8, cases[i], n);
        memset(buf + 8 + n, 0, 8);
        write_bytes(path, buf, 8 + n + 8);
        wsml_safetensors st;
        wsml_err err = {0};
        cr_assert_neq(wsml_st_read(path, &st, &err), 0, "case %zu accepted", i);
        cr_assert(strstr(err.msg, path), "case %zu: %s", i, err.msg);
    }
    unsigned char huge[16] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 0};
    write_bytes(path, huge, 16);
    wsml_safetensors st;
    wsml_err err = {0};
    cr_assert_neq(wsml_st_read(path, &st, &err), 0);
    write_bytes(path, huge, 3);
    cr_assert_neq(wsml_st_read(path, &st, &err), 0);
    unlink(path);
}

Test(common, half_precision_matches_numpy) {
    char *out = python("import numpy as np\n"
                       "import warnings; warnings.simplefilter('ignore')\n"
                       "v = np.array([0, -0.0, 1, -2.5, 65504, 65520, 1e-8, 6e-8, 3.14159, 1e5, float('inf')], np.float32)\n"
                       "print(' '.join(str(int(x)) for x in v.astype(np.float16).view(np.uint16)))\n");
    float v[] = {0, -0.0f, 1, -2.5f, 65504, 65520, 1e-8f, 6e-8f, 3.14159f, 1e5f, __builtin_inff()};
    char got[512] = "";
    size_t o = 0;
    for (size_t i = 0; i < sizeof v / sizeof *v; i++) o += snprintf(got + o, sizeof got - o, "%s%u", i ? " " : "", wsml_f32_to_f16(v[i]));
    out[strcspn(out, "\n")] = '\0';
    cr_assert_str_eq(got, out);
    free(out);
    for (uint32_t hbits = 0; hbits < 0x7c00; hbits++) // every finite half round-trips
        cr_assert_eq(wsml_f32_to_f16(wsml_f16_to_f32((uint16_t)hbits)), hbits);
    cr_assert_eq(wsml_f32_to_bf16(1.0f), 0x3f80);
    cr_assert_eq(wsml_bf16_to_f32(0xc000), -2.0f);
}

Test(common, image_decode_resize_against_pil) {
    char dir[] = "/tmp/wsml-img-XXXXXX";
    cr_assert(mkdtemp(dir));
    char code[2048], p[128];
    snprintf(code, sizeof code,
             "import numpy as np\nfrom PIL import Image\n"
             "rng = np.random.RandomState(0)\n"
             "y, x = np.mgrid[0:75, 0:100]\n"
             "a = np.stack([x * 2.5, y * 3.3, (x + y) * 1.4], -1) + rng.randint(0, 20, (75, 100, 3))\n"
             "im = Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))\n"
             "im.save('%s/a.png'); im.save('%s/a.jpg', quality=95); im.convert('L').save('%s/g.png')\n"
             "np.save('%s/pil.npy', np.asarray(im.resize((56, 48), Image.BILINEAR)).astype(np.int32))\n"
             "open('%s/trunc.jpg', 'wb').write(open('%s/a.jpg', 'rb').read()[:600])\n",
             dir, dir, dir, dir, dir, dir);
    free(python(code));
    wsml_image img, g, r;
    wsml_err err = {0};
    snprintf(p, sizeof p, "%s/a.png", dir);
    cr_assert_eq(wsml_image_decode_file(p, &img, &err), 0, "%s", err.msg);
    cr_assert(img.width == 100 && img.height == 75 && img.channels == 3);
    snprintf(p, sizeof p, "%s/g.png", dir);
    cr_assert_eq(wsml_image_decode_file(p, &g, &err), 0, "%s", err.msg);
    cr_assert_eq(g.channels, 3);
    cr_assert(g.pixels[0] == g.pixels[1] && g.pixels[1] == g.pixels[2], "grey replicated");
    cr_assert_eq(wsml_image_resize(&img, 48, 56, &r, &err), 0, "%s", err.msg);
    cr_assert(r.width == 56 && r.height == 48);
    wsml_npy pil;
    snprintf(p, sizeof p, "%s/pil.npy", dir);
    cr_assert_eq(wsml_npy_read(p, &pil, &err), 0, "%s", err.msg);
    double mad = 0;
    for (size_t i = 0; i < pil.count; i++) mad += abs(((int32_t *)pil.data)[i] - r.pixels[i]);
    mad /= (double)pil.count;
    cr_log_info("mean |wsml - PIL| after bilinear resize 100x75 -> 56x48: %.3f grey levels", mad);
    cr_assert_lt(mad, 2.0, "resize differs from PIL by %.3f grey levels on average", mad);
    snprintf(p, sizeof p, "%s/trunc.jpg", dir);
    wsml_image t;
    cr_assert_neq(wsml_image_decode_file(p, &t, &err), 0, "a truncated JPEG must be an error");
    cr_assert(strstr(err.msg, "trunc.jpg"), "%s", err.msg);
    void *buf;
    size_t len;
    cr_assert_eq(wsml_image_encode_png(&r, &buf, &len, &err), 0);
    wsml_image back;
    cr_assert_eq(wsml_image_decode_buffer(buf, len, &back, &err), 0, "%s", err.msg);
    cr_assert_arr_eq(back.pixels, r.pixels, (size_t)48 * 56 * 3);
    free(buf);
    wsml_image_free(&back), wsml_image_free(&img), wsml_image_free(&g), wsml_image_free(&r), wsml_npy_free(&pil);
    snprintf(code, sizeof code, "rm -rf %s", dir);
    cr_assert_eq(system(code), 0);
}
