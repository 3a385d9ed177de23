// libFuzzer target: the CUB-200-2011 attribute reader (ingest/cub.c). Parts (split at
// FUZZ_SEP): attributes.txt, CUB_200_2011/images.txt, train_test_split.txt,
// attributes/image_attribute_labels.txt; a missing part is a missing file.
#include "tests/fuzz/fuzz_ingest_common.h"

static const char *const dirs[] = {"cub/CUB_200_2011/attributes", "cub/CUB_200_2011/images", NULL};
static const char *const files[] = {"cub/attributes.txt", "cub/CUB_200_2011/images.txt",
                                    "cub/CUB_200_2011/train_test_split.txt",
                                    "cub/CUB_200_2011/attributes/image_attribute_labels.txt", NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_ingest_dataset(data, size, dirs, files, "cub", "cub", ingest_read_cub);
}
