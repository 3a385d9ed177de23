// libFuzzer target: the pre-formatted numpy reader (ingest/npy.c, NUS-WIDE's form).
// Parts (split at FUZZ_SEP): formatted_train_images.npy, formatted_train_labels.npy,
// formatted_val_images.npy, formatted_val_labels.npy, formatted_train_labels_obs.npy;
// a missing part is a missing file.
#include "tests/fuzz/fuzz_ingest_common.h"

static const char *const dirs[] = {"npy", NULL};
static const char *const files[] = {
    "npy/formatted_train_images.npy",     "npy/formatted_train_labels.npy",
    "npy/formatted_val_images.npy",       "npy/formatted_val_labels.npy",
    "npy/formatted_train_labels_obs.npy", NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    return fuzz_ingest_dataset(data, size, dirs, files, "npy", "npy", ingest_read_npy);
}
