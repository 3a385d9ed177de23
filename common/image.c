// The one image codec path, through libvips. Decoding is strict (fail_on=error: a
// truncated or corrupt file is an error), everything is converted to 8-bit sRGB
// with 3 bands. libvips' own threading is off (callers run their own worker threads)
// and its operation cache is disabled so that memory stays bounded when streaming.
#include "common/image.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <vips/vips.h>

#include "common/fileio.h"

static pthread_once_t vips_once = PTHREAD_ONCE_INIT;
static int vips_ok;

static void vips_start(void) {
    if (VIPS_INIT("wsml") == 0) {
        vips_concurrency_set(1);
        vips_cache_set_max(0);
        vips_cache_set_max_mem(0);
        vips_ok = 1;
    }
}

int wsml_image_init(wsml_err *err) {
    pthread_once(&vips_once, vips_start);
    if (!vips_ok) return wsml_errf(err, WSML_EIO, "libvips failed to initialise: %s", vips_error_buffer());
    return 0;
}

// The thread's libvips error text, cleared, without trailing newline.
static void vips_msg(char *buf, size_t cap) {
    snprintf(buf, cap, "%s", vips_error_buffer());
    vips_error_clear();
    size_t n = strlen(buf);
    while (n && (buf[n - 1] == '\n' || buf[n - 1] == ' ')) buf[--n] = '\0';
    for (char *p = buf; *p; p++)
        if (*p == '\n') *p = ' ';
}

// Converts any decoded image to uchar sRGB with 3 bands and copies it out. Unrefs in.
static int to_rgb8(VipsImage *in, wsml_image *out, const char *what, wsml_err *err) {
    VipsImage *a = NULL, *b = NULL;
    char msg[512];
    int rc = 0;
    if (vips_image_hasalpha(in) || in->Bands == 2 || in->Bands > 4) {
        int keep = in->Bands >= 3 ? 3 : 1;
        if (vips_extract_band(in, &a, 0, "n", keep, NULL)) goto fail;
    } else {
        a = in;
        g_object_ref(a);
    }
    if (vips_colourspace(a, &b, VIPS_INTERPRETATION_sRGB, NULL)) goto fail;
    g_object_unref(a);
    a = b;
    b = NULL;
    if (a->BandFmt != VIPS_FORMAT_UCHAR) {
        if (vips_cast_uchar(a, &b, NULL)) goto fail;
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
    if (!mem) goto fail;
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
    rc = wsml_errf(err, WSML_EFORMAT, "%s: cannot decode image: %s", what, msg[0] ? msg : "unknown libvips error");
done:
    if (a) g_object_unref(a);
    if (b) g_object_unref(b);
    g_object_unref(in);
    return rc;
}

int wsml_image_decode_file(const char *path, wsml_image *out, wsml_err *err) {
    memset(out, 0, sizeof *out);
    int rc = wsml_image_init(err);
    if (rc) return rc;
    // Read the bytes ourselves: one code path for files and buffers, and libvips never
    // keeps a file open behind our back.
    char *buf;
    size_t len;
    rc = wsml_read_file(path, &buf, &len, err);
    if (rc) return rc;
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

int wsml_image_decode_buffer(const void *buf, size_t len, wsml_image *out, wsml_err *err) {
    memset(out, 0, sizeof *out);
    int rc = wsml_image_init(err);
    if (rc) return rc;
    if (len == 0) return wsml_errf(err, WSML_EFORMAT, "image buffer: empty");
    VipsImage *in = vips_image_new_from_buffer(buf, len, "", "fail_on", VIPS_FAIL_ON_WARNING, "access",
                                               VIPS_ACCESS_SEQUENTIAL, NULL);
    if (!in) {
        char msg[512];
        vips_msg(msg, sizeof msg);
        return wsml_errf(err, WSML_EFORMAT, "image buffer: cannot decode image: %s", msg);
    }
    return to_rgb8(in, out, "image buffer", err);
}

static VipsImage *wrap(const wsml_image *img) {
    return vips_image_new_from_memory(img->pixels, (size_t)img->height * img->width * img->channels,
                                      img->width, img->height, img->channels, VIPS_FORMAT_UCHAR);
}

int wsml_image_resize(const wsml_image *in, int out_h, int out_w, wsml_image *out, wsml_err *err) {
    memset(out, 0, sizeof *out);
    int rc = wsml_image_init(err);
    if (rc) return rc;
    if (out_h <= 0 || out_w <= 0 || in->height <= 0 || in->width <= 0)
        return wsml_errf(err, WSML_EARG, "resize: bad size %dx%d -> %dx%d", in->width, in->height, out_w, out_h);
    if (in->height == out_h && in->width == out_w) {
        size_t n = (size_t)out_h * out_w * in->channels;
        out->pixels = malloc(n);
        if (!out->pixels) return wsml_errf(err, WSML_ENOMEM, "resize: out of memory");
        memcpy(out->pixels, in->pixels, n);
        out->height = out_h, out->width = out_w, out->channels = in->channels;
        return 0;
    }
    VipsImage *src = wrap(in), *r = NULL;
    if (!src) return wsml_errf(err, WSML_EIO, "resize: libvips could not wrap the image");
    // Triangle (linear) kernel scaled to the reduction, as PIL's antialiased BILINEAR;
    // gap 0 disables libvips' box pre-shrink so the whole reduction uses that kernel.
    double hs = (double)out_w / in->width, vs = (double)out_h / in->height;
    if (vips_resize(src, &r, hs, "vscale", vs, "kernel", VIPS_KERNEL_LINEAR, "gap", 0.0, NULL)) {
        char msg[512];
        vips_msg(msg, sizeof msg);
        g_object_unref(src);
        return wsml_errf(err, WSML_EIO, "resize: %s", msg);
    }
    g_object_unref(src);
    if (r->Xsize != out_w || r->Ysize != out_h) { // rounding: pad/crop the last row/column
        VipsImage *e = NULL;
        if (vips_gravity(r, &e, VIPS_COMPASS_DIRECTION_NORTH_WEST, out_w, out_h, "extend", VIPS_EXTEND_COPY,
                         NULL)) {
            g_object_unref(r);
            return wsml_errf(err, WSML_EIO, "resize: cannot fix output size");
        }
        g_object_unref(r);
        r = e;
    }
    size_t len;
    void *mem = vips_image_write_to_memory(r, &len);
    g_object_unref(r);
    if (!mem) return wsml_errf(err, WSML_EIO, "resize: libvips failed");
    out->pixels = malloc(len);
    if (!out->pixels) {
        g_free(mem);
        return wsml_errf(err, WSML_ENOMEM, "resize: out of memory");
    }
    memcpy(out->pixels, mem, len);
    g_free(mem);
    out->height = out_h, out->width = out_w, out->channels = in->channels;
    return 0;
}

static int encode(const wsml_image *img, int png, int quality, void **buf, size_t *len, wsml_err *err) {
    *buf = NULL;
    *len = 0;
    int rc = wsml_image_init(err);
    if (rc) return rc;
    VipsImage *src = wrap(img);
    if (!src) return wsml_errf(err, WSML_EIO, "encode: libvips could not wrap the image");
    if (img->channels == 3) src->Type = VIPS_INTERPRETATION_sRGB;
    else if (img->channels == 1) src->Type = VIPS_INTERPRETATION_B_W;
    void *vbuf = NULL;
    size_t vlen = 0;
    int bad = png ? vips_pngsave_buffer(src, &vbuf, &vlen, "compression", 6, "strip", TRUE, NULL)
                  : vips_jpegsave_buffer(src, &vbuf, &vlen, "Q", quality, "strip", TRUE, NULL);
    g_object_unref(src);
    if (bad) {
        char msg[512];
        vips_msg(msg, sizeof msg);
        return wsml_errf(err, WSML_EIO, "encode %s: %s", png ? "PNG" : "JPEG", msg);
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

int wsml_image_encode_jpeg(const wsml_image *img, int quality, void **buf, size_t *len, wsml_err *err) {
    if (quality < 1 || quality > 100) return wsml_errf(err, WSML_EARG, "--quality %d: must be 1..100", quality);
    return encode(img, 0, quality, buf, len, err);
}

int wsml_image_encode_png(const wsml_image *img, void **buf, size_t *len, wsml_err *err) {
    return encode(img, 1, 0, buf, len, err);
}

int wsml_image_write_png(const char *path, const wsml_image *img, wsml_err *err) {
    void *buf;
    size_t len;
    int rc = wsml_image_encode_png(img, &buf, &len, err);
    if (rc) return wsml_err_prefix(err, "%s", path);
    rc = wsml_write_file_atomic(path, buf, len, err);
    free(buf);
    return rc;
}

void wsml_image_free(wsml_image *img) {
    if (!img) return;
    free(img->pixels);
    img->pixels = NULL;
}
