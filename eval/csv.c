// CSV fields (eval/csv.h).
#include "eval/csv.h"

#include <stdlib.h>
#include <string.h>

void wsml_csv_field(FILE *f, const char *s) {
    if (!strpbrk(s, ",\"\r\n")) {
        fputs(s, f);
        return;
    }
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"')
            fputc('"', f);
        fputc(*s, f);
    }
    fputc('"', f);
}

void wsml_csv_free(wsml_csv *c) {
    if (!c)
        return;
    for (int r = 0; r < c->num_rows; r++) {
        for (int k = 0; c->fields && k < c->num_fields[r]; k++)
            free(c->fields[r][k]);
        if (c->fields)
            free(c->fields[r]);
    }
    free(c->fields);
    free(c->num_fields);
    memset(c, 0, sizeof(*c));
}

// Appends a field (the bytes field[0..len), unescaped already) to the last row.
static int push_field(wsml_csv *c, const char *field, size_t len) {
    int r = c->num_rows - 1;
    char **grown = realloc(c->fields[r], sizeof(char *) * (size_t)(c->num_fields[r] + 1));
    char *copy = malloc(len + 1);
    if (grown)
        c->fields[r] = grown;
    if (!grown || !copy) {
        free(copy);
        return WSML_ENOMEM;
    }
    memcpy(copy, field, len);
    copy[len] = 0;
    c->fields[r][c->num_fields[r]++] = copy;
    return 0;
}

static int push_row(wsml_csv *c) {
    int *nf = realloc(c->num_fields, sizeof(int) * (size_t)(c->num_rows + 1));
    if (nf)
        c->num_fields = nf;
    char ***rows = nf ? realloc(c->fields, sizeof(char **) * (size_t)(c->num_rows + 1)) : NULL;
    if (!rows)
        return WSML_ENOMEM;
    c->fields = rows;
    c->num_fields[c->num_rows] = 0;
    c->fields[c->num_rows] = NULL;
    c->num_rows++;
    return 0;
}

int wsml_csv_parse(const char *text, const char *what, wsml_csv *out, wsml_err *err) {
    memset(out, 0, sizeof(*out));
    size_t cap = 256, len = 0;
    char *field = malloc(cap);
    int rc = field ? 0 : WSML_ENOMEM, line = 1;
    const char *p = text;
    while (!rc && *p) {
        rc = push_row(out);
        int row_line = line;
        for (int end_of_row = 0; !rc && !end_of_row;) {
            len = 0;
            int quoted = *p == '"';
            if (quoted)
                p++;
            for (;;) {
                char ch = *p;
                if (quoted && ch == '"' && p[1] == '"') {
                    p += 2;
                } else if (quoted && ch == '"') {
                    quoted = 0;
                    p++;
                    continue;
                } else if (!ch && quoted) {
                    rc = wsml_errf(err, WSML_EFORMAT, "%s: line %d: a quoted field never ends",
                                   what, row_line);
                    break;
                } else if (!quoted &&
                           (!ch || ch == ',' || ch == '\n' || (ch == '\r' && p[1] == '\n'))) {
                    break;
                } else {
                    line += ch == '\n';
                    p++;
                }
                if (len + 2 > cap) {
                    char *grown = realloc(field, cap *= 2);
                    if (!grown) {
                        rc = WSML_ENOMEM;
                        break;
                    }
                    field = grown;
                }
                field[len++] = ch;
            }
            if (rc)
                break;
            rc = push_field(out, field, len);
            if (*p == ',') {
                p++;
            } else {
                end_of_row = 1;
                p += *p == '\r' ? 2 : *p == '\n' ? 1 : 0;
                line++;
            }
        }
    }
    free(field);
    if (rc == WSML_ENOMEM)
        wsml_errf(err, rc, "%s: out of memory", what);
    if (rc)
        wsml_csv_free(out);
    return rc;
}

const char *wsml_csv_get(const wsml_csv *c, int row, int col) {
    if (row < 0 || row >= c->num_rows || col < 0 || col >= c->num_fields[row])
        return "";
    return c->fields[row][col];
}

int wsml_csv_column(const wsml_csv *c, const char *name) {
    for (int k = 0; c->num_rows > 0 && k < c->num_fields[0]; k++)
        if (!strcmp(c->fields[0][k], name))
            return k;
    return -1;
}
