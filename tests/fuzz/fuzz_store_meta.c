// libFuzzer target: the store's meta "info" JSON parser (wsml_store_meta_parse, which
// every reader runs on open) on arbitrary bytes, given without a NUL terminator as
// values come from the LMDB map. A parsed meta must be usable as readers use it: class
// names all set, num_classes >= 1, shape fields in range.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    wsml_err err;
    wsml_err_clear(&err);
    wsml_store_meta m;
    char *json = malloc(size ? size : 1);
    if (!json)
        return 0;
    memcpy(json, data, size);
    int rc = wsml_store_meta_parse(json, size, &m, &err);
    if (rc == 0) {
        if (m.num_classes < 1 || !m.class_names || !m.info_json)
            abort();
        for (int i = 0; i < m.num_classes; i++)
            if (!m.class_names[i])
                abort();
        if (m.height < 1 || m.width < 1 || m.channels < 1)
            abort();
    } else if (!err.msg[0] || strchr(err.msg, '\n')) {
        abort();
    }
    wsml_store_meta_free(&m);
    free(json);
    return 0;
}
