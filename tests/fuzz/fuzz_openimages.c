// libFuzzer target: the OpenImages V3 reader (ingest/openimages.c: class list, class
// descriptions CSV, three annotations-human.csv files). Parts (split at FUZZ_SEP):
// classes-trainable.txt, class-descriptions.csv, train/, validation/, test/
// annotations-human.csv; a missing part is a missing file. Includes the G1..G5 groups.
#include "tests/fuzz/fuzz_ingest_common.h"

static const char *const dirs[] = {"oi/2017_11/train",
                                   "oi/2017_11/validation",
                                   "oi/2017_11/test",
                                   "oi/images_train",
                                   "oi/images_val",
                                   "oi/images_test",
                                   NULL};
static const char *const files[] = {
    "oi/2017_11/classes-trainable.txt",       "oi/2017_11/class-descriptions.csv",
    "oi/2017_11/train/annotations-human.csv", "oi/2017_11/validation/annotations-human.csv",
    "oi/2017_11/test/annotations-human.csv",  NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_ingest_dataset(data, size, dirs, files, "openimages", "oi", ingest_read_openimages);
}
