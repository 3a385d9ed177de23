// libFuzzer target: the store record codec (wsml_record_parse, store/record.c) on
// arbitrary bytes, with and without the CRC check. A record that parses must have every
// view inside the value and its label lists decodable; when its labels are in range and
// it passes the CRC, re-encoding it (store/record.c's encoder, the only writer of
// records) must give a record that decodes to the same id, labels and image.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/record.h"
#include "store/store.h"

#define FUZZ_CLASSES 40

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wsml_err err;
    wsml_err_clear(&err);
    // A private copy of exactly size bytes, so that ASan sees any read past the value.
    uint8_t *val = malloc(size ? size : 1);
    if (!val)
        return 0;
    memcpy(val, data, size);
    for (int check = 0; check < 2; check++) {
        wsml_record rec;
        if (wsml_record_parse(val, size, check, &rec, &err) != 0) {
            if (!err.msg[0] || strchr(err.msg, '\n'))
                abort();
            continue;
        }
        const uint8_t *lo = val, *hi = val + size;
        uint64_t n_labels =
            (uint64_t)rec.n_full_pos + rec.n_full_neg + rec.n_obs_pos + rec.n_obs_neg;
        if ((const uint8_t *)rec.id < lo || (const uint8_t *)rec.id + rec.id_len > hi ||
            rec.image < lo || rec.image > hi || rec.image_len > (uint64_t)(hi - rec.image) ||
            rec.labels_blob < lo || (uint64_t)(rec.labels_blob - lo) + 4 * n_labels > size)
            abort();
        int8_t full[FUZZ_CLASSES], obs[FUZZ_CLASSES];
        wsml_record_full_labels(&rec, FUZZ_CLASSES, full);
        wsml_record_observed_labels(&rec, FUZZ_CLASSES, obs);
        if (wsml_record_check_labels(&rec, FUZZ_CLASSES, &err) != 0)
            continue;
        if (!check)
            continue;
        // Re-encode from the decoded dense labels (an id with a NUL cannot be re-encoded:
        // the encoder takes a C string) and compare what decodes.
        char *id = malloc(rec.id_len + 1);
        if (!id)
            break;
        memcpy(id, rec.id, rec.id_len);
        id[rec.id_len] = '\0';
        wsml_record_in in = {.id = id,
                             .full = full,
                             .observed = obs,
                             .num_classes = FUZZ_CLASSES,
                             .encoding = rec.encoding,
                             .height = rec.height,
                             .width = rec.width,
                             .channels = rec.channels,
                             .image = rec.image,
                             .image_len = rec.image_len};
        uint8_t *enc = NULL;
        size_t enc_len = 0;
        if (strlen(id) == rec.id_len && rec.height > 0 && rec.width > 0 &&
            wsml_record_encode(&in, rec.full_label_default, &enc, &enc_len, &err) == 0) {
            wsml_record back;
            if (wsml_record_parse(enc, enc_len, 1, &back, &err) != 0)
                abort();
            int8_t full2[FUZZ_CLASSES], obs2[FUZZ_CLASSES];
            wsml_record_full_labels(&back, FUZZ_CLASSES, full2);
            wsml_record_observed_labels(&back, FUZZ_CLASSES, obs2);
            if (memcmp(full, full2, sizeof full) || memcmp(obs, obs2, sizeof obs) ||
                back.image_len != rec.image_len || memcmp(back.image, rec.image, rec.image_len) ||
                back.id_len != rec.id_len || memcmp(back.id, rec.id, rec.id_len))
                abort();
        }
        free(enc);
        free(id);
    }
    free(val);
    return 0;
}
