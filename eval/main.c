// wsml-eval: AP/mAP from score files or from a model over a store split, and the
// results tables of finished runs. Rules: docs/methods.md §4 (eval/metrics.h); tables:
// eval/table.h.
#include <errno.h>
#include <getopt.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/fileio.h"
#include "common/log.h"
#include "common/npy.h"
#include "eval/metrics.h"
#include "eval/page.h"
#include "eval/runcheck.h"
#include "eval/table.h"
#include "store/store.h"
#include "train/backend.h"
#include "train/predict.h"

#define PROG "wsml-eval"

static void usage(FILE *f) {
    fprintf(f,
            "Usage:\n"
            "  " PROG " --scores S.npy --labels L.npy [--groups G.json] [--classes FILE]\n"
            "            [--out DIR] [--json] [--quiet]\n"
            "  " PROG " --store STORE --model CKPT [--split test] [--out DIR] [--json]\n"
            "            [--backend cpu|cuda] [--precision tf32|fp32|bf16] [--batch N]\n"
            "            [--threads N] [--workers N] [--device N]\n"
            "            [--head linear|boostlu] [--alpha A] [--quiet]\n"
            "  " PROG " table RUNDIR... [--by dataset|group] [--epochs] [--paper 1|2]\n"
            "            [--runs-from FILE] [--out PREFIX] [--quiet]\n"
            "  " PROG " report --out DIR [--title TEXT] [--cam FIG.png]...\n"
            "            [--table TITLE] [--by dataset|group] RUNDIR... [--table TITLE ...]\n"
            "  " PROG " check-config RUNDIR -- WSML-TRAIN-FLAGS...\n"
            "\n"
            "Average precision per class exactly as scikit-learn's average_precision_score\n"
            "(ties grouped), mAP = 100 x mean AP (docs/methods.md section 4). Labels: 1\n"
            "positive, 0 negative, -1 unknown (masked out; a class with no known label is\n"
            "skipped, a class with no positive has AP 0).\n"
            "\n"
            "Metrics from numpy files:\n"
            "  --scores FILE    (N, C) float32/float64 scores or logits\n"
            "  --labels FILE    (N, C) labels -1/0/1 (int8, int64, float, ...)\n"
            "  --groups FILE    class-frequency groups G1..Gk: JSON [[class, ...], ...] or a\n"
            "                   store info object with a \"groups\" key\n"
            "  --classes FILE   class names, one per line (C lines), for per_class.csv\n"
            "  --out DIR        write DIR/metrics.json and DIR/per_class.csv\n"
            "  --json           print metrics.json to stdout instead of the summary\n"
            "\n"
            "A model over a store split (labels: the split's full labels; groups and class\n"
            "names: the store's meta):\n"
            "  --store DIR      a store written by wsml-ingest\n"
            "  --split NAME     train, val or test (default test)\n"
            "  --model FILE     a checkpoint (best.safetensors of a run, torchvision names);\n"
            "                   architecture, width and classes are read from its tensors\n"
            "  --head NAME      linear or boostlu (default: the checkpoint's metadata or the\n"
            "                   run's config.json beside it, else linear); --alpha A likewise\n"
            "  --backend NAME   cpu (default) or cuda; --threads N compute threads (default\n"
            "                   0 = the CPUs this process may use: taskset, Slurm, cgroups)\n"
            "  --precision P    tf32 (default), fp32 or bf16 (cuda only): what convolutions\n"
            "                   and GEMMs compute in; the cpu backend computes in fp32\n"
            "  --batch N        images per forward (default 32); --workers N loader threads\n"
            "  --device N       the CUDA device, numbered after CUDA_VISIBLE_DEVICES (default:\n"
            "                   the MPI/Slurm local rank modulo the visible devices, else 0;\n"
            "                   ignored on the cpu backend), e.g. --backend cuda --device 1\n"
            "  --out DIR        also writes DIR/scores.npy: (N, C) float32 sigmoid(logits)\n"
            "\n"
            "Tables of finished runs (RUNDIR holds config.json and run.jsonl):\n"
            "  --by dataset     rows = methods, columns = datasets (Table 1; default)\n"
            "  --by group       rows = methods, columns = G1..Gk and all (Table 2)\n"
            "  --epochs         add the validation mAP of every epoch of each pick\n"
            "  --out PREFIX     write PREFIX.md, PREFIX.csv and PREFIX.picks.csv instead of\n"
            "                   printing the Markdown table\n"
            "\n"
            "  --runs-from FILE also the run directories listed in FILE, one per line (for\n"
            "                   lists longer than a command line holds)\n"
            "  --paper 1|2      the supplement's Table 1 (by dataset) or Table 2 (by group)\n"
            "                   beside ours: a paper column and our difference (ours - paper)\n"
            "                   after each column, where the paper has the row\n"
            "\n"
            "Does a run directory hold the run these wsml-train flags ask for (check-config)?\n"
            "Compares RUNDIR/config.json with the flags (--recipe applied first): every flag\n"
            "that changes the numbers and --epochs; --pretrained and --init by the file they\n"
            "name; --threads and --epr-k only when given; not --store's path, but the store\n"
            "it names (when it opens) must hold what config.json recorded: dataset, classes,\n"
            "image size, encoding, split counts (a store ingested again with other flags).\n"
            "Exit 0 when they agree, 1 with one line naming the first difference (or an\n"
            "unreadable config.json), 2 when a flag is bad. The pipelines run it before\n"
            "reusing or resuming a run.\n"
            "\n"
            "The results page of finished runs (eval/page.h): DIR/index.html with the tables\n"
            "(the paper's numbers beside ours), the learning curves and large-loss diagnostics\n"
            "of each method's pick, the frequency-group bars (--by group), the CAM figures and\n"
            "every run's settings; DIR/plots/ gets the plots' data files and gnuplot scripts\n"
            "(run gnuplot on each DIR/plots/*.gp in DIR/plots to draw them; make report does).\n"
            "  --out DIR        the page's folder (created; files of the same names replaced)\n"
            "  --table TITLE    starts a table section; the RUNDIRs and --by after it are its\n"
            "                   own (without --table: one section titled \"Results\")\n"
            "  --runs-from FILE the section's run directories listed in FILE, one per line\n"
            "  --by dataset|group  the section's layout, as for table (default dataset)\n"
            "  --title TEXT     the page's title (default \"wsml results\")\n"
            "  --cam FILE       a wsml-cam figure to show (copied into DIR); repeatable\n"
            "\n"
            "  -q, --quiet      no info lines; -h, --help this text; --version the versions\n"
            "\n"
            "Examples:\n"
            "  " PROG " --scores scores.npy --labels labels.npy --out results/\n"
            "  " PROG " --scores s.npy --labels l.npy --groups groups.json --json\n"
            "  " PROG " --store data/stores/voc --model runs/voc-an/best.safetensors --out ev/\n"
            "  " PROG " --store data/stores/voc --model best.safetensors --backend cuda \\\n"
            "            --precision bf16\n"
            "  " PROG " table runs/table1/*/*/ --by dataset --out results/table1\n"
            "  " PROG " table runs/table1/*/*/ --paper 1 --out results/table1\n"
            "  " PROG " check-config runs/table1/voc/an_lr1e-5_s1 -- --store data/stores/voc \\\n"
            "            --loss an --lr 1e-5 --recipe paper --seed 1\n"
            "  " PROG " report --out results/report --table 'Table 1' runs/table1/*/*/ \\\n"
            "            --table 'Table 2' --by group runs/table2/*/*/ --cam results/cam.png\n"
            "  (cd results/report/plots && for f in *.gp; do gnuplot \"$f\"; done)\n"
            "\n"
            "Exit status: 0 ok, 1 runtime error, 2 usage error.\n");
}

static int fail(const wsml_err *err) {
    wsml_err_print(PROG, err);
    return 1;
}

// ---- numpy inputs -----------------------------------------------------------------------

// Rows and columns of a 2-D array (a 1-D array is one class: (N, 1)).
static int matrix_shape(const wsml_npy *a, const char *path, int64_t *rows, int64_t *cols,
                        wsml_err *err) {
    if (a->ndim == 2) {
        *rows = a->shape[0];
        *cols = a->shape[1];
    } else if (a->ndim == 1) {
        *rows = a->shape[0];
        *cols = 1;
    } else {
        return wsml_errf(err, WSML_EFORMAT, "%s: expected a 2-D (N, C) array, found %d dimensions",
                         path, a->ndim);
    }
    if (*cols < 1 || *cols > 1000000)
        return wsml_errf(err, WSML_EFORMAT, "%s: %lld classes (expected 1 to 1000000)", path,
                         (long long)*cols);
    return 0;
}

// Labels as int8 -1/0/1 from any numeric dtype; any other value is an error naming the entry.
static int labels_to_i8(const wsml_npy *a, const char *path, int64_t cols, int8_t **out,
                        wsml_err *err) {
    int8_t *labels = malloc(a->count ? a->count : 1);
    if (!labels)
        return wsml_errf(err, WSML_ENOMEM, "%s: out of memory", path);
    if (a->dtype == WSML_DT_I8) {
        memcpy(labels, a->data, a->count);
    } else {
        double *values = NULL;
        int rc = wsml_npy_as_f64(a, &values, err);
        if (rc) {
            free(labels);
            wsml_err_prefix(err, "%s", path);
            return rc;
        }
        for (size_t i = 0; i < a->count; i++) {
            double v = values[i];
            if (v != 1.0 && v != 0.0 && v != -1.0) {
                wsml_errf(err, WSML_EFORMAT,
                          "%s: label at row %lld, class %lld is %g (must be 1, 0 or -1)", path,
                          (long long)(i / (size_t)cols), (long long)(i % (size_t)cols), v);
                free(values);
                free(labels);
                return WSML_EFORMAT;
            }
            labels[i] = (int8_t)v;
        }
        free(values);
    }
    *out = labels;
    return 0;
}

// Class names, one per line; the count must be num_classes.
static int read_class_names(const char *path, int num_classes, char ***names_out, wsml_err *err) {
    char *text = NULL;
    size_t len = 0;
    int rc = wsml_read_file(path, &text, &len, err);
    if (rc)
        return rc;
    char **names = calloc((size_t)num_classes + 1, sizeof(char *));
    if (!names) {
        free(text);
        return wsml_errf(err, WSML_ENOMEM, "%s: out of memory", path);
    }
    int count = 0;
    for (char *line = text; line < text + len;) {
        char *end = memchr(line, '\n', (size_t)(text + len - line));
        if (!end)
            end = text + len;
        *end = 0;
        if (end > line && end[-1] == '\r')
            end[-1] = 0;
        if (count < num_classes)
            names[count] = line;
        count++;
        line = end + 1;
    }
    if (count != num_classes) {
        free(names);
        free(text);
        return wsml_errf(err, WSML_EFORMAT, "%s: %d class names, but the scores have %d classes",
                         path, count, num_classes);
    }
    names[num_classes] = text; // owner of the strings, freed by free_class_names
    *names_out = names;
    return 0;
}

static void free_class_names(char **names, int num_classes) {
    if (!names)
        return;
    free(names[num_classes]);
    free(names);
}

static void print_summary(const wsml_metrics *m) {
    printf("mAP %.2f  (%d of %d classes, %lld images)\n", m->map, m->num_included, m->num_classes,
           (long long)m->num_images);
    if (m->num_groups > 0) {
        for (int g = 0; g < m->num_groups; g++)
            printf("G%d %.2f  ", g + 1, m->group_map[g]);
        printf("all %.2f\n", m->map);
    }
}

// Prints / writes the results of m; source_json describes the inputs.
static int report(const wsml_metrics *m, char *const *class_names, const char *source_json,
                  const char *out_dir, int as_json) {
    wsml_err err = {0};
    if (out_dir) {
        int rc =
            wsml_metrics_write(out_dir, m, (const char *const *)class_names, source_json, &err);
        if (rc)
            return fail(&err);
        wsml_info("wrote %s/metrics.json and %s/per_class.csv", out_dir, out_dir);
    }
    if (as_json) {
        char *json = wsml_metrics_json(m, source_json);
        if (!json) {
            wsml_errf(&err, WSML_ENOMEM, "cannot serialise metrics.json");
            return fail(&err);
        }
        printf("%s\n", json);
        free(json);
    } else {
        print_summary(m);
    }
    return 0;
}

static int run_scores(const char *scores_path, const char *labels_path, const char *groups_path,
                      const char *classes_path, const char *out_dir, int as_json) {
    wsml_err err = {0};
    wsml_npy scores = {0}, labels_npy = {0};
    wsml_groups groups = {0};
    wsml_metrics m = {0};
    int8_t *labels = NULL;
    char **class_names = NULL;
    char *groups_text = NULL;
    int64_t n = 0, c = 0, ln = 0, lc = 0;
    int status = 1;
    if (wsml_npy_read(scores_path, &scores, &err) ||
        matrix_shape(&scores, scores_path, &n, &c, &err))
        goto done;
    if (wsml_npy_read(labels_path, &labels_npy, &err) ||
        matrix_shape(&labels_npy, labels_path, &ln, &lc, &err))
        goto done;
    if (n != ln || c != lc) {
        wsml_errf(&err, WSML_EFORMAT,
                  "shape mismatch: scores %s are (%lld, %lld) but labels %s are (%lld, %lld)",
                  scores_path, (long long)n, (long long)c, labels_path, (long long)ln,
                  (long long)lc);
        goto done;
    }
    if (n == 0) {
        wsml_errf(&err, WSML_EFORMAT, "%s: no rows (nothing to evaluate)", scores_path);
        goto done;
    }
    if (labels_to_i8(&labels_npy, labels_path, c, &labels, &err))
        goto done;
    if (groups_path) {
        size_t len;
        if (wsml_read_file(groups_path, &groups_text, &len, &err) ||
            wsml_groups_parse_json(groups_text, (int)c, groups_path, &groups, &err))
            goto done;
    }
    if (classes_path && read_class_names(classes_path, (int)c, &class_names, &err))
        goto done;
    int rc;
    if (scores.dtype == WSML_DT_F32) {
        rc = wsml_metrics_compute(scores.data, labels, n, (int)c, &groups, &m, &err);
    } else {
        double *values = NULL;
        rc = wsml_npy_as_f64(&scores, &values, &err);
        if (rc) {
            wsml_err_prefix(&err, "%s", scores_path);
            goto done;
        }
        rc = wsml_metrics_compute_f64(values, labels, n, (int)c, &groups, &m, &err);
        free(values);
    }
    if (rc) {
        wsml_err_prefix(&err, "%s, %s", scores_path, labels_path);
        goto done;
    }
    json_t *source = json_pack("{s:s, s:s}", "scores", scores_path, "labels", labels_path);
    if (source && groups_path)
        json_object_set_new(source, "groups", json_string(groups_path));
    char *source_json = source ? json_dumps(source, JSON_COMPACT) : NULL;
    json_decref(source);
    if (!source_json) {
        wsml_errf(&err, WSML_ENOMEM, "out of memory");
        goto done;
    }
    status = report(&m, class_names, source_json, out_dir, as_json);
    free(source_json);
done:
    if (err.code)
        fail(&err);
    wsml_metrics_free(&m);
    wsml_npy_free(&scores);
    wsml_npy_free(&labels_npy);
    wsml_groups_free(&groups);
    free(labels);
    free(groups_text);
    free_class_names(class_names, (int)c);
    return status;
}

// ---- a model over a store split ------------------------------------------------------------

typedef struct {
    const char *store, *split, *model, *out;
    int as_json;
    wsml_predict_opts infer;
} store_args;

static int run_store(const store_args *a) {
    wsml_err err = {0};
    wsml_store *store = NULL;
    wsml_groups groups = {0};
    wsml_metrics m = {0};
    float *scores = NULL;
    int8_t *labels = NULL;
    char *source_json = NULL;
    int64_t n = 0;
    int status = 1;
    int split = wsml_split_parse(a->split);
    if (split < 0)
        return wsml_usage_error("--split must be train, val or test, not '%s'", a->split);
    if (!(store = wsml_store_open(a->store, 1, &err)))
        goto done;
    const wsml_store_meta *meta = wsml_store_meta_get(store);
    int c = meta->num_classes;
    if (wsml_groups_parse_json(meta->info_json, c, a->store, &groups, &err))
        goto done;
    wsml_info("%s: %s split, %u images, %d classes", a->store, a->split, meta->count[split], c);
    if (wsml_predict_checkpoint(store, (wsml_split)split, a->model, &a->infer, &scores, &labels, &n,
                                &err))
        goto done;
    if (wsml_metrics_compute(scores, labels, n, c, &groups, &m, &err)) {
        wsml_err_prefix(&err, "%s", a->model);
        goto done;
    }
    json_t *source = json_pack("{s:s, s:s, s:s, s:s}", "store", a->store, "dataset", meta->name,
                               "split", a->split, "model", a->model);
    source_json = source ? json_dumps(source, JSON_COMPACT) : NULL;
    json_decref(source);
    if (!source_json) {
        wsml_errf(&err, WSML_ENOMEM, "out of memory");
        goto done;
    }
    if (a->out) {
        char path[4200];
        snprintf(path, sizeof(path), "%s/metrics.json", a->out);
        if (wsml_mkdirs(a->out, &err))
            goto done;
        if (unlink(path) && errno != ENOENT) { // metrics.json marks a complete directory
            wsml_errf(&err, WSML_EIO, "%s: %s", path, strerror(errno));
            goto done;
        }
        snprintf(path, sizeof(path), "%s/scores.npy", a->out);
        int64_t shape[2] = {n, c};
        if (wsml_npy_write(path, WSML_DT_F32, sizeof(float), 2, shape, scores, &err))
            goto done;
    }
    status = report(&m, meta->class_names, source_json, a->out, a->as_json);
done:
    if (err.code)
        fail(&err);
    free(source_json);
    wsml_metrics_free(&m);
    wsml_groups_free(&groups);
    free(scores);
    free(labels);
    wsml_store_close(store);
    return status;
}

// ---- table ------------------------------------------------------------------------------

static int write_text(const char *path, const char *text, wsml_err *err) {
    return wsml_write_file_atomic(path, text, strlen(text), err);
}

static int run_table(int argc, char **argv) {
    static const struct option options[] = {{"by", required_argument, 0, 'b'},
                                            {"epochs", no_argument, 0, 'e'},
                                            {"out", required_argument, 0, 'o'},
                                            {"paper", required_argument, 0, 'p'},
                                            {"runs-from", required_argument, 0, 'r'},
                                            {"quiet", no_argument, 0, 'q'},
                                            {"help", no_argument, 0, 'h'},
                                            {"version", no_argument, 0, 'V'},
                                            {0, 0, 0, 0}};
    wsml_table_by by = WSML_TABLE_BY_DATASET;
    const char *out_prefix = NULL;
    int opt, with_epochs = 0, paper = 0;
    const char *runs_from = NULL;
    while ((opt = getopt_long(argc, argv, "qh", options, NULL)) != -1) {
        switch (opt) {
        case 'r':
            runs_from = optarg;
            break;
        case 'p':
            if (wsml_parse_int(optarg, 1, 2, &paper))
                return wsml_usage_error("--paper must be 1 or 2 (the supplement's table), not '%s'",
                                        optarg);
            break;
        case 'b':
            if (!strcmp(optarg, "dataset"))
                by = WSML_TABLE_BY_DATASET;
            else if (!strcmp(optarg, "group"))
                by = WSML_TABLE_BY_GROUP;
            else
                return wsml_usage_error("--by must be dataset or group, not '%s'", optarg);
            break;
        case 'o':
            out_prefix = optarg;
            break;
        case 'e':
            with_epochs = 1;
            break;
        default: {
            int exit_status = wsml_shared_option(opt, usage, "table: ", argv[optind - 1]);
            if (exit_status >= 0)
                return exit_status;
        }
        }
    }
    wsml_err err = {0};
    // The run directories: the arguments, then the lines of --runs-from (a full grid's
    // list can exceed what one command line holds).
    char *list = NULL;
    size_t list_len = 0;
    if (runs_from && wsml_read_file(runs_from, &list, &list_len, &err))
        return fail(&err);
    int num_dirs = argc - optind;
    for (size_t i = 0; i < list_len; i++)
        num_dirs += list[i] == '\n' || i + 1 == list_len;
    const char **dirs = calloc((size_t)num_dirs + 1, sizeof(char *));
    if (!dirs) {
        free(list);
        wsml_errf(&err, WSML_ENOMEM, "table: out of memory");
        return fail(&err);
    }
    num_dirs = 0;
    for (int i = optind; i < argc; i++)
        dirs[num_dirs++] = argv[i];
    for (char *line = list; list && line < list + list_len;) {
        char *end = memchr(line, '\n', (size_t)(list + list_len - line));
        if (end)
            *end = 0;
        if (*line)
            dirs[num_dirs++] = line;
        line = end ? end + 1 : list + list_len;
    }
    if (num_dirs == 0) {
        free(dirs);
        free(list);
        return wsml_usage_error("%s", runs_from ? "table: no RUNDIR given nor listed in --runs-from"
                                                : "table: give at least one RUNDIR");
    }
    wsml_table table;
    int rc = wsml_table_build_paper(dirs, num_dirs, by, with_epochs, paper, &table, &err);
    free(dirs);
    if (rc) {
        free(list);
        return fail(&err);
    }
    if (table.num_missing) {
        wsml_warn("%d of %d runs missing (not counted):", table.num_missing, table.num_runs);
        fputs(table.missing, stderr);
    }
    int status = 0;
    if (out_prefix) {
        char path[4096];
        const char *ext[] = {".md", ".csv", ".picks.csv"};
        const char *text[] = {table.markdown, table.csv, table.picks_csv};
        for (int i = 0; i < 3 && !status; i++) {
            snprintf(path, sizeof(path), "%s%s", out_prefix, ext[i]);
            if (write_text(path, text[i], &err))
                status = fail(&err);
        }
        if (!status)
            wsml_info("wrote %s.md, %s.csv and %s.picks.csv (%d runs used)", out_prefix, out_prefix,
                      out_prefix, table.num_finished);
    } else {
        fputs(table.markdown, stdout);
    }
    wsml_table_free(&table);
    free(list);
    return status;
}

// ---- report ------------------------------------------------------------------------------

static int run_report(int argc, char **argv) {
    static const struct option options[] = {{"out", required_argument, 0, 'o'},
                                            {"title", required_argument, 0, 'T'},
                                            {"table", required_argument, 0, 't'},
                                            {"by", required_argument, 0, 'b'},
                                            {"cam", required_argument, 0, 'c'},
                                            {"quiet", no_argument, 0, 'q'},
                                            {"help", no_argument, 0, 'h'},
                                            {"runs-from", required_argument, 0, 'r'},
                                            {0, 0, 0, 0}};
    // Every argument can belong to a section, so there are at most argc of each (run
    // dirs: more with --runs-from, which grows the array).
    wsml_page_section *sections = calloc((size_t)argc + 1, sizeof(*sections));
    size_t dirs_cap = (size_t)argc + 1;
    const char **dirs = calloc(dirs_cap, sizeof(char *));
    char **lists = calloc((size_t)argc + 1, sizeof(char *)); // --runs-from files' text
    int num_lists = 0;
    const char **cams = calloc((size_t)argc + 1, sizeof(char *));
    int *first_dir = calloc((size_t)argc + 1, sizeof(int));
    if (!sections || !dirs || !cams || !first_dir || !lists) {
        free(sections);
        free(dirs);
        free(cams);
        free(first_dir);
        free(lists);
        fprintf(stderr, PROG ": out of memory\n");
        return 1;
    }
    const char *out = NULL, *title = NULL;
    int num_sections = 0, num_dirs = 0, num_cams = 0, opt, status = -1;
    // "-" first: RUNDIRs come back in order (as option 1), so they join the section
    // opened by the --table before them.
    while (status < 0 && (opt = getopt_long(argc, argv, "-qh", options, NULL)) != -1) {
        if ((opt == 1 || opt == 'b') && num_sections == 0) // runs before any --table
            sections[num_sections++] = (wsml_page_section){.title = "Results"};
        wsml_page_section *sec = num_sections ? &sections[num_sections - 1] : NULL;
        switch (opt) {
        case 1:
            dirs[num_dirs++] = optarg;
            sec->num_runs++;
            break;
        case 'r': { // the section's run dirs listed in a file, one per line
            if (num_sections == 0)
                sections[num_sections++] = (wsml_page_section){.title = "Results"};
            sec = &sections[num_sections - 1];
            size_t len = 0;
            wsml_err err = {0};
            if (wsml_read_file(optarg, &lists[num_lists], &len, &err)) {
                status = fail(&err);
                break;
            }
            char *text = lists[num_lists++];
            for (char *line = text; line < text + len && status < 0;) {
                char *end = memchr(line, '\n', (size_t)(text + len - line));
                if (end)
                    *end = 0;
                if (*line && (size_t)num_dirs + 1 >= dirs_cap) {
                    const char **grown = realloc(dirs, 2 * dirs_cap * sizeof(char *));
                    if (!grown) {
                        fprintf(stderr, PROG ": out of memory\n");
                        status = 1;
                        break;
                    }
                    dirs = grown;
                    dirs_cap *= 2;
                }
                if (*line) {
                    dirs[num_dirs++] = line;
                    sec->num_runs++;
                }
                line = end ? end + 1 : text + len;
            }
            break;
        }
        case 't':
            first_dir[num_sections] = num_dirs;
            sections[num_sections++] = (wsml_page_section){.title = optarg};
            break;
        case 'b':
            if (!strcmp(optarg, "dataset"))
                sec->by = WSML_TABLE_BY_DATASET;
            else if (!strcmp(optarg, "group"))
                sec->by = WSML_TABLE_BY_GROUP;
            else
                status =
                    wsml_usage_error("report: --by must be dataset or group, not '%s'", optarg);
            break;
        case 'o':
            out = optarg;
            break;
        case 'T':
            title = optarg;
            break;
        case 'c':
            cams[num_cams++] = optarg;
            break;
        default:
            status = wsml_shared_option(opt, usage, "report: ", argv[optind - 1]);
        }
    }
    if (status < 0 && !out)
        status = wsml_usage_error("%s", "report: give --out DIR");
    for (int i = 0; status < 0 && i < num_sections; i++) {
        sections[i].run_dirs = dirs + first_dir[i];
        if (sections[i].num_runs == 0)
            status = wsml_usage_error("report: section '%s' has no RUNDIR", sections[i].title);
    }
    if (status < 0 && num_sections == 0)
        status = wsml_usage_error("%s", "report: give at least one RUNDIR");
    if (status < 0) {
        wsml_page_opts opts = {title, sections, num_sections, cams, num_cams, "wsml-eval report"};
        char **plots = NULL;
        int num_plots = 0;
        wsml_err err = {0};
        if (wsml_page_write(&opts, out, &plots, &num_plots, &err)) {
            status = fail(&err);
        } else {
            wsml_info("wrote %s/index.html and %d gnuplot scripts: run gnuplot on each "
                      "%s/plots/*.gp in %s/plots",
                      out, num_plots, out, out);
            wsml_page_plots_free(plots, num_plots);
            status = 0;
        }
    }
    free(sections);
    free(dirs);
    free(cams);
    free(first_dir);
    for (int i = 0; i < num_lists; i++)
        free(lists[i]);
    free(lists);
    return status;
}

// ---- check-config -----------------------------------------------------------------------

static int run_check_config(int argc, char **argv) {
    if (argc >= 2 && (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h"))) {
        usage(stdout);
        return 0;
    }
    if (argc < 3 || strcmp(argv[2], "--"))
        return wsml_usage_error("%s", "check-config: give RUNDIR -- WSML-TRAIN-FLAGS...");
    wsml_err err = {0};
    int rc = wsml_run_check_config(argv[1], argc - 3, argv + 3, &err);
    if (rc == WSML_EARG) {
        fprintf(stderr, PROG ": check-config: %s (see --help)\n", err.msg);
        return 2;
    }
    return rc ? fail(&err) : 0;
}

// ---- main -------------------------------------------------------------------------------

int main(int argc, char **argv) {
    wsml_set_prog(PROG);
    opterr = 0; // one error line of our own instead of getopt's
    if (argc > 1 && !strcmp(argv[1], "table"))
        return run_table(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "check-config"))
        return run_check_config(argc - 1, argv + 1);
    if (argc > 1 && !strcmp(argv[1], "report"))
        return run_report(argc - 1, argv + 1);
    static const struct option options[] = {{"scores", required_argument, 0, 's'},
                                            {"labels", required_argument, 0, 'l'},
                                            {"groups", required_argument, 0, 'g'},
                                            {"classes", required_argument, 0, 'c'},
                                            {"out", required_argument, 0, 'o'},
                                            {"json", no_argument, 0, 'j'},
                                            {"store", required_argument, 0, 'S'},
                                            {"split", required_argument, 0, 'P'},
                                            {"model", required_argument, 0, 'M'},
                                            {"backend", required_argument, 0, 'B'},
                                            {"batch", required_argument, 0, 'b'},
                                            {"threads", required_argument, 0, 't'},
                                            {"workers", required_argument, 0, 'w'},
                                            {"head", required_argument, 0, 'H'},
                                            {"alpha", required_argument, 0, 'A'},
                                            {"quiet", no_argument, 0, 'q'},
                                            {"help", no_argument, 0, 'h'},
                                            {"precision", required_argument, 0, 'R'},
                                            {"version", no_argument, 0, 'V'},
                                            {"device", required_argument, 0, 'D'},
                                            {0, 0, 0, 0}};
    const char *scores = NULL, *labels = NULL, *groups = NULL, *classes = NULL, *out = NULL;
    int as_json = 0, opt;
    store_args st = {.split = "test"};
    int device = -1; // --device: the default unless given
    while ((opt = getopt_long(argc, argv, "qh", options, NULL)) != -1) {
        switch (opt) {
        case 'S':
            st.store = optarg;
            break;
        case 'P':
            st.split = optarg;
            break;
        case 'M':
            st.model = optarg;
            break;
        case 'B':
            if (wsml_backend_parse(optarg) < 0)
                return wsml_usage_error("--backend must be one of %s, not '%s'",
                                        wsml_backend_names(), optarg);
            st.infer.backend = optarg;
            break;
        case 'R':
            if (wsml_precision_parse(optarg) < 0)
                return wsml_usage_error("--precision must be tf32, fp32 or bf16, not '%s'", optarg);
            st.infer.precision = optarg;
            break;
        case 'b':
            if (wsml_parse_int(optarg, 1, 65536, &st.infer.batch))
                return wsml_usage_error("--batch expects an integer in 1..65536, not '%s'", optarg);
            break;
        case 't':
            if (wsml_parse_int(optarg, 0, 1024, &st.infer.threads))
                return wsml_usage_error("--threads expects an integer in 0..1024, not '%s'",
                                        optarg);
            break;
        case 'D':
            if (wsml_parse_int(optarg, 0, 4095, &device))
                return wsml_usage_error("--device expects an integer in 0..4095, not '%s'", optarg);
            break;
        case 'w':
            if (wsml_parse_int(optarg, 1, 256, &st.infer.workers))
                return wsml_usage_error("--workers expects an integer in 1..256, not '%s'", optarg);
            break;
        case 'H':
            if (strcmp(optarg, "linear") && strcmp(optarg, "boostlu"))
                return wsml_usage_error("--head must be linear or boostlu, not '%s'", optarg);
            st.infer.head = optarg;
            break;
        case 'A':
            if (wsml_parse_double(optarg, 0, HUGE_VAL, &st.infer.alpha) || !(st.infer.alpha > 0))
                return wsml_usage_error("--alpha expects a positive number, not '%s'", optarg);
            break;
        case 's':
            scores = optarg;
            break;
        case 'l':
            labels = optarg;
            break;
        case 'g':
            groups = optarg;
            break;
        case 'c':
            classes = optarg;
            break;
        case 'o':
            out = optarg;
            break;
        case 'j':
            as_json = 1;
            break;
        default: {
            int exit_status = wsml_shared_option(opt, usage, "", argv[optind - 1]);
            if (exit_status >= 0)
                return exit_status;
        }
        }
    }
    if (optind < argc)
        return wsml_usage_error("unexpected argument '%s'", argv[optind]);
    if (st.store || st.model) {
        if (!st.store || !st.model)
            return wsml_usage_error("%s", "--store needs --model (and back)");
        if (st.infer.precision &&
            !wsml_backend_supports(st.infer.backend ? st.infer.backend : "cpu",
                                   (wsml_precision)wsml_precision_parse(st.infer.precision)))
            return wsml_usage_error("%s", "--precision bf16 needs --backend cuda (the cpu backend "
                                          "computes in fp32; tf32 runs as fp32 there)");
        if (scores || labels || groups || classes)
            return wsml_usage_error("%s",
                                    "--store takes its labels, groups and class names from the "
                                    "store: drop --scores/--labels/--groups/--classes");
        wsml_err err;
        if (wsml_backend_pick_device(st.infer.backend, device, &st.infer.device, &err) < 0)
            return wsml_usage_error("%s", err.msg);
        st.out = out;
        st.as_json = as_json;
        return run_store(&st);
    }
    if (!scores || !labels)
        return wsml_usage_error("%s", "give --scores and --labels, or --store and --model");
    return run_scores(scores, labels, groups, classes, out, as_json);
}
