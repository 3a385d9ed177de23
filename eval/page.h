// The results page (`wsml-eval report`): one static HTML page per result directory with
// the tables (the paper's numbers beside ours), the learning curves, the large-loss
// diagnostics, the class-frequency group bars, the CAM figures, the picked
// hyper-parameters and every run's settings. No JavaScript; it opens from the file system
// and prints. gnuplot draws the plots: this module writes their data files and scripts,
// the pipelines run gnuplot (pipelines/report.mk).
//
// What it writes into OUT:
//   index.html             the page; images are relative paths below OUT
//   plots/STEM.dat          the plotted numbers (whitespace-separated, '#' comments, NaN
//                           for a missing value; gnuplot blocks separated by 2 blank lines)
//   plots/STEM.gp           one gnuplot script per picture; run in OUT/plots, each writes
//                           STEM.png there (pngcairo)
//   cam-K.png               copies of the CAM figures (the page is self-contained)
// STEM = SECTION-DATASET-{curves,map,loss,ll,groups}, SECTION and DATASET reduced to
// [A-Za-z0-9.-] (the page lists every file it uses).
//
// What is plotted, per section (a table of runs: wsml-eval table's selection) and dataset:
//   curves: validation mAP and train loss per epoch of each method's pick (the setting
//           wsml-eval table picks on validation), one line per method: the mean over the
//           pick's seeds, with a band from the lowest to the highest seed.
//   ll    : the large-loss diagnostics of each LL method's pick (and Naive AN's as the
//           baseline), from run.jsonl's epoch lines (train/trainer.c):
//             precision = modified_hidden_pos / modified: the share of the entries that
//                         the epoch modified (rejected or corrected) that are hidden
//                         positives (full label 1, unobserved); undefined when nothing
//                         was modified (epoch 1, Naive AN);
//             recall    = (modified_hidden_pos + corrected_true_pos_total of the epoch
//                         before) / (hidden_pos + the same): the share of ALL the training
//                         split's hidden positives that the epoch does not train as
//                         negatives. hidden_pos counts the unobserved positives of the
//                         labels as trained; LL-Cp's permanent corrections from earlier
//                         epochs are observed positives by then, so they are added back to
//                         both terms (each image is seen once per epoch, so the epoch's
//                         own corrections do not change its count). Naive AN: 0.
//             LL-Cp     : cumulative permanent corrections (corrected_total) and how many
//                         of them are true positives (corrected_true_pos_total).
//           Runs whose store knows no hidden positive (hidden_pos 0 throughout: real
//           partial labels such as OpenImages) have no diagnostics.
//   groups: (by-group sections) test mAP per frequency group G1..Gk and all, one bar per
//           method, the paper's value beside (supplement Table 2; OpenImages only).
// The paper's numbers come from eval/paper.h: Table 1 for by-dataset sections (columns
// voc, coco, nuswide, cub), Table 2 for by-group sections of the dataset "openimages".
#ifndef WSML_EVAL_PAGE_H
#define WSML_EVAL_PAGE_H

#include "common/err.h"
#include "eval/table.h"

// ---- one run's per-epoch series -----------------------------------------------------------

// The per-epoch numbers of one run directory's run.jsonl. Epoch lines are the objects with
// an integer "epoch" and a number "val_map" (a resumed epoch's last line wins); every
// array holds num_epochs values for epochs 1..num_epochs, NaN where a line or a field is
// missing.
typedef struct {
    int num_epochs;
    double *val_map, *train_loss;
    double *precision, *recall;    // the diagnostics defined above
    double *corrected_true_pos;    // LL-Cp: corrected_true_pos_total (NaN for other losses)
    double *corrected;             // LL-Cp: corrected_total
    int knows_hidden;              // some epoch has hidden_pos > 0
    double hidden_pos_start;       // the first epoch's hidden_pos: every hidden positive of
                                   // the training split (NaN without that line)
    int finished;                  // the final line exists
    int best_epoch, early_stopped; // from the final line (0 when unfinished)
    int diverged;                  // the final line's status is "diverged" (NaN/Inf)
    double best_val_map, test_map; // from the final line (NaN when unfinished)
} wsml_run_log;

// Reads RUN_DIR/run.jsonl. Lines that do not parse (cut by a kill) are skipped; a missing
// or unreadable file is WSML_EIO naming it. An epoch number above 100000 is WSML_EFORMAT.
int wsml_run_log_read(const char *run_dir, wsml_run_log *log, wsml_err *err);
void wsml_run_log_free(wsml_run_log *log);

// Mean, lowest and highest over the logs that have a value (not NaN) at each epoch.
//   values[k]: (num_epochs of log k) -> mean/lo/hi: (num_epochs), count: (num_epochs) how
//   many logs had a value (0: all three NaN).
void wsml_series_band(const double *const *values, const int *lengths, int num_logs, int num_epochs,
                      double *mean, double *lo, double *hi, int *count);

// ---- the page --------------------------------------------------------------------------------

typedef struct {
    const char *title;           // heading, e.g. "Table 1"; unique on the page
    wsml_table_by by;            // the table's layout (as `wsml-eval table --by`)
    const char *const *run_dirs; // the section's runs (unfinished ones are listed)
    int num_runs;
} wsml_page_section;

typedef struct {
    const char *title; // the page's title
    const wsml_page_section *sections;
    int num_sections;
    const char *const *cams; // CAM figure PNGs (wsml-cam --out), may be 0
    int num_cams;
    const char *command; // how the page was made, shown at its end; or NULL
} wsml_page_opts;

// Writes OUT/index.html and its files (see above). The plots are listed in *plots (a
// malloc'd array of num_plots malloc'd stem names, the .gp files to run; free with
// wsml_page_plots_free). Existing files of the same names are replaced; index.html is
// written last. Errors name the run, file or section.
int wsml_page_write(const wsml_page_opts *opts, const char *out_dir, char ***plots, int *num_plots,
                    wsml_err *err);
void wsml_page_plots_free(char **plots, int num_plots);

#endif
