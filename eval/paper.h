// The published numbers wsml reproduces: Tables 1 and 2 of the supplementary material of
// Kim et al., "Large Loss Matters in Weakly Supervised Multi-Label Classification" (CVPR
// 2022). Test mAP in points, End-to-end scheme, ResNet-50 at 448x448, single positive
// labels (Table 1) or OpenImages V3's real partial labels (Table 2). Used by the tables
// (a "paper" column beside ours) and the report.
#ifndef WSML_EVAL_PAPER_H
#define WSML_EVAL_PAPER_H

// Row names are the tables' (eval/table.h): "Naive AN", "LL-relative (best of R/Ct/Cp)",
// "LL-R abs", "LL-Ct abs", "LL-Cp abs". Columns: Table 1 by dataset as wsml-ingest names
// it ("voc", "coco", "nuswide", "cub"); Table 2 by group ("G1".."G5", "all").
// Returns the published value, or NaN when the paper has none for that cell (an unknown
// table, row or column).
double wsml_paper_map(int table, const char *row, const char *column);

// The supplement's own name of a row ("LL-relative (Ours)", "LL-R_abs (Ours)", ...), or
// NULL when the row is not in the supplement's tables.
const char *wsml_paper_row_label(const char *row);

#endif
