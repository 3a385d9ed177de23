// The one image codec path, through libvips (JPEG goes through libjpeg first, in
// image_core.c). Decoding is strict (fail_on=error: a truncated or corrupt file is an
// error), everything is converted to 8-bit sRGB with 3 bands. libvips' own threading is
// off (callers run their own worker threads) and its operation cache is disabled so that
// memory stays bounded when streaming.
#include "common/image.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "common/fileio.h"

static pthread_once_t vips_once = PTHREAD_ONCE_INIT;
static int vips_ok;

// libvips reports recoverable decoder trouble with g_warning on stderr; a library must
// not print, and the failures that matter come back as errors anyway.
static void no_log(const gchar *domain, GLogLevelFlags level, const gchar *msg, gpointer data) {
    (void)domain, (void)level, (void)msg, (void)data;
}

static void vips_start(void) {
    g_log_set_handler("VIPS", G_LOG_LEVEL_WARNING | G_LOG_LEVEL_MESSAGE | G_LOG_LEVEL_INFO, no_log,
                      NULL);
    if (VIPS_INIT("wsml") == 0) {
        vips_concurrency_set(1);
        vips_cache_set_max(0);
        vips_cache_set_max_mem(0);
        vips_ok = 1;
    }
}

int wsml_image_init(wsml_err *err) {
    pthread_once(&vips_once, vips_start);
    if (!vips_ok)
        return wsml_errf(err, WSML_EIO, "libvips failed to initialise: %s", vips_error_buffer());
    return 0;
}

// libvips' error text as one line, and the buffer cleared. In libvips 8.14 the buffer is
// process-wide: with several decoding threads a message may carry another thread's
// text; ours always names the file, and the failure itself is never lost.
static void vips_msg(char *buf, size_t cap) {
    snprintf(buf, cap, "%s", vips_error_buffer());
    vips_error_clear();
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' '))
        buf[--n] = '\0';
    for (char *p = buf; *p; p++)
        if (*p == '\n')
            *p = ' ';
}

// CMYK (8-bit, uninverted) to RGB the way PIL's convert('RGB') does it, without a
// colour profile: R = (255-K) - C*(255-K)/255 with PIL's rounded division by 255, so that
// the rare CMYK JPEGs of the datasets decode to the pixels the reference trained on.
static int cmyk_to_rgb8(VipsImage *in, wsml_image *out, const char *what, wsml_err *err) {
    VipsImage *a = NULL;
    if (vips_extract_band(in, &a, 0, "n", 4, NULL)) {
        char msg[512];
        vips_msg(msg, sizeof msg);
        return wsml_errf(err, WSML_EFORMAT, "%s: cannot decode image: %s", what, msg);
    }
    size_t len;
    uint8_t *mem = vips_image_write_to_memory(a, &len);
    int w = a->Xsize, h = a->Ysize;
    g_object_unref(a);
    if (!mem) {
        char msg[512];
        vips_msg(msg, sizeof msg);
        return wsml_errf(err, WSML_EFORMAT, "%s: cannot decode image: %s", what, msg);
    }
    size_t n = (size_t)w * h;
    out->pixels = malloc(n * 3);
    if (!out->pixels) {
        g_free(mem);
        return wsml_errf(err, WSML_ENOMEM, "%s: out of memory decoding image", what);
    }
    for (size_t i = 0; i < n; i++) {
        int nk = 255 - mem[4 * i + 3];
        for (int c = 0; c < 3; c++) {
            int t = mem[4 * i + c] * nk + 128, v = nk - (((t >> 8) + t) >> 8);
            out->pixels[3 * i + c] = (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
        }
    }
    g_free(mem);
    out->height = h, out->width = w, out->channels = 3;
    return 0;
}

// Converts any decoded image to uchar sRGB with 3 bands and copies it out. Unrefs in.
static int to_rgb8(VipsImage *in, wsml_image *out, const char *what, wsml_err *err) {
    VipsImage *a = NULL, *b = NULL;
    char msg[512];
    int rc = 0;
    // PIL refuses images above 2 * Image.MAX_IMAGE_PIXELS as decompression bombs; so do
    // we, before any pixel is decoded (the header alone gave the size).
    if ((uint64_t)in->Xsize * (uint64_t)in->Ysize > WSML_IMAGE_MAX_PIXELS) {
        rc = wsml_errf(err, WSML_EFORMAT,
                       "%s: image of %dx%d pixels exceeds the limit of %llu pixels", what,
                       in->Xsize, in->Ysize, (unsigned long long)WSML_IMAGE_MAX_PIXELS);
        g_object_unref(in);
        return rc;
    }
    if (in->Type == VIPS_INTERPRETATION_CMYK && in->BandFmt == VIPS_FORMAT_UCHAR &&
        in->Bands >= 4) {
        rc = cmyk_to_rgb8(in, out, what, err);
        g_object_unref(in);
        return rc;
    }
    if (vips_image_hasalpha(in) || in->Bands == 2 || in->Bands > 4) {
        int keep = in->Bands >= 3 ? 3 : 1;
        if (vips_extract_band(in, &a, 0, "n", keep, NULL))
            goto fail;
    } else {
        a = in;
        g_object_ref(a);
    }
    if (vips_colourspace(a, &b, VIPS_INTERPRETATION_sRGB, NULL))
        goto fail;
    g_object_unref(a);
    a = b;
    b = NULL;
    if (a->BandFmt != VIPS_FORMAT_UCHAR) {
        if (vips_cast_uchar(a, &b, NULL))
            goto fail;
        g_object_unref(a);
        a = b;
        b = NULL;
    }
    if (a->Bands != 3) {
        vips_error("wsml", "unexpected %d bands after conversion", a->Bands);
        goto fail;
    }
    size_t len;
    void *mem = vips_image_write_to_memory(a, &len);
    if (!mem)
        goto fail;
    out->height = a->Ysize;
    out->width = a->Xsize;
    out->channels = 3;
    out->pixels = malloc(len);
    if (!out->pixels) {
        g_free(mem);
        rc = wsml_errf(err, WSML_ENOMEM, "%s: out of memory decoding image", what);
        goto done;
    }
    memcpy(out->pixels, mem, len);
    g_free(mem);
    goto done;
fail:
    vips_msg(msg, sizeof msg);
    rc = wsml_errf(err, WSML_EFORMAT, "%s: cannot decode image: %s", what,
                   msg[0] ? msg : "unknown libvips error");
done:
    if (a)
        g_object_unref(a);
    if (b)
        g_object_unref(b);
    g_object_unref(in);
    return rc;
}

int wsml_image_decode_file(const char *path, wsml_image *out, wsml_err *err) {
    memset(out, 0, sizeof *out);
    int rc = wsml_image_init(err);
    if (rc)
        return rc;
    // Read the bytes ourselves: one code path for files and buffers, and libvips never
    // keeps a file open behind our back.
    char *buf;
    size_t len;
    rc = wsml_read_file(path, &buf, &len, err);
    if (rc)
        return rc;
    rc = wsml_image_decode_buffer(buf, len, out, err);
    free(buf);
    if (rc) {
        // Replace the "buffer" wording with the path.
        char old[sizeof err->msg];
        if (err) {
            snprintf(old, sizeof old, "%s", err->msg);
            const char *p = strstr(old, ": ");
            wsml_errf(err, rc, "%s%s", path, p ? p : old);
        }
    }
    return rc;
}

// The image formats wsml reads: libvips' own loaders for JPEG, PNG, WebP, GIF, TIFF and
// HEIF, and ImageMagick (libvips' fallback) for BMP only. Any other data would reach
// ImageMagick's long tail of loaders: fuzzing found 27 bytes that its TGA reader took
// for a huge image (1 s and 400 MB each), and it can "decode" a damaged file into
// garbage pixels where it should be skipped as corrupt. Returns the loader or NULL.
static const char *accepted_loader(const void *buf, size_t len) {
    static const char *const native[] = {"VipsForeignLoadJpegBuffer", "VipsForeignLoadPngBuffer",
                                         "VipsForeignLoadWebpBuffer", "VipsForeignLoadNsgifBuffer",
                                         "VipsForeignLoadGifBuffer",  "VipsForeignLoadTiffBuffer",
                                         "VipsForeignLoadHeifBuffer"};
    const char *l = vips_foreign_find_load_buffer(buf, len);
    vips_error_clear();
    if (!l)
        return NULL;
    for (size_t i = 0; i < sizeof native / sizeof *native; i++)
        if (!strcmp(l, native[i]))
            return l;
    if (!strcmp(l, "VipsForeignLoadMagickBuffer") && len >= 14 && !memcmp(buf, "BM", 2))
        return l;
    return NULL;
}

int wsml_image_decode_buffer(const void *buf, size_t len, wsml_image *out, wsml_err *err) {
    memset(out, 0, sizeof *out);
    int rc = wsml_image_init(err);
    if (rc)
        return rc;
    if (len == 0)
        return wsml_errf(err, WSML_EFORMAT, "image buffer: empty");
    // JPEG, most of every dataset, goes straight through libjpeg: the same pixels as
    // libvips' jpegload without its pipeline (4x faster per image). libvips still takes
    // what libjpeg alone refuses (CMYK, 12-bit, data it warns about, which fail_on=error
    // may accept): the result and the error messages are those of before.
    if (len >= 3 && !memcmp(buf, "\xff\xd8\xff", 3)) {
        wsml_err quiet;
        rc = wsml_image_decode_jpeg(buf, len, out, &quiet);
        if (rc != WSML_EFORMAT)
            return rc ? wsml_errf(err, rc, "image buffer: %s", quiet.msg) : 0;
    }
    const char *loader = accepted_loader(buf, len);
    if (!loader)
        return wsml_errf(err, WSML_EFORMAT,
                         "image buffer: cannot decode image: not JPEG, PNG, "
                         "WebP, GIF, TIFF, HEIF or BMP data");
    VipsImage *in = vips_image_new_from_buffer(buf, len, "", "fail_on", VIPS_FAIL_ON_ERROR,
                                               "access", VIPS_ACCESS_SEQUENTIAL, NULL);
    if (!in) {
        char msg[512];
        vips_msg(msg, sizeof msg);
        return wsml_errf(err, WSML_EFORMAT, "image buffer: cannot decode image: %s", msg);
    }
    rc = to_rgb8(in, out, "image buffer", err);
    // libvips also appends decoder warnings to its (process-wide) error buffer; drop
    // them so that they do not end up in the next failure's message.
    if (rc == 0)
        vips_error_clear();
    return rc;
}

static VipsImage *wrap(const wsml_image *img) {
    return vips_image_new_from_memory(img->pixels, (size_t)img->height * img->width * img->channels,
                                      img->width, img->height, img->channels, VIPS_FORMAT_UCHAR);
}

// PNG through libvips (JPEG encoding is libjpeg's, in image_core.c).
int wsml_image_encode_png(const wsml_image *img, void **buf, size_t *len, wsml_err *err) {
    *buf = NULL;
    *len = 0;
    int rc = wsml_image_init(err);
    if (rc)
        return rc;
    VipsImage *src = wrap(img);
    if (!src)
        return wsml_errf(err, WSML_EIO, "encode: libvips could not wrap the image");
    if (img->channels == 3)
        src->Type = VIPS_INTERPRETATION_sRGB;
    else if (img->channels == 1)
        src->Type = VIPS_INTERPRETATION_B_W;
    void *vbuf = NULL;
    size_t vlen = 0;
    int bad = vips_pngsave_buffer(src, &vbuf, &vlen, "compression", 6, "strip", TRUE, NULL);
    g_object_unref(src);
    if (bad) {
        char msg[512];
        vips_msg(msg, sizeof msg);
        return wsml_errf(err, WSML_EIO, "encode PNG: %s", msg);
    }
    *buf = malloc(vlen);
    if (!*buf) {
        g_free(vbuf);
        return wsml_errf(err, WSML_ENOMEM, "encode: out of memory");
    }
    memcpy(*buf, vbuf, vlen);
    g_free(vbuf);
    *len = vlen;
    return 0;
}

int wsml_image_write_png(const char *path, const wsml_image *img, wsml_err *err) {
    void *buf;
    size_t len;
    int rc = wsml_image_encode_png(img, &buf, &len, err);
    if (rc)
        return wsml_err_prefix(err, "%s", path);
    rc = wsml_write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

static int render_text(const char *text, const char *font, wsml_image *out, wsml_err *err);

// Without any usable font Pango does not fail: it draws every character as the same
// empty "tofu" box. Two strings of different glyphs that render to identical masks
// mean there is no font. Probed once per process, with the first caller's font.
static pthread_mutex_t text_probe_mu = PTHREAD_MUTEX_INITIALIZER;
static int text_probe; // 0 not probed, 1 fonts render, -1 no usable font

static int fonts_render(const char *font, wsml_err *err) {
    pthread_mutex_lock(&text_probe_mu);
    if (text_probe == 0) {
        wsml_image a = {0}, b = {0};
        int ra = render_text("il", font, &a, err), rb = ra ? ra : render_text("MW", font, &b, err);
        if (ra || rb)
            text_probe = -1;
        else
            text_probe = a.width == b.width && a.height == b.height &&
                                 !memcmp(a.pixels, b.pixels, (size_t)a.width * a.height)
                             ? -1
                             : 1;
        wsml_image_free(&a);
        wsml_image_free(&b);
    }
    int ok = text_probe > 0;
    pthread_mutex_unlock(&text_probe_mu);
    if (!ok)
        return wsml_errf(err, WSML_EIO,
                         "cannot render text: no usable font (fontconfig finds none)");
    return 0;
}

int wsml_image_text(const char *text, const char *font, wsml_image *out, wsml_err *err) {
    memset(out, 0, sizeof *out);
    int rc = wsml_image_init(err);
    if (rc)
        return rc;
    if ((rc = fonts_render(font, err)))
        return rc;
    return render_text(text, font, out, err);
}

static int render_text(const char *text, const char *font, wsml_image *out, wsml_err *err) {
    memset(out, 0, sizeof *out);
    // vips_text reads Pango markup: escape the text so that "&" or "<" print as themselves.
    gchar *escaped = g_markup_escape_text(text, -1);
    VipsImage *mask = NULL;
    int bad = vips_text(&mask, escaped, "font", font, "dpi", 72, NULL);
    g_free(escaped);
    char msg[512];
    if (bad || !mask) {
        vips_msg(msg, sizeof msg);
        return wsml_errf(err, WSML_EIO, "cannot render text \"%s\" in font \"%s\": %s", text, font,
                         msg[0] ? msg : "unknown libvips error");
    }
    size_t len = 0;
    void *mem = mask->Bands == 1 && mask->BandFmt == VIPS_FORMAT_UCHAR
                    ? vips_image_write_to_memory(mask, &len)
                    : NULL;
    int w = mask->Xsize, h = mask->Ysize;
    g_object_unref(mask);
    if (!mem || (size_t)w * h != len || w < 1 || h < 1) {
        vips_msg(msg, sizeof msg);
        g_free(mem);
        return wsml_errf(err, WSML_EIO, "cannot render text \"%s\" in font \"%s\": %s", text, font,
                         msg[0] ? msg : "no glyphs (no usable font?)");
    }
    out->pixels = malloc(len);
    if (!out->pixels) {
        g_free(mem);
        return wsml_errf(err, WSML_ENOMEM, "text: out of memory");
    }
    memcpy(out->pixels, mem, len);
    g_free(mem);
    out->height = h, out->width = w, out->channels = 1;
    return 0;
}
