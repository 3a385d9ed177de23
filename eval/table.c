// `wsml-eval table`: reads run directories and renders the paper's tables (format and
// selection rules in eval/table.h).
#define _GNU_SOURCE
#include "eval/table.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "eval/csv.h"
#include "eval/paper.h"

#define MAX_GROUPS 16
#define MAX_EPOCHS 200 // per-epoch val mAP kept for the --epochs table

typedef struct {
    char dir[1024];    // as given, trailing '/' removed
    char dataset[128]; // "" when config.json could not be read
    char method[96];   // row name, "" when unknown
    char hparams[256]; // "delta_rel=0.2 lr=1e-05": the grid point, seeds excluded
    int relative_ll;   // LL-R/Ct/Cp with the relative threshold (the "LL-relative" row)
    int quirks;        // an LL run with --reference-quirks
    char base[80];     // the method without the quirks suffix ("LL-Ct abs")
    int finished;
    int diverged;      // finished with "status": "diverged" (NaN/Inf): never picked
    int early_stopped; // finished with "status": "early-stopped" (picked like the others)
    char reason[256];  // why it is missing
    double val_map, test_map;
    int num_groups; // 0 when no per-group test mAP was found
    double groups[MAX_GROUPS];
    int num_epochs; // val mAP of epochs 1..num_epochs (NaN where a line is missing)
    double epoch_val[MAX_EPOCHS];
} run_info;

// ---- reading one run ----------------------------------------------------------------------

static const struct {
    const char *loss, *name;
} LOSS_NAMES[] = {{"full", "Full labels"}, {"an", "Naive AN"}, {"an-ls", "AN-LS"},
                  {"wan", "WAN"},          {"epr", "EPR"},     {"role", "ROLE"},
                  {"ll-r", "LL-R"},        {"ll-ct", "LL-Ct"}, {"ll-cp", "LL-Cp"}};
#define LL_RELATIVE_ROW "LL-relative (best of R/Ct/Cp)"

// Canonical row order of the paper's tables; rows not listed follow in name order.
static const char *const ROW_ORDER[] = {
    "Full labels", "Naive AN", "AN-LS",         "WAN",      "EPR",       "ROLE",     "LL-R",
    "LL-Ct",       "LL-Cp",    LL_RELATIVE_ROW, "LL-R abs", "LL-Ct abs", "LL-Cp abs"};
#define NUM_ROW_ORDER ((int)(sizeof(ROW_ORDER) / sizeof(ROW_ORDER[0])))

static const char *json_str(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return json_is_string(v) ? json_string_value(v) : NULL;
}

// Appends " key=value" for a hyper-parameter present in config (numbers via %g).
static void add_hparam(char *buf, size_t cap, json_t *config, const char *key) {
    json_t *v = json_object_get(config, key);
    char value[64];
    if (json_is_number(v))
        snprintf(value, sizeof(value), "%g", json_number_value(v));
    else if (json_is_string(v))
        snprintf(value, sizeof(value), "%s", json_string_value(v));
    else
        return;
    size_t len = strlen(buf);
    snprintf(buf + len, cap - len, "%s%s=%s", len ? " " : "", key, value);
}

// Per-group values from {"G1": x, "G2": y, ...} or [x, y, ...]; null entries become NaN.
static int read_groups(json_t *v, double *groups) {
    int n = 0;
    if (json_is_array(v)) {
        for (size_t i = 0; i < json_array_size(v) && n < MAX_GROUPS; i++) {
            json_t *x = json_array_get(v, i);
            groups[n++] = json_is_number(x) ? json_number_value(x) : NAN;
        }
    } else if (json_is_object(v)) {
        for (; n < MAX_GROUPS; n++) {
            char key[8];
            snprintf(key, sizeof(key), "G%d", n + 1);
            json_t *x = json_object_get(v, key);
            if (!x)
                break;
            groups[n] = json_is_number(x) ? json_number_value(x) : NAN;
        }
    }
    return n;
}

static const char *base_name(const char *path, char *buf, size_t cap) {
    snprintf(buf, cap, "%s", path);
    size_t len = strlen(buf);
    while (len > 1 && buf[len - 1] == '/')
        buf[--len] = 0;
    char *slash = strrchr(buf, '/');
    return slash ? slash + 1 : buf;
}

// wsml-train writes the flags under "options" (train/trainer.h); a flat object works too.
static void read_config(run_info *r) {
    char path[1200];
    snprintf(path, sizeof(path), "%s/config.json", r->dir);
    json_error_t jerr;
    json_t *root = json_load_file(path, 0, &jerr);
    if (!root) {
        snprintf(r->reason, sizeof(r->reason), "config.json: %s", jerr.text);
        return;
    }
    json_t *config =
        json_is_object(json_object_get(root, "options")) ? json_object_get(root, "options") : root;
    const char *loss = json_str(config, "loss");
    const char *threshold = json_str(config, "threshold");
    if (!loss) {
        snprintf(r->reason, sizeof(r->reason), "config.json has no \"loss\" string");
        json_decref(root);
        return;
    }
    const char *name = loss;
    for (size_t i = 0; i < sizeof(LOSS_NAMES) / sizeof(LOSS_NAMES[0]); i++)
        if (!strcmp(loss, LOSS_NAMES[i].loss))
            name = LOSS_NAMES[i].name;
    int ll = !strncmp(loss, "ll-", 3);
    int absolute = ll && threshold && !strcmp(threshold, "absolute");
    const char *head = json_str(config, "head");
    int boost =
        head && (!strcmp(head, "boostlu") || !strcmp(head, "boost") || !strcmp(head, "cam"));
    r->quirks = ll && json_is_true(json_object_get(config, "reference_quirks"));
    snprintf(r->base, sizeof(r->base), "%s%s%s", name, absolute ? " abs" : "",
             boost ? " + BoostLU" : "");
    // The row name and relative_ll are settled once every run is read (name_rows).
    snprintf(r->method, sizeof(r->method), "%s", r->base);
    r->relative_ll = ll && !absolute && !boost;
    if (ll && !absolute)
        add_hparam(r->hparams, sizeof(r->hparams), config, "delta_rel");
    if (absolute) {
        add_hparam(r->hparams, sizeof(r->hparams), config, "r0");
        add_hparam(r->hparams, sizeof(r->hparams), config, "delta_abs");
    }
    add_hparam(r->hparams, sizeof(r->hparams), config, "lr");
    // Dataset: "dataset", else the store's name, else the store path's basename, else
    // the run directory's parent (runs/<table>/<dataset>/<run>).
    const char *dataset = json_str(config, "dataset");
    if (!dataset)
        dataset = json_str(root, "dataset");
    json_t *store = json_object_get(root, "store");
    if (!dataset && json_is_object(store))
        dataset = json_str(store, "name");
    char buf[1024];
    if (!dataset && json_str(config, "store"))
        dataset = base_name(json_str(config, "store"), buf, sizeof(buf));
    char *real = NULL;
    if (!dataset) {
        char parent[1100];
        snprintf(parent, sizeof(parent), "%s/..", r->dir);
        real = realpath(parent, NULL);
        dataset = base_name(real ? real : "unknown", buf, sizeof(buf));
    }
    snprintf(r->dataset, sizeof(r->dataset), "%s", dataset);
    free(real);
    json_decref(root);
}

static void read_results(run_info *r) {
    char path[1200];
    snprintf(path, sizeof(path), "%s/run.jsonl", r->dir);
    char *text = NULL;
    size_t len = 0;
    wsml_err err = {0};
    if (wsml_read_file(path, &text, &len, &err)) {
        snprintf(r->reason, sizeof(r->reason), "no readable run.jsonl");
        return;
    }
    json_t *final = NULL;
    double best_epoch_val = -INFINITY;
    for (char *line = text; line < text + len;) {
        char *end = memchr(line, '\n', (size_t)(text + len - line));
        size_t line_len = end ? (size_t)(end - line) : (size_t)(text + len - line);
        json_t *obj = json_loadb(line, line_len, 0, NULL);
        if (json_is_object(obj)) {
            json_t *val = json_object_get(obj, "val_map");
            json_t *epoch = json_object_get(obj, "epoch");
            if (json_is_number(val) && json_number_value(val) > best_epoch_val)
                best_epoch_val = json_number_value(val);
            if (json_is_number(val) && json_is_integer(epoch) && json_integer_value(epoch) >= 1 &&
                json_integer_value(epoch) <= MAX_EPOCHS) {
                int e = (int)json_integer_value(epoch);
                for (int k = r->num_epochs; k < e; k++)
                    r->epoch_val[k] = NAN;
                if (e > r->num_epochs)
                    r->num_epochs = e;
                r->epoch_val[e - 1] = json_number_value(val); // a resumed epoch: the last line
            }
            const char *event = json_str(obj, "event");
            if (event && !strcmp(event, "final")) {
                json_decref(final);
                final = json_incref(obj);
            }
        }
        json_decref(obj);
        line += line_len + 1;
    }
    free(text);
    if (!final) {
        snprintf(r->reason, sizeof(r->reason), "unfinished (no final line in run.jsonl)");
        return;
    }
    json_t *val = json_object_get(final, "best_val_map");
    json_t *test = json_object_get(final, "test_map");
    // "status" (ok | early-stopped | diverged); older runs: "early_stopped": true
    const char *status = json_str(final, "status");
    r->diverged = status && !strcmp(status, "diverged");
    r->early_stopped = (status && !strcmp(status, "early-stopped")) ||
                       (!status && json_is_true(json_object_get(final, "early_stopped")));
    if (r->diverged) {
        json_decref(final);
        r->finished = 1;
        return;
    }
    r->val_map = json_is_number(val) ? json_number_value(val) : best_epoch_val;
    r->test_map = json_is_number(test) ? json_number_value(test) : NAN;
    r->num_groups = read_groups(json_object_get(final, "test_groups"), r->groups);
    json_decref(final);

    snprintf(path, sizeof(path), "%s/metrics.json", r->dir);
    json_t *metrics = json_load_file(path, 0, NULL);
    if (json_is_object(metrics)) {
        json_t *map = json_object_get(metrics, "map");
        if (isnan(r->test_map) && json_is_number(map))
            r->test_map = json_number_value(map);
        if (r->num_groups == 0)
            r->num_groups = read_groups(json_object_get(metrics, "groups"), r->groups);
    }
    json_decref(metrics);
    if (!isfinite(r->val_map) || isnan(r->test_map)) {
        snprintf(r->reason, sizeof(r->reason), "final line lacks %s",
                 !isfinite(r->val_map) ? "best_val_map" : "test_map");
        return;
    }
    r->finished = 1;
}

// ---- selection ----------------------------------------------------------------------------

typedef struct {
    int available;     // a finished run exists
    int incomplete;    // some runs of this cell's grid are missing
    int diverged;      // runs of this cell's grid that diverged (skipped)
    int early_stopped; // seeds of the pick that stopped early
    int seeds;
    double val_mean, test_mean, test_std;
    int num_groups; // groups known for every seed of the pick
    double groups[MAX_GROUPS];
    int num_epochs; // epochs every seed of the pick has
    double epoch_val[MAX_EPOCHS];
    char pick[400]; // "LL-Ct delta_rel=0.2 lr=1e-05" (method shown for the derived row)
    char *dirs;     // run dirs of the pick, ';'-separated (malloc'd)
} cell;

// --reference-quirks: when every LL run of the table has it, the table is in the public
// code's mode (said in its title) and keeps the paper's row names; LL runs with it among
// paper-mode LL runs get " (ref. quirks)" and stay out of the "LL-relative" row. Returns
// 1 in the quirks mode.
static int name_rows(run_info *runs, int n) {
    int quirks = 0, plain = 0;
    for (int i = 0; i < n; i++) {
        if (!runs[i].dataset[0] || strncmp(runs[i].base, "LL-", 3))
            continue;
        quirks += runs[i].quirks;
        plain += !runs[i].quirks;
    }
    for (int i = 0; i < n && plain; i++) {
        if (!runs[i].quirks)
            continue;
        snprintf(runs[i].method, sizeof(runs[i].method), "%s (ref. quirks)", runs[i].base);
        runs[i].relative_ll = 0;
    }
    return quirks > 0 && plain == 0;
}

static int run_in_row(const run_info *r, const char *dataset, const char *row) {
    if (strcmp(r->dataset, dataset))
        return 0;
    if (!strcmp(row, LL_RELATIVE_ROW))
        return r->relative_ll;
    return !strcmp(r->method, row);
}

static int cmp_key(const void *a, const void *b) {
    return strcmp(a, b);
}

// The setting a run belongs to: its hyper-parameters, led by the method name in the
// derived "LL-relative" row (which picks among three methods).
static void setting_key(const run_info *r, int show_method, char *key, size_t cap) {
    snprintf(key, cap, "%s%s%s", show_method ? r->method : "",
             show_method && r->hparams[0] ? " " : "", r->hparams);
}

// Whether key is one of the first num of keys.
static int key_in(char (*keys)[400], int num, const char *key) {
    for (int k = 0; k < num; k++)
        if (!strcmp(keys[k], key))
            return 1;
    return 0;
}

// The pick: the setting with the best mean val mAP over its seeds, among the settings
// none of whose seeds diverged (a setting with a diverged seed is left out whole: its
// other seeds' mean would be a survivor's; the footnote counts it). A cell all of whose
// settings diverged somewhere has no pick.
static int fill_cell(const run_info *runs, int n, const char *dataset, const char *row,
                     int show_method, cell *out) {
    memset(out, 0, sizeof(*out));
    // Settings of the finished runs (keys) and those with a diverged seed (bad), sorted,
    // deduplicated.
    char(*keys)[400] = calloc(2 * ((size_t)n + 1), sizeof(*keys));
    if (!keys)
        return WSML_ENOMEM;
    char(*bad)[400] = keys + n + 1;
    int num_keys = 0, num_bad = 0;
    for (int i = 0; i < n; i++) {
        if (!runs[i].dataset[0] || !run_in_row(&runs[i], dataset, row))
            continue;
        if (!runs[i].finished) {
            out->incomplete = 1;
            continue;
        }
        char key[400];
        setting_key(&runs[i], show_method, key, sizeof(key));
        if (runs[i].diverged) {
            out->diverged++;
            if (!key_in(bad, num_bad, key))
                memcpy(bad[num_bad++], key, sizeof(key));
        }
    }
    for (int i = 0; i < n; i++) {
        if (!runs[i].dataset[0] || !runs[i].finished || runs[i].diverged ||
            !run_in_row(&runs[i], dataset, row))
            continue;
        char key[400];
        setting_key(&runs[i], show_method, key, sizeof(key));
        if (!key_in(bad, num_bad, key) && !key_in(keys, num_keys, key))
            memcpy(keys[num_keys++], key, sizeof(key));
    }
    qsort(keys, (size_t)num_keys, sizeof(*keys), cmp_key);
    int best = -1;
    double best_val = -INFINITY;
    for (int k = 0; k < num_keys; k++) {
        double sum = 0;
        int count = 0;
        for (int i = 0; i < n; i++) {
            char key[400];
            if (!runs[i].finished || runs[i].diverged || !run_in_row(&runs[i], dataset, row))
                continue;
            setting_key(&runs[i], show_method, key, sizeof(key));
            if (strcmp(key, keys[k]))
                continue;
            sum += runs[i].val_map;
            count++;
        }
        if (sum / count > best_val) { // strict: ties keep the first setting in sorted order
            best_val = sum / count;
            best = k;
        }
    }
    int rc = 0;
    if (best >= 0) {
        out->available = 1;
        out->val_mean = best_val;
        snprintf(out->pick, sizeof(out->pick), "%s", keys[best]);
        double sum = 0, sumsq = 0;
        double group_sum[MAX_GROUPS] = {0};
        int num_groups = MAX_GROUPS, num_epochs = MAX_EPOCHS;
        double epoch_sum[MAX_EPOCHS] = {0};
        size_t dirs_len = 0;
        for (int i = 0; i < n && !rc; i++) {
            char key[400];
            if (!runs[i].finished || runs[i].diverged || !run_in_row(&runs[i], dataset, row))
                continue;
            setting_key(&runs[i], show_method, key, sizeof(key));
            if (strcmp(key, keys[best]))
                continue;
            out->seeds++;
            out->early_stopped += runs[i].early_stopped;
            sum += runs[i].test_map;
            sumsq += runs[i].test_map * runs[i].test_map;
            if (runs[i].num_groups < num_groups)
                num_groups = runs[i].num_groups;
            for (int g = 0; g < runs[i].num_groups; g++)
                group_sum[g] += runs[i].groups[g];
            if (runs[i].num_epochs < num_epochs)
                num_epochs = runs[i].num_epochs;
            for (int e = 0; e < runs[i].num_epochs; e++)
                epoch_sum[e] += runs[i].epoch_val[e];
            size_t add = strlen(runs[i].dir) + (dirs_len ? 1 : 0);
            char *grown = realloc(out->dirs, dirs_len + add + 1);
            if (!grown) {
                rc = WSML_ENOMEM;
                break;
            }
            out->dirs = grown;
            sprintf(out->dirs + dirs_len, "%s%s", dirs_len ? ";" : "", runs[i].dir);
            dirs_len += add;
        }
        out->test_mean = sum / out->seeds;
        // Sample standard deviation (n − 1) over the seeds of the pick.
        double var = out->seeds > 1 ? (sumsq - sum * sum / out->seeds) / (out->seeds - 1) : 0.0;
        out->test_std = var > 0 ? sqrt(var) : 0.0;
        out->num_epochs = num_epochs;
        for (int e = 0; e < num_epochs; e++)
            out->epoch_val[e] = epoch_sum[e] / out->seeds;
        out->num_groups = num_groups;
        for (int g = 0; g < num_groups; g++)
            out->groups[g] = group_sum[g] / out->seeds;
    }
    free(keys);
    return rc;
}

// ---- rendering ----------------------------------------------------------------------------

static void csv_number(FILE *f, double v) {
    if (!isnan(v))
        fprintf(f, "%.4f", v);
}

// A Markdown cell: "mean ± std" (several seeds), "(n=K)" when its seeds differ from the
// title's n (title_n > 0), "*" for an incomplete grid, "†" when runs of the grid diverged.
static void md_number(FILE *f, int available, double mean, double std, int seeds, int title_n,
                      int incomplete, int diverged) {
    if (!available || isnan(mean)) {
        fprintf(f, " —%s |", diverged ? "†" : "");
        return;
    }
    fprintf(f, " %.1f", mean);
    if (seeds > 1)
        fprintf(f, " ± %.1f", std);
    if (title_n > 0 && seeds != title_n)
        fprintf(f, " (n=%d)", seeds);
    fprintf(f, "%s%s |", incomplete ? "*" : "", diverged ? "†" : "");
}

// The paper's value and our difference (ours − paper) after one of our cells, when a
// paper table is asked for: Markdown " 89.2 | +0.3 |", CSV ",89.2000,0.3000" (empty
// where the paper has no such row or column, or we have no value).
static void paper_cells(FILE *md, FILE *csv, int paper, const char *row, const char *column,
                        int available, double ours) {
    if (!paper)
        return;
    double p = wsml_paper_map(paper, row, column);
    double diff = available && !isnan(ours) && !isnan(p) ? ours - p : NAN;
    if (isnan(p))
        fprintf(md, "  |");
    else
        fprintf(md, " %.1f |", p);
    if (isnan(diff))
        fprintf(md, "  |");
    else
        fprintf(md, " %+.1f |", diff);
    fputc(',', csv);
    csv_number(csv, p);
    fputc(',', csv);
    csv_number(csv, diff);
}

// Header cells of one of our columns and, with a paper table, its two neighbours.
static void header_cells(FILE *md, FILE *csv, int paper, const char *column) {
    fprintf(md, " %s |", column);
    fputc(',', csv);
    wsml_csv_field(csv, column);
    if (paper) {
        fprintf(md, " paper | Δ |");
        fprintf(csv, ",%s_paper,%s_diff", column, column);
    }
}

void wsml_table_free(wsml_table *t) {
    if (!t)
        return;
    free(t->markdown);
    free(t->csv);
    free(t->picks_csv);
    free(t->missing);
    memset(t, 0, sizeof(*t));
}

static int row_rank(const char *row) {
    for (int i = 0; i < NUM_ROW_ORDER; i++)
        if (!strcmp(row, ROW_ORDER[i]))
            return i;
    return NUM_ROW_ORDER;
}

static int cmp_rows(const void *a, const void *b) {
    const char *x = *(const char *const *)a, *y = *(const char *const *)b;
    int rx = row_rank(x), ry = row_rank(y);
    return rx != ry ? rx - ry : strcmp(x, y);
}

// Adds s to list (size *n) unless present.
static void add_unique(const char **list, int *n, const char *s) {
    for (int i = 0; i < *n; i++)
        if (!strcmp(list[i], s))
            return;
    list[(*n)++] = s;
}

// In the by-group layout a (dataset, method) line is shown only if the method was run on
// that dataset.
static int line_has_runs(const run_info *runs, int n, wsml_table_by by, const char *dataset,
                         const char *row) {
    if (by != WSML_TABLE_BY_GROUP)
        return 1;
    for (int i = 0; i < n; i++)
        if (runs[i].dataset[0] && run_in_row(&runs[i], dataset, row))
            return 1;
    return 0;
}

// One table per dataset: the validation mAP of each epoch of each row's pick (the mean over
// its seeds), the learning curves behind the selection.
static void render_epochs(FILE *md, const cell *cells, int lines, int cols, const char **rows,
                          int num_rows, const char **datasets, int num_datasets, wsml_table_by by) {
    for (int d = 0; d < num_datasets; d++) {
        // the cells of dataset d: column d (by dataset) or lines d*num_rows.. (by group)
        int epochs = 0;
        for (int l = 0; l < lines; l++) {
            const cell *x = by == WSML_TABLE_BY_GROUP ? &cells[l] : &cells[l * cols + d];
            if ((by != WSML_TABLE_BY_GROUP || l / num_rows == d) && x->available &&
                x->num_epochs > epochs)
                epochs = x->num_epochs;
        }
        if (!epochs)
            continue;
        fprintf(md, "\nValidation mAP per epoch of the pick (%s):\n\n| method |", datasets[d]);
        for (int e = 1; e <= epochs; e++)
            fprintf(md, " %d |", e);
        fprintf(md, "\n|---|");
        for (int e = 1; e <= epochs; e++)
            fprintf(md, "---|");
        fprintf(md, "\n");
        for (int l = 0; l < lines; l++) {
            const cell *x = by == WSML_TABLE_BY_GROUP ? &cells[l] : &cells[l * cols + d];
            if ((by == WSML_TABLE_BY_GROUP && l / num_rows != d) || !x->available)
                continue;
            fprintf(md, "| %s |", rows[l % num_rows]);
            for (int e = 0; e < epochs; e++) {
                if (e < x->num_epochs && !isnan(x->epoch_val[e]))
                    fprintf(md, " %.1f |", x->epoch_val[e]);
                else
                    fprintf(md, "  |");
            }
            fprintf(md, "\n");
        }
    }
}

int wsml_table_build(const char *const *run_dirs, int num_runs, wsml_table_by by, int with_epochs,
                     wsml_table *out, wsml_err *err) {
    return wsml_table_build_paper(run_dirs, num_runs, by, with_epochs, 0, out, err);
}

int wsml_table_build_paper(const char *const *run_dirs, int num_runs, wsml_table_by by,
                           int with_epochs, int paper, wsml_table *out, wsml_err *err) {
    memset(out, 0, sizeof(*out));
    if (num_runs < 1)
        return wsml_errf(err, WSML_EARG, "table: no run directories given");
    if (paper != 0 && paper != 1 && paper != 2)
        return wsml_errf(err, WSML_EARG, "table: --paper must be 1 or 2, not %d", paper);
    run_info *runs = calloc((size_t)num_runs, sizeof(run_info));
    const char **datasets = calloc((size_t)num_runs, sizeof(char *));
    const char **rows = calloc((size_t)num_runs + 1, sizeof(char *));
    int num_cells = 0;
    if (!runs || !datasets || !rows) {
        free(runs);
        free(datasets);
        free(rows);
        return wsml_errf(err, WSML_ENOMEM, "table: out of memory");
    }
    int num_datasets = 0, num_rows = 0, has_relative_ll = 0, max_groups = 0;
    // A run directory given twice (the same realpath: SEEDS="1 1", a repeated argument)
    // counts once.
    char **reals = calloc((size_t)num_runs, sizeof(char *));
    int kept = 0;
    for (int i = 0; i < num_runs && reals; i++) {
        run_info *r = &runs[kept];
        snprintf(r->dir, sizeof(r->dir), "%s", run_dirs[i]);
        size_t len = strlen(r->dir);
        while (len > 1 && r->dir[len - 1] == '/')
            r->dir[--len] = 0;
        char *real = realpath(r->dir, NULL);
        reals[kept] = real ? real : strdup(r->dir);
        int twice = 0;
        for (int k = 0; k < kept && reals[kept] && !twice; k++)
            twice = reals[k] && !strcmp(reals[k], reals[kept]);
        if (twice) {
            free(reals[kept]);
            reals[kept] = NULL;
            memset(r, 0, sizeof(*r));
            continue;
        }
        kept++;
        read_config(r);
        if (r->dataset[0])
            read_results(r);
    }
    for (int i = 0; reals && i < kept; i++)
        free(reals[i]);
    if (!reals) {
        free(runs);
        free(datasets);
        free(rows);
        return wsml_errf(err, WSML_ENOMEM, "table: out of memory");
    }
    free(reals);
    num_runs = kept;
    out->num_runs = kept;
    int quirks_mode = name_rows(runs, num_runs);
    int num_diverged = 0, num_early = 0;
    for (int i = 0; i < num_runs; i++) {
        run_info *r = &runs[i];
        if (r->dataset[0]) {
            add_unique(datasets, &num_datasets, r->dataset);
            add_unique(rows, &num_rows, r->method);
            has_relative_ll |= r->relative_ll;
        }
        num_diverged += r->finished && r->diverged;
        num_early += r->finished && r->early_stopped;
        if (r->finished) {
            out->num_finished++;
            if (r->num_groups > max_groups)
                max_groups = r->num_groups;
        } else {
            out->num_missing++;
        }
    }
    if (has_relative_ll)
        rows[num_rows++] = LL_RELATIVE_ROW;
    qsort(rows, (size_t)num_rows, sizeof(char *), cmp_rows);

    // Table lines: by dataset, one per method; by group, one per (dataset, method).
    int lines = by == WSML_TABLE_BY_GROUP ? num_rows * num_datasets : num_rows;
    int cols = by == WSML_TABLE_BY_GROUP ? 1 : num_datasets;
    cell *cells = calloc((size_t)(lines * cols) + 1, sizeof(cell));
    int rc = cells ? 0 : WSML_ENOMEM;
    for (int l = 0; l < lines && !rc; l++) {
        const char *row = rows[l % num_rows];
        for (int c = 0; c < cols && !rc; c++) {
            const char *dataset = by == WSML_TABLE_BY_GROUP ? datasets[l / num_rows] : datasets[c];
            rc = fill_cell(runs, num_runs, dataset, row, !strcmp(row, LL_RELATIVE_ROW),
                           &cells[l * cols + c]);
            num_cells++;
        }
    }
    if (rc) {
        rc = wsml_errf(err, WSML_ENOMEM, "table: out of memory");
        goto done;
    }

    size_t md_len, csv_len, picks_len, missing_len;
    FILE *md = open_memstream(&out->markdown, &md_len);
    FILE *csv = open_memstream(&out->csv, &csv_len);
    FILE *picks = open_memstream(&out->picks_csv, &picks_len);
    FILE *missing = open_memstream(&out->missing, &missing_len);
    if (!md || !csv || !picks || !missing) {
        if (md)
            fclose(md);
        if (csv)
            fclose(csv);
        if (picks)
            fclose(picks);
        if (missing)
            fclose(missing);
        rc = wsml_errf(err, WSML_ENOMEM, "table: out of memory");
        goto done;
    }
    int multi = num_datasets > 1;
    // Header.
    int min_seeds = 0, max_seeds = 0;
    for (int i = 0; i < lines * cols; i++) {
        if (!cells[i].available)
            continue;
        if (!min_seeds || cells[i].seeds < min_seeds)
            min_seeds = cells[i].seeds;
        if (cells[i].seeds > max_seeds)
            max_seeds = cells[i].seeds;
    }
    if (paper)
        fprintf(md, "Table %d of the supplement%s: ", paper,
                quirks_mode ? ", reference-quirks mode (LL runs with --reference-quirks)" : "");
    else if (quirks_mode)
        fprintf(md, "Reference-quirks mode (LL runs with --reference-quirks): ");
    fprintf(md, "Test mAP of the setting with the best validation mAP (docs/methods.md §3)");
    fprintf(md, "%s", by == WSML_TABLE_BY_GROUP ? ", by class-frequency group" : "");
    if (max_seeds > 1 && min_seeds == max_seeds)
        fprintf(md, "; mean ± std over n = %d seeds", max_seeds);
    else if (max_seeds > 1)
        fprintf(md, "; mean ± std over n = %d seeds (a cell with fewer says its n)", max_seeds);
    else if (max_seeds == 1)
        fprintf(md, "; n = 1 seed");
    if (paper)
        fprintf(md, "; \"paper\": the supplement's value, Δ = ours − paper");
    fprintf(md, ".\n\n| method |");
    fprintf(csv, "method");
    if (by == WSML_TABLE_BY_GROUP) {
        if (multi)
            fprintf(csv, ",dataset");
        for (int g = 0; g < max_groups; g++) {
            char name[16];
            snprintf(name, sizeof(name), "G%d", g + 1);
            header_cells(md, csv, paper, name);
        }
        header_cells(md, csv, paper, "all");
        fprintf(md, "\n|---|");
        fprintf(csv, "\n");
        for (int g = 0; g <= max_groups; g++)
            fprintf(md, paper ? "---|---|---|" : "---|");
    } else {
        for (int c = 0; c < num_datasets; c++)
            header_cells(md, csv, paper, datasets[c]);
        fprintf(md, "\n|---|");
        fprintf(csv, "\n");
        for (int c = 0; c < num_datasets; c++)
            fprintf(md, paper ? "---|---|---|" : "---|");
    }
    fprintf(md, "\n");
    // Results.
    int any_incomplete = 0, any_diverged = 0;
    for (int l = 0; l < lines; l++) {
        const char *row = rows[l % num_rows];
        const char *dataset = datasets[l / num_rows < num_datasets ? l / num_rows : 0];
        if (!line_has_runs(runs, num_runs, by, dataset, row))
            continue;
        if (by == WSML_TABLE_BY_GROUP && multi)
            fprintf(md, "| %s: %s |", dataset, row);
        else
            fprintf(md, "| %s |", row);
        wsml_csv_field(csv, row);
        if (by == WSML_TABLE_BY_GROUP) {
            const cell *x = &cells[l];
            if (multi) {
                fputc(',', csv);
                wsml_csv_field(csv, dataset);
            }
            for (int g = 0; g < max_groups; g++) {
                int have = x->available && g < x->num_groups;
                char name[16];
                snprintf(name, sizeof(name), "G%d", g + 1);
                md_number(md, have, have ? x->groups[g] : NAN, 0, 1, 0, 0, 0);
                fputc(',', csv);
                csv_number(csv, have ? x->groups[g] : NAN);
                paper_cells(md, csv, paper, row, name, have, have ? x->groups[g] : NAN);
            }
            md_number(md, x->available, x->test_mean, x->test_std, x->seeds, max_seeds,
                      x->incomplete, x->diverged);
            fputc(',', csv);
            csv_number(csv, x->available ? x->test_mean : NAN);
            paper_cells(md, csv, paper, row, "all", x->available, x->test_mean);
            any_incomplete |= x->incomplete;
            any_diverged |= x->diverged > 0;
        } else {
            for (int c = 0; c < cols; c++) {
                const cell *x = &cells[l * cols + c];
                md_number(md, x->available, x->test_mean, x->test_std, x->seeds, max_seeds,
                          x->incomplete, x->diverged);
                fputc(',', csv);
                csv_number(csv, x->available ? x->test_mean : NAN);
                paper_cells(md, csv, paper, row, datasets[c], x->available, x->test_mean);
                any_incomplete |= x->incomplete;
                any_diverged |= x->diverged > 0;
            }
        }
        fprintf(md, "\n");
        fprintf(csv, "\n");
    }
    if (any_incomplete)
        fprintf(md, "\n\\* picked from an incomplete grid: some runs of this cell are missing "
                    "(listed below).\n");
    if (any_diverged || num_diverged) {
        // the settings (hyper-parameters, any seed) with a diverged run
        int settings = 0;
        for (int i = 0; i < num_runs; i++) {
            int first = runs[i].finished && runs[i].diverged;
            for (int j = 0; j < i && first; j++)
                first = !(runs[j].finished && runs[j].diverged &&
                          !strcmp(runs[j].dataset, runs[i].dataset) &&
                          !strcmp(runs[j].method, runs[i].method) &&
                          !strcmp(runs[j].hparams, runs[i].hparams));
            settings += first;
        }
        fprintf(md,
                "\n† diverged: %d run%s of %d setting%s ended with a NaN/Inf loss or logit "
                "(status \"diverged\"); a setting with a diverged seed is not picked:\n\n",
                num_diverged, num_diverged == 1 ? "" : "s", settings, settings == 1 ? "" : "s");
        for (int i = 0; i < num_runs; i++)
            if (runs[i].finished && runs[i].diverged)
                fprintf(md, "- %s, %s: %s%s`%s`\n", runs[i].method, runs[i].dataset,
                        runs[i].hparams, runs[i].hparams[0] ? " " : "", runs[i].dir);
    }
    if (num_early)
        fprintf(md,
                "\n%d run%s stopped early (val mAP more than 3 points below its best, as the "
                "reference); %s best epoch counts like any other run's.\n",
                num_early, num_early == 1 ? "" : "s", num_early == 1 ? "its" : "their");
    // Picks.
    fprintf(md, "\nPicked hyper-parameters (best mean validation mAP over seeds):\n\n"
                "| method | dataset | picked | val mAP | seeds | test mAP |\n"
                "|---|---|---|---|---|---|\n");
    fprintf(picks, "method,dataset,picked,val_map,seeds,test_map,test_map_std,complete_grid,"
                   "diverged,early_stopped,run_dirs\n");
    for (int l = 0; l < lines; l++) {
        for (int c = 0; c < cols; c++) {
            const cell *x = &cells[l * cols + c];
            const char *row = rows[l % num_rows];
            const char *dataset = by == WSML_TABLE_BY_GROUP ? datasets[l / num_rows] : datasets[c];
            if (!x->available)
                continue;
            fprintf(md, "| %s | %s | %s | %.2f | %d | %.2f |\n", row, dataset,
                    x->pick[0] ? x->pick : "(no grid)", x->val_mean, x->seeds, x->test_mean);
            wsml_csv_field(picks, row);
            fputc(',', picks);
            wsml_csv_field(picks, dataset);
            fputc(',', picks);
            wsml_csv_field(picks, x->pick);
            // run_dirs stays the last column (the pipelines read it as $NF)
            fprintf(picks, ",%.4f,%d,%.4f,%.4f,%d,%d,%d,", x->val_mean, x->seeds, x->test_mean,
                    x->test_std, !x->incomplete, x->diverged, x->early_stopped);
            wsml_csv_field(picks, x->dirs ? x->dirs : "");
            fputc('\n', picks);
        }
    }
    if (with_epochs)
        render_epochs(md, cells, lines, cols, rows, num_rows, datasets, num_datasets, by);
    // Missing runs.
    if (out->num_missing) {
        fprintf(md, "\nMissing runs (not counted): %d of %d\n\n", out->num_missing, num_runs);
        for (int i = 0; i < num_runs; i++) {
            if (runs[i].finished)
                continue;
            fprintf(md, "- `%s`: %s\n", runs[i].dir, runs[i].reason);
            fprintf(missing, "%s: %s\n", runs[i].dir, runs[i].reason);
        }
    }
    int write_failed = ferror(md) | ferror(csv) | ferror(picks) | ferror(missing);
    write_failed |= fclose(md) | fclose(csv) | fclose(picks) | fclose(missing);
    if (write_failed)
        rc = wsml_errf(err, WSML_ENOMEM, "table: out of memory while rendering");
done:
    for (int i = 0; i < num_cells; i++)
        free(cells[i].dirs);
    free(cells);
    free(runs);
    free(datasets);
    free(rows);
    if (rc)
        wsml_table_free(out);
    return rc;
}
