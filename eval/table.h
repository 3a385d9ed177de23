// Results tables from finished training runs (`wsml-eval table`): the paper's layout,
// rows = methods, columns = datasets (Table 1) or frequency groups (Table 2).
//
// A run directory (written by wsml-train, see train/trainer.h) is read as follows:
//   config.json : the flags, under "options" (as wsml-train writes it) or at the top
//                 level: "loss" (an, ll-r, ll-ct, ll-cp, full, an-ls, wan, epr, role),
//                 "threshold" (relative|absolute), "delta_rel", "r0", "delta_abs", "lr",
//                 "seed"; optional "head" (boostlu adds " + BoostLU" to the method) and
//                 "reference_quirks": when all LL runs have it the table keeps the
//                 paper's row names and says "reference-quirks mode" in its title; mixed
//                 with paper-mode LL runs it adds " (ref. quirks)" to theirs. The
//                 dataset (column) is "dataset" if present, else the top-level
//                 "store" object's "name", else the basename of the "store" path, else
//                 the name of the run directory's parent (runs/<table>/<dataset>/<run>).
//   run.jsonl   : one JSON object per line; the run is finished when a line with
//                 "event": "final" exists: {"event":"final","best_epoch":k,
//                 "best_val_map":v,"test_map":t, optional "test_groups"}. Lines that do not
//                 parse (a line cut by a kill) are ignored. Without "best_val_map" the
//                 highest per-epoch "val_map" is used. Its "status": "ok", "early-stopped"
//                 (or, in older runs, "early_stopped": true) or "diverged" (a NaN/Inf
//                 loss: the run is finished but never picked; the table marks its cells
//                 with "†" and lists it in a footnote; early-stopped runs are picked like
//                 the others and counted in a note).
//   metrics.json: optional, as written by `wsml-eval --out RUNDIR` for the best checkpoint;
//                 its "groups" object ({"G1": mAP, ...}) gives the per-group test mAP, and
//                 its "map" the test mAP when the final line has none.
//   "test_groups" in the final line may also hold the groups ({"G1": ...} or [g1, ...]).
// A run that is not finished or cannot be read is listed as missing (with the reason),
// never fatal.
//
// Method names (rows): "Full labels", "Naive AN", "AN-LS", "WAN", "EPR", "ROLE",
// "LL-R", "LL-Ct", "LL-Cp" (relative threshold), "LL-relative (best of R/Ct/Cp)",
// "LL-R abs", "LL-Ct abs", "LL-Cp abs"; any other loss is shown by its name.
//
// Selection (validation-based, docs/methods.md §3): runs of one method on one dataset are grouped
// by their hyper-parameters (lr; delta_rel for relative LL; r0 and delta_abs for absolute LL) with
// the seeds of a setting averaged; the setting with the highest mean best-val mAP is picked (ties:
// the first in sorted order of its description) and its mean test mAP is reported (± the sample
// standard deviation, n − 1, over seeds when there are several; "(n=K)" when K differs from the
// title's n). A setting with a diverged seed is never picked (a cell with no other setting shows
// "—†"). The "LL-relative" row picks among all relative LL-R/Ct/Cp settings the same way. A cell
// whose grid has unfinished runs is marked with "*".
#ifndef WSML_EVAL_TABLE_H
#define WSML_EVAL_TABLE_H

#include "common/err.h"

typedef enum { WSML_TABLE_BY_DATASET = 0, WSML_TABLE_BY_GROUP = 1 } wsml_table_by;

typedef struct {
    char *markdown;   // the results table, the picked hyper-parameters, the missing runs
    char *csv;        // wide: method, one column per dataset / group; test mAP values
    char *picks_csv;  // long: one line per cell with the pick, seeds and run dirs
    char *missing;    // one line per missing run: "DIR: reason\n" ("" if none)
    int num_runs;     // distinct run directories (one given twice, same realpath, counts once)
    int num_finished; // runs used
    int num_missing;  // runs listed as missing
} wsml_table;

// Reads the run directories and renders the tables. with_epochs adds to the Markdown one
// table per dataset with the validation mAP of every epoch of each pick (mean over its
// seeds; per-epoch lines of run.jsonl: {"epoch": k, "val_map": v, ...}). Fails only on
// bad arguments or memory; unreadable runs become missing entries.
int wsml_table_build(const char *const *run_dirs, int num_runs, wsml_table_by by, int with_epochs,
                     wsml_table *out, wsml_err *err);
// The same with the paper's numbers beside ours: paper = 1 (the supplement's Table 1,
// columns by dataset name: voc coco nuswide cub) or 2 (Table 2, columns G1..G5 and all)
// adds after each of our columns the paper's value and our difference (ours − paper),
// blank where the paper has no such row or column (eval/paper.h); Markdown columns
// "paper" and "Δ", CSV columns COLUMN_paper and COLUMN_diff. paper = 0: as above.
int wsml_table_build_paper(const char *const *run_dirs, int num_runs, wsml_table_by by,
                           int with_epochs, int paper, wsml_table *out, wsml_err *err);
void wsml_table_free(wsml_table *t);

#endif
