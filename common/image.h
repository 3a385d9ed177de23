// The one image codec path (libvips): decode any format libvips reads, resize,
// encode JPEG/PNG. Images in memory are HWC uint8, 3 channels (RGB) unless stated.
// wsml_image_decode_jpeg, wsml_image_encode_jpeg, wsml_image_resize and wsml_image_free
// need no libvips (common/image_core.c, libjpeg; linked alone by wsml-train and
// wsml-eval); the rest is common/image.c.
#ifndef WSML_IMAGE_H
#define WSML_IMAGE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

// Larger images are refused before decoding: 2 * PIL's Image.MAX_IMAGE_PIXELS, where PIL
// raises DecompressionBombError.
#define WSML_IMAGE_MAX_PIXELS (2ull * 89478485ull)

typedef struct {
    int height, width, channels;
    uint8_t *pixels; // height*width*channels bytes, malloc'd
} wsml_image;

// Initialises libvips once (thread-safe); returns 0 or an error.
int wsml_image_init(wsml_err *err);

// Decodes a file or memory buffer to RGB HWC uint8 (grey replicated, alpha dropped,
// CMYK/16-bit converted), fully: a truncated or corrupt file is an error naming it.
// 8-bit JPEG/PNG/GIF/BMP/WebP and CMYK JPEG give exactly PIL's .convert('RGB') pixels.
int wsml_image_decode_file(const char *path, wsml_image *out, wsml_err *err);
int wsml_image_decode_buffer(const void *buf, size_t len, wsml_image *out, wsml_err *err);
// Decodes 8-bit greyscale, RGB or YCbCr JPEG data with libjpeg alone (no libvips) to the
// same pixels as wsml_image_decode_buffer. Anything else (CMYK, 12-bit, not JPEG) and any
// data libjpeg warns about (corrupt, truncated) is WSML_EFORMAT; out of memory WSML_ENOMEM.
// Used for the JPEG records of a store (wsml-ingest writes them) by wsml-train/-eval.
int wsml_image_decode_jpeg(const void *buf, size_t len, wsml_image *out, wsml_err *err);
// Resizes to exactly out_h x out_w (aspect not kept) with PIL's Image.resize((w, h),
// BILINEAR) algorithm (antialiased when reducing), bit-identical to PIL and hence to
// torchvision's Resize((h, w)) on PIL images; any channel count.
int wsml_image_resize(const wsml_image *in, int out_h, int out_w, wsml_image *out, wsml_err *err);
// Encodes to a malloc'd JPEG (quality 1..100, 4:2:0 chroma like PIL's save(quality=q):
// the decoded pixels equal PIL's) or PNG buffer (lossless, no metadata).
int wsml_image_encode_jpeg(const wsml_image *img, int quality, void **buf, size_t *len,
                           wsml_err *err);
int wsml_image_encode_png(const wsml_image *img, void **buf, size_t *len, wsml_err *err);
// Writes PNG atomically.
int wsml_image_write_png(const char *path, const wsml_image *img, wsml_err *err);
void wsml_image_free(wsml_image *img);

// Renders `text` (UTF-8, plain: markup characters are escaped) on one line with libvips'
// text renderer (Pango + fontconfig) in `font`, a Pango font description such as
// "DejaVu Sans 12" (sizes in pixels: 72 dpi). out: a 1-channel coverage mask, 0 =
// background .. 255 = ink, as large as the text's ink box. Deterministic for the same
// text, font and installed fonts. WSML_EIO when libvips cannot render text (built
// without Pango, or no usable font): a caller can go on without the label.
int wsml_image_text(const char *text, const char *font, wsml_image *out, wsml_err *err);

#endif
