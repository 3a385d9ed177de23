// libFuzzer target: the VOC2012 reader (ingest/voc.c) over ImageSets/Main/*.txt written
// from the input. Parts (split at FUZZ_SEP): aeroplane_train.txt, aeroplane_val.txt,
// bicycle_train.txt, person_val.txt; the other 36 class files hold a fixed valid list.
#include "tests/fuzz/fuzz_ingest_common.h"

static const char *const classes[20] = {
    "aeroplane", "bicycle",     "bird",  "boat",        "bottle", "bus",      "car",
    "cat",       "chair",       "cow",   "diningtable", "dog",    "horse",    "motorbike",
    "person",    "pottedplant", "sheep", "sofa",        "train",  "tvmonitor"};
static const char *const fuzzed[4] = {"aeroplane_train", "aeroplane_val", "bicycle_train",
                                      "person_val"};

static void setup(void) {
    fuzz_mkdirs("voc/ImageSets/Main");
    fuzz_mkdirs("voc/JPEGImages");
    static const char train[] = "2008_000002 -1\n2008_000001  1\n2008_000003  0\n";
    static const char val[] = "2009_000001  1\n2009_000002 -1\n";
    for (int c = 0; c < 20; c++)
        for (int p = 0; p < 2; p++) {
            char rel[96];
            snprintf(rel, sizeof rel, "voc/ImageSets/Main/%s_%s.txt", classes[c],
                     p ? "val" : "train");
            fuzz_write(rel, p ? val : train, strlen(p ? val : train));
        }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    static int ready;
    if (!ready)
        setup(), ready = 1;
    const uint8_t *part[4];
    size_t len[4];
    int n = fuzz_split(data, size, part, len, 4);
    for (int k = 0; k < 4; k++) {
        char rel[96];
        snprintf(rel, sizeof rel, "voc/ImageSets/Main/%s.txt", fuzzed[k]);
        fuzz_put_part(rel, k, n, part, len);
    }
    ingest_opts o;
    fuzz_opts(&o, "voc", fuzz_path("voc"));
    fuzz_run_reader(ingest_read_voc, &o);
    return 0;
}
