// libFuzzer target: the whole COCO reader (ingest/coco.c over the streaming JSON parser
// of ingest/coco_json.c): category table, image id sort, annotation grouping. Parts
// (split at FUZZ_SEP): annotations/instances_train2014.json, instances_val2014.json.
// (fuzz_coco_json.c fuzzes the JSON parser alone with every buffer boundary.)
#include "tests/fuzz/fuzz_ingest_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) {
        fuzz_mkdirs("coco/annotations");
        fuzz_mkdirs("coco/train2014");
        fuzz_mkdirs("coco/val2014");
        ready = 1;
    }
    const uint8_t *part[2];
    size_t len[2];
    int n = fuzz_split(data, size, part, len, 2);
    fuzz_put_part("coco/annotations/instances_train2014.json", 0, n, part, len);
    fuzz_put_part("coco/annotations/instances_val2014.json", 1, n, part, len);
    ingest_opts o;
    fuzz_opts(&o, "coco", fuzz_path("coco"));
    fuzz_run_reader(ingest_read_coco, &o);
    return 0;
}
