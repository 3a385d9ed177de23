// safetensors read/write: 8-byte little-endian header length, JSON header
// {"name": {"dtype": "F32", "shape": [...], "data_offsets": [b, e]}, "__metadata__": {...}},
// then the data. Reading validates the JSON, dtypes, shapes against byte ranges,
// and that every range lies inside the file without overlap.
//
// Checksum: wsml_st_write adds WSML_ST_CRC_KEY to the metadata when it writes metadata
// (every wsml checkpoint does): a CRC32 over the tensors (by name: name, dtype, shape,
// bytes) and the other metadata pairs, independent of layout and whitespace.
// wsml_st_read verifies it when present (WSML_ECORRUPT "damaged file: checksum
// mismatch"), so any flipped bit in such a file is an error, never a wrong number.
// Files without it (other tools' safetensors) are validated structurally only.
#ifndef WSML_SAFETENSORS_H
#define WSML_SAFETENSORS_H

#include "common/err.h"
#include "common/tensorio.h"

#define WSML_ST_CRC_KEY "wsml.crc32"

typedef struct {
    char *name;
    wsml_dtype dtype; // F32 F16 BF16 I64 I32 I8 U8 BOOL F64
    int ndim;
    int64_t shape[WSML_MAX_DIMS];
    size_t count;
    const void *data; // points into the file buffer (read) or caller data (write)
    size_t nbytes;
} wsml_tensor_view;

typedef struct {
    size_t n;
    wsml_tensor_view *tensors;
    char *metadata_json; // the "__metadata__" object serialised, or NULL
    void *file_buf;      // owns the data
    size_t file_len;
} wsml_safetensors;

int wsml_st_read(const char *path, wsml_safetensors *out, wsml_err *err);
// NULL if absent.
const wsml_tensor_view *wsml_st_find(const wsml_safetensors *st, const char *name);
// Copies a tensor into dst as float32 (converting F16/BF16/F64), checking the shape
// (ndim/shape must match exactly); err names the tensor and both shapes on mismatch.
int wsml_st_get_f32(const wsml_safetensors *st, const char *name, int ndim, const int64_t *shape,
                    float *dst, wsml_err *err);
// A metadata value (string) or NULL.
const char *wsml_st_meta(const wsml_safetensors *st, const char *key, char *buf, size_t cap);
void wsml_st_free(wsml_safetensors *st);

// Writes tensors (name, dtype, shape, data, nbytes set) atomically: temp file in the
// same directory, fsync, rename, fsync of the directory. metadata_json is a JSON
// object of string values, or NULL.
int wsml_st_write(const char *path, const wsml_tensor_view *tensors, size_t n,
                  const char *metadata_json, wsml_err *err);

#endif
