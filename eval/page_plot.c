// Data files and gnuplot scripts of the results page (eval/page_plot.h). gnuplot 5.4's
// pngcairo terminal draws them (Debian gnuplot-nox); nothing here draws pixels.
#include "eval/page_plot.h"

#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"

// ---- styles --------------------------------------------------------------------------------

// A method keeps its colour on every plot; absolute-threshold variants are dashed.
static const struct {
    const char *method, *colour;
} COLOURS[] = {{"Full labels", "#1b9e77"}, {"Naive AN", "#4d4d4d"}, {"LL-R", "#1f77b4"},
               {"LL-Ct", "#ff7f0e"},       {"LL-Cp", "#d62728"},    {"ROLE", "#9467bd"},
               {"EPR", "#8c564b"},         {"WAN", "#e377c2"},      {"AN-LS", "#bcbd22"},
               {"LL-relative", "#7570b3"}};
static const char *const SPARE_COLOURS[] = {"#17becf", "#7f7f7f", "#aec7e8", "#98df8a"};

typedef struct {
    const char *colour;
    int dash; // gnuplot dash type: 1 solid, 2 dashed
} line_style;

// The style of a row name: its base method ("LL-R" of "LL-R abs + BoostLU") picks the
// colour, " abs" dashes the line; others take spare colours by position.
static line_style style_of(const char *method, int position) {
    line_style s = {SPARE_COLOURS[position % 4], strstr(method, " abs") ? 2 : 1};
    size_t best_len = 0;
    for (size_t i = 0; i < sizeof(COLOURS) / sizeof(COLOURS[0]); i++) {
        size_t n = strlen(COLOURS[i].method);
        if (!strncmp(method, COLOURS[i].method, n) && (method[n] == 0 || method[n] == ' ') &&
            n > best_len) {
            s.colour = COLOURS[i].colour;
            best_len = n;
        }
    }
    return s;
}

// A gnuplot single-quoted string: quotes doubled.
static void gp_string(FILE *f, const char *s) {
    fputc('\'', f);
    for (; *s; s++) {
        if (*s == '\'')
            fputc('\'', f);
        fputc(*s == '\n' ? ' ' : *s, f);
    }
    fputc('\'', f);
}

static void dat_number(FILE *f, double v) {
    if (isnan(v))
        fputs(" NaN", f);
    else
        fprintf(f, " %.17g", v);
}

// ---- files ----------------------------------------------------------------------------------

typedef struct {
    wsml_atomic_file af;
    int open;
} out_file;

static FILE *open_out(out_file *o, const char *dir, const char *stem, const char *suffix,
                      wsml_err *err) {
    char path[4200];
    snprintf(path, sizeof(path), "%s/%s%s", dir, stem, suffix);
    o->open = wsml_atomic_open(&o->af, path, err) == 0;
    return o->open ? o->af.f : NULL;
}

// The names of a plot's files: STEM-KIND (its .gp writes STEM-KIND.png) and its data file.
typedef struct {
    char stem[600], data[620];
} plot_names;

static plot_names names_of(const char *stem, const char *kind) {
    plot_names n;
    snprintf(n.stem, sizeof(n.stem), "%s-%s", stem, kind);
    snprintf(n.data, sizeof(n.data), "%s.dat", n.stem);
    return n;
}

static int close_out(out_file *o, int rc, wsml_err *err) {
    if (!o->open)
        return rc;
    o->open = 0;
    if (rc) {
        wsml_atomic_abort(&o->af);
        return rc;
    }
    return wsml_atomic_commit(&o->af, err);
}

// The lines every script starts with: terminal, output, missing values, grid.
static void gp_header(FILE *f, const char *stem, const char *what, const char *data, int width,
                      int height, int font_pt) {
    fprintf(f,
            "# %s (wsml-eval report). Data: %s. Run in this folder: gnuplot %s.gp\n"
            "set terminal pngcairo size %d,%d font 'DejaVu Sans,%d' linewidth 1.5 noenhanced\n"
            "set output '%s.png'\n"
            "set datafile missing 'NaN'\n"
            "set grid lc rgb '#dddddd'\n"
            "set border 3\n"
            "set tics nomirror\n",
            what, data, stem, width, height, font_pt, stem);
}

static int max_epochs(const page_method *m, int n) {
    int e = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < m[i].num_logs; k++)
            if (m[i].logs[k].num_epochs > e)
                e = m[i].logs[k].num_epochs;
    return e;
}

static void gp_epoch_axis(FILE *f, int epochs) {
    fprintf(f, "set xlabel 'epoch'\nset xrange [0.8:%g]\n", epochs + 0.2);
    if (epochs <= 25)
        fprintf(f, "set xtics 1\n");
}

// Per-epoch bands of several quantities of the methods' logs, one block per method:
//   epoch, then mean lo hi of each quantity, then how many seeds reached the epoch.
// offsets: the quantities as offsets of wsml_run_log's double* members.
static int write_bands(FILE *f, const page_method *m, int n, const size_t *offsets,
                       int num_quantities, const int *keep) {
    int epochs = max_epochs(m, n), block = 0;
    double *mean = malloc(sizeof(double) * 3 * (size_t)(epochs ? epochs : 1) * num_quantities);
    int *count = malloc(sizeof(int) * (size_t)(epochs ? epochs : 1) * num_quantities);
    const double **values = NULL;
    int *lengths = NULL;
    if (!mean || !count) {
        free(mean);
        free(count);
        return WSML_ENOMEM;
    }
    for (int i = 0; i < n; i++) {
        if (!keep[i])
            continue;
        values = malloc(sizeof(double *) * (size_t)(m[i].num_logs + 1));
        lengths = malloc(sizeof(int) * (size_t)(m[i].num_logs + 1));
        if (!values || !lengths) {
            free(values);
            free(lengths);
            free(mean);
            free(count);
            return WSML_ENOMEM;
        }
        int method_epochs = max_epochs(&m[i], 1);
        for (int q = 0; q < num_quantities; q++) {
            for (int k = 0; k < m[i].num_logs; k++) {
                const char *base = (const char *)&m[i].logs[k];
                values[k] = *(double *const *)(base + offsets[q]);
                lengths[k] = m[i].logs[k].num_epochs;
            }
            double *qm = mean + (size_t)3 * epochs * q;
            wsml_series_band(values, lengths, m[i].num_logs, method_epochs, qm, qm + epochs,
                             qm + 2 * epochs, count + (size_t)epochs * q);
        }
        fprintf(f, "%s# block %d: %s (runs: %s)\n", block ? "\n\n" : "", block, m[i].name,
                m[i].runs);
        for (int e = 0; e < method_epochs; e++) {
            fprintf(f, "%d", e + 1);
            for (int q = 0; q < num_quantities; q++)
                for (int j = 0; j < 3; j++)
                    dat_number(f, mean[(size_t)3 * epochs * q + (size_t)j * epochs + e]);
            int seeds = 0; // the runs that reached this epoch
            for (int k = 0; k < m[i].num_logs; k++)
                seeds += m[i].logs[k].num_epochs > e;
            fprintf(f, " %d\n", seeds);
        }
        block++;
        free(values);
        free(lengths);
    }
    free(mean);
    free(count);
    return 0;
}

// Writes DIR/NAMES->data: header (comment lines), then the bands of write_bands.
static int write_band_file(const char *dir, const plot_names *names, const char *header,
                           const page_method *m, int n, const size_t *offsets, int num_quantities,
                           const int *keep, wsml_err *err) {
    out_file o = {0};
    FILE *f = open_out(&o, dir, names->stem, ".dat", err);
    if (!f)
        return err->code;
    fputs(header, f);
    int rc = write_bands(f, m, n, offsets, num_quantities, keep);
    if (rc)
        wsml_errf(err, rc, "%s/%s: out of memory", dir, names->data);
    return close_out(&o, rc, err);
}

// One method's band and mean line: `index block using 1:lo:hi` filled, then `1:mean`.
static void gp_band_line(FILE *f, const char *data, int block, int mean_column, line_style s,
                         const char *title, int first) {
    fprintf(f, "%s'%s' index %d using 1:%d:%d with filledcurves lc rgb '%s' notitle, \\\n",
            first ? "plot " : "     ", data, block, mean_column + 1, mean_column + 2, s.colour);
    fprintf(f, "     '' index %d using 1:%d with linespoints lc rgb '%s' dt %d pt 7 ps 0.9 lw 2 ",
            block, mean_column, s.colour, s.dash);
    if (title) {
        fprintf(f, "title ");
        gp_string(f, title);
    } else {
        fprintf(f, "notitle");
    }
}

// ---- curves -----------------------------------------------------------------------------------

int page_plot_curves(const char *dir, const char *stem, const char *dataset,
                     const page_method *methods, int num_methods, wsml_err *err) {
    int *keep = calloc((size_t)num_methods + 1, sizeof(int)), any = 0;
    if (!keep)
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    for (int i = 0; i < num_methods; i++)
        any |= keep[i] = max_epochs(&methods[i], 1) > 0;
    if (!any) {
        free(keep);
        return 0;
    }
    plot_names names = names_of(stem, "curves");
    const char *data = names.data;
    char header[600];
    snprintf(header, sizeof(header),
             "# Validation mAP and train loss per epoch, %s: each method's pick, over its "
             "seeds (wsml-eval report).\n"
             "# columns: epoch, val_map mean lo hi, train_loss mean lo hi, seeds\n",
             dataset);
    static const size_t OFFSETS[2] = {offsetof(wsml_run_log, val_map),
                                      offsetof(wsml_run_log, train_loss)};
    int rc = write_band_file(dir, &names, header, methods, num_methods, OFFSETS, 2, keep, err);
    out_file o = {0};
    FILE *f;
    int epochs = max_epochs(methods, num_methods);
    for (int plot = 0; plot < 2 && !rc; plot++) {
        char plot_stem[600];
        snprintf(plot_stem, sizeof(plot_stem), "%s-%s", stem, plot ? "loss" : "map");
        if (!(f = open_out(&o, dir, plot_stem, ".gp", err))) {
            rc = err->code;
            break;
        }
        gp_header(f, plot_stem, plot ? "Train loss per epoch" : "Validation mAP per epoch", data,
                  960, 600, 16);
        fprintf(f, "set title ");
        gp_string(f, plot ? "train loss per epoch (mean over seeds, band: lowest to highest)"
                          : "validation mAP per epoch (mean over seeds, band: lowest to highest)");
        fprintf(f, "\nset ylabel '%s'\n", plot ? "train loss" : "validation mAP");
        gp_epoch_axis(f, epochs);
        fprintf(f, "set key %s right\nset style fill transparent solid 0.15 noborder\n",
                plot ? "top" : "bottom");
        for (int i = 0, block = 0; i < num_methods; i++) {
            if (!keep[i])
                continue;
            if (block)
                fprintf(f, ", \\\n");
            gp_band_line(f, data, block, plot ? 5 : 2, style_of(methods[i].name, i),
                         methods[i].name, block == 0);
            block++;
        }
        fprintf(f, "\n");
        rc = close_out(&o, 0, err);
    }
    free(keep);
    return rc ? rc : 1;
}

// ---- large-loss diagnostics ------------------------------------------------------------------

static int is_ll(const char *method) {
    return !strncmp(method, "LL-", 3) && strncmp(method, "LL-relative", 11);
}

static int is_llcp(const char *method) {
    return !strncmp(method, "LL-Cp", 5);
}

static int knows_hidden(const page_method *m) {
    for (int k = 0; k < m->num_logs; k++)
        if (m->logs[k].knows_hidden)
            return 1;
    return 0;
}

int page_plot_ll(const char *dir, const char *stem, const char *dataset, const page_method *methods,
                 int num_methods, double base_rate, wsml_err *err) {
    int *keep = calloc((size_t)num_methods + 1, sizeof(int)), num_ll = 0, num_cp = 0;
    if (!keep)
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    for (int i = 0; i < num_methods; i++) {
        int ll = is_ll(methods[i].name) && knows_hidden(&methods[i]);
        keep[i] = (ll || !strcmp(methods[i].name, "Naive AN")) && knows_hidden(&methods[i]) &&
                  max_epochs(&methods[i], 1) > 0;
        num_ll += ll && keep[i];
        num_cp += ll && keep[i] && is_llcp(methods[i].name);
    }
    if (!num_ll) {
        free(keep);
        return 0;
    }
    plot_names names = names_of(stem, "ll");
    const char *data_stem = names.stem, *data = names.data;
    char header[1200], base[200] = "";
    if (!isnan(base_rate))
        snprintf(base, sizeof(base),
                 "# base_rate %.17g: hidden positives / unobserved entries of the training "
                 "split (the store's labels)\n",
                 base_rate);
    snprintf(header, sizeof(header),
             "# Large-loss diagnostics per epoch, %s (wsml-eval report; definitions in "
             "eval/page.h):\n"
             "#   precision = modified_hidden_pos / modified\n"
             "#   recall = (modified_hidden_pos + corrected TP before) / (hidden_pos + "
             "corrected TP before)\n"
             "# columns: epoch, precision mean lo hi, recall mean lo hi, "
             "corrected_true_pos_total mean lo hi, corrected_total mean lo hi, seeds\n%s",
             dataset, base);
    static const size_t OFFSETS[4] = {
        offsetof(wsml_run_log, precision), offsetof(wsml_run_log, recall),
        offsetof(wsml_run_log, corrected_true_pos), offsetof(wsml_run_log, corrected)};
    int rc = write_band_file(dir, &names, header, methods, num_methods, OFFSETS, 4, keep, err);
    out_file o = {0};
    FILE *f;
    if (!rc && (f = open_out(&o, dir, data_stem, ".gp", err))) {
        int panels = num_cp ? 3 : 2, epochs = max_epochs(methods, num_methods);
        gp_header(f, data_stem, "Large-loss diagnostics per epoch", data, 520 * panels, 560, 15);
        fprintf(f, "set style fill transparent solid 0.15 noborder\n");
        gp_epoch_axis(f, epochs);
        fprintf(f, "set multiplot layout 1,%d\n", panels);
        static const char *const TITLES[3] = {
            "precision: share of the modified entries\\nthat are hidden positives",
            "recall: share of all hidden positives\\nmodified or corrected",
            "LL-Cp: permanent corrections\\n(cumulative over epochs)"};
        for (int panel = 0; panel < panels; panel++) {
            fprintf(f, "set title \"%s\"\n", TITLES[panel]);
            if (panel < 2)
                fprintf(
                    f,
                    "set yrange [0:1.32]\nset ytics 0,0.2,1\nset ylabel 'share'\nset key top %s\n",
                    panel ? "left" : "right");
            else
                fprintf(f, "set yrange [0:*]\nset ytics autofreq\nset ylabel 'entries'\nset key "
                           "top left Left reverse\n");
            int block = 0, first = 1;
            for (int i = 0; i < num_methods; i++) {
                if (!keep[i])
                    continue;
                int an = !is_ll(methods[i].name);
                int drawn = panel == 0 ? !an : panel == 1 ? 1 : is_llcp(methods[i].name);
                if (drawn) {
                    line_style s = style_of(methods[i].name, i);
                    if (!first)
                        fprintf(f, ", \\\n");
                    if (panel < 2) {
                        gp_band_line(f, data, block, panel ? 5 : 2, s, methods[i].name, first);
                    } else {
                        char title[200];
                        snprintf(title, sizeof(title), "%s: true positives", methods[i].name);
                        gp_band_line(f, data, block, 8, s, title, first);
                        fprintf(f,
                                ", \\\n     '' index %d using 1:11 with linespoints lc rgb "
                                "'%s' dt 3 pt 6 ps 0.9 lw 2 title ",
                                block, s.colour);
                        snprintf(title, sizeof(title), "%s: all", methods[i].name);
                        gp_string(f, title);
                    }
                    first = 0;
                }
                block++;
            }
            if (panel == 0 && !isnan(base_rate))
                fprintf(f,
                        ", \\\n     %.17g with lines lc rgb '#4d4d4d' dt 2 lw 2 title "
                        "'Naive AN (base rate)'",
                        base_rate);
            fprintf(f, "\n");
        }
        fprintf(f, "unset multiplot\n");
        rc = close_out(&o, 0, err);
    } else if (!rc) {
        rc = err->code;
    }
    free(keep);
    return rc ? rc : 1;
}

// ---- frequency groups -------------------------------------------------------------------------

int page_plot_groups(const char *dir, const char *stem, const char *dataset,
                     const char *const *groups, int num_groups, const char *const *methods,
                     int num_methods, const double *ours, const double *paper, wsml_err *err) {
    double lo = INFINITY, hi = -INFINITY;
    for (int i = 0; i < num_methods * num_groups; i++) {
        double v[2] = {ours[i], paper[i]};
        for (int j = 0; j < 2; j++) {
            if (isnan(v[j]))
                continue;
            lo = v[j] < lo ? v[j] : lo;
            hi = v[j] > hi ? v[j] : hi;
        }
    }
    if (lo > hi)
        return 0;
    // The bars start near the lowest value (differences of tenths on a 0..100 axis would be
    // invisible); the caption says where the axis starts.
    double y0 = floor((lo - 3) / 5) * 5, y1 = ceil((hi + 2) / 5) * 5;
    y0 = y0 < 0 ? 0 : y0;
    y1 = y1 > 100 ? 100 : y1;
    plot_names names = names_of(stem, "groups");
    const char *data_stem = names.stem, *data = names.data;
    out_file o = {0};
    FILE *f = open_out(&o, dir, data_stem, ".dat", err);
    if (!f)
        return err->code;
    fprintf(f,
            "# Test mAP per class-frequency group, %s: ours (the table's pick) and the "
            "paper's (supplement Table 2)\n# columns: group",
            dataset);
    for (int m = 0; m < num_methods; m++)
        fprintf(f, ", %s ours, %s paper", methods[m], methods[m]);
    fprintf(f, "\n");
    for (int g = 0; g < num_groups; g++) {
        fprintf(f, "%s", groups[g]);
        for (int m = 0; m < num_methods; m++) {
            dat_number(f, ours[m * num_groups + g]);
            dat_number(f, paper[m * num_groups + g]);
        }
        fprintf(f, "\n");
    }
    int rc = close_out(&o, 0, err);
    if (rc)
        return rc;
    if (!(f = open_out(&o, dir, data_stem, ".gp", err)))
        return err->code;
    gp_header(f, data_stem, "Test mAP per class-frequency group", data, 1200, 700, 15);
    fprintf(f,
            "set title 'test mAP per class-frequency group (G1 rarest); hatched: the paper'\n"
            "set ylabel 'test mAP'\nset yrange [%g:%g]\nset grid noxtics\n"
            "set style data histograms\nset style histogram clustered gap 1\n"
            "set key outside below center horizontal\nset xtics scale 0\n",
            y0, y1);
    int first = 1;
    for (int m = 0; m < num_methods; m++) {
        line_style s = style_of(methods[m], m);
        int has_paper = 0;
        for (int g = 0; g < num_groups; g++)
            has_paper |= !isnan(paper[m * num_groups + g]);
        fprintf(f, "%s'%s' using %d%s lc rgb '%s' fs solid 0.85 border rgb '#333333' title ",
                first ? "plot " : ", \\\n     ", first ? data : "", 2 + 2 * m,
                first ? ":xtic(1)" : "", s.colour);
        gp_string(f, methods[m]);
        if (has_paper) {
            char title[200];
            snprintf(title, sizeof(title), "%s (paper)", methods[m]);
            fprintf(f, ", \\\n     '' using %d lc rgb '%s' fs pattern 4 border rgb '%s' title ",
                    3 + 2 * m, s.colour, s.colour);
            gp_string(f, title);
        }
        first = 0;
    }
    fprintf(f, "\n");
    return close_out(&o, 0, err) ? err->code : 1;
}
