// The run directory of wsml-train (train/trainer.h): config.json, run.jsonl and the
// checkpoints best.safetensors and last.safetensors. last.safetensors' train_state is one
// table of fields (STATE_FIELDS), written and read by the same code.
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/fileio.h"
#include "common/log.h"
#include "common/safetensors.h"
#include "train/trainer_impl.h"

// ---- small helpers ----------------------------------------------------------------------

static int file_exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

static void meta_set_int(json_t *m, const char *key, int64_t v) {
    char buf[32];
    snprintf(buf, sizeof buf, "%lld", (long long)v);
    json_object_set_new(m, key, json_string(buf));
}

static void meta_set_double(json_t *m, const char *key, double v) {
    char buf[40];
    snprintf(buf, sizeof buf, "%.17g", v);
    json_object_set_new(m, key, json_string(buf));
}

// The network's identity, so that a checkpoint alone says how to build the network
// (wsml-eval, wsml-cam).
static void meta_set_model(trainer *t, json_t *m) {
    json_object_set_new(m, "format", json_string("wsml-checkpoint"));
    json_object_set_new(m, "wsml_version", json_string(WSML_VERSION));
    json_object_set_new(m, "arch", json_string(t->o.arch));
    meta_set_double(m, "width_mult", t->o.width_mult);
    json_object_set_new(m, "head", json_string(t->o.head));
    meta_set_double(m, "alpha", t->o.alpha);
    meta_set_int(m, "num_classes", t->C);
    meta_set_int(m, "height", t->H);
    meta_set_int(m, "width", t->W);
    json_object_set_new(m, "dataset", json_string(t->meta->name));
    json_object_set_new(m, "loss", json_string(wsml_loss_kind_name(t->o.loss.kind)));
}

static char *dump_compact(json_t *j) {
    return json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
}

// ---- run.jsonl ---------------------------------------------------------------------------

int rundir_log(trainer *t, json_t *obj, int sync, wsml_err *err) {
    if (!t->jsonl) { // data parallel: rank 0 alone writes the run directory
        json_decref(obj);
        return 0;
    }
    char *line = dump_compact(obj);
    json_decref(obj);
    if (!line)
        return wsml_errf(err, WSML_ENOMEM, "%s: out of memory", t->path_jsonl);
    int bad = fputs(line, t->jsonl) < 0 || fputc('\n', t->jsonl) == EOF || fflush(t->jsonl) != 0;
    free(line);
    if (!bad && sync)
        bad = fsync(fileno(t->jsonl)) != 0;
    if (bad)
        return wsml_errf(err, WSML_EIO, "%s: write failed: %s", t->path_jsonl, strerror(errno));
    return 0;
}

// 1 if run.jsonl holds a final line (a finished run); status receives its "status" (for
// final lines written before there was one: "early-stopped" or "ok" from "early_stopped").
static int jsonl_final_status(const char *path, char *status, size_t status_size) {
    char *text = NULL;
    size_t len = 0;
    wsml_err err;
    if (wsml_read_file(path, &text, &len, &err) < 0)
        return 0;
    int found = 0;
    for (char *line = text; line && line < text + len && !found;) {
        char *end = memchr(line, '\n', (size_t)(text + len - line));
        size_t n = end ? (size_t)(end - line) : (size_t)(text + len - line);
        json_t *j = json_loadb(line, n, 0, NULL);
        json_t *ev = j ? json_object_get(j, "event") : NULL;
        found = json_is_string(ev) && !strcmp(json_string_value(ev), "final");
        if (found) {
            json_t *st = json_object_get(j, "status");
            snprintf(status, status_size, "%s",
                     json_is_string(st)                                  ? json_string_value(st)
                     : json_is_true(json_object_get(j, "early_stopped")) ? "early-stopped"
                                                                         : "ok");
        }
        json_decref(j);
        line = end ? end + 1 : NULL;
    }
    free(text);
    return found;
}

// ---- train_state as metadata -----------------------------------------------------------

// Every field of train_state, as last.safetensors' metadata "state.<field>": decimal text,
// doubles with 17 significant digits (which round-trips them exactly).
typedef enum { FIELD_INT, FIELD_I64, FIELD_F64 } field_type;
#define FIELD(name, type)                                                                          \
    { "state." #name, type, offsetof(train_state, name) }
static const struct {
    const char *key;
    field_type type;
    size_t offset;
} STATE_FIELDS[] = {
    FIELD(epoch, FIELD_INT),
    FIELD(batches_done, FIELD_I64),
    FIELD(global_step, FIELD_I64),
    FIELD(best_val_map, FIELD_F64),
    FIELD(best_epoch, FIELD_INT),
    FIELD(stop_reason, FIELD_INT),
    FIELD(jsonl_bytes, FIELD_I64),
    FIELD(loss_sum, FIELD_F64),
    FIELD(images, FIELD_I64),
    FIELD(modified, FIELD_I64),
    FIELD(modified_hidden_pos, FIELD_I64),
    FIELD(hidden_pos, FIELD_I64),
    FIELD(flips, FIELD_I64),
    FIELD(flips_true_pos, FIELD_I64),
    FIELD(train_seconds, FIELD_F64),
    FIELD(flips_true_pos_total, FIELD_I64),
    FIELD(seed, FIELD_I64),
    FIELD(threads, FIELD_I64),
};
#undef FIELD
#define NUM_STATE_FIELDS (sizeof STATE_FIELDS / sizeof *STATE_FIELDS)

static void state_to_meta(const train_state *s, json_t *m) {
    for (size_t i = 0; i < NUM_STATE_FIELDS; i++) {
        const char *field = (const char *)s + STATE_FIELDS[i].offset;
        switch (STATE_FIELDS[i].type) {
        case FIELD_INT:
            meta_set_int(m, STATE_FIELDS[i].key, *(const int *)field);
            break;
        case FIELD_I64:
            meta_set_int(m, STATE_FIELDS[i].key, *(const int64_t *)field);
            break;
        case FIELD_F64:
            meta_set_double(m, STATE_FIELDS[i].key, *(const double *)field);
            break;
        }
    }
}

static int state_from_meta(train_state *s, const wsml_safetensors *st, const char *path,
                           wsml_err *err) {
    for (size_t i = 0; i < NUM_STATE_FIELDS; i++) {
        char buf[64];
        const char *key = STATE_FIELDS[i].key, *text = wsml_st_meta(st, key, buf, sizeof buf);
        char *field = (char *)s + STATE_FIELDS[i].offset;
        int64_t v = 0;
        double d = 0;
        switch (STATE_FIELDS[i].type) {
        case FIELD_INT:
        case FIELD_I64:
            if (!text ||
                wsml_parse_i64(text, STATE_FIELDS[i].type == FIELD_INT ? INT_MIN : INT64_MIN,
                               STATE_FIELDS[i].type == FIELD_INT ? INT_MAX : INT64_MAX, &v))
                return wsml_errf(err, WSML_ECORRUPT,
                                 "%s: metadata \"%s\" is %s (expected an integer)", path, key,
                                 text ? text : "missing");
            if (STATE_FIELDS[i].type == FIELD_INT)
                *(int *)field = (int)v;
            else
                *(int64_t *)field = v;
            break;
        case FIELD_F64:
            if (!text || wsml_parse_double(text, -HUGE_VAL, HUGE_VAL, &d))
                return wsml_errf(err, WSML_ECORRUPT,
                                 "%s: metadata \"%s\" is %s (expected a number)", path, key,
                                 text ? text : "missing");
            *(double *)field = d;
            break;
        }
    }
    return 0;
}

// ---- weights and checkpoints ------------------------------------------------------------

// Parameters and BN statistics must be finite before they may replace a checkpoint.
int rundir_check_finite_weights(trainer *t, wsml_err *err) {
    size_t np = wsml_net_num_params(t->net), nb = wsml_net_num_buffer_floats(t->net);
    const float *p = wsml_net_params(t->net), *b = wsml_net_buffers(t->net);
    float *tmp = NULL;
    if (!t->be->host_memory) {
        tmp = malloc((np > nb ? np : nb) * sizeof(float) + 4);
        if (!tmp)
            return wsml_errf(err, WSML_ENOMEM, "out of memory checking the weights");
        if (t->be->copy_to_host(t->be, tmp, p, np * sizeof(float)) < 0) {
            free(tmp);
            return wsml_errf(err, WSML_EDEVICE, "%s", t->be->err.msg);
        }
        p = tmp;
    }
    size_t bad = np;
    for (size_t i = 0; i < np && bad == np; i++)
        if (!isfinite(p[i]))
            bad = i;
    if (bad == np && tmp) {
        if (t->be->copy_to_host(t->be, tmp, b, nb * sizeof(float)) < 0) {
            free(tmp);
            return wsml_errf(err, WSML_EDEVICE, "%s", t->be->err.msg);
        }
        b = tmp;
    }
    size_t bad_b = nb;
    if (bad == np)
        for (size_t i = 0; i < nb && bad_b == nb; i++)
            if (!isfinite(b[i]))
                bad_b = i;
    free(tmp);
    if (bad == np && bad_b == nb)
        return 0;
    return wsml_errf(err, WSML_ENUMERIC, "%s became non-finite",
                     bad < np ? "the network's parameters" : "the BN running statistics");
}

int rundir_save_best(trainer *t, double val_map, int epoch, wsml_err *err) {
    if (t->comm->rank != 0)
        return 0;
    // with the loss state that a LinearInit fine-tune takes over (ROLE's estimates)
    wsml_tensor_view extra[2];
    size_t n = 0;
    int rc = wsml_loss_state_save_carried(t->loss_state, extra, 2, &n, err);
    if (rc < 0)
        return rc;
    json_t *m = json_object();
    meta_set_model(t, m);
    meta_set_int(m, "epoch", epoch);
    meta_set_double(m, "val_map", val_map);
    char *meta = dump_compact(m);
    json_decref(m);
    rc = wsml_net_save(t->net, t->path_best, extra, n, meta, err);
    free(meta);
    return rc;
}

#define MAX_EXTRA (3 * WSML_OPTIM_MAX_GROUPS + 4)

// last.safetensors: weights + optimizer + label state + ROLE's G + train_state.
int rundir_save_last(trainer *t, wsml_err *err) {
    int rc = rundir_check_finite_weights(t, err);
    if (rc < 0)
        return rc;
    if (t->comm->rank != 0) { // every process holds the same state; rank 0 writes it
        t->saved_step = t->st.global_step;
        t->saved_epoch = t->st.epoch;
        return 0;
    }
    if (fflush(t->jsonl) != 0 || fsync(fileno(t->jsonl)) != 0)
        return wsml_errf(err, WSML_EIO, "%s: write failed: %s", t->path_jsonl, strerror(errno));
    long bytes = ftell(t->jsonl);
    if (bytes < 0)
        return wsml_errf(err, WSML_EIO, "%s: %s", t->path_jsonl, strerror(errno));
    t->st.jsonl_bytes = bytes;

    rc = trainer_optim_state_copy(t, 0, err);
    if (rc < 0)
        return rc;
    wsml_tensor_view extra[MAX_EXTRA];
    size_t n = 0, n_loss = 0;
    rc = wsml_optim_state_views(&t->optim, extra, MAX_EXTRA - 2, &n, err);
    if (rc == 0)
        rc = wsml_loss_state_save(t->loss_state, extra + n, MAX_EXTRA - n, &n_loss, err);
    if (rc < 0)
        return rc;
    n += n_loss;
    train_state *s = &t->st;
    s->seed = t->o.seed;
    s->threads = t->o.threads;
    json_t *m = json_object();
    meta_set_model(t, m);
    state_to_meta(s, m);
    char *meta = dump_compact(m);
    json_decref(m);
    rc = wsml_net_save(t->net, t->path_last, extra, n, meta, err);
    free(meta);
    if (rc == 0) {
        t->saved_step = s->global_step;
        t->saved_epoch = s->epoch;
    }
    return rc;
}

int rundir_load_last(trainer *t, wsml_err *err) {
    wsml_safetensors st;
    const char *path = t->path_last;
    int rc = wsml_st_read(path, &st, err);
    if (rc < 0)
        return rc;
    rc = wsml_net_load_st(t->net, &st, WSML_NET_LOAD_ALL, err);
    if (rc < 0)
        wsml_err_prefix(err, "%s", path);
    if (rc == 0) {
        rc = wsml_optim_state_load(&t->optim, st.tensors, st.n, err);
        if (rc < 0)
            wsml_err_prefix(err, "%s", path);
        if (rc == 0)
            rc = trainer_optim_state_copy(t, 1, err);
    }
    if (rc == 0 && (rc = wsml_loss_state_load(t->loss_state, &st, err)) < 0)
        wsml_err_prefix(err, "%s", path);
    train_state *s = &t->st;
    if (rc == 0)
        rc = state_from_meta(s, &st, path, err);
    wsml_st_free(&st);
    if (rc < 0)
        return rc;
    int64_t nb = wsml_loader_num_batches(t->loader);
    if (s->epoch < 1 || s->batches_done < 0 || s->batches_done > nb || s->global_step < 0 ||
        s->stop_reason < STOP_NONE || s->stop_reason > STOP_EARLY || s->jsonl_bytes < 0)
        return wsml_errf(
            err, WSML_ECORRUPT, "%s: inconsistent state (epoch %d, batch %lld of %lld, step %lld)",
            path, s->epoch, (long long)s->batches_done, (long long)nb, (long long)s->global_step);
    if (s->seed != t->o.seed || s->threads != t->o.threads)
        return wsml_errf(err, WSML_ECORRUPT,
                         "%s: written with seed %lld and %lld threads, config.json says %u and %d",
                         path, (long long)s->seed, (long long)s->threads, t->o.seed, t->o.threads);
    t->saved_step = s->global_step;
    t->saved_epoch = s->epoch;
    return 0;
}

// ---- the directory ------------------------------------------------------------------------

// Removes "<file>.tmp.<pid>" files that a killed run left behind while writing one of
// the run's files (common/fileio.h), when that process is gone.
static void remove_stale_temps(const char *dir) {
    static const char *files[] = {"best.safetensors", "last.safetensors", "config.json"};
    DIR *d = opendir(dir);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d))) {
        for (size_t i = 0; i < sizeof files / sizeof *files; i++) {
            size_t n = strlen(files[i]);
            if (strncmp(e->d_name, files[i], n) || strncmp(e->d_name + n, ".tmp.", 5))
                continue;
            int64_t pid;
            if (wsml_parse_i64(e->d_name + n + 5, 1, INT_MAX, &pid) ||
                (kill((pid_t)pid, 0) != 0 && errno != ESRCH))
                continue;
            if (kill((pid_t)pid, 0) == 0)
                continue; // still writing: not ours to remove
            char path[WSML_PATH_MAX + 300];
            snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
            unlink(path);
        }
    }
    closedir(d);
}

static int rundir_check_options(trainer *t, wsml_err *err);

int rundir_init_diverged(const char *init) {
    char dir[WSML_PATH_MAX], jsonl[WSML_PATH_MAX + 16], status[32] = "";
    if (file_exists(init) || strlen(init) >= sizeof dir)
        return 0;
    snprintf(dir, sizeof dir, "%s", init);
    char *slash = strrchr(dir, '/');
    if (slash)
        *slash = '\0';
    snprintf(jsonl, sizeof jsonl, "%s/run.jsonl", slash ? dir : ".");
    return jsonl_final_status(jsonl, status, sizeof status) && !strcmp(status, "diverged");
}

// Refuses a run directory in the way; removes an old run with --force.
int rundir_prepare(trainer *t, int *resume, int *finished_out, char *status, size_t status_size,
                   wsml_err *err) {
    *finished_out = 0;
    int rc = wsml_mkdirs(t->o.out, err);
    if (rc < 0)
        return rc;
    remove_stale_temps(t->o.out);
    int has_last = file_exists(t->path_last);
    int finished = jsonl_final_status(t->path_jsonl, status, status_size);
    if (*resume && finished && !t->o.force) {
        // A finished run (diverged ones included) is not continued: its final line is its
        // result. Flags that change the numbers must still agree with config.json.
        *finished_out = 1;
        return rundir_check_options(t, err);
    }
    if (!*resume && !t->o.force) {
        if (finished)
            return wsml_errf(err, WSML_ESTATE,
                             "%s holds a finished run (run.jsonl has its final line); use "
                             "--force to start over",
                             t->o.out);
        if (has_last)
            return wsml_errf(err, WSML_ESTATE,
                             "%s holds an unfinished run (last.safetensors); use --resume to "
                             "continue it or --force to start over",
                             t->o.out);
    }
    if (t->o.force) {
        const char *paths[] = {t->path_best, t->path_last, t->path_jsonl, t->path_config};
        for (int i = 0; i < 4; i++)
            if (unlink(paths[i]) != 0 && errno != ENOENT)
                return wsml_errf(err, WSML_EIO, "%s: cannot remove: %s", paths[i], strerror(errno));
    }
    if (*resume && !has_last) {
        wsml_info("%s: no last.safetensors to resume from; starting a new run", t->o.out);
        *resume = 0;
    }
    return 0;
}

int rundir_write_config(trainer *t, wsml_err *err) {
    char *opts = wsml_train_opts_to_json(&t->o);
    json_t *j = opts ? json_loads(opts, 0, NULL) : NULL;
    free(opts);
    if (!j)
        return wsml_errf(err, WSML_ENOMEM, "%s: out of memory", t->path_config);
    json_t *top = json_object();
    json_object_set_new(top, "wsml_version", json_string(WSML_VERSION));
    json_object_set_new(top, "dataset", json_string(t->meta->name));
    json_object_update(top, j);
    json_decref(j);
    json_object_set_new(top, "num_classes", json_integer(t->C));
    json_object_set_new(top, "height", json_integer(t->H));
    json_object_set_new(top, "width", json_integer(t->W));
    json_t *counts = json_object();
    for (int s = 0; s < WSML_NUM_SPLITS; s++)
        json_object_set_new(counts, wsml_split_name((wsml_split)s),
                            json_integer(t->meta->count[s]));
    json_object_set_new(top, "counts", counts);
    json_object_set_new(top, "encoding", json_string(wsml_encoding_name(t->meta->encoding)));
    json_object_set_new(top, "blas_core", json_string(wsml_backend_blas_core()));
    char *text = json_dumps(top, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(top);
    if (!text)
        return wsml_errf(err, WSML_ENOMEM, "%s: out of memory", t->path_config);
    size_t len = strlen(text);
    text[len] = '\n'; // json_dumps leaves room for the NUL, which we replace
    int rc = wsml_write_file_atomic(t->path_config, text, len + 1, err);
    free(text);
    return rc;
}

// The options config.json records (*recorded starts as the run's own, for the keys it
// lacks) and, when json is not NULL, config.json itself.
static int read_config(trainer *t, wsml_train_opts *recorded, json_t **json, wsml_err *err) {
    char *text = NULL;
    size_t len = 0;
    int rc = wsml_read_file(t->path_config, &text, &len, err);
    if (rc < 0)
        return rc;
    *recorded = t->o;
    rc = wsml_train_opts_from_json(text, recorded, err);
    if (rc == 0 && json && !(*json = json_loads(text, 0, NULL)))
        rc = wsml_errf(err, WSML_EFORMAT, "not JSON");
    free(text);
    return rc < 0 ? wsml_err_prefix(err, "%s", t->path_config) : 0;
}

// config.json's options against the run's: those that change the numbers must agree.
static int rundir_check_options(trainer *t, wsml_err *err) {
    wsml_train_opts recorded;
    int rc = read_config(t, &recorded, NULL, err);
    return rc < 0 ? rc : wsml_train_opts_same_run(&recorded, &t->o, err);
}

// A resumed run: config.json must describe the same run and the same store.
int rundir_check_config(trainer *t, wsml_err *err) {
    wsml_train_opts recorded;
    json_t *j = NULL;
    int rc = read_config(t, &recorded, &j, err);
    if (rc < 0)
        return rc;
    if (recorded.world_size != t->o.world_size)
        rc = wsml_errf(err, WSML_EARG,
                       "this run was trained by %d process(es) and is resumed by %d: resume it "
                       "with the same number (e.g. mpirun -n %d wsml-train --out %s --resume); "
                       "the global batch and each process's share of it depend on it",
                       recorded.world_size, t->o.world_size, recorded.world_size, t->o.out);
    if (rc == 0)
        rc = wsml_train_opts_same_run(&recorded, &t->o, err);
    if (rc == 0) {
        json_t *ds = json_object_get(j, "dataset"), *c = json_object_get(j, "num_classes");
        json_t *counts = json_object_get(j, "counts");
        int same = json_is_string(ds) && !strcmp(json_string_value(ds), t->meta->name) &&
                   json_integer_value(c) == t->C &&
                   json_integer_value(json_object_get(j, "height")) == t->H &&
                   json_integer_value(json_object_get(j, "width")) == t->W;
        for (int s = 0; s < WSML_NUM_SPLITS && same; s++)
            same = json_integer_value(json_object_get(counts, wsml_split_name((wsml_split)s))) ==
                   (json_int_t)t->meta->count[s];
        if (!same)
            rc = wsml_errf(err, WSML_ESTATE,
                           "--store %s is not the store this run started with (%s: dataset, "
                           "classes, image size or split counts differ)",
                           t->o.store, t->path_config);
    }
    json_decref(j);
    return rc;
}
