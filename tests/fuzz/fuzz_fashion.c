// libFuzzer target: the gzip'd IDX reader of the Fashion-MNIST formats (ingest/fashion.c,
// through ingest_read_fashion_mosaic and ingest_read_fashion_items, which take a folder).
// Parts (split at FUZZ_SEP): train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,
// t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (zlib also reads them plain).
// Every generated item's image is then rendered (ds->load), which reads item pixels.
#include "tests/fuzz/fuzz_ingest_common.h"

static void run(fuzz_reader_fn reader, const ingest_opts *o) {
    ingest_dataset ds;
    ingest_dataset_init(&ds, o->format);
    wsml_err err;
    wsml_err_clear(&err);
    if (reader(&ds, o, &err) == 0) {
        for (int s = 0; s < WSML_NUM_SPLITS; s++) {
            fuzz_check_list(&ds, &ds.official[s]);
            for (size_t i = 0; i < ds.official[s].n; i++) {
                wsml_image img;
                if (!ds.load || ds.load(&ds, &ds.official[s].items[i], &img, &err) != 0)
                    abort();
                if (img.height != ds.native_size || img.width != ds.native_size)
                    abort();
                wsml_image_free(&img);
            }
        }
    } else if (!err.msg[0] || strchr(err.msg, '\n')) {
        abort();
    }
    ingest_dataset_free(&ds);
}

static const char *const dirs[] = {"fashion", NULL};
static const char *const files[] = {
    "fashion/train-images-idx3-ubyte.gz", "fashion/train-labels-idx1-ubyte.gz",
    "fashion/t10k-images-idx3-ubyte.gz", "fashion/t10k-labels-idx1-ubyte.gz", NULL};

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    fuzz_put_dataset(data, size, dirs, files);
    ingest_opts o;
    fuzz_opts(&o, "fashion-mosaic", fuzz_path("fashion"));
    o.fashion_dir = o.root;
    run(ingest_read_fashion_mosaic, &o);
    o.format = "fashion-items";
    run(ingest_read_fashion_items, &o);
    return 0;
}
