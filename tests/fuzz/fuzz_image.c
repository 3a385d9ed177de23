// libFuzzer target: image decoding through libvips (wsml_image_decode_buffer in
// common/image.c, the one codec path of ingest and export) on arbitrary bytes. A decoded
// image must be 3-channel with h*w*3 bytes, and must resize and encode (JPEG and PNG)
// and decode again to the same size.
//
// Inputs whose header declares more than 16 Mpixels are skipped before decoding: libvips'
// WebP loader allocates and clears the whole frame first, so a 100-byte file claiming
// 16132x9727 pixels (under wsml's 179-Mpixel limit, PIL's) costs 0.4 s and 630 MB in a
// release build and 30 s under ASan, which would stall the fuzzer on one shape of input.
// The limit itself (common/image.c) is a plain comparison, checked by unit tests.
//
// libvips and glib keep process-lifetime caches (type system, thread pools) that
// LeakSanitizer would report; those are suppressed by library, never by our code.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <vips/vips.h>

#include "common/image.h"

const char *__lsan_default_suppressions(void);
const char *__lsan_default_suppressions(void) {
    return "leak:libvips.so\nleak:libglib-2.0.so\nleak:libgobject-2.0.so\nleak:libgio-2.0.so\n"
           "leak:libgmodule-2.0.so\nleak:libfontconfig.so\nleak:libMagick\n";
}

#define FUZZ_MAX_PIXELS (16u << 20)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wsml_err err;
    wsml_err_clear(&err);
    if (wsml_image_init(&err) != 0)
        abort();
    const char *loader = size ? vips_foreign_find_load_buffer(data, size) : NULL;
    vips_error_clear();
    // header only (libvips loads pixels lazily); not through ImageMagick, which wsml
    // refuses for anything but BMP before it reads a byte
    if (loader && strcmp(loader, "VipsForeignLoadMagickBuffer")) {
        VipsImage *head = vips_image_new_from_buffer(data, size, "", NULL);
        vips_error_clear();
        if (head) {
            uint64_t px = (uint64_t)head->Xsize * (uint64_t)head->Ysize;
            g_object_unref(head);
            if (px > FUZZ_MAX_PIXELS)
                return 0;
        }
    }
    wsml_image img;
    if (wsml_image_decode_buffer(data, size, &img, &err) != 0) {
        if (!err.msg[0] || strchr(err.msg, '\n'))
            abort();
        return 0;
    }
    if (img.channels != 3 || img.height < 1 || img.width < 1 || !img.pixels)
        abort();
    volatile uint8_t sink = img.pixels[(size_t)img.height * img.width * 3 - 1];
    (void)sink;
    wsml_image small;
    if (wsml_image_resize(&img, 5, 7, &small, &err) != 0)
        abort();
    if (small.height != 5 || small.width != 7 || small.channels != 3)
        abort();
    void *buf = NULL;
    size_t len = 0;
    for (int png = 0; png < 2; png++) {
        int rc = png ? wsml_image_encode_png(&small, &buf, &len, &err)
                     : wsml_image_encode_jpeg(&small, 90, &buf, &len, &err);
        if (rc != 0)
            abort();
        wsml_image back;
        if (wsml_image_decode_buffer(buf, len, &back, &err) != 0)
            abort();
        if (back.height != 5 || back.width != 7)
            abort();
        wsml_image_free(&back);
        free(buf);
    }
    wsml_image_free(&small);
    wsml_image_free(&img);
    return 0;
}
