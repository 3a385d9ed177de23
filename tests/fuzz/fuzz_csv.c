// libFuzzer target: the user CSV reader (ingest/csv.c). Parts (split at FUZZ_SEP):
// train.csv, val.csv, test.csv, and a --classes file; val/test/classes are optional:
// a missing or zero-length part is a missing file (and no --classes); a present but
// empty file is tested by a part holding only a newline.
#include "tests/fuzz/fuzz_ingest_common.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready) {
        fuzz_mkdirs("csv/photos");
        ready = 1;
    }
    const uint8_t *part[4];
    size_t len[4];
    int n = fuzz_split(data, size, part, len, 4);
    for (int k = 1; k < n; k++)
        if (len[k] == 0)
            part[k] = NULL;
    static const char *const rel[4] = {"csv/train.csv", "csv/val.csv", "csv/test.csv",
                                       "csv/classes.txt"};
    for (int k = 0; k < 4; k++) {
        if (k < n && part[k])
            fuzz_write(rel[k], part[k], len[k]);
        else
            fuzz_unlink(rel[k]);
    }
    ingest_opts o;
    fuzz_opts(&o, "csv", fuzz_path("csv"));
    o.images = fuzz_path("csv/photos");
    if (n > 3 && part[3])
        o.classes = fuzz_path("csv/classes.txt");
    fuzz_run_reader(ingest_read_csv, &o);
    return 0;
}
