// Small file helpers: whole-file reads and atomic writes (temp, fsync, rename).
#ifndef WSML_FILEIO_H
#define WSML_FILEIO_H

#include <stdio.h>

#include "common/err.h"

// Opens a regular file for reading ("rb"): *f and its size in bytes, or a negative
// wsml_code with err set ("cannot open: ...", "not a regular file") and *f NULL.
int wsml_open_regular(const char *path, FILE **f, size_t *size, wsml_err *err);

// Reads a whole file into a malloc'd buffer (NUL-terminated, len excludes the NUL).
int wsml_read_file(const char *path, char **buf, size_t *len, wsml_err *err);

// An atomic output file: writes go to "<path>.tmp.<pid>"; commit fsyncs, renames
// over path and fsyncs the directory; abort removes the temp file. A kill at any
// moment leaves either the old file or the new one, never a partial file at path.
typedef struct {
    FILE *f;
    char path[4096];
    char tmp[4096 + 32];
} wsml_atomic_file;

int wsml_atomic_open(wsml_atomic_file *af, const char *path, wsml_err *err);
int wsml_atomic_commit(wsml_atomic_file *af, wsml_err *err); // checks write errors (ENOSPC)
// commit in two steps, for several files that appear together: close flushes, fsyncs
// and closes (on a write error it removes the temp file); rename moves the temp file
// over path. abort after close removes the temp file.
int wsml_atomic_close(wsml_atomic_file *af, wsml_err *err);
int wsml_atomic_rename(wsml_atomic_file *af, wsml_err *err);
void wsml_atomic_abort(wsml_atomic_file *af);
// Convenience: write len bytes to path atomically.
int wsml_write_file_atomic(const char *path, const void *data, size_t len, wsml_err *err);

// mkdir -p; 0 if it exists as a directory.
int wsml_mkdirs(const char *path, wsml_err *err);

#endif
