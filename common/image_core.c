// The half of common/image.h that needs no libvips: JPEG decoding and encoding with
// libjpeg, PIL-exact resizing, freeing. wsml-train and wsml-eval link only this half (they
// run on GPU machines without libvips, docs/benchmarks.md); the linker fails if they reach image.c.
#include <math.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h> // after stdio.h: it uses FILE and size_t without including them

#include "common/image.h"

// ---- JPEG through libjpeg -----------------------------------------------------------
// The defaults that PIL and libvips both leave alone (islow DCT, fancy upsampling), so
// the pixels are theirs. Strict: a libjpeg warning (corrupt or truncated data) is an error.

typedef struct {
    struct jpeg_error_mgr mgr; // first: libjpeg passes &mgr back to us
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_trap;

static void jpeg_fail(j_common_ptr cinfo) {
    jpeg_trap *t = (jpeg_trap *)cinfo->err;
    cinfo->err->format_message(cinfo, t->msg);
    longjmp(t->jump, 1);
}

static void jpeg_message(j_common_ptr cinfo, int level) {
    if (level < 0) // -1 = a warning: the data is damaged
        jpeg_fail(cinfo);
}

// Decodes into out (pixels malloc'd) or longjmps to the trap; no locals live across it.
static int jpeg_decode(struct jpeg_decompress_struct *cinfo, const void *buf, size_t len,
                       wsml_image *out, wsml_err *err) {
    jpeg_mem_src(cinfo, buf, (unsigned long)len);
    jpeg_read_header(cinfo, TRUE);
    if (cinfo->data_precision != 8 ||
        (cinfo->jpeg_color_space != JCS_YCbCr && cinfo->jpeg_color_space != JCS_RGB &&
         cinfo->jpeg_color_space != JCS_GRAYSCALE))
        return wsml_errf(err, WSML_EFORMAT,
                         "JPEG data: %d-bit, colour space %d: only 8-bit grey, RGB or YCbCr",
                         cinfo->data_precision, (int)cinfo->jpeg_color_space);
    if ((uint64_t)cinfo->image_width * cinfo->image_height > WSML_IMAGE_MAX_PIXELS)
        return wsml_errf(
            err, WSML_EFORMAT, "JPEG data: image of %ux%u pixels exceeds the limit of %llu pixels",
            cinfo->image_width, cinfo->image_height, (unsigned long long)WSML_IMAGE_MAX_PIXELS);
    cinfo->out_color_space = JCS_RGB; // grey is replicated, as by PIL's convert('RGB')
    jpeg_start_decompress(cinfo);
    size_t stride = (size_t)cinfo->output_width * 3;
    out->pixels = malloc(stride * cinfo->output_height);
    if (!out->pixels)
        return wsml_errf(err, WSML_ENOMEM, "JPEG data: out of memory for %ux%u pixels",
                         cinfo->output_width, cinfo->output_height);
    while (cinfo->output_scanline < cinfo->output_height) {
        JSAMPROW rows[16];
        int n = 0;
        for (; n < 16 && cinfo->output_scanline + n < cinfo->output_height; n++)
            rows[n] = out->pixels + (cinfo->output_scanline + n) * stride;
        jpeg_read_scanlines(cinfo, rows, (JDIMENSION)n);
    }
    jpeg_finish_decompress(cinfo); // reads up to EOI: a truncated tail warns
    out->height = (int)cinfo->output_height;
    out->width = (int)cinfo->output_width;
    out->channels = 3;
    return 0;
}

int wsml_image_decode_jpeg(const void *buf, size_t len, wsml_image *out, wsml_err *err) {
    memset(out, 0, sizeof *out);
    if (len == 0)
        return wsml_errf(err, WSML_EFORMAT, "JPEG data: empty");
    struct jpeg_decompress_struct cinfo;
    jpeg_trap trap;
    cinfo.err = jpeg_std_error(&trap.mgr);
    trap.mgr.error_exit = jpeg_fail;
    trap.mgr.emit_message = jpeg_message;
    trap.msg[0] = '\0';
    jpeg_create_decompress(&cinfo);
    int rc;
    if (setjmp(trap.jump)) {
        rc = wsml_errf(err, WSML_EFORMAT, "JPEG data: %s", trap.msg);
    } else {
        rc = jpeg_decode(&cinfo, buf, len, out, err);
    }
    jpeg_destroy_decompress(&cinfo);
    if (rc) {
        free(out->pixels);
        memset(out, 0, sizeof *out);
    }
    return rc;
}

// Encoding: jpeg_set_defaults + jpeg_set_quality(q, force_baseline) as PIL's save(quality=q)
// does, hence its quantisation tables and 4:2:0 chroma, so that the decoded pixels are
// PIL's. The output grows in a malloc'd buffer of ours (libjpeg's own leaks on error).
typedef struct {
    struct jpeg_destination_mgr mgr; // first: libjpeg passes &mgr back to us
    uint8_t *buf;
    size_t cap;
} jpeg_sink;

static void sink_start(j_compress_ptr cinfo) {
    jpeg_sink *s = (jpeg_sink *)cinfo->dest;
    s->mgr.next_output_byte = s->buf;
    s->mgr.free_in_buffer = s->cap;
}

// Called when the buffer is full: double it.
static boolean sink_grow(j_compress_ptr cinfo) {
    jpeg_sink *s = (jpeg_sink *)cinfo->dest;
    uint8_t *b = realloc(s->buf, s->cap * 2);
    if (!b) {
        cinfo->err->msg_code = JERR_OUT_OF_MEMORY;
        cinfo->err->msg_parm.i[0] = 0;
        cinfo->err->error_exit((j_common_ptr)cinfo);
    }
    s->buf = b;
    s->mgr.next_output_byte = b + s->cap;
    s->mgr.free_in_buffer = s->cap;
    s->cap *= 2;
    return TRUE;
}

static void sink_end(j_compress_ptr cinfo) {
    (void)cinfo;
}

// Compresses img into sink or longjmps to the trap; no locals live across it.
static void jpeg_encode(struct jpeg_compress_struct *cinfo, const wsml_image *img, int quality,
                        jpeg_sink *sink) {
    sink->mgr.init_destination = sink_start;
    sink->mgr.empty_output_buffer = sink_grow;
    sink->mgr.term_destination = sink_end;
    cinfo->dest = &sink->mgr;
    cinfo->image_width = (JDIMENSION)img->width;
    cinfo->image_height = (JDIMENSION)img->height;
    cinfo->input_components = img->channels;
    cinfo->in_color_space = img->channels == 3 ? JCS_RGB : JCS_GRAYSCALE;
    jpeg_set_defaults(cinfo);
    jpeg_set_quality(cinfo, quality, TRUE);
    jpeg_start_compress(cinfo, TRUE);
    size_t stride = (size_t)img->width * img->channels;
    while (cinfo->next_scanline < cinfo->image_height) {
        JSAMPROW row = img->pixels + cinfo->next_scanline * stride;
        jpeg_write_scanlines(cinfo, &row, 1);
    }
    jpeg_finish_compress(cinfo);
}

int wsml_image_encode_jpeg(const wsml_image *img, int quality, void **buf, size_t *len,
                           wsml_err *err) {
    *buf = NULL;
    *len = 0;
    if (quality < 1 || quality > 100)
        return wsml_errf(err, WSML_EARG, "--quality %d: must be 1..100", quality);
    if ((img->channels != 3 && img->channels != 1) || img->width <= 0 || img->height <= 0 ||
        !img->pixels)
        return wsml_errf(err, WSML_EARG, "encode JPEG: bad image %dx%dx%d (1 or 3 channels)",
                         img->width, img->height, img->channels);
    jpeg_sink sink = {.cap = (size_t)img->width * img->height * img->channels / 4 + 4096};
    if (!(sink.buf = malloc(sink.cap)))
        return wsml_errf(err, WSML_ENOMEM, "encode JPEG: out of memory");
    struct jpeg_compress_struct cinfo;
    jpeg_trap trap;
    cinfo.err = jpeg_std_error(&trap.mgr);
    trap.mgr.error_exit = jpeg_fail;
    trap.mgr.emit_message = jpeg_message;
    trap.msg[0] = '\0';
    jpeg_create_compress(&cinfo);
    int rc = 0;
    if (setjmp(trap.jump))
        rc = wsml_errf(err, WSML_EIO, "encode JPEG: %s", trap.msg);
    else
        jpeg_encode(&cinfo, img, quality, &sink);
    jpeg_destroy_compress(&cinfo);
    if (rc) {
        free(sink.buf);
        return rc;
    }
    *buf = sink.buf;
    *len = sink.cap - sink.mgr.free_in_buffer;
    return 0;
}

// ---- resizing --------------------------------------------------------------------
// PIL's Image.resize(size, BILINEAR) (Pillow's two-pass separable resampling),
// re-derived so that results are bit-identical to PIL and therefore to the reference
// training pipeline (torchvision Resize on PIL images). The triangle kernel is widened
// by the reduction factor when shrinking (antialiasing), weights are normalised per
// output pixel and quantised to 22-bit fixed point; each pass rounds to uint8, the
// horizontal pass first. Integer sums are exact, so any summation order gives PIL's
// result: both passes run as the same contiguous multiply-add over whole lines (the
// horizontal one on the transposed image), which the compiler vectorises.
#define RESAMPLE_BITS 22

static double triangle(double x) {
    if (x < 0.0)
        x = -x;
    return x < 1.0 ? 1.0 - x : 0.0;
}

// For each of out_size output positions: first input index, tap count, and ksize
// fixed-point weights. Returns ksize, or 0 when out of memory.
static int resample_coeffs(int in_size, int out_size, int **bounds_out, int32_t **weights_out) {
    double scale = (double)in_size / out_size, filterscale = scale < 1.0 ? 1.0 : scale;
    double support = 1.0 * filterscale; // the triangle's support is 1
    int ksize = (int)ceil(support) * 2 + 1;
    int *bounds = malloc(sizeof(int) * 2 * (size_t)out_size);
    int32_t *weights = malloc(sizeof(int32_t) * (size_t)out_size * ksize);
    double *k = malloc(sizeof(double) * (size_t)ksize);
    if (!bounds || !weights || !k) {
        free(bounds), free(weights), free(k);
        return 0;
    }
    for (int xx = 0; xx < out_size; xx++) {
        double center = (xx + 0.5) * scale, ww = 0.0, ss = 1.0 / filterscale;
        int xmin = (int)(center - support + 0.5), xmax = (int)(center + support + 0.5);
        if (xmin < 0)
            xmin = 0;
        if (xmax > in_size)
            xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; x++) {
            k[x] = triangle((x + xmin - center + 0.5) * ss);
            ww += k[x];
        }
        for (int x = 0; x < ksize; x++) {
            double w = x < xmax ? (ww != 0.0 ? k[x] / ww : k[x]) : 0.0;
            weights[(size_t)xx * ksize + x] =
                (int32_t)(w < 0 ? -0.5 + w * (1 << RESAMPLE_BITS) : 0.5 + w * (1 << RESAMPLE_BITS));
        }
        bounds[2 * xx] = xmin;
        bounds[2 * xx + 1] = xmax;
    }
    free(k);
    *bounds_out = bounds;
    *weights_out = weights;
    return ksize;
}

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

// One pass along the slow axis. src: [*, len] lines, the first being line `first` of the
// axis; dst: [out_n, len]; dst line j = sum over t < bounds[2j+1] of src line bounds[2j]+t
// times weights[j*ksize+t], rounded and clipped as PIL's clip8.
// Sums fit int32 as in PIL: the weights are non-negative and add up to ~2^22, so a sum is
// below 255 * 2^22 + 2^21 < 2^31.
// Written for the vectoriser (this file is built with -O3): blocks of 64 sums stay in
// registers across the taps. On x86-64 an AVX2 clone, picked at load time where the CPU
// has it, multiplies 8 int32 at once; SSE2 emulates that at about half the speed.
CLONES static void resample_lines(const uint8_t *restrict src, size_t len, int first, int out_n,
                                  const int *bounds, const int32_t *weights, int ksize,
                                  uint8_t *restrict dst) {
    enum { BLOCK = 64 };
    for (int j = 0; j < out_n; j++) {
        const int32_t *k = weights + (size_t)j * ksize;
        const uint8_t *lines = src + (size_t)(bounds[2 * j] - first) * len;
        int n = bounds[2 * j + 1];
        uint8_t *o = dst + (size_t)j * len;
        for (size_t i0 = 0; i0 < len; i0 += BLOCK) {
            size_t m = len - i0 < BLOCK ? len - i0 : BLOCK;
            int32_t acc[BLOCK];
            for (size_t i = 0; i < BLOCK; i++)
                acc[i] = 1 << (RESAMPLE_BITS - 1);
            const uint8_t *line = lines + i0;
            if (m == BLOCK)
                for (int t = 0; t < n; t++, line += len)
                    for (size_t i = 0; i < BLOCK; i++)
                        acc[i] += line[i] * k[t];
            else
                for (int t = 0; t < n; t++, line += len)
                    for (size_t i = 0; i < m; i++)
                        acc[i] += line[i] * k[t];
            for (size_t i = 0; i < m; i++) {
                int32_t v = acc[i] > 0 ? acc[i] >> RESAMPLE_BITS : 0;
                o[i0 + i] = (uint8_t)(v > 255 ? 255 : v);
            }
        }
    }
}

// src: [h, w, C] -> dst: [w, h, C], in tiles that stay in the cache. Not vectorised: for
// this strided copy GCC's vector code takes twice as long as the scalar one.
#if defined(__GNUC__) && !defined(__clang__)
__attribute__((optimize("no-tree-vectorize")))
#endif
static void
transpose(const uint8_t *restrict src, int h, int w, int C, uint8_t *restrict dst) {
    enum { TILE = 32 };
    for (int y0 = 0; y0 < h; y0 += TILE)
        for (int x0 = 0; x0 < w; x0 += TILE) {
            int y1 = y0 + TILE < h ? y0 + TILE : h, x1 = x0 + TILE < w ? x0 + TILE : w;
            for (int x = x0; x < x1; x++) {
                uint8_t *d = dst + ((size_t)x * h + y0) * C;
                const uint8_t *s = src + ((size_t)y0 * w + x) * C;
                if (C == 3)
                    for (int y = y0; y < y1; y++, d += 3, s += (size_t)w * 3)
                        d[0] = s[0], d[1] = s[1], d[2] = s[2];
                else
                    for (int y = y0; y < y1; y++, d += C, s += (size_t)w * C)
                        memcpy(d, s, (size_t)C);
            }
        }
}

int wsml_image_resize(const wsml_image *in, int out_h, int out_w, wsml_image *out, wsml_err *err) {
    memset(out, 0, sizeof *out);
    if (out_h <= 0 || out_w <= 0 || in->height <= 0 || in->width <= 0 || in->channels <= 0 ||
        !in->pixels)
        return wsml_errf(err, WSML_EARG, "resize: bad size %dx%d -> %dx%d", in->width, in->height,
                         out_w, out_h);
    const int C = in->channels, H = in->height, W = in->width;
    const int horizontal = W != out_w, vertical = H != out_h;
    int *hb = NULL, *vb = NULL;
    int32_t *hk = NULL, *vk = NULL;
    int hks = resample_coeffs(W, out_w, &hb, &hk),
        vks = hks ? resample_coeffs(H, out_h, &vb, &vk) : 0;
    // Rows of the input the vertical pass reads; the horizontal pass only produces those.
    int y_first = 0, rows = H;
    if (vks && vertical) {
        y_first = vb[0];
        rows = vb[2 * (out_h - 1)] + vb[2 * out_h - 1] - y_first;
    }
    size_t stride = (size_t)out_w * C, wide = (size_t)(W > out_w ? W : out_w) * C;
    size_t line = (size_t)rows * C, scratch = horizontal ? (size_t)rows * wide : 0;
    uint8_t *dst = malloc((size_t)out_h * stride);
    uint8_t *tmp = scratch ? malloc(scratch) : NULL;
    uint8_t *tmp_t = scratch ? malloc((size_t)rows * stride) : NULL;
    if (!hks || !vks || !dst || (scratch && (!tmp || !tmp_t))) {
        free(hb), free(hk), free(vb), free(vk), free(tmp), free(tmp_t), free(dst);
        return wsml_errf(err, WSML_ENOMEM, "resize: out of memory (%dx%d -> %dx%d)", W, H, out_w,
                         out_h);
    }
    // Horizontal pass: input rows [rows, W, C] -> transposed [W, rows, C] -> resampled
    // [out_w, rows, C] -> transposed back into tmp [rows, out_w, C].
    const uint8_t *src = in->pixels + (size_t)y_first * W * C;
    if (horizontal) {
        transpose(src, rows, W, C, tmp);
        resample_lines(tmp, line, 0, out_w, hb, hk, hks, tmp_t);
        transpose(tmp_t, out_w, rows, C, tmp);
        src = tmp;
    }
    // Vertical pass: src [rows, out_w, C] -> dst [out_h, out_w, C]; a copy when the height
    // does not change.
    if (vertical)
        resample_lines(src, stride, y_first, out_h, vb, vk, vks, dst);
    else
        memcpy(dst, src, (size_t)out_h * stride);
    free(hb), free(hk), free(vb), free(vk), free(tmp), free(tmp_t);
    out->pixels = dst;
    out->height = out_h, out->width = out_w, out->channels = C;
    return 0;
}

void wsml_image_free(wsml_image *img) {
    if (!img)
        return;
    free(img->pixels);
    img->pixels = NULL;
}
