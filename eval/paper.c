// The supplement's Tables 1 and 2 (eval/paper.h). Copied by hand from the supplementary
// material; tests/unit/test_paper.c checks every value against its text.
#include "eval/paper.h"

#include <math.h>
#include <string.h>

typedef struct {
    const char *row;   // the tables' row name (eval/table.h)
    const char *label; // the supplement's name of the row
    double table1[4];  // VOC COCO NUSWIDE CUB
    double table2[6];  // G1 G2 G3 G4 G5 all
} paper_row;

static const char *const TABLE1_COLUMNS[4] = {"voc", "coco", "nuswide", "cub"};
static const char *const TABLE2_COLUMNS[6] = {"G1", "G2", "G3", "G4", "G5", "all"};

static const paper_row PAPER_ROWS[] = {
    {"Naive AN", "Naive AN", {85.1, 64.1, 42.0, 19.1}, {77.1, 78.7, 81.5, 84.1, 88.8, 82.0}},
    {"LL-relative (best of R/Ct/Cp)",
     "LL-relative (Ours)",
     {89.2, 71.0, 48.3, 20.4},
     {77.7, 79.3, 82.1, 84.7, 89.4, 82.6}},
    {"LL-R abs", "LL-R_abs (Ours)", {89.0, 70.3, 47.4, 20.1}, {77.9, 78.8, 81.7, 84.1, 88.9, 82.3}},
    {"LL-Ct abs",
     "LL-Ct_abs (Ours)",
     {89.0, 70.3, 48.6, 19.8},
     {77.5, 79.1, 81.8, 84.4, 89.3, 82.4}},
    {"LL-Cp abs",
     "LL-Cp_abs (Ours)",
     {88.7, 70.5, 48.0, 19.8},
     {77.7, 79.0, 81.7, 84.3, 88.9, 82.3}},
};
#define NUM_PAPER_ROWS ((int)(sizeof(PAPER_ROWS) / sizeof(PAPER_ROWS[0])))

static const paper_row *find_row(const char *row) {
    for (int i = 0; row && i < NUM_PAPER_ROWS; i++)
        if (!strcmp(PAPER_ROWS[i].row, row))
            return &PAPER_ROWS[i];
    return NULL;
}

double wsml_paper_map(int table, const char *row, const char *column) {
    const paper_row *r = find_row(row);
    if (!r || !column)
        return NAN;
    if (table == 1) {
        for (int c = 0; c < 4; c++)
            if (!strcmp(TABLE1_COLUMNS[c], column))
                return r->table1[c];
    } else if (table == 2) {
        for (int c = 0; c < 6; c++)
            if (!strcmp(TABLE2_COLUMNS[c], column))
                return r->table2[c];
    }
    return NAN;
}

const char *wsml_paper_row_label(const char *row) {
    const paper_row *r = find_row(row);
    return r ? r->label : NULL;
}
