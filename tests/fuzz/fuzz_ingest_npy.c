// libFuzzer target: the pre-formatted numpy reader (ingest/npy.c, NUS-WIDE's form).
// Parts (split at FUZZ_SEP): formatted_train_images.npy, formatted_train_labels.npy,
// formatted_val_images.npy, formatted_val_labels.npy, formatted_train_labels_obs.npy;
// a missing part is a missing file.
#include "tests/fuzz/fuzz_ingest_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) {
        fuzz_mkdirs("npy");
        ready = 1;
    }
    const uint8_t *part[5];
    size_t len[5];
    int n = fuzz_split(data, size, part, len, 5);
    fuzz_put_part("npy/formatted_train_images.npy", 0, n, part, len);
    fuzz_put_part("npy/formatted_train_labels.npy", 1, n, part, len);
    fuzz_put_part("npy/formatted_val_images.npy", 2, n, part, len);
    fuzz_put_part("npy/formatted_val_labels.npy", 3, n, part, len);
    fuzz_put_part("npy/formatted_train_labels_obs.npy", 4, n, part, len);
    ingest_opts o;
    fuzz_opts(&o, "npy", fuzz_path("npy"));
    fuzz_run_reader(ingest_read_npy, &o);
    return 0;
}
