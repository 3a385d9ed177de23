// The results page (eval/page.h): tables from wsml_table_build (rendered from its CSV, so
// columns it adds later show up as they are), plots through eval/page_plot.c, CAM figures
// copied beside the page, and every run's settings.
#define _GNU_SOURCE
#include "eval/page.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "eval/csv.h"
#include "eval/page_plot.h"
#include "eval/paper.h"
#include "store/store.h"

#define LL_RELATIVE_ROW "LL-relative (best of R/Ct/Cp)"

// ---- small helpers ----------------------------------------------------------------------------

static void html(FILE *f, const char *s) {
    for (; s && *s; s++) {
        switch (*s) {
        case '&':
            fputs("&amp;", f);
            break;
        case '<':
            fputs("&lt;", f);
            break;
        case '>':
            fputs("&gt;", f);
            break;
        case '"':
            fputs("&quot;", f);
            break;
        default:
            fputc(*s, f);
        }
    }
}

// A file-name part: [A-Za-z0-9.-] kept, anything else '_', lower case.
static void slug(const char *in, char *out, size_t cap) {
    size_t n = 0;
    for (; *in && n + 1 < cap; in++) {
        char ch = *in;
        int ok = (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '.' || ch == '-';
        if (ch >= 'A' && ch <= 'Z')
            ch = (char)(ch - 'A' + 'a'), ok = 1;
        out[n++] = ok ? ch : '-';
    }
    out[n] = 0;
}

// A whole number in text ("29.2730"), or NaN.
static double parse_number(const char *s) {
    char *end;
    double v = strtod(s, &end);
    return *s && !*end ? v : NAN;
}

// Length of the directory prefix (up to and including a '/') all paths share.
static size_t common_dir_prefix(const char *const *paths, int n) {
    if (n < 1)
        return 0;
    size_t len = strlen(paths[0]);
    for (int i = 1; i < n; i++) {
        size_t k = 0;
        while (k < len && paths[i][k] == paths[0][k])
            k++;
        len = k;
    }
    while (len > 0 && paths[0][len - 1] != '/')
        len--;
    return len;
}

// ---- a section's picks -------------------------------------------------------------------------

typedef struct {
    wsml_table table;
    wsml_csv csv, picks;
    int p_method, p_dataset, p_picked, p_val, p_seeds, p_test, p_std, p_complete, p_dirs;
    const char **datasets; // distinct datasets of the picks, in order
    int num_datasets;
    size_t prefix; // common directory prefix of the section's runs
} section_data;

static void section_free(section_data *s) {
    wsml_table_free(&s->table);
    wsml_csv_free(&s->csv);
    wsml_csv_free(&s->picks);
    free(s->datasets);
}

static int section_load(const wsml_page_section *sec, section_data *s, wsml_err *err) {
    memset(s, 0, sizeof(*s));
    int rc = wsml_table_build(sec->run_dirs, sec->num_runs, sec->by, 0, &s->table, err);
    if (!rc)
        rc = wsml_csv_parse(s->table.csv, "table CSV", &s->csv, err);
    if (!rc)
        rc = wsml_csv_parse(s->table.picks_csv, "picks CSV", &s->picks, err);
    if (rc)
        return rc;
    s->p_method = wsml_csv_column(&s->picks, "method");
    s->p_dataset = wsml_csv_column(&s->picks, "dataset");
    s->p_picked = wsml_csv_column(&s->picks, "picked");
    s->p_val = wsml_csv_column(&s->picks, "val_map");
    s->p_seeds = wsml_csv_column(&s->picks, "seeds");
    s->p_test = wsml_csv_column(&s->picks, "test_map");
    s->p_std = wsml_csv_column(&s->picks, "test_map_std");
    s->p_complete = wsml_csv_column(&s->picks, "complete_grid");
    s->p_dirs = wsml_csv_column(&s->picks, "run_dirs");
    if (s->p_method < 0 || s->p_dataset < 0 || s->p_dirs < 0)
        return wsml_errf(err, WSML_EFORMAT,
                         "the table's picks CSV lacks method, dataset or run_dirs columns");
    s->datasets = calloc((size_t)s->picks.num_rows + 1, sizeof(char *));
    if (!s->datasets)
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    for (int r = 1; r < s->picks.num_rows; r++) {
        const char *d = wsml_csv_get(&s->picks, r, s->p_dataset);
        int seen = 0;
        for (int k = 0; k < s->num_datasets && !seen; k++)
            seen = !strcmp(s->datasets[k], d);
        if (!seen)
            s->datasets[s->num_datasets++] = d;
    }
    s->prefix = common_dir_prefix(sec->run_dirs, sec->num_runs);
    return 0;
}

// The picks row of (method, dataset), or -1.
static int pick_row(const section_data *s, const char *method, const char *dataset) {
    for (int r = 1; r < s->picks.num_rows; r++)
        if (!strcmp(wsml_csv_get(&s->picks, r, s->p_method), method) &&
            !strcmp(wsml_csv_get(&s->picks, r, s->p_dataset), dataset))
            return r;
    return -1;
}

static double pick_number(const section_data *s, int row, int col) {
    return row < 0 || col < 0 ? NAN : parse_number(wsml_csv_get(&s->picks, row, col));
}

// The paper's value of a table cell: Table 1 by dataset, Table 2 for OpenImages' groups.
static double paper_value(wsml_table_by by, const char *row, const char *dataset,
                          const char *column) {
    if (by == WSML_TABLE_BY_DATASET)
        return wsml_paper_map(1, row, column);
    return dataset && !strcmp(dataset, "openimages") ? wsml_paper_map(2, row, column) : NAN;
}

// ---- run logs of the picks ----------------------------------------------------------------------

typedef struct {
    page_method *methods;
    wsml_run_log *logs;
    char **runs; // the picks' run_dirs fields (copies)
    int num_methods, num_logs;
} picked_logs;

static void picked_logs_free(picked_logs *p) {
    for (int i = 0; i < p->num_logs; i++)
        wsml_run_log_free(&p->logs[i]);
    for (int i = 0; i < p->num_methods; i++)
        free(p->runs[i]);
    free(p->logs);
    free(p->runs);
    free(p->methods);
    memset(p, 0, sizeof(*p));
}

// The run logs of every pick of dataset (the derived LL-relative row is left out: it is
// one of LL-R/Ct/Cp's picks).
static int load_picked_logs(const section_data *s, const char *dataset, picked_logs *p,
                            wsml_err *err) {
    memset(p, 0, sizeof(*p));
    int rows = s->picks.num_rows, total_dirs = 0;
    for (int r = 1; r < rows; r++) {
        const char *dirs = wsml_csv_get(&s->picks, r, s->p_dirs);
        for (total_dirs++; *dirs; dirs++)
            total_dirs += *dirs == ';';
    }
    p->methods = calloc((size_t)rows + 1, sizeof(page_method));
    p->runs = calloc((size_t)rows + 1, sizeof(char *));
    p->logs = calloc((size_t)total_dirs + 1, sizeof(wsml_run_log));
    if (!p->methods || !p->runs || !p->logs)
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    for (int r = 1; r < rows; r++) {
        const char *method = wsml_csv_get(&s->picks, r, s->p_method);
        if (strcmp(wsml_csv_get(&s->picks, r, s->p_dataset), dataset) ||
            !strcmp(method, LL_RELATIVE_ROW))
            continue;
        char *dirs = strdup(wsml_csv_get(&s->picks, r, s->p_dirs));
        if (!dirs)
            return wsml_errf(err, WSML_ENOMEM, "out of memory");
        p->runs[p->num_methods] = dirs;
        page_method *m = &p->methods[p->num_methods++];
        m->name = method;
        m->runs = dirs;
        m->logs = &p->logs[p->num_logs];
        char *copy = strdup(dirs), *save = NULL;
        if (!copy)
            return wsml_errf(err, WSML_ENOMEM, "out of memory");
        for (char *dir = strtok_r(copy, ";", &save); dir; dir = strtok_r(NULL, ";", &save)) {
            int rc = wsml_run_log_read(dir, &p->logs[p->num_logs], err);
            if (rc) {
                free(copy);
                return rc;
            }
            p->num_logs++;
            m->num_logs++;
        }
        free(copy);
    }
    return 0;
}

// ---- HTML pieces
// ----------------------------------------------------------------------------------

static const char *CSS =
    "body{font:15px/1.45 'DejaVu Sans',system-ui,sans-serif;color:#222;max-width:1250px;"
    "margin:0 auto;padding:1.2em 2em}\n"
    "h1{font-size:1.6em;margin:.2em 0 .3em}h2{font-size:1.3em;border-bottom:2px solid #ccc;"
    "padding-bottom:.15em;margin-top:1.8em}h3{font-size:1.05em;margin:1.3em 0 .4em}\n"
    "p{margin:.4em 0}.note{color:#555;font-size:.88em}code{font-size:.9em}\n"
    "table{border-collapse:collapse;margin:.5em 0 .8em;font-size:.9em}\n"
    "th,td{padding:.22em .6em;border-bottom:1px solid #e2e2e2;text-align:right;"
    "vertical-align:top}\n"
    "th{background:#f3f3f3;font-weight:600}th:first-child,td:first-child{text-align:left}\n"
    "td.text,th.text{text-align:left}td.paper,th.paper{color:#777;font-style:italic}\n"
    "td.best{font-weight:700}\n"
    "figure{margin:.8em 0;break-inside:avoid}figure img{max-width:100%;height:auto;"
    "border:1px solid #eee}\n"
    "figcaption{font-size:.86em;color:#444;margin-top:.3em}\n"
    ".row{display:flex;flex-wrap:wrap;gap:1em}.row figure{flex:1 1 440px;min-width:0}\n"
    ".glance{background:#f6f8fb;border-left:4px solid #1f77b4;padding:.4em .8em;"
    "margin:.6em 0}\n"
    ".shared span{display:inline-block;margin:0 1.2em .15em 0;white-space:nowrap}\n"
    "nav ul{margin:.2em 0;padding-left:1.2em}\n"
    "@page{size:A4;margin:12mm}\n"
    "@media print{body{max-width:none;padding:0;font-size:9.5pt}a{color:inherit;"
    "text-decoration:none}h2{break-after:avoid}h3{break-after:avoid}"
    "table,figure,.glance{break-inside:avoid}.row figure{flex:1 1 45%}nav{display:none}"
    "figure img{max-height:240mm;width:auto}}\n";

static void cell_number(FILE *f, double v, const char *cls) {
    if (isnan(v))
        fprintf(f, "<td%s%s%s>—</td>", cls ? " class=\"" : "", cls ? cls : "", cls ? "\"" : "");
    else
        fprintf(f, "<td%s%s%s>%.1f</td>", cls ? " class=\"" : "", cls ? cls : "", cls ? "\"" : "",
                v);
}

// The results table from the table's CSV: every column as it comes; numbers to one
// decimal, ± the std over seeds and '*' for an incomplete grid in the cells that are a
// pick's test mAP, the best of ours in bold (Full labels, the upper bound, left out), and
// the paper's value beside every column it has values for.
static void html_results(FILE *f, const section_data *s, wsml_table_by by) {
    const wsml_csv *c = &s->csv;
    if (c->num_rows < 1)
        return;
    int cols = c->num_fields[0];
    int c_dataset = wsml_csv_column(c, "dataset");
    const char *only_dataset = s->num_datasets == 1 ? s->datasets[0] : NULL;
    int *has_paper = calloc((size_t)cols + 1, sizeof(int));
    double *best = malloc(sizeof(double) * ((size_t)cols + 1));
    if (!has_paper || !best) {
        free(has_paper);
        free(best);
        return;
    }
    for (int k = 1; k < cols; k++) {
        best[k] = -INFINITY;
        for (int r = 1; r < c->num_rows; r++) {
            const char *row = wsml_csv_get(c, r, 0);
            const char *dataset = c_dataset >= 0 ? wsml_csv_get(c, r, c_dataset) : only_dataset;
            double v = parse_number(wsml_csv_get(c, r, k));
            if (!isnan(v) && v > best[k] && strcmp(row, "Full labels"))
                best[k] = v;
            has_paper[k] |=
                k != c_dataset && !isnan(paper_value(by, row, dataset, c->fields[0][k]));
        }
    }
    fprintf(f, "<table class=\"results\">\n<tr>");
    for (int k = 0; k < cols; k++) {
        fprintf(f, "<th%s>", k == 0 || k == c_dataset ? " class=\"text\"" : "");
        html(f, c->fields[0][k]);
        fprintf(f, "</th>");
        if (has_paper[k])
            fprintf(f, "<th class=\"paper\">paper</th>");
    }
    fprintf(f, "</tr>\n");
    for (int r = 1; r < c->num_rows; r++) {
        const char *row = wsml_csv_get(c, r, 0);
        const char *dataset = c_dataset >= 0 ? wsml_csv_get(c, r, c_dataset) : only_dataset;
        fprintf(f, "<tr><td>");
        html(f, row);
        fprintf(f, "</td>");
        for (int k = 1; k < cols; k++) {
            const char *text = wsml_csv_get(c, r, k), *head = c->fields[0][k];
            double v = parse_number(text);
            if (k == c_dataset || isnan(v)) {
                fprintf(f, "<td class=\"text\">");
                html(f, text[0] ? text : "—");
                fprintf(f, "</td>");
            } else {
                // The cell that is a pick's test mAP: by dataset, every dataset column; by
                // group, the "all" column.
                int prow = by == WSML_TABLE_BY_DATASET       ? pick_row(s, row, head)
                           : !strcmp(head, "all") && dataset ? pick_row(s, row, dataset)
                                                             : -1;
                double std = pick_number(s, prow, s->p_std);
                double seeds = pick_number(s, prow, s->p_seeds);
                double complete = pick_number(s, prow, s->p_complete);
                fprintf(f, "<td%s>%.1f", v == best[k] ? " class=\"best\"" : "", v);
                if (seeds > 1 && !isnan(std))
                    fprintf(f, " ± %.1f", std);
                if (complete == 0)
                    fprintf(f, "*");
                fprintf(f, "</td>");
            }
            if (has_paper[k])
                cell_number(f, paper_value(by, row, dataset, head), "paper");
        }
        fprintf(f, "</tr>\n");
    }
    fprintf(f, "</table>\n");
    int any_paper = 0, any_incomplete = 0;
    for (int k = 1; k < cols; k++)
        any_paper |= has_paper[k];
    for (int r = 1; r < s->picks.num_rows; r++)
        any_incomplete |= pick_number(s, r, s->p_complete) == 0;
    fprintf(f, "<p class=\"note\">Test mAP of the setting with the best mean validation mAP "
               "(the test split is never used to choose); mean ± standard deviation over seeds; "
               "bold: the best of ours apart from Full labels (the upper bound).");
    if (any_incomplete)
        fprintf(f, " * picked from an incomplete grid (see the missing runs below).");
    if (any_paper)
        fprintf(f,
                " <i>paper</i>: the supplement's Table %d (ResNet-50 at 448x448, "
                "End-to-end; %s).",
                by == WSML_TABLE_BY_DATASET ? 1 : 2,
                by == WSML_TABLE_BY_DATASET ? "single positive labels"
                                            : "OpenImages V3's real partial labels");
    fprintf(f, "</p>\n");
    free(has_paper);
    free(best);
}

// One line per dataset: the large-loss pick against Naive AN, and the paper's gap.
static void html_glance(FILE *f, const section_data *s, wsml_table_by by) {
    int printed = 0;
    for (int d = 0; d < s->num_datasets; d++) {
        const char *ds = s->datasets[d];
        int an = pick_row(s, "Naive AN", ds), ll = pick_row(s, LL_RELATIVE_ROW, ds);
        double an_test = pick_number(s, an, s->p_test), ll_test = pick_number(s, ll, s->p_test);
        if (isnan(an_test) || isnan(ll_test))
            continue;
        if (!printed++)
            fprintf(f, "<div class=\"glance\">\n");
        char method[64] = "LL";
        const char *picked = s->p_picked >= 0 ? wsml_csv_get(&s->picks, ll, s->p_picked) : "";
        sscanf(picked, "%63s", method);
        fprintf(f, "<p><b>");
        html(f, ds);
        fprintf(f, "</b>: the large-loss pick (");
        html(f, method);
        fprintf(f,
                ", chosen on validation among LL-R/Ct/Cp) reaches %.1f test mAP against "
                "Naive AN's %.1f: <b>%+.1f</b> points.",
                ll_test, an_test, ll_test - an_test);
        double pa = paper_value(by, "Naive AN", ds, by == WSML_TABLE_BY_DATASET ? ds : "all");
        double pl = paper_value(by, LL_RELATIVE_ROW, ds, by == WSML_TABLE_BY_DATASET ? ds : "all");
        if (!isnan(pa) && !isnan(pl))
            fprintf(f, " The paper: %.1f against %.1f, %+.1f.", pl, pa, pl - pa);
        fprintf(f, "</p>\n");
    }
    if (printed)
        fprintf(f, "</div>\n");
}

static void html_figure(FILE *f, const char *src, const char *alt, const char *caption_html) {
    fprintf(f, "<figure><img src=\"");
    html(f, src);
    fprintf(f, "\" alt=\"");
    html(f, alt);
    fprintf(f, "\"><figcaption>%s</figcaption></figure>\n", caption_html);
}

// The picks CSV as a table: every column; run directories without the common prefix.
static void html_picks(FILE *f, const section_data *s) {
    const wsml_csv *c = &s->picks;
    static const struct {
        const char *column, *label;
    } LABELS[] = {{"val_map", "val mAP"},       {"test_map", "test mAP"},
                  {"test_map_std", "± std"},    {"complete_grid", "complete grid"},
                  {"run_dirs", "runs (seeds)"}, {"picked", "picked setting"}};
    fprintf(f, "<table class=\"picks\">\n<tr>");
    for (int k = 0; c->num_rows > 0 && k < c->num_fields[0]; k++) {
        const char *label = c->fields[0][k];
        for (size_t i = 0; i < sizeof(LABELS) / sizeof(LABELS[0]); i++)
            if (!strcmp(label, LABELS[i].column))
                label = LABELS[i].label;
        fprintf(f, "<th class=\"text\">");
        html(f, label);
        fprintf(f, "</th>");
    }
    fprintf(f, "</tr>\n");
    for (int r = 1; r < c->num_rows; r++) {
        fprintf(f, "<tr>");
        for (int k = 0; k < c->num_fields[0]; k++) {
            const char *text = wsml_csv_get(c, r, k);
            double v = parse_number(text);
            if (k == s->p_dirs) {
                fprintf(f, "<td class=\"text\"><code>");
                char *copy = strdup(text), *save = NULL;
                int n = 0;
                for (char *d = copy ? strtok_r(copy, ";", &save) : NULL; d;
                     d = strtok_r(NULL, ";", &save), n++) {
                    fprintf(f, "%s", n ? "<br>" : "");
                    html(f, strlen(d) > s->prefix ? d + s->prefix : d);
                }
                free(copy);
                fprintf(f, "</code></td>");
            } else if (k == s->p_val || k == s->p_test || k == s->p_std) {
                fprintf(f, "<td>%.2f</td>", v);
            } else {
                fprintf(f, "<td class=\"text\">");
                html(f, k == s->p_complete ? (v == 1 ? "yes" : "no") : text);
                fprintf(f, "</td>");
            }
        }
        fprintf(f, "</tr>\n");
    }
    fprintf(f, "</table>\n");
}

// ---- every run's settings -----------------------------------------------------------------------

typedef struct {
    char **keys;
    int num_keys;
    char ***values; // (runs, num_keys): the value's text, NULL when absent
    int num_runs;
} settings;

static void settings_free(settings *st) {
    for (int r = 0; r < st->num_runs; r++) {
        for (int k = 0; st->values && st->values[r] && k < st->num_keys; k++)
            free(st->values[r][k]);
        if (st->values)
            free(st->values[r]);
    }
    for (int k = 0; k < st->num_keys; k++)
        free(st->keys[k]);
    free(st->keys);
    free(st->values);
}

static char *value_text(json_t *v) {
    char *s = NULL;
    if (json_is_string(v))
        s = strdup(json_string_value(v));
    else if (json_is_integer(v))
        (void)!asprintf(&s, "%lld", (long long)json_integer_value(v));
    else if (json_is_real(v))
        (void)!asprintf(&s, "%g", json_real_value(v));
    else if (json_is_boolean(v))
        s = strdup(json_is_true(v) ? "true" : "false");
    else if (json_is_null(v))
        s = strdup("null");
    else
        s = json_dumps(v, JSON_COMPACT);
    return s;
}

static int key_index(settings *st, const char *key) {
    for (int k = 0; k < st->num_keys; k++)
        if (!strcmp(st->keys[k], key))
            return k;
    return -1;
}

// Adds key = v of run r (nested objects flattened one level: "counts.train").
static int settings_put(settings *st, int r, const char *key, json_t *v) {
    if (json_is_object(v)) {
        const char *sub;
        json_t *x;
        json_object_foreach(v, sub, x) {
            char full[256];
            snprintf(full, sizeof(full), "%s.%s", key, sub);
            int rc = settings_put(st, r, full, x);
            if (rc)
                return rc;
        }
        return 0;
    }
    int k = key_index(st, key);
    if (k < 0) {
        char **keys = realloc(st->keys, sizeof(char *) * (size_t)(st->num_keys + 1));
        if (!keys)
            return WSML_ENOMEM;
        st->keys = keys;
        for (int i = 0; i < st->num_runs; i++) {
            char **row = realloc(st->values[i], sizeof(char *) * (size_t)(st->num_keys + 1));
            if (!row)
                return WSML_ENOMEM;
            row[st->num_keys] = NULL;
            st->values[i] = row;
        }
        if (!(st->keys[st->num_keys] = strdup(key)))
            return WSML_ENOMEM;
        k = st->num_keys++;
    }
    free(st->values[r][k]);
    st->values[r][k] = value_text(v);
    return st->values[r][k] ? 0 : WSML_ENOMEM;
}

// Large-loss settings that do not apply to a run are blanked: the threshold family for
// other losses, delta_rel under an absolute threshold, r0/delta_abs under a relative one.
static int setting_applies(const settings *st, int r, const char *key) {
    int kl = -1, kt = -1;
    for (int k = 0; k < st->num_keys; k++) {
        kl = !strcmp(st->keys[k], "loss") ? k : kl;
        kt = !strcmp(st->keys[k], "threshold") ? k : kt;
    }
    const char *loss = kl >= 0 ? st->values[r][kl] : NULL;
    const char *threshold = kt >= 0 ? st->values[r][kt] : NULL;
    int ll = loss && !strncmp(loss, "ll-", 3);
    int relative = threshold && !strcmp(threshold, "relative");
    if (!strcmp(key, "threshold") || !strcmp(key, "reference_quirks"))
        return ll;
    if (!strcmp(key, "delta_rel"))
        return ll && relative;
    if (!strcmp(key, "r0") || !strcmp(key, "delta_abs"))
        return ll && !relative;
    return 1;
}

static void html_runs(FILE *f, const wsml_page_section *sec, const section_data *s) {
    settings st = {0};
    st.num_runs = sec->num_runs;
    st.values = calloc((size_t)sec->num_runs + 1, sizeof(char **));
    wsml_run_log *logs = calloc((size_t)sec->num_runs + 1, sizeof(wsml_run_log));
    int rc = st.values && logs ? 0 : WSML_ENOMEM;
    for (int r = 0; r < sec->num_runs && !rc; r++) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/config.json", sec->run_dirs[r]);
        json_t *root = json_load_file(path, 0, NULL);
        json_t *cfg = json_is_object(json_object_get(root, "options"))
                          ? json_object_get(root, "options")
                          : root;
        const char *key;
        json_t *v;
        json_object_foreach(cfg, key, v) {
            if (strcmp(key, "out") && (rc = settings_put(&st, r, key, v)))
                break;
        }
        json_decref(root);
        wsml_err ignored = {0};
        wsml_run_log_read(sec->run_dirs[r], &logs[r], &ignored); // unreadable: "unfinished"
    }
    if (rc) {
        fprintf(f, "<p class=\"note\">(out of memory while listing the runs)</p>\n");
        goto done;
    }
    // A setting is shared when every run has the same text for it.
    int *shared = calloc((size_t)st.num_keys + 1, sizeof(int));
    if (!shared)
        goto done;
    fprintf(f, "<p class=\"shared\"><b>Shared by all %d runs:</b> ", sec->num_runs);
    for (int k = 0; k < st.num_keys; k++) {
        shared[k] = 1;
        for (int r = 0; r < st.num_runs && shared[k]; r++) {
            const char *a = st.values[r][k], *b = st.values[0][k];
            shared[k] = a && b && !strcmp(a, b);
        }
        if (shared[k]) {
            fprintf(f, "<span><code>");
            html(f, st.keys[k]);
            fprintf(f, "</code> ");
            html(f, st.values[0][k]);
            fprintf(f, "</span>");
        }
    }
    fprintf(f, "</p>\n<table class=\"runs\">\n<tr><th class=\"text\">run</th>");
    for (int k = 0; k < st.num_keys; k++) {
        if (shared[k])
            continue;
        fprintf(f, "<th class=\"text\">");
        html(f, st.keys[k]);
        fprintf(f, "</th>");
    }
    fprintf(f, "<th>epochs</th><th>best epoch</th><th>best val mAP</th><th>test mAP</th>"
               "<th class=\"text\">status</th></tr>\n");
    for (int r = 0; r < st.num_runs; r++) {
        const char *dir = sec->run_dirs[r];
        fprintf(f, "<tr><td><code>");
        html(f, strlen(dir) > s->prefix ? dir + s->prefix : dir);
        fprintf(f, "</code></td>");
        for (int k = 0; k < st.num_keys; k++) {
            if (shared[k])
                continue;
            fprintf(f, "<td class=\"text\">");
            if (st.values[r][k] && setting_applies(&st, r, st.keys[k]))
                html(f, st.values[r][k]);
            fprintf(f, "</td>");
        }
        const wsml_run_log *l = &logs[r];
        fprintf(f, "<td>%d</td>", l->num_epochs);
        if (l->finished) {
            // a run that diverged before its first epoch ended has no best epoch or mAP
            fprintf(f, l->best_epoch > 0 ? "<td>%d</td>" : "<td></td>", l->best_epoch);
            fprintf(f, isfinite(l->best_val_map) ? "<td>%.2f</td>" : "<td></td>", l->best_val_map);
            fprintf(f, isfinite(l->test_map) ? "<td>%.2f</td>" : "<td></td>", l->test_map);
            fprintf(f, "<td class=\"text\">%s</td></tr>\n",
                    l->diverged        ? "diverged"
                    : l->early_stopped ? "early stop"
                                       : "finished");
        } else
            fprintf(f, "<td></td><td></td><td></td><td class=\"text\">not finished</td></tr>\n");
    }
    fprintf(f, "</table>\n");
    free(shared);
done:
    for (int r = 0; logs && r < sec->num_runs; r++)
        wsml_run_log_free(&logs[r]);
    free(logs);
    settings_free(&st);
}

// ---- the page
// -------------------------------------------------------------------------------------

typedef struct {
    char **names;
    int count;
} plot_list;

static int plot_add(plot_list *p, const char *stem) {
    char **grown = realloc(p->names, sizeof(char *) * (size_t)(p->count + 1));
    if (!grown)
        return WSML_ENOMEM;
    p->names = grown;
    if (!(p->names[p->count] = strdup(stem)))
        return WSML_ENOMEM;
    p->count++;
    return 0;
}

static void free_strings(char **strings, int count) {
    for (int i = 0; strings && i < count; i++)
        free(strings[i]);
    free(strings);
}

void wsml_page_plots_free(char **plots, int num_plots) {
    free_strings(plots, num_plots);
}

// ---- the base rate of the diagnostics
// ------------------------------------------------------------

// The store a run trained on (config.json's "store"), copied into buf; 0 if unknown.
static int run_store(const char *run_dir, char *buf, size_t cap) {
    char path[4200];
    snprintf(path, sizeof(path), "%s/config.json", run_dir);
    json_t *root = json_load_file(path, 0, NULL);
    json_t *cfg =
        json_is_object(json_object_get(root, "options")) ? json_object_get(root, "options") : root;
    json_t *store = json_object_get(cfg, "store");
    int ok = json_is_string(store) && snprintf(buf, cap, "%s", json_string_value(store)) < (int)cap;
    json_decref(root);
    return ok;
}

// Naive AN's baseline for the precision of the large-loss selection: the share of hidden
// positives (full label 1, observed 0) among the unobserved entries of the training split,
// i.e. what a random pick of unobserved entries would hit. Counted from the store the
// runs trained on (labels only, no CRC); NaN when it cannot be read or when its hidden
// positives differ from the runs' own count (epoch 1's hidden_pos): the store is not the
// one they trained on.
static double base_rate(const picked_logs *p) {
    char store_dir[4096] = "";
    double run_hidden = NAN;
    for (int i = 0; i < p->num_methods && isnan(run_hidden); i++) {
        char *first = strndup(p->methods[i].runs, strcspn(p->methods[i].runs, ";"));
        if (first && p->methods[i].num_logs && p->methods[i].logs[0].hidden_pos_start > 0 &&
            run_store(first, store_dir, sizeof(store_dir)))
            run_hidden = p->methods[i].logs[0].hidden_pos_start;
        free(first);
    }
    if (isnan(run_hidden))
        return NAN;
    wsml_err err = {0};
    wsml_store *store = wsml_store_open(store_dir, 0, &err);
    wsml_reader *reader = store ? wsml_reader_begin(store, &err) : NULL;
    if (!reader) {
        wsml_store_close(store);
        return NAN;
    }
    const wsml_store_meta *meta = wsml_store_meta_get(store);
    int C = meta->num_classes;
    int8_t *full = malloc((size_t)C), *observed = malloc((size_t)C);
    int64_t hidden = 0, unobserved = 0;
    int rc = full && observed ? 0 : WSML_ENOMEM;
    for (uint32_t i = 0; !rc && i < meta->count[WSML_SPLIT_TRAIN]; i++) {
        wsml_record rec;
        if ((rc = wsml_reader_get(reader, WSML_SPLIT_TRAIN, i, &rec, &err)))
            break;
        wsml_record_full_labels(&rec, C, full);
        wsml_record_observed_labels(&rec, C, observed);
        for (int c = 0; c < C; c++) {
            unobserved += observed[c] == 0;
            hidden += observed[c] == 0 && full[c] == 1;
        }
        if (i % 4096 == 4095)
            wsml_reader_reset(reader); // bounded snapshot over big splits
    }
    free(full);
    free(observed);
    wsml_reader_end(reader);
    wsml_store_close(store);
    if (rc || unobserved == 0 || (double)hidden != run_hidden)
        return NAN;
    return (double)hidden / (double)unobserved;
}

static const char *CAPTION_MAP =
    "Validation mAP per epoch of each method's picked setting: the line is the mean over its "
    "seeds, the band runs from the lowest to the highest seed (after a seed stopped early, "
    "over the seeds still running: the plots' .dat files count them). Epoch 1 is never "
    "modified, so the large-loss methods start where Naive AN does.";
static const char *CAPTION_LOSS =
    "Train loss per epoch (mean over the batches of the epoch; band over seeds). The losses "
    "differ in what they sum (LL-R drops the rejected entries, LL-Ct/Cp train them as "
    "positives, Full labels sees every label), so compare shapes rather than heights.";
static const char *CAPTION_LL =
    "The paper's argument in numbers, from each epoch's counts in run.jsonl. <b>Precision</b>: "
    "of the unobserved entries an epoch modified (largest losses: rejected by LL-R, corrected "
    "by LL-Ct/Cp), the share that are hidden positives (true labels hidden by the partial "
    "labels). <b>Recall</b>: the share of <i>all</i> hidden positives of the training split "
    "that the epoch does not train as negatives (modified in the epoch, or corrected "
    "permanently by LL-Cp before it). Naive AN modifies nothing: its recall is 0, and the "
    "dashed line in the precision panel is the share of hidden positives among all its "
    "assumed negatives (the unobserved entries), what a random pick would hit. "
    "LL-Cp's panel counts its permanent corrections and how many of them were right.";

// The frequency-group bars of a by-group section, one picture per dataset: the rows the
// paper has, ours beside the paper's (every row when the paper has none for the dataset).
static int html_groups(FILE *f, const section_data *s, const char *sec_slug, const char *plots_dir,
                       plot_list *plots, wsml_err *err) {
    const wsml_csv *c = &s->csv;
    if (c->num_rows < 2)
        return 0;
    int cols = c->num_fields[0], c_dataset = wsml_csv_column(c, "dataset"), num_groups = 0;
    const char **groups = calloc((size_t)cols + 1, sizeof(char *));
    int *group_col = calloc((size_t)cols + 1, sizeof(int));
    const char **methods = calloc((size_t)c->num_rows + 1, sizeof(char *));
    double *ours = malloc(sizeof(double) * ((size_t)cols * c->num_rows + 1));
    double *paper = malloc(sizeof(double) * ((size_t)cols * c->num_rows + 1));
    int rc = groups && group_col && methods && ours && paper ? 0 : WSML_ENOMEM;
    for (int k = 1; k < cols && !rc; k++) {
        const char *h = c->fields[0][k];
        if ((h[0] == 'G' && h[1] >= '0' && h[1] <= '9') || !strcmp(h, "all")) {
            group_col[num_groups] = k;
            groups[num_groups++] = h;
        }
    }
    for (int d = 0; d < s->num_datasets && !rc && num_groups; d++) {
        const char *ds = s->datasets[d];
        int any_paper = 0, num_methods = 0;
        for (int r = 1; r < c->num_rows; r++)
            any_paper |= !isnan(paper_value(WSML_TABLE_BY_GROUP, wsml_csv_get(c, r, 0), ds, "all"));
        for (int r = 1; r < c->num_rows; r++) {
            const char *row = wsml_csv_get(c, r, 0);
            if (c_dataset >= 0 && strcmp(wsml_csv_get(c, r, c_dataset), ds))
                continue;
            for (int g = 0; g < num_groups; g++) {
                ours[num_methods * num_groups + g] = parse_number(wsml_csv_get(c, r, group_col[g]));
                paper[num_methods * num_groups + g] =
                    paper_value(WSML_TABLE_BY_GROUP, row, ds, groups[g]);
            }
            methods[num_methods++] = row;
        }
        char ds_slug[128], stem[300], src[400];
        slug(ds, ds_slug, sizeof(ds_slug));
        snprintf(stem, sizeof(stem), "%s-%s", sec_slug, ds_slug);
        int drawn = page_plot_groups(plots_dir, stem, ds, groups, num_groups, methods, num_methods,
                                     ours, paper, err);
        if (drawn < 0) {
            rc = drawn;
            break;
        }
        if (!drawn)
            continue;
        char plot_stem[340], caption[600];
        snprintf(plot_stem, sizeof(plot_stem), "%s-groups", stem);
        snprintf(src, sizeof(src), "plots/%s.png", plot_stem);
        fprintf(f, "<h3>");
        html(f, ds);
        fprintf(f, ": test mAP per class-frequency group</h3>\n");
        snprintf(caption, sizeof(caption),
                 "Test mAP of each method's pick per class-frequency group (classes sorted by "
                 "their positive training labels and cut into equal groups, G1 the rarest), and "
                 "over all classes.%s The value axis does not start at 0.",
                 any_paper ? " Hatched bars: the paper's values (supplement Table 2), "
                             "beside the methods the paper has."
                           : "");
        html_figure(f, src, "test mAP per class-frequency group", caption);
        rc = plot_add(plots, plot_stem);
    }
    if (rc == WSML_ENOMEM)
        wsml_errf(err, rc, "out of memory");
    free(groups);
    free(group_col);
    free(methods);
    free(ours);
    free(paper);
    return rc;
}

// The details of a section: the picks, the missing runs and every run's settings.
static void write_details(FILE *f, const wsml_page_section *sec, const section_data *s) {
    fprintf(f, "<h3>Picked hyper-parameters</h3>\n");
    html_picks(f, s);
    if (s->table.num_missing) {
        fprintf(f, "<h3>Missing runs (not counted): %d of %d</h3>\n<ul class=\"note\">\n",
                s->table.num_missing, sec->num_runs);
        char *copy = strdup(s->table.missing), *save = NULL;
        for (char *l = copy ? strtok_r(copy, "\n", &save) : NULL; l;
             l = strtok_r(NULL, "\n", &save)) {
            fprintf(f, "<li><code>");
            html(f, strlen(l) > s->prefix ? l + s->prefix : l);
            fprintf(f, "</code></li>\n");
        }
        free(copy);
        fprintf(f, "</ul>\n");
    }
    fprintf(f, "<h3>Runs and their settings</h3>\n");
    if (s->prefix) {
        fprintf(f, "<p class=\"note\">Run directories below <code>");
        char *prefix = strndup(sec->run_dirs[0], s->prefix);
        html(f, prefix);
        free(prefix);
        fprintf(f, "</code>; each holds <code>config.json</code> (every flag) and "
                   "<code>run.jsonl</code> (every epoch).</p>\n");
    }
    html_runs(f, sec, s);
}

// A section's results (details = 0: the tables and plots, what a reader looks at first) or
// its details (details = 1, at the end of the page).
static int write_section(FILE *f, const wsml_page_section *sec, int index, const char *plots_dir,
                         plot_list *plots, int details, wsml_err *err) {
    section_data s;
    int rc = section_load(sec, &s, err);
    if (rc) {
        section_free(&s);
        return wsml_err_prefix(err, "section \"%s\"", sec->title);
    }
    char sec_slug[128];
    slug(sec->title, sec_slug, sizeof(sec_slug));
    fprintf(f, "<section id=\"%c%d\">\n<h2>", details ? 'd' : 's', index + 1);
    html(f, sec->title);
    fprintf(f, "%s</h2>\n", details ? ": picks and runs" : "");
    if (details) {
        write_details(f, sec, &s);
        fprintf(f, "</section>\n");
        section_free(&s);
        return 0;
    }
    html_glance(f, &s, sec->by);
    html_results(f, &s, sec->by);
    for (int d = 0; d < s.num_datasets && !rc; d++) {
        const char *ds = s.datasets[d];
        char ds_slug[128], stem[300], src[400];
        slug(ds, ds_slug, sizeof(ds_slug));
        snprintf(stem, sizeof(stem), "%s-%s", sec_slug, ds_slug);
        picked_logs p;
        if ((rc = load_picked_logs(&s, ds, &p, err))) {
            picked_logs_free(&p);
            break;
        }
        int has_curves = page_plot_curves(plots_dir, stem, ds, p.methods, p.num_methods, err);
        int has_ll = has_curves < 0 ? 0
                                    : page_plot_ll(plots_dir, stem, ds, p.methods, p.num_methods,
                                                   base_rate(&p), err);
        picked_logs_free(&p);
        if ((rc = has_curves < 0 ? has_curves : has_ll < 0 ? has_ll : 0))
            break;
        if (s.num_datasets > 1 || has_curves || has_ll) {
            fprintf(f, "<h3>");
            html(f, ds);
            fprintf(f, ": training</h3>\n");
        }
        if (has_curves) {
            fprintf(f, "<div class=\"row\">\n");
            const char *kinds[2] = {"map", "loss"}, *captions[2] = {CAPTION_MAP, CAPTION_LOSS};
            for (int k = 0; k < 2 && !rc; k++) {
                char plot_stem[340];
                snprintf(plot_stem, sizeof(plot_stem), "%s-%s", stem, kinds[k]);
                snprintf(src, sizeof(src), "plots/%s.png", plot_stem);
                html_figure(f, src, k ? "train loss per epoch" : "validation mAP per epoch",
                            captions[k]);
                rc = plot_add(plots, plot_stem);
            }
            fprintf(f, "</div>\n");
        }
        if (has_ll && !rc) {
            char plot_stem[340];
            snprintf(plot_stem, sizeof(plot_stem), "%s-ll", stem);
            fprintf(f, "<h3>");
            html(f, ds);
            fprintf(f, ": what the large losses are</h3>\n");
            snprintf(src, sizeof(src), "plots/%s.png", plot_stem);
            html_figure(f, src, "large-loss diagnostics per epoch", CAPTION_LL);
            rc = plot_add(plots, plot_stem);
        } else if (!has_ll && !rc && has_curves) {
            fprintf(f, "<p class=\"note\">No large-loss diagnostics: no LL run here, or the "
                       "store knows no hidden positive (real partial labels).</p>\n");
        }
    }
    if (!rc && sec->by == WSML_TABLE_BY_GROUP)
        rc = html_groups(f, &s, sec_slug, plots_dir, plots, err);
    fprintf(f, "</section>\n");
    section_free(&s);
    return rc;
}

static int copy_png(const char *from, const char *to, wsml_err *err) {
    char *data = NULL;
    size_t len = 0;
    int rc = wsml_read_file(from, &data, &len, err);
    if (rc)
        return rc;
    if (len < 8 || memcmp(data, "\x89PNG\r\n\x1a\n", 8))
        rc = wsml_errf(err, WSML_EFORMAT, "%s: not a PNG file (--cam takes wsml-cam's figure)",
                       from);
    else
        rc = wsml_write_file_atomic(to, data, len, err);
    free(data);
    return rc;
}

static const char *CAPTION_CAM =
    "Class activation maps of the methods' checkpoints (jet colours at 50% over the image; "
    "red is where the class' evidence is strongest). Rows: a test image (its id) and one of "
    "its ground-truth classes; columns: the input image, then one map per method.";

int wsml_page_write(const wsml_page_opts *opts, const char *out_dir, char ***plots_out,
                    int *num_plots, wsml_err *err) {
    *plots_out = NULL;
    *num_plots = 0;
    for (int i = 0; i < opts->num_sections; i++)
        for (int j = 0; j < i; j++) {
            char a[128], b[128];
            slug(opts->sections[i].title, a, sizeof(a));
            slug(opts->sections[j].title, b, sizeof(b));
            if (!strcmp(a, b))
                return wsml_errf(err, WSML_EARG,
                                 "sections \"%s\" and \"%s\" need different titles (their "
                                 "plots would share the file names %s-*)",
                                 opts->sections[j].title, opts->sections[i].title, a);
        }
    char plots_dir[4200], path[4300];
    snprintf(plots_dir, sizeof(plots_dir), "%s/plots", out_dir);
    int rc = wsml_mkdirs(plots_dir, err);
    if (rc)
        return rc;
    char *page = NULL;
    size_t page_len = 0;
    FILE *f = open_memstream(&page, &page_len);
    if (!f)
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    const char *title = opts->title ? opts->title : "wsml results";
    fprintf(f, "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
               "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
               "<title>");
    html(f, title);
    fprintf(f, "</title>\n<style>\n%s</style>\n</head>\n<body>\n<h1>", CSS);
    html(f, title);
    fprintf(f, "</h1>\n<p class=\"note\">Weakly supervised multi-label training with wsml: the "
               "large-loss methods of Kim et al., \"Large Loss Matters in Weakly Supervised "
               "Multi-Label Classification\" (CVPR 2022), against their baselines. Every number "
               "on this page is read from the runs' <code>run.jsonl</code> and "
               "<code>config.json</code>; the plots' data and gnuplot scripts are in "
               "<code>plots/</code>.</p>\n<nav><ul>\n");
    for (int i = 0; i < opts->num_sections; i++) {
        fprintf(f, "<li><a href=\"#s%d\">", i + 1);
        html(f, opts->sections[i].title);
        fprintf(f, "</a></li>\n");
    }
    if (opts->num_cams)
        fprintf(f, "<li><a href=\"#cam\">Class activation maps</a></li>\n");
    for (int i = 0; i < opts->num_sections; i++) {
        fprintf(f, "<li><a href=\"#d%d\">", i + 1);
        html(f, opts->sections[i].title);
        fprintf(f, ": picks and runs</a></li>\n");
    }
    fprintf(f, "</ul></nav>\n");
    // The sections with run directories without trailing '/' (as the table names them).
    wsml_page_section *secs = calloc((size_t)opts->num_sections + 1, sizeof(*secs));
    rc = secs ? 0 : WSML_ENOMEM;
    for (int i = 0; i < opts->num_sections && !rc; i++) {
        secs[i] = opts->sections[i];
        char **dirs = calloc((size_t)secs[i].num_runs + 1, sizeof(char *));
        rc = dirs ? 0 : WSML_ENOMEM;
        for (int r = 0; !rc && r < secs[i].num_runs; r++) {
            size_t len = strlen(secs[i].run_dirs[r]);
            while (len > 1 && secs[i].run_dirs[r][len - 1] == '/')
                len--;
            rc = (dirs[r] = strndup(secs[i].run_dirs[r], len)) ? 0 : WSML_ENOMEM;
        }
        secs[i].run_dirs = (const char *const *)dirs;
    }
    if (rc)
        wsml_errf(err, rc, "out of memory");
    plot_list plots = {0};
    for (int i = 0; i < opts->num_sections && !rc; i++)
        rc = write_section(f, &secs[i], i, plots_dir, &plots, 0, err);
    if (!rc && opts->num_cams)
        fprintf(f, "<section id=\"cam\">\n<h2>Class activation maps</h2>\n");
    for (int i = 0; i < opts->num_cams && !rc; i++) {
        char name[64];
        snprintf(name, sizeof(name), "cam-%d.png", i + 1);
        snprintf(path, sizeof(path), "%s/%s", out_dir, name);
        if ((rc = copy_png(opts->cams[i], path, err)))
            break;
        char caption[1200];
        snprintf(caption, sizeof(caption), "%s", CAPTION_CAM);
        html_figure(f, name, "class activation maps", caption);
    }
    if (!rc && opts->num_cams)
        fprintf(f, "</section>\n");
    for (int i = 0; i < opts->num_sections && !rc; i++)
        rc = write_section(f, &secs[i], i, plots_dir, &plots, 1, err);
    for (int i = 0; secs && i < opts->num_sections; i++)
        free_strings((char **)secs[i].run_dirs, secs[i].num_runs);
    free(secs);
    if (!rc && opts->command) {
        fprintf(f, "<p class=\"note\">Made by <code>");
        html(f, opts->command);
        fprintf(f, "</code>; the plots by gnuplot from <code>plots/*.gp</code>.</p>\n");
    }
    fprintf(f, "</body>\n</html>\n");
    int failed = ferror(f) | fclose(f);
    if (!rc && failed)
        rc = wsml_errf(err, WSML_ENOMEM, "%s/index.html: out of memory", out_dir);
    if (!rc) {
        snprintf(path, sizeof(path), "%s/index.html", out_dir);
        rc = wsml_write_file_atomic(path, page, page_len, err);
    }
    free(page);
    if (rc) {
        wsml_page_plots_free(plots.names, plots.count);
        return rc;
    }
    *plots_out = plots.names;
    *num_plots = plots.count;
    return 0;
}
