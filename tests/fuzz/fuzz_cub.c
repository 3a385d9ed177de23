// libFuzzer target: the CUB-200-2011 attribute reader (ingest/cub.c). Parts (split at
// FUZZ_SEP): attributes.txt, CUB_200_2011/images.txt, train_test_split.txt,
// attributes/image_attribute_labels.txt; a missing part is a missing file.
#include "tests/fuzz/fuzz_ingest_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) {
        fuzz_mkdirs("cub/CUB_200_2011/attributes");
        fuzz_mkdirs("cub/CUB_200_2011/images");
        ready = 1;
    }
    const uint8_t *part[4];
    size_t len[4];
    int n = fuzz_split(data, size, part, len, 4);
    fuzz_put_part("cub/attributes.txt", 0, n, part, len);
    fuzz_put_part("cub/CUB_200_2011/images.txt", 1, n, part, len);
    fuzz_put_part("cub/CUB_200_2011/train_test_split.txt", 2, n, part, len);
    fuzz_put_part("cub/CUB_200_2011/attributes/image_attribute_labels.txt", 3, n, part, len);
    ingest_opts o;
    fuzz_opts(&o, "cub", fuzz_path("cub"));
    fuzz_run_reader(ingest_read_cub, &o);
    return 0;
}
