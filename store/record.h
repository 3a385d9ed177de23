// Private to store/: encoding records (the parse side is public in store.h).
#ifndef WSML_STORE_RECORD_H
#define WSML_STORE_RECORD_H

#include "store/store.h"

// Encodes rec into a malloc'd value (*out, *out_len).
int wsml_record_encode(const wsml_record_in *rec, int full_label_default, uint8_t **out,
                       size_t *out_len, wsml_err *err);
// Every listed class index < num_classes.
int wsml_record_check_labels(const wsml_record *rec, int num_classes, wsml_err *err);
uint32_t wsml_record_crc(const void *buf, size_t len);

#endif
