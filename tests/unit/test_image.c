// common/image: decoding equals PIL's Image.open(f).convert('RGB') pixel for pixel,
// resizing equals PIL's Image.resize((w, h), BILINEAR) exactly, JPEG encoding decodes to
// what PIL's save(quality=q) decodes to; broken files are errors naming the file.
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "common/image.h"
#include "tests/unit/common_testutil.h"

// A test picture with edges, gradients and noise (resampling and chroma errors show).
#define PY_PICTURE                                                                                 \
    "import sys, io, numpy as np\n"                                                                \
    "from PIL import Image\n"                                                                      \
    "d = sys.argv[1]\n"                                                                            \
    "rng = np.random.RandomState(0)\n"                                                             \
    "y, x = np.mgrid[0:75, 0:101]\n"                                                               \
    "a = np.stack([128 + 100 * np.sin(x / 7.0) * np.cos(y / 5.0), (x * y) % 256, x * 2.5], -1)\n"  \
    "a = np.clip(a + rng.randint(-20, 20, a.shape), 0, 255).astype(np.uint8)\n"                    \
    "im = Image.fromarray(a)\n"                                                                    \
    "def ref(name):  # PIL's decoded RGB pixels, raw\n"                                            \
    "    open(d + '/' + name + '.rgb', 'wb').write(np.asarray(Image.open(d + '/' + "               \
    "name).convert('RGB')).tobytes())\n"

static const char *formats[] = {"q90.jpg", "q444.jpg", "prog.jpg", "grey.jpg", "cmyk.jpg",
                                "rgb.png", "rgba.png", "la.png",   "l.png",    "p.png",
                                "a.gif",   "a.bmp",    "a.webp",   "extra.jpg"};
#define NFORMATS (sizeof formats / sizeof *formats)

static unsigned char *read_all(const char *path, size_t *n) {
    char *b;
    wsml_err err = {0};
    cr_assert_eq(wsml_read_file(path, &b, n, &err), 0, "%s", err.msg);
    return (unsigned char *)b;
}

Test(image, decode_equals_pil) {
    char dir[128], path[256];
    ct_tmpdir(dir, sizeof dir, "img");
    free(ct_python(
        PY_PICTURE
        "im.save(d + '/q90.jpg', quality=90); im.save(d + '/q444.jpg', quality=90, subsampling=0)\n"
        "im.save(d + '/prog.jpg', quality=75, progressive=True)\n"
        "im.convert('L').save(d + '/grey.jpg'); im.convert('CMYK').save(d + '/cmyk.jpg')\n"
        "im.save(d + '/rgb.png'); im.convert('LA').save(d + '/la.png'); im.convert('L').save(d + "
        "'/l.png')\n"
        "rgba = im.copy(); rgba.putalpha(Image.fromarray(a[:, :, 1])); rgba.save(d + '/rgba.png')\n"
        "im.convert('P').save(d + '/p.png'); im.save(d + '/a.gif'); im.save(d + '/a.bmp')\n"
        "im.save(d + '/a.webp', lossless=True)\n"
        "b = open(d + '/q90.jpg', 'rb').read(); i = b.find(b'\\xff\\xda')\n"
        "open(d + '/extra.jpg', 'wb').write(b[:i] + b'\\x00\\x01\\x02' + b[i:])  # libjpeg warns, "
        "PIL reads\n"
        "for n in "
        "['q90.jpg', 'q444.jpg', 'prog.jpg', 'grey.jpg', 'cmyk.jpg', 'rgb.png', 'rgba.png', "
        "'la.png',"
        " 'l.png', 'p.png', 'a.gif', 'a.bmp', 'a.webp', 'extra.jpg']: ref(n)\n",
        dir, NULL));
    for (size_t i = 0; i < NFORMATS; i++) {
        wsml_image im, im2;
        wsml_err err = {0};
        snprintf(path, sizeof path, "%s/%s", dir, formats[i]);
        cr_assert_eq(wsml_image_decode_file(path, &im, &err), 0, "%s: %s", formats[i], err.msg);
        cr_assert(im.width == 101 && im.height == 75 && im.channels == 3, "%s: %dx%dx%d",
                  formats[i], im.width, im.height, im.channels);
        size_t n, fl;
        snprintf(path, sizeof path, "%s/%s.rgb", dir, formats[i]);
        unsigned char *ref = read_all(path, &n);
        cr_assert_eq(n, (size_t)101 * 75 * 3);
        size_t diff = 0;
        for (size_t k = 0; k < n; k++)
            diff += ref[k] != im.pixels[k];
        cr_assert_eq(diff, 0, "%s: %zu of %zu values differ from PIL's", formats[i], diff, n);
        snprintf(path, sizeof path, "%s/%s", dir, formats[i]);
        unsigned char *file = read_all(path, &fl);
        cr_assert_eq(wsml_image_decode_buffer(file, fl, &im2, &err), 0, "%s: %s", formats[i],
                     err.msg);
        cr_assert_eq(memcmp(im2.pixels, im.pixels, n), 0, "%s: buffer and file decode alike",
                     formats[i]);
        // libjpeg alone (what wsml-train uses for store records): PIL's pixels for plain
        // JPEGs; CMYK and data libjpeg warns about are errors (libvips takes those).
        if (strstr(formats[i], ".jpg")) {
            wsml_image im3;
            int rc = wsml_image_decode_jpeg(file, fl, &im3, &err);
            if (!strcmp(formats[i], "cmyk.jpg") || !strcmp(formats[i], "extra.jpg")) {
                cr_assert_eq(rc, WSML_EFORMAT, "%s: libjpeg alone must refuse it", formats[i]);
                cr_assert_null(im3.pixels);
                cr_assert(strstr(err.msg, "JPEG data: "), "%s", err.msg);
            } else {
                cr_assert_eq(rc, 0, "%s: %s", formats[i], err.msg);
                cr_assert(im3.width == 101 && im3.height == 75 && im3.channels == 3);
                cr_assert_eq(memcmp(im3.pixels, ref, n), 0, "%s: libjpeg differs from PIL",
                             formats[i]);
                wsml_image_free(&im3);
            }
        }
        free(file);
        free(ref);
        wsml_image_free(&im);
        wsml_image_free(&im2);
    }
    ct_rmdir(dir);
}

Test(image, broken_files_are_errors_naming_them) {
    char dir[128], path[256];
    ct_tmpdir(dir, sizeof dir, "imgbad");
    free(ct_python(
        PY_PICTURE
        "im.save(d + '/ok.jpg', quality=90); im.save(d + '/ok.png')\n"
        "b = open(d + '/ok.jpg', 'rb').read()\n"
        "open(d + '/half.jpg', 'wb').write(b[:len(b) // 2])\n"
        "open(d + '/noeoi.jpg', 'wb').write(b[:-2])\n"
        "open(d + '/head.jpg', 'wb').write(b[:300])\n"
        "open(d + '/half.png', 'wb').write(open(d + '/ok.png', 'rb').read()[:-300])\n"
        "open(d + '/noise.jpg', 'wb').write(bytes(rng.randint(0, 256, 5000).astype(np.uint8)))\n"
        "open(d + '/text.png', 'wb').write(b'this is not an image')\n"
        "open(d + '/empty.jpg', 'wb').write(b'')\n"
        "import struct, zlib\n"
        "def chunk(t, data): return struct.pack('>I', len(data)) + t + data + struct.pack('>I', "
        "zlib.crc32(t + data))\n"
        "ihdr = struct.pack('>IIBBBBB', 20000, 10000, 8, 2, 0, 0, 0)  # 200 Mpixel RGB: a "
        "decompression bomb\n"
        "idat = zlib.compress(b'\\0' * (1 + 3 * 20000) * 4)\n"
        "open(d + '/bomb.png', 'wb').write(b'\\x89PNG\\r\\n\\x1a\\n' + chunk(b'IHDR', ihdr) + "
        "chunk(b'IDAT', idat) + chunk(b'IEND', b''))\n"
        "for n in ('half.jpg', 'noeoi.jpg', 'head.jpg', 'half.png'):\n"
        "    try:\n"
        "        Image.open(d + '/' + n).convert('RGB'); print('PIL accepted', n); sys.exit(1)\n"
        "    except OSError: pass  # PIL refuses truncated files too\n",
        dir, NULL));
    static const char *bad[] = {"half.jpg", "noeoi.jpg", "head.jpg", "half.png",   "noise.jpg",
                                "text.png", "empty.jpg", "bomb.png", "missing.jpg"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        wsml_image im;
        wsml_err err = {0};
        snprintf(path, sizeof path, "%s/%s", dir, bad[i]);
        int rc = wsml_image_decode_file(path, &im, &err);
        cr_assert_neq(rc, 0, "%s decoded", bad[i]);
        cr_assert_eq(err.code, rc);
        cr_assert(strstr(err.msg, path), "%s: error must name the file: %s", bad[i], err.msg);
        cr_assert(!strchr(err.msg, '\n'), "one line: %s", err.msg);
        cr_assert_null(im.pixels);
        if (!strcmp(bad[i], "bomb.png"))
            cr_assert(strstr(err.msg, "20000x10000"), "%s", err.msg);
        // libjpeg alone refuses the same data, with one line.
        char *data;
        size_t len;
        if (strstr(bad[i], ".jpg") && wsml_read_file(path, &data, &len, &err) == 0) {
            cr_assert_eq(wsml_image_decode_jpeg(data, len, &im, &err), WSML_EFORMAT, "%s", bad[i]);
            cr_assert_null(im.pixels);
            cr_assert(strstr(err.msg, "JPEG data: ") && !strchr(err.msg, '\n'), "%s", err.msg);
            free(data);
        }
    }
    // A failure does not leak into the next decode, and a later failure's message is its own.
    wsml_image im;
    wsml_err err = {0};
    snprintf(path, sizeof path, "%s/ok.jpg", dir);
    cr_assert_eq(wsml_image_decode_file(path, &im, &err), 0, "%s", err.msg);
    wsml_image_free(&im);
    cr_assert_neq(wsml_image_decode_buffer("", 0, &im, &err), 0);
    cr_assert_neq(wsml_image_decode_buffer("\xff\xd8\xff", 3, &im, &err), 0);
    ct_rmdir(dir);
}

// Output sizes: reductions by integer and fractional factors, enlargements, one axis only,
// identity, and degenerate 1-pixel images.
static const int sizes[][4] = {
    // in_h, in_w, out_h, out_w
    {75, 101, 48, 56},  {75, 101, 224, 224}, {75, 101, 75, 50},   {75, 101, 20, 101},
    {75, 101, 75, 101}, {75, 101, 1, 1},     {75, 101, 150, 202}, {75, 101, 37, 300},
    {1, 1, 5, 3},       {1, 101, 4, 10},     {75, 101, 7, 3},
};
#define NSIZES (sizeof sizes / sizeof *sizes)

Test(image, resize_equals_pil_bilinear_exactly) {
    char dir[128], path[256], code[4096];
    ct_tmpdir(dir, sizeof dir, "imgrs");
    snprintf(code, sizeof code, "%s", PY_PICTURE "for ih, iw, oh, ow in [");
    size_t o = strlen(code);
    for (size_t i = 0; i < NSIZES; i++)
        o += (size_t)snprintf(code + o, sizeof code - o, "(%d, %d, %d, %d), ", sizes[i][0],
                              sizes[i][1], sizes[i][2], sizes[i][3]);
    snprintf(code + o, sizeof code - o,
             "]:\n"
             "    src = Image.fromarray(a[:ih, :iw])\n"
             "    for mode in ('RGB', 'L'):\n"
             "        r = src.convert(mode).resize((ow, oh), Image.BILINEAR)\n"
             "        open('%%s/%%s_%%d_%%d_%%d_%%d.raw' %% (d, mode, ih, iw, oh, ow), "
             "'wb').write(np.asarray(r).tobytes())\n"
             "        if ih == 75 and iw == 101: open('%%s/%%s.src' %% (d, mode), "
             "'wb').write(np.asarray(src.convert(mode)).tobytes())\n");
    free(ct_python(code, dir, NULL));
    for (int grey = 0; grey < 2; grey++) {
        const char *mode = grey ? "L" : "RGB";
        int C = grey ? 1 : 3;
        size_t n;
        snprintf(path, sizeof path, "%s/%s.src", dir, mode);
        unsigned char *full = read_all(path, &n);
        cr_assert_eq(n, (size_t)75 * 101 * C);
        for (size_t i = 0; i < NSIZES; i++) {
            int ih = sizes[i][0], iw = sizes[i][1], oh = sizes[i][2], ow = sizes[i][3];
            unsigned char *crop = malloc((size_t)ih * iw * C);
            for (int y = 0; y < ih; y++)
                memcpy(crop + (size_t)y * iw * C, full + (size_t)y * 101 * C, (size_t)iw * C);
            wsml_image in = {ih, iw, C, crop}, out;
            wsml_err err = {0};
            cr_assert_eq(wsml_image_resize(&in, oh, ow, &out, &err), 0, "%s", err.msg);
            cr_assert(out.height == oh && out.width == ow && out.channels == C);
            snprintf(path, sizeof path, "%s/%s_%d_%d_%d_%d.raw", dir, mode, ih, iw, oh, ow);
            unsigned char *ref = read_all(path, &n);
            cr_assert_eq(n, (size_t)oh * ow * C);
            size_t diff = 0;
            int maxd = 0;
            for (size_t k = 0; k < n; k++) {
                int d = abs(ref[k] - out.pixels[k]);
                diff += d != 0;
                maxd = d > maxd ? d : maxd;
            }
            cr_assert_eq(diff, 0, "%s %dx%d -> %dx%d: %zu of %zu values differ from PIL (max %d)",
                         mode, iw, ih, ow, oh, diff, n, maxd);
            free(ref);
            free(crop);
            wsml_image_free(&out);
        }
        free(full);
    }
    wsml_image in = {2, 2, 3, (uint8_t[12]){0}}, out;
    wsml_err err = {0};
    cr_assert_eq(wsml_image_resize(&in, 0, 5, &out, &err), WSML_EARG);
    cr_assert_eq(wsml_image_resize(&in, 5, -1, &out, &err), WSML_EARG);
    ct_rmdir(dir);
}

// A photo-sized picture to the sizes training uses (upsampled one way, reduced the other,
// reduced both ways): byte-equal to PIL, which is what torchvision's Resize gives.
Test(image, resize_photo_equals_pil_bilinear_exactly) {
    char dir[128], path[256];
    ct_tmpdir(dir, sizeof dir, "imgrs2");
    free(ct_python("import sys, numpy as np\n"
                   "from PIL import Image\n"
                   "d = sys.argv[1]\n"
                   "rng = np.random.RandomState(1)\n"
                   "y, x = np.mgrid[0:375, 0:500]\n"
                   "a = np.stack([128 + 120 * np.sin(x / 9.0) * np.cos(y / 4.0), (x ^ y) % 256,"
                   " (x * 3 + y) % 256], -1)\n"
                   "a = np.clip(a + rng.randint(-40, 40, a.shape), 0, 255).astype(np.uint8)\n"
                   "open(d + '/src.raw', 'wb').write(a.tobytes())\n"
                   "for s in (448, 224, 96):\n"
                   "    r = Image.fromarray(a).resize((s, s), Image.BILINEAR)\n"
                   "    open('%s/%d.raw' % (d, s), 'wb').write(np.asarray(r).tobytes())\n",
                   dir, NULL));
    size_t n;
    snprintf(path, sizeof path, "%s/src.raw", dir);
    wsml_image in = {375, 500, 3, read_all(path, &n)};
    cr_assert_eq(n, (size_t)375 * 500 * 3);
    static const int sides[] = {448, 224, 96};
    for (size_t i = 0; i < sizeof sides / sizeof *sides; i++) {
        wsml_image out;
        wsml_err err = {0};
        cr_assert_eq(wsml_image_resize(&in, sides[i], sides[i], &out, &err), 0, "%s", err.msg);
        snprintf(path, sizeof path, "%s/%d.raw", dir, sides[i]);
        unsigned char *ref = read_all(path, &n);
        cr_assert_eq(n, (size_t)sides[i] * sides[i] * 3);
        size_t diff = 0;
        for (size_t k = 0; k < n; k++)
            diff += ref[k] != out.pixels[k];
        cr_assert_eq(diff, 0, "500x375 -> %d: %zu of %zu values differ from PIL", sides[i], diff,
                     n);
        free(ref);
        wsml_image_free(&out);
    }
    free(in.pixels);
    ct_rmdir(dir);
}

Test(image, encode_matches_pil_and_png_is_lossless) {
    char dir[128], path[256];
    ct_tmpdir(dir, sizeof dir, "imgenc");
    free(ct_python(
        PY_PICTURE
        "im.save(d + '/src.png')\n"
        "for q in (10, 50, 95):\n"
        "    b = io.BytesIO(); im.save(b, 'JPEG', quality=q)\n"
        "    open(d + '/pil%d.rgb' % q, 'wb').write(np.asarray(Image.open(b)).tobytes())\n",
        dir, NULL));
    wsml_image im;
    wsml_err err = {0};
    snprintf(path, sizeof path, "%s/src.png", dir);
    cr_assert_eq(wsml_image_decode_file(path, &im, &err), 0, "%s", err.msg);
    static const int qualities[] = {10, 50, 95}; // 10: tables clamped to baseline
    for (size_t qi = 0; qi < sizeof qualities / sizeof *qualities; qi++) {
        int q = qualities[qi];
        void *buf;
        size_t len, n;
        cr_assert_eq(wsml_image_encode_jpeg(&im, q, &buf, &len, &err), 0, "%s", err.msg);
        snprintf(path, sizeof path, "%s/ours%d.jpg", dir, q);
        cr_assert_eq(wsml_write_file_atomic(path, buf, len, &err), 0, "%s", err.msg);
        wsml_image back;
        cr_assert_eq(wsml_image_decode_buffer(buf, len, &back, &err), 0, "%s", err.msg);
        snprintf(path, sizeof path, "%s/pil%d.rgb", dir, q);
        unsigned char *ref = read_all(path, &n);
        cr_assert_eq(n, (size_t)75 * 101 * 3);
        cr_assert_eq(memcmp(ref, back.pixels, n), 0,
                     "quality %d: our JPEG decodes differently from PIL's", q);
        free(ref);
        free(buf);
        wsml_image_free(&back);
    }
    void *a, *b;
    size_t la, lb;
    cr_assert_eq(wsml_image_encode_png(&im, &a, &la, &err), 0, "%s", err.msg);
    cr_assert_eq(wsml_image_encode_png(&im, &b, &lb, &err), 0, "%s", err.msg);
    cr_assert(la == lb && memcmp(a, b, la) == 0, "PNG output is deterministic");
    free(b);
    wsml_image back;
    cr_assert_eq(wsml_image_decode_buffer(a, la, &back, &err), 0, "%s", err.msg);
    cr_assert_eq(memcmp(back.pixels, im.pixels, (size_t)75 * 101 * 3), 0, "PNG is lossless");
    wsml_image_free(&back);
    free(a);
    snprintf(path, sizeof path, "%s/out.png", dir);
    cr_assert_eq(wsml_image_write_png(path, &im, &err), 0, "%s", err.msg);
    // PIL reads our PNG and JPEG; the PNG has no time stamp or text chunks.
    char *out = ct_python(
        "import sys, numpy as np\nfrom PIL import Image\nd = sys.argv[1]\n"
        "a = np.asarray(Image.open(d + '/out.png')); b = np.asarray(Image.open(d + '/src.png'))\n"
        "assert a.shape == b.shape and (a == b).all()\n"
        "raw = open(d + '/out.png', 'rb').read(); i = 8; kinds = []\n"
        "while i < len(raw):\n"
        "    n = int.from_bytes(raw[i:i + 4], 'big'); kinds.append(raw[i + 4:i + 8].decode()); i "
        "+= 12 + n\n"
        "assert not {'tIME', 'tEXt', 'zTXt', 'iTXt'} & set(kinds), kinds\n"
        "assert Image.open(d + '/ours95.jpg').size == (101, 75)\n"
        "print('ok')\n",
        dir, NULL);
    cr_assert_str_eq(out, "ok\n");
    free(out);
    void *buf;
    size_t len;
    cr_assert_eq(wsml_image_encode_jpeg(&im, 0, &buf, &len, &err), WSML_EARG);
    cr_assert_eq(wsml_image_encode_jpeg(&im, 101, &buf, &len, &err), WSML_EARG);
    snprintf(path, sizeof path, "%s/no/dir/x.png", dir);
    cr_assert_neq(wsml_image_write_png(path, &im, &err), 0);
    cr_assert(strstr(err.msg, "no/dir/x.png"), "%s", err.msg);
    wsml_image_free(&im);
    ct_rmdir(dir);
}

// Callers decode and resize from several worker threads at once.
static const unsigned char *mt_file;
static size_t mt_len;
static const wsml_image *mt_want;

static void *mt_worker(void *arg) {
    (void)arg;
    for (int i = 0; i < 20; i++) {
        wsml_image im, r;
        wsml_err err = {0};
        if (wsml_image_decode_buffer(mt_file, mt_len, &im, &err) != 0)
            return (void *)1;
        if (wsml_image_resize(&im, 32, 40, &r, &err) != 0)
            return (void *)2;
        int same = memcmp(r.pixels, mt_want->pixels, (size_t)32 * 40 * 3) == 0;
        wsml_image_free(&im);
        wsml_image_free(&r);
        if (!same)
            return (void *)3;
    }
    return NULL;
}

Test(image, concurrent_decode_and_resize) {
    wsml_image src = {60, 80, 3, malloc(60 * 80 * 3)}, want, im;
    for (int i = 0; i < 60 * 80 * 3; i++)
        src.pixels[i] = (uint8_t)((i * 37) ^ (i >> 7));
    void *buf;
    size_t len;
    wsml_err err = {0};
    cr_assert_eq(wsml_image_encode_jpeg(&src, 85, &buf, &len, &err), 0, "%s", err.msg);
    cr_assert_eq(wsml_image_decode_buffer(buf, len, &im, &err), 0, "%s", err.msg);
    cr_assert_eq(wsml_image_resize(&im, 32, 40, &want, &err), 0, "%s", err.msg);
    mt_file = buf, mt_len = len, mt_want = &want;
    pthread_t th[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&th[i], NULL, mt_worker, NULL);
    for (int i = 0; i < 4; i++) {
        void *rc;
        pthread_join(th[i], &rc);
        cr_assert_null(rc, "thread %d failed (%ld)", i, (long)rc);
    }
    free(buf);
    wsml_image_free(&src), wsml_image_free(&want), wsml_image_free(&im);
}
