// .npy read/write (format 1.0/2.0/3.0 read, 1.0 written), C order only.
// Supported dtypes: <f4 <f8 |i1 |u1 <i8 <i4 |b1 <U{n}. Every header is validated:
// a malformed or unsupported header is an error naming the file, never a crash.
#ifndef WSML_NPY_H
#define WSML_NPY_H

#include "common/err.h"
#include "common/tensorio.h"

typedef struct {
    wsml_dtype dtype;
    size_t itemsize; // bytes per element (4*n for <U{n})
    int ndim;
    int64_t shape[WSML_MAX_DIMS];
    size_t count; // product of shape
    void *data;   // count*itemsize bytes, malloc'd, owned by the array
} wsml_npy;

// Reads a whole file. Returns 0 or a negative wsml_code with err set.
int wsml_npy_read(const char *path, wsml_npy *out, wsml_err *err);
// Writes atomically (temp file, fsync, rename).
int wsml_npy_write(const char *path, wsml_dtype dtype, size_t itemsize, int ndim,
                   const int64_t *shape, const void *data, wsml_err *err);
void wsml_npy_free(wsml_npy *a);
// Converts element i of a <U array to UTF-8 (NUL-terminated; trailing NULs dropped).
// Returns the length, or -1 if buf is too small or the code point is invalid.
int wsml_npy_string(const wsml_npy *a, size_t i, char *buf, size_t cap);
// Reads any numeric array as float64 / int64 copies (malloc'd), or an error.
int wsml_npy_as_f64(const wsml_npy *a, double **out, wsml_err *err);

#endif
