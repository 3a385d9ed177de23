// Per-epoch series of a run's run.jsonl for the results page (eval/page.h).
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "eval/page.h"

#define MAX_EPOCH 100000

// The counters of one epoch line, as wsml-train writes them (train/trainer.c).
typedef struct {
    double val_map, train_loss;
    double modified, modified_hidden_pos, hidden_pos;
    double corrected, corrected_true_pos; // NaN: not an LL-Cp run
} epoch_line;

static double number_or_nan(json_t *obj, const char *key) {
    json_t *v = json_object_get(obj, key);
    return json_is_number(v) ? json_number_value(v) : NAN;
}

void wsml_run_log_free(wsml_run_log *log) {
    if (!log)
        return;
    free(log->val_map); // one block for every series
    memset(log, 0, sizeof(*log));
}

// Grows the per-epoch lines to hold epoch e (1-based); new lines are all NaN.
static int grow(epoch_line **lines, int *count, int e) {
    if (e <= *count)
        return 0;
    epoch_line *grown = realloc(*lines, sizeof(epoch_line) * (size_t)e);
    if (!grown)
        return WSML_ENOMEM;
    for (int k = *count; k < e; k++)
        grown[k] = (epoch_line){NAN, NAN, NAN, NAN, NAN, NAN, NAN};
    *lines = grown;
    *count = e;
    return 0;
}

// The diagnostics of eval/page.h from the epoch lines.
static void derive(const epoch_line *lines, wsml_run_log *log) {
    int n = log->num_epochs;
    for (int e = 0; e < n; e++)
        if (lines[e].hidden_pos > 0)
            log->knows_hidden = 1;
    log->hidden_pos_start = n ? lines[0].hidden_pos : NAN;
    double corrected_tp_before = 0; // LL-Cp's true-positive corrections of epochs 1..e-1
    for (int e = 0; e < n; e++) {
        const epoch_line *l = &lines[e];
        log->val_map[e] = l->val_map;
        log->train_loss[e] = l->train_loss;
        log->corrected[e] = l->corrected;
        log->corrected_true_pos[e] = l->corrected_true_pos;
        log->precision[e] = log->recall[e] = NAN;
        if (log->knows_hidden && l->modified > 0)
            log->precision[e] = l->modified_hidden_pos / l->modified;
        double all_hidden = l->hidden_pos + corrected_tp_before;
        if (log->knows_hidden && all_hidden > 0)
            log->recall[e] = (l->modified_hidden_pos + corrected_tp_before) / all_hidden;
        if (!isnan(l->corrected_true_pos))
            corrected_tp_before = l->corrected_true_pos;
    }
}

int wsml_run_log_read(const char *run_dir, wsml_run_log *log, wsml_err *err) {
    memset(log, 0, sizeof(*log));
    log->best_val_map = log->test_map = log->hidden_pos_start = NAN;
    char path[4200];
    snprintf(path, sizeof(path), "%s/run.jsonl", run_dir);
    char *text = NULL;
    size_t len = 0;
    int rc = wsml_read_file(path, &text, &len, err);
    if (rc)
        return rc;
    epoch_line *lines = NULL;
    int count = 0, line_no = 0;
    for (char *line = text; !rc && line < text + len; line_no++) {
        char *end = memchr(line, '\n', (size_t)(text + len - line));
        size_t line_len = end ? (size_t)(end - line) : (size_t)(text + len - line);
        json_t *obj = json_loadb(line, line_len, 0, NULL);
        line += line_len + 1;
        if (!json_is_object(obj)) {
            json_decref(obj);
            continue;
        }
        json_t *epoch = json_object_get(obj, "epoch"), *event = json_object_get(obj, "event");
        if (json_is_string(event) && !strcmp(json_string_value(event), "final")) {
            log->finished = 1;
            log->best_val_map = number_or_nan(obj, "best_val_map");
            log->test_map = number_or_nan(obj, "test_map");
            json_t *best = json_object_get(obj, "best_epoch");
            log->best_epoch = json_is_integer(best) ? (int)json_integer_value(best) : 0;
            log->early_stopped = json_is_true(json_object_get(obj, "early_stopped"));
            json_t *status = json_object_get(obj, "status");
            log->diverged =
                json_is_string(status) && !strcmp(json_string_value(status), "diverged");
        } else if (json_is_integer(epoch) && json_is_number(json_object_get(obj, "val_map"))) {
            json_int_t e = json_integer_value(epoch);
            if (e < 1 || e > MAX_EPOCH) {
                rc = wsml_errf(err, WSML_EFORMAT, "%s: line %d: epoch %lld (expected 1..%d)", path,
                               line_no + 1, (long long)e, MAX_EPOCH);
            } else if ((rc = grow(&lines, &count, (int)e)) == 0) {
                lines[e - 1] = (epoch_line){number_or_nan(obj, "val_map"),
                                            number_or_nan(obj, "train_loss"),
                                            number_or_nan(obj, "modified"),
                                            number_or_nan(obj, "modified_hidden_pos"),
                                            number_or_nan(obj, "hidden_pos"),
                                            number_or_nan(obj, "corrected_total"),
                                            number_or_nan(obj, "corrected_true_pos_total")};
            } else {
                rc = wsml_errf(err, WSML_ENOMEM, "%s: out of memory", path);
            }
        }
        json_decref(obj);
    }
    free(text);
    if (!rc && count > 0) {
        double *block = malloc(sizeof(double) * 6 * (size_t)count);
        if (!block) {
            rc = wsml_errf(err, WSML_ENOMEM, "%s: out of memory", path);
        } else {
            log->num_epochs = count;
            log->val_map = block;
            log->train_loss = block + count;
            log->precision = block + 2 * count;
            log->recall = block + 3 * count;
            log->corrected_true_pos = block + 4 * count;
            log->corrected = block + 5 * count;
            derive(lines, log);
        }
    }
    free(lines);
    return rc;
}

void wsml_series_band(const double *const *values, const int *lengths, int num_logs, int num_epochs,
                      double *mean, double *lo, double *hi, int *count) {
    for (int e = 0; e < num_epochs; e++) {
        double sum = 0, low = INFINITY, high = -INFINITY;
        int n = 0;
        for (int k = 0; k < num_logs; k++) {
            if (e >= lengths[k] || isnan(values[k][e]))
                continue;
            double v = values[k][e];
            sum += v;
            low = v < low ? v : low;
            high = v > high ? v : high;
            n++;
        }
        mean[e] = n ? sum / n : NAN;
        lo[e] = n ? low : NAN;
        hi[e] = n ? high : NAN;
        count[e] = n;
    }
}
