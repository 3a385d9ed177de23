// libFuzzer target: the whole COCO reader (ingest/coco.c over the streaming JSON parser
// of ingest/coco_json.c): category table, image id sort, annotation grouping. Parts
// (split at FUZZ_SEP): annotations/instances_train2014.json, instances_val2014.json.
// (fuzz_coco_json.c fuzzes the JSON parser alone with every buffer boundary.)
#include "tests/fuzz/fuzz_ingest_common.h"

static const char *const dirs[] = {"coco/annotations", "coco/train2014", "coco/val2014", NULL};
static const char *const files[] = {"coco/annotations/instances_train2014.json",
                                    "coco/annotations/instances_val2014.json", NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_ingest_dataset(data, size, dirs, files, "coco", "coco", ingest_read_coco);
}
