// libFuzzer target: the streaming COCO instances JSON reader (ingest/coco_json.c) and
// the CSV line splitter (ingest/dataset.c) on arbitrary bytes. Both must return an
// error or succeed, never crash, read out of bounds or leak.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/ingest.h"

static int on_cat(void *ctx, int64_t id, const char *name, wsml_err *err) {
    (void)ctx, (void)id, (void)err;
    return name && strlen(name) > 100000 ? -3 : 0;
}
static int on_img(void *ctx, int64_t id, const char *file_name, wsml_err *err) {
    (void)ctx, (void)id, (void)file_name, (void)err;
    return 0;
}
static int on_ann(void *ctx, int64_t image_id, int64_t category_id, wsml_err *err) {
    (void)ctx, (void)err;
    return image_id == category_id && image_id == 666 ? wsml_errf(err, WSML_EFORMAT, "x") : 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    coco_json_handlers h = {.category = on_cat, .image = on_img, .annotation = on_ann};
    wsml_err err;
    wsml_err_clear(&err);
    // the first byte also picks the read size, so that buffer boundaries fall anywhere
    coco_json_parse_buffer("fuzz.json", data, size, size ? data[0] % 16 : 0, &h, &err);
    // the same bytes as one CSV line (NUL-terminated copy, first line only)
    char *line = malloc(size + 1);
    if (!line)
        return 0;
    memcpy(line, data, size);
    line[size] = '\0';
    char *nl = strchr(line, '\n');
    if (nl)
        *nl = '\0';
    char *fields[16];
    ingest_csv_split(line, "fuzz.csv", 1, fields, 16, &err);
    free(line);
    return 0;
}
