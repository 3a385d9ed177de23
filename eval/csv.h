// CSV output shared by per_class.csv (eval/report.c) and the tables (eval/table.c);
// private to eval/.
#ifndef WSML_EVAL_CSV_H
#define WSML_EVAL_CSV_H

#include <stdio.h>

// Writes one CSV field (RFC 4180): as is, or in double quotes with quotes doubled when
// it holds a comma, a quote or a line break.
void wsml_csv_field(FILE *f, const char *s);

#endif
