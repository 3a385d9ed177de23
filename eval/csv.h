// CSV output shared by per_class.csv (eval/report.c) and the tables (eval/table.c), and
// the reader the results page (eval/page.c) uses on the tables' CSV; private to eval/.
#ifndef WSML_EVAL_CSV_H
#define WSML_EVAL_CSV_H

#include <stdio.h>

#include "common/err.h"

// Writes one CSV field (RFC 4180): as is, or in double quotes with quotes doubled when
// it holds a comma, a quote or a line break.
void wsml_csv_field(FILE *f, const char *s);

// A parsed CSV text (RFC 4180: quoted fields with doubled quotes, line breaks inside
// quotes, LF or CRLF line ends). Row 0 is the header when the text has one.
typedef struct {
    int num_rows;
    int *num_fields; // (num_rows): fields of each row
    char ***fields;  // (num_rows, num_fields[row]): NUL-terminated, owned by the struct
} wsml_csv;

// Parses text (NUL-terminated); an unterminated quoted field is WSML_EFORMAT naming
// what (a name for the message, e.g. "table.csv") and the line.
int wsml_csv_parse(const char *text, const char *what, wsml_csv *out, wsml_err *err);
void wsml_csv_free(wsml_csv *c);
// The field at (row, col), or "" when the row is shorter (or out of range).
const char *wsml_csv_get(const wsml_csv *c, int row, int col);
// The column of the header (row 0) named name, or -1.
int wsml_csv_column(const wsml_csv *c, const char *name);

#endif
