// libFuzzer target: the OpenImages V3 reader (ingest/openimages.c: class list, class
// descriptions CSV, three annotations-human.csv files). Parts (split at FUZZ_SEP):
// classes-trainable.txt, class-descriptions.csv, train/, validation/, test/
// annotations-human.csv; a missing part is a missing file. Includes the G1..G5 groups.
#include "tests/fuzz/fuzz_ingest_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) {
        fuzz_mkdirs("oi/2017_11/train");
        fuzz_mkdirs("oi/2017_11/validation");
        fuzz_mkdirs("oi/2017_11/test");
        fuzz_mkdirs("oi/images_train");
        fuzz_mkdirs("oi/images_val");
        fuzz_mkdirs("oi/images_test");
        ready = 1;
    }
    const uint8_t *part[5];
    size_t len[5];
    int n = fuzz_split(data, size, part, len, 5);
    fuzz_put_part("oi/2017_11/classes-trainable.txt", 0, n, part, len);
    fuzz_put_part("oi/2017_11/class-descriptions.csv", 1, n, part, len);
    fuzz_put_part("oi/2017_11/train/annotations-human.csv", 2, n, part, len);
    fuzz_put_part("oi/2017_11/validation/annotations-human.csv", 3, n, part, len);
    fuzz_put_part("oi/2017_11/test/annotations-human.csv", 4, n, part, len);
    ingest_opts o;
    fuzz_opts(&o, "openimages", fuzz_path("oi"));
    fuzz_run_reader(ingest_read_openimages, &o);
    return 0;
}
