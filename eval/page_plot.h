// The results page's plots (eval/page.h): data files and gnuplot scripts. Private to
// eval/ (eval/page.c is the only caller).
#ifndef WSML_EVAL_PAGE_PLOT_H
#define WSML_EVAL_PAGE_PLOT_H

#include "common/err.h"
#include "eval/page.h"

// One line of a plot: a method's pick and the run logs of its seeds.
typedef struct {
    const char *name;         // the table's row name ("Naive AN", "LL-R", ...)
    const char *runs;         // the pick's run directories, ';'-separated (for comments)
    const wsml_run_log *logs; // (num_logs)
    int num_logs;
} page_method;

// Validation mAP and train loss per epoch: writes DIR/STEM-curves.dat, STEM-map.gp and
// STEM-loss.gp. Methods without any epoch are left out; returns 1 when written, 0 when
// no method has an epoch, or a negative wsml_code.
int page_plot_curves(const char *dir, const char *stem, const char *dataset,
                     const page_method *methods, int num_methods, wsml_err *err);

// The large-loss diagnostics: writes DIR/STEM-ll.dat and STEM-ll.gp for the methods whose
// names start with "LL-" (and "Naive AN" in the recall panel). base_rate: the share of
// hidden positives among the unobserved training entries (a flat line in the precision
// panel), NaN when unknown. Returns 1 when written, 0 when no LL method knows hidden
// positives, or a negative wsml_code.
int page_plot_ll(const char *dir, const char *stem, const char *dataset, const page_method *methods,
                 int num_methods, double base_rate, wsml_err *err);

// Test mAP per frequency group: bars per method, the paper's beside.
//   ours, paper: (num_methods, num_groups), NaN where there is no value.
// Writes DIR/STEM-groups.dat and STEM-groups.gp; returns 1, or 0 when every value is NaN.
int page_plot_groups(const char *dir, const char *stem, const char *dataset,
                     const char *const *groups, int num_groups, const char *const *methods,
                     int num_methods, const double *ours, const double *paper, wsml_err *err);

#endif
