// The training loop (train/trainer.h): epochs of the large-loss family and baselines
// (SPEC §2) with the paper's recipe (SPEC §3), validation-based model selection, the
// reference's early stop, and checkpoints that resume exactly.
//
// The order of one step follows the reference (LargeLossMatters train.py):
//   zero_grad; logits = model(images); loss = compute_batch_loss(logits, y_obs);
//   loss.backward(); optimizer.step(); LL-Cp: y_obs[idx[flips]] = 1 (after the step,
//   so the flips affect later batches — here: later epochs, as each image appears once
//   per epoch).
// After each epoch: val mAP on clean labels (SPEC §4), best checkpoint on a strictly
// better val mAP, early stop when val mAP is more than 3 points below the best; the
// clean rate / absolute threshold of the next epoch is a function of its number t.
#define _GNU_SOURCE
#include "train/trainer.h"

#include <dirent.h>
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "common/log.h"
#include "common/metrics.h"
#include "common/safetensors.h"
#include "store/store.h"
#include "train/backend.h"
#include "train/loader.h"
#include "train/net.h"
#include "train/predict.h"

enum { STOP_NONE = 0, STOP_EPOCHS = 1, STOP_EARLY = 2 };

// Everything of a run that changes during training and is not a tensor: saved as
// last.safetensors' metadata (decimal text; doubles with 17 significant digits, which
// round-trips them exactly).
typedef struct {
    int epoch;            // the epoch in progress, 1-based (t of SPEC §2)
    int64_t batches_done; // batches of `epoch` already trained
    int64_t global_step;  // optimizer steps so far
    double best_val_map;  // -inf until the first validation
    int best_epoch;       // 0 until the first validation
    int stop_reason;      // STOP_*: the loop is over, only the test pass is left
    int64_t jsonl_bytes;  // run.jsonl's length when the checkpoint was written
    // the epoch in progress, so far
    double loss_sum; // Σ batch loss · batch size
    int64_t images;
    int64_t modified, modified_hidden_pos, hidden_pos, flips, flips_true_pos;
    double train_seconds;
    // the whole run
    int64_t flips_true_pos_total; // LL-Cp flips that are true positives
} train_state;

typedef struct {
    wsml_train_opts o;
    const wsml_train_hooks *hooks;
    char path_config[WSML_PATH_MAX + 32], path_jsonl[WSML_PATH_MAX + 32];
    char path_best[WSML_PATH_MAX + 32], path_last[WSML_PATH_MAX + 32];

    wsml_store *store;
    const wsml_store_meta *meta;
    int C, H, W;
    int64_t n_train;

    wsml_backend *be;
    wsml_net *net;
    wsml_optim optim;
    int g_backbone, g_head; // the network's optimizer groups (-1: absent)
    wsml_loss_config loss;
    wsml_loss_state *loss_state; // ROLE's estimator, LL-Cp's corrections (NULL: none)

    wsml_loader *loader;
    FILE *jsonl;
    train_state st;
    int64_t saved_step; // global step of the last checkpoint (-1: none)
    // The epoch's training time in this process and the device's busy time within it
    // (gpu_idle_frac; busy_mark < 0: the backend does not measure it)
    double idle_wall, idle_busy, busy_mark, wall_mark;
    int saved_epoch;

    // per-step scratch (B = --batch)
    int8_t *observed; // (B, C) observed labels with the loss state's corrections
    float *dlogits;   // (B, C)
    // The optimizer of the network's groups runs on the backend (be->optim_step) over
    // its state as the backend holds it: the host's wsml_optim arrays themselves on a
    // host_memory backend, else device copies that checkpoints copy back and forth (the
    // host's wsml_optim keeps the step counts).
    float *optim_state[WSML_OPTIM_MAX_GROUPS][2]; // exp_avg, exp_avg_sq (NULL: none)
    double step_loss;
} trainer;

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

static int meta_get_int(const wsml_safetensors *st, const char *path, const char *key, int64_t *v,
                        wsml_err *err) {
    char buf[64];
    const char *s = wsml_st_meta(st, key, buf, sizeof buf);
    char *end = NULL;
    if (s) {
        errno = 0;
        long long x = strtoll(s, &end, 10);
        if (errno == 0 && end != s && *end == 0) {
            *v = x;
            return 0;
        }
    }
    return wsml_errf(err, WSML_ECORRUPT, "%s: metadata \"%s\" is %s (expected an integer)", path,
                     key, s ? s : "missing");
}

static int meta_get_double(const wsml_safetensors *st, const char *path, const char *key, double *v,
                           wsml_err *err) {
    char buf[64];
    const char *s = wsml_st_meta(st, key, buf, sizeof buf);
    char *end = NULL;
    if (s) {
        *v = strtod(s, &end);
        if (end != s && *end == 0)
            return 0;
    }
    return wsml_errf(err, WSML_ECORRUPT, "%s: metadata \"%s\" is %s (expected a number)", path, key,
                     s ? s : "missing");
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

static int jsonl_write(trainer *t, json_t *obj, int sync, wsml_err *err) {
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

// 1 if run.jsonl holds a final line (a finished run).
static int jsonl_has_final(const char *path) {
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
        json_decref(j);
        line = end ? end + 1 : NULL;
    }
    free(text);
    return found;
}

// ---- weights and checkpoints ------------------------------------------------------------

// Parameters and BN statistics must be finite before they may replace a checkpoint.
static int check_finite_weights(trainer *t, wsml_err *err) {
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

static int save_best(trainer *t, double val_map, int epoch, wsml_err *err) {
    json_t *m = json_object();
    meta_set_model(t, m);
    meta_set_int(m, "epoch", epoch);
    meta_set_double(m, "val_map", val_map);
    char *meta = dump_compact(m);
    json_decref(m);
    int rc = wsml_net_save(t->net, t->path_best, NULL, 0, meta, err);
    free(meta);
    return rc;
}

#define MAX_EXTRA (3 * WSML_OPTIM_MAX_GROUPS + 4)

// With device copies of the optimizer state: copies the state of the backend-stepped
// groups to the host's wsml_optim (to_device 0, before a checkpoint) or back (1, after a
// load). Nothing to do on a host_memory backend (the state is the host's).
static int optim_state_copy(trainer *t, int to_device, wsml_err *err) {
    if (t->be->host_memory)
        return 0;
    for (int g = 0; g < t->optim.num_groups; g++) {
        wsml_optim_group *grp = &t->optim.group[g];
        float *host[2] = {grp->exp_avg, grp->exp_avg_sq};
        for (int k = 0; k < 2; k++) {
            if (!t->optim_state[g][k] || !host[k])
                continue;
            size_t bytes = grp->count * sizeof(float);
            int rc = to_device ? t->be->copy_to_device(t->be, t->optim_state[g][k], host[k], bytes)
                               : t->be->copy_to_host(t->be, host[k], t->optim_state[g][k], bytes);
            if (rc < 0)
                return wsml_errf(err, WSML_EDEVICE, "optimizer state of group '%s': %s", grp->name,
                                 t->be->err.msg);
        }
    }
    return 0;
}

// last.safetensors: weights + optimizer + label state + ROLE's G + train_state.
static int save_last(trainer *t, wsml_err *err) {
    int rc = check_finite_weights(t, err);
    if (rc < 0)
        return rc;
    if (fflush(t->jsonl) != 0 || fsync(fileno(t->jsonl)) != 0)
        return wsml_errf(err, WSML_EIO, "%s: write failed: %s", t->path_jsonl, strerror(errno));
    long bytes = ftell(t->jsonl);
    if (bytes < 0)
        return wsml_errf(err, WSML_EIO, "%s: %s", t->path_jsonl, strerror(errno));
    t->st.jsonl_bytes = bytes;

    rc = optim_state_copy(t, 0, err);
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
    const train_state *s = &t->st;
    json_t *m = json_object();
    meta_set_model(t, m);
    meta_set_int(m, "state.epoch", s->epoch);
    meta_set_int(m, "state.batches_done", s->batches_done);
    meta_set_int(m, "state.global_step", s->global_step);
    meta_set_double(m, "state.best_val_map", s->best_val_map);
    meta_set_int(m, "state.best_epoch", s->best_epoch);
    meta_set_int(m, "state.stop_reason", s->stop_reason);
    meta_set_int(m, "state.jsonl_bytes", s->jsonl_bytes);
    meta_set_double(m, "state.loss_sum", s->loss_sum);
    meta_set_int(m, "state.images", s->images);
    meta_set_int(m, "state.modified", s->modified);
    meta_set_int(m, "state.modified_hidden_pos", s->modified_hidden_pos);
    meta_set_int(m, "state.hidden_pos", s->hidden_pos);
    meta_set_int(m, "state.flips", s->flips);
    meta_set_int(m, "state.flips_true_pos", s->flips_true_pos);
    meta_set_double(m, "state.train_seconds", s->train_seconds);
    meta_set_int(m, "state.flips_true_pos_total", s->flips_true_pos_total);
    meta_set_int(m, "state.seed", t->o.seed);
    meta_set_int(m, "state.threads", t->o.threads);
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

static int load_last(trainer *t, wsml_err *err) {
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
            rc = optim_state_copy(t, 1, err);
    }
    if (rc == 0 && (rc = wsml_loss_state_load(t->loss_state, &st, err)) < 0)
        wsml_err_prefix(err, "%s", path);
    int64_t v64 = 0, seed = 0, threads = 0;
    train_state *s = &t->st;
#define GET_INT(key, dst)                                                                          \
    if (rc == 0 && (rc = meta_get_int(&st, path, key, &v64, err)) == 0)                            \
    dst = v64
#define GET_DBL(key, dst)                                                                          \
    if (rc == 0)                                                                                   \
    rc = meta_get_double(&st, path, key, &dst, err)
    GET_INT("state.epoch", s->epoch);
    GET_INT("state.batches_done", s->batches_done);
    GET_INT("state.global_step", s->global_step);
    GET_DBL("state.best_val_map", s->best_val_map);
    GET_INT("state.best_epoch", s->best_epoch);
    GET_INT("state.stop_reason", s->stop_reason);
    GET_INT("state.jsonl_bytes", s->jsonl_bytes);
    GET_DBL("state.loss_sum", s->loss_sum);
    GET_INT("state.images", s->images);
    GET_INT("state.modified", s->modified);
    GET_INT("state.modified_hidden_pos", s->modified_hidden_pos);
    GET_INT("state.hidden_pos", s->hidden_pos);
    GET_INT("state.flips", s->flips);
    GET_INT("state.flips_true_pos", s->flips_true_pos);
    GET_DBL("state.train_seconds", s->train_seconds);
    GET_INT("state.flips_true_pos_total", s->flips_true_pos_total);
    GET_INT("state.seed", seed);
    GET_INT("state.threads", threads);
#undef GET_INT
#undef GET_DBL
    wsml_st_free(&st);
    if (rc < 0)
        return rc;
    int64_t nb = wsml_loader_num_batches(t->loader);
    if (s->epoch < 1 || s->batches_done < 0 || s->batches_done > nb || s->global_step < 0 ||
        s->stop_reason < STOP_NONE || s->stop_reason > STOP_EARLY || s->jsonl_bytes < 0)
        return wsml_errf(
            err, WSML_ECORRUPT, "%s: inconsistent state (epoch %d, batch %lld of %lld, step %lld)",
            path, s->epoch, (long long)s->batches_done, (long long)nb, (long long)s->global_step);
    if ((uint32_t)seed != t->o.seed || threads != t->o.threads)
        return wsml_errf(err, WSML_ECORRUPT,
                         "%s: written with seed %lld and %lld threads, config.json says %u and %d",
                         path, (long long)seed, (long long)threads, t->o.seed, t->o.threads);
    t->saved_step = s->global_step;
    t->saved_epoch = s->epoch;
    return 0;
}

// ---- one step ------------------------------------------------------------------------------

// One optimizer update of every group from the gradients of the last backward.
static int optimizer_step(trainer *t, wsml_err *err) {
    size_t nbb = wsml_net_num_backbone_params(t->net);
    float *params = wsml_net_params(t->net), *grads = wsml_net_grads(t->net);
    int gs[2] = {t->g_backbone, t->g_head};
    size_t offset[2] = {0, nbb};
    for (int k = 0; k < 2; k++) {
        int g = gs[k];
        if (g < 0)
            continue;
        if (t->be->optim_step(t->be, &t->optim, g, params + offset[k], grads + offset[k],
                              t->optim_state[g][0], t->optim_state[g][1]) < 0)
            return wsml_errf(err, WSML_EDEVICE, "optimizer: %s", t->be->err.msg);
    }
    return 0;
}

static int train_step(trainer *t, const wsml_batch *b, int epoch, wsml_loss_stats *stats,
                      wsml_err *err) {
    const int B = b->size, C = t->C;
    int rc = wsml_net_zero_grad(t->net, err);
    if (rc == 0)
        rc = wsml_net_forward(t->net, b->images, B, WSML_NET_TRAIN, err);
    if (rc < 0)
        return rc;
    memcpy(t->observed, b->observed, (size_t)B * C);
    wsml_loss_input in = {B, C, epoch, wsml_net_logits(t->net), t->observed, b->full, NULL};
    wsml_loss_output out = {.dlogits = t->dlogits};
    wsml_loss_state_begin_batch(t->loss_state, b->index, B, t->observed, &in, &out);
    rc = wsml_loss_compute(&t->loss, &in, &out, err);
    if (rc < 0)
        return rc;
    *stats = out.stats;
    t->step_loss = out.stats.loss;
    if (!isfinite(out.stats.loss))
        return wsml_errf(err, WSML_ENUMERIC, "the loss is %g", out.stats.loss);
    rc = wsml_net_backward(t->net, t->dlogits, err);
    if (rc == 0)
        rc = optimizer_step(t, err);
    int64_t flips_true_pos = 0;
    if (rc == 0)
        rc = wsml_loss_state_end_batch(t->loss_state, b->index, B, b->full, &out, &flips_true_pos,
                                       err);
    t->st.flips_true_pos += flips_true_pos;
    return rc;
}

// ---- out of device memory --------------------------------------------------------------------

// After the network did not fit on the GPU: appends to err the largest --batch that
// should, measured by building the network for batches 1 and 2 (its memory grows
// linearly with the batch) against the memory free now.
static void suggest_batch(trainer *t, const wsml_net_config *nc, wsml_err *err) {
    wsml_backend_memory m0, m;
    if (!t->be->memory_info || t->be->memory_info(t->be, &m0) < 0)
        return;
    char old[sizeof err->msg];
    snprintf(old, sizeof old, "%s", err->msg);
    size_t free_now = m0.device_total_bytes - m0.device_used_bytes, used[3] = {0, 0, 0};
    for (int b = 1; b <= 2; b++) {
        wsml_net_config c = *nc;
        c.max_batch = b;
        wsml_net *net = NULL;
        wsml_err ignored;
        if (wsml_net_create(&c, t->be, &net, &ignored) < 0) {
            if (b == 1)
                wsml_errf(err, err->code, "%s; not even --batch 1 fits (%.0f MiB free)", old,
                          free_now / 1048576.0);
            return;
        }
        if (t->be->memory_info(t->be, &m) == 0 && m.allocated_bytes > m0.allocated_bytes)
            used[b] = m.allocated_bytes - m0.allocated_bytes;
        wsml_net_free(net);
    }
    if (used[2] <= used[1] || used[1] > free_now)
        return;
    size_t per_image = used[2] - used[1];
    long long fits = 1 + (long long)((free_now - used[1]) / per_image);
    if (fits >= nc->max_batch)
        return; // not the activations: say nothing misleading
    wsml_errf(err, err->code,
              "%s; about --batch %lld fits on this GPU (measured: %.0f MiB at batch 1, %.1f MiB "
              "more per image, %.0f MiB free)",
              old, fits, used[1] / 1048576.0, per_image / 1048576.0, free_now / 1048576.0);
}

// The device's busy seconds so far (waiting for its queue first), or -1 where the backend
// does not measure them (cpu: nothing is waited for).
static double device_busy(trainer *t) {
    double busy;
    if (!t->be->busy_seconds || t->be->synchronize(t->be) < 0 ||
        t->be->busy_seconds(t->be, &busy) < 0)
        return -1;
    return busy;
}

// ---- evaluation -----------------------------------------------------------------------------

// Scores of a whole split in eval mode (train/predict.h), then the metrics against its
// full labels (SPEC §4). Returns 1 if a stop was requested meanwhile.
static int evaluate(trainer *t, wsml_split split, double *map, double *groups, int *num_groups,
                    wsml_err *err) {
    int64_t n = t->meta->count[split];
    float *scores = malloc((size_t)n * t->C * sizeof(float) + 4);
    int8_t *labels = malloc((size_t)n * t->C + 1);
    int rc = scores && labels ? 0
                              : wsml_errf(err, WSML_ENOMEM, "out of memory for %s scores",
                                          wsml_split_name(split));
    if (rc == 0)
        rc = wsml_predict_split(t->net, t->store, split, t->o.batch, t->o.workers,
                                t->hooks->stop_requested, scores, labels, err);
    if (rc == 0) {
        *num_groups = 0;
        rc = wsml_metrics_map_groups(scores, labels, n, t->C, t->meta->info_json, map, groups,
                                     num_groups, err);
        if (rc < 0)
            wsml_err_prefix(err, "%s mAP", wsml_split_name(split));
    }
    free(scores);
    free(labels);
    return rc;
}

// ---- setup -----------------------------------------------------------------------------------

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
            char *end = NULL;
            long pid = strtol(e->d_name + n + 5, &end, 10);
            if (!end || *end || pid <= 0 || (kill((pid_t)pid, 0) != 0 && errno != ESRCH))
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

// Refuses a run directory in the way; removes an old run with --force.
static int prepare_rundir(trainer *t, int *resume, wsml_err *err) {
    int rc = wsml_mkdirs(t->o.out, err);
    if (rc < 0)
        return rc;
    remove_stale_temps(t->o.out);
    int has_last = file_exists(t->path_last);
    int finished = jsonl_has_final(t->path_jsonl);
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

static int write_config(trainer *t, wsml_err *err) {
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

// A resumed run: config.json must describe the same run and the same store.
static int check_config(trainer *t, wsml_err *err) {
    char *text = NULL;
    size_t len = 0;
    int rc = wsml_read_file(t->path_config, &text, &len, err);
    if (rc < 0)
        return rc;
    wsml_train_opts recorded = t->o;
    rc = wsml_train_opts_from_json(text, &recorded, err);
    json_t *j = rc == 0 ? json_loads(text, 0, NULL) : NULL;
    free(text);
    if (rc < 0)
        return wsml_err_prefix(err, "%s", t->path_config);
    if (!j)
        return wsml_errf(err, WSML_EFORMAT, "%s: not JSON", t->path_config);
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

// EPR/ROLE's expected positives per image (SPEC §2): the table, else the mean over the
// training split's full labels.
static int resolve_epr_k(trainer *t, wsml_err *err) {
    if (t->o.epr_k_given || !wsml_loss_uses_expected_num_pos(t->o.loss.kind))
        return 0;
    double k = wsml_expected_num_pos(t->meta->name, NULL, 0, t->C);
    if (k <= 0) {
        int8_t *full = malloc((size_t)t->n_train * t->C + 1);
        wsml_reader *r = full ? wsml_reader_begin(t->store, err) : NULL;
        if (!r) {
            free(full);
            return full ? err->code : wsml_errf(err, WSML_ENOMEM, "out of memory for labels");
        }
        for (int64_t i = 0; i < t->n_train; i++) {
            wsml_record rec;
            int rc = wsml_reader_get(r, WSML_SPLIT_TRAIN, (uint32_t)i, &rec, err);
            if (rc < 0) {
                wsml_reader_end(r);
                free(full);
                return rc;
            }
            wsml_record_full_labels(&rec, t->C, full + (size_t)i * t->C);
        }
        wsml_reader_end(r);
        k = wsml_expected_num_pos(t->meta->name, full, t->n_train, t->C);
        free(full);
    }
    t->loss.expected_num_pos = k;
    t->o.loss.expected_num_pos = k;
    return 0;
}

// The training split's observed labels (N, C) (wsml_loss_state_env.read_observed).
static int read_train_observed(void *ctx, int8_t *observed, wsml_err *err) {
    trainer *t = ctx;
    wsml_reader *r = wsml_reader_begin(t->store, err);
    if (!r)
        return err->code;
    int rc = 0;
    for (int64_t i = 0; i < t->n_train && rc >= 0; i++) {
        wsml_record rec;
        rc = wsml_reader_get(r, WSML_SPLIT_TRAIN, (uint32_t)i, &rec, err);
        if (rc >= 0)
            wsml_record_observed_labels(&rec, t->C, observed + (size_t)i * t->C);
    }
    wsml_reader_end(r);
    return rc < 0 ? rc : 0;
}

static int setup(trainer *t, int resume, wsml_err *err) {
    const wsml_train_opts *o = &t->o;
    t->store = wsml_store_open(o->store, 1, err);
    if (!t->store)
        return err->code < 0 ? err->code : WSML_EIO;
    t->meta = wsml_store_meta_get(t->store);
    t->C = t->meta->num_classes;
    t->H = t->meta->height;
    t->W = t->meta->width;
    t->n_train = t->meta->count[WSML_SPLIT_TRAIN];
    if (t->n_train < 1)
        return wsml_errf(err, WSML_ESTATE, "--store %s: the train split is empty", o->store);
    if (t->H < 32 || t->W < 32 || t->H > 8192 || t->W > 8192)
        return wsml_errf(err, WSML_ESTATE,
                         "--store %s holds %dx%d images; the ResNet needs sides in [32, 8192] "
                         "(re-ingest with --size 32 or more)",
                         o->store, t->H, t->W);
    if (t->meta->count[WSML_SPLIT_VAL] < 1)
        return wsml_errf(err, WSML_ESTATE,
                         "--store %s: the val split is empty (model selection needs it)", o->store);
    if (!strcmp(o->recipe, "paper") && (t->H != 448 || t->W != 448 || !o->pretrained[0]) && !resume)
        wsml_warn("--recipe paper: the paper trains ImageNet-pretrained weights (--pretrained) "
                  "on 448x448 images; this run uses %s on %dx%d",
                  o->pretrained[0] ? "pretrained weights" : "random weights", t->H, t->W);

    // BatchNorm in train mode needs two values per channel (PyTorch refuses one too):
    // the smallest batch times the last feature map's positions.
    int64_t smallest = t->n_train % o->batch ? t->n_train % o->batch : o->batch;
    if (smallest * wsml_net_feature_side(t->H) * wsml_net_feature_side(t->W) < 2)
        return wsml_errf(err, WSML_EARG,
                         "--batch %d: the last batch of an epoch would hold %lld image(s) of "
                         "%dx%d, whose 1x1 last feature map gives BatchNorm a single value per "
                         "channel; pick a batch size that does not leave %lld train image(s) over",
                         o->batch, (long long)smallest, t->H, t->W, (long long)smallest);

    t->loss = o->loss;
    int rc = resolve_epr_k(t, err);
    if (rc == 0)
        rc = wsml_loss_config_check(&t->loss, t->C, err);
    if (rc < 0)
        return rc;

    wsml_backend_options bo = {.num_threads = o->threads,
                               .precision = (wsml_precision)wsml_precision_parse(o->precision)};
    rc = wsml_backend_create(o->backend, &bo, &t->be, err);
    if (rc < 0)
        return rc;
    wsml_net_config nc;
    wsml_net_config_default(&nc);
    nc.arch = (wsml_arch)wsml_arch_parse(o->arch);
    nc.width_mult = o->width_mult;
    nc.num_classes = t->C;
    nc.head = (wsml_head_kind)wsml_head_parse(o->head);
    nc.alpha = (float)o->alpha;
    nc.height = t->H;
    nc.width = t->W;
    nc.max_batch = o->batch;
    rc = wsml_net_create(&nc, t->be, &t->net, err);
    if (rc == WSML_ENOMEM)
        suggest_batch(t, &nc, err);
    if (rc < 0)
        return rc;
    // Initial weights (a resumed run overwrites them from last.safetensors).
    wsml_net_init(t->net, o->seed);
    if (o->pretrained[0]) {
        rc = wsml_net_load(t->net, o->pretrained, WSML_NET_LOAD_BACKBONE, err);
        if (rc < 0)
            return wsml_err_prefix(err, "--pretrained %s", o->pretrained);
        wsml_net_init_head(t->net, o->seed);
    } else if (o->init[0]) {
        rc = wsml_net_load(t->net, o->init, WSML_NET_LOAD_ALL, err);
        if (rc < 0)
            return wsml_err_prefix(err, "--init %s", o->init);
    }
    wsml_net_set_frozen_backbone(t->net, o->freeze_backbone);

    // Optimizer groups (SPEC §3): backbone at lr, head at lr_mult·lr; ROLE's estimator
    // at lr_mult·lr as Cole et al.; a frozen backbone has no group (requires_grad=False).
    wsml_optim_config oc;
    wsml_optim_config_default(&oc, o->optimizer);
    rc = wsml_optim_init(&t->optim, &oc, err);
    if (rc < 0)
        return rc;
    size_t np = wsml_net_num_params(t->net), nbb = wsml_net_num_backbone_params(t->net);
    t->g_backbone = -1;
    if (!o->freeze_backbone) {
        rc = t->g_backbone = wsml_optim_add_group(&t->optim, "backbone", nbb, o->lr, err);
        if (rc < 0)
            return rc;
    }
    rc = t->g_head = wsml_optim_add_group(&t->optim, "head", np - nbb, o->lr * o->lr_mult, err);
    if (rc < 0)
        return rc;
    // The loss's own state (ROLE's estimator adds its optimizer group after the network's).
    wsml_loss_state_env env = {.num_images = t->n_train,
                               .num_classes = t->C,
                               .max_batch = o->batch,
                               .seed = o->seed,
                               .optim = &t->optim,
                               .lr = o->lr * o->lr_mult,
                               .read_observed = read_train_observed,
                               .ctx = t};
    rc = wsml_loss_state_create(&t->loss, &env, &t->loss_state, err);
    if (rc < 0)
        return rc;
    size_t BC = (size_t)o->batch * t->C;
    t->observed = malloc(BC + 1);
    t->dlogits = malloc(BC * sizeof(float));
    if (!t->observed || !t->dlogits)
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    int gs[2] = {t->g_backbone, t->g_head};
    for (int k = 0; k < 2; k++) {
        int g = gs[k];
        if (g < 0)
            continue;
        wsml_optim_group *grp = &t->optim.group[g];
        float *host[2] = {grp->exp_avg, grp->exp_avg_sq};
        for (int j = 0; j < 2; j++) {
            if (!host[j] || t->be->host_memory) {
                t->optim_state[g][j] = host[j];
                continue;
            }
            t->optim_state[g][j] = t->be->alloc(t->be, grp->count * sizeof(float));
            if (!t->optim_state[g][j])
                return wsml_errf(err, WSML_EDEVICE, "optimizer state of group '%s': %s", grp->name,
                                 t->be->err.msg);
        }
    }
    rc = optim_state_copy(t, 1, err); // zeros, as wsml_optim's (a resume loads later)
    if (rc < 0)
        return rc;

    wsml_loader_config lc;
    wsml_loader_config_default(&lc);
    lc.split = WSML_SPLIT_TRAIN;
    lc.batch_size = o->batch;
    lc.num_workers = o->workers;
    lc.shuffle = o->shuffle;
    lc.flip = o->flip;
    lc.seed = o->seed;
    lc.height = t->H;
    lc.width = t->W;
    lc.nhwc = 1;
    wsml_loader_use_backend(&lc, t->be);
    t->loader = wsml_loader_open(t->store, &lc, err);
    if (!t->loader)
        return err->code < 0 ? err->code : WSML_EIO;

    t->st.epoch = 1;
    t->st.best_val_map = -INFINITY;
    t->saved_step = -1;
    if (resume) {
        rc = check_config(t, err);
        if (rc == 0)
            rc = load_last(t, err);
        if (rc < 0)
            return rc;
        // A run that ended by reaching its --epochs continues when given more (the
        // schedule depends on the epoch number only, so this equals a longer run).
        if (t->st.stop_reason == STOP_EPOCHS && t->st.epoch <= o->epochs)
            t->st.stop_reason = STOP_NONE;
        // Drop what was appended after the checkpoint; it is recomputed identically.
        if (truncate(t->path_jsonl, (off_t)t->st.jsonl_bytes) != 0)
            return wsml_errf(err, WSML_EIO, "%s: cannot truncate to %lld bytes: %s", t->path_jsonl,
                             (long long)t->st.jsonl_bytes, strerror(errno));
        t->jsonl = fopen(t->path_jsonl, "a");
    } else {
        rc = write_config(t, err);
        if (rc < 0)
            return rc;
        t->jsonl = fopen(t->path_jsonl, "w");
    }
    if (!t->jsonl)
        return wsml_errf(err, WSML_EIO, "%s: cannot open: %s", t->path_jsonl, strerror(errno));
    return 0;
}

static void teardown(trainer *t) {
    if (t->jsonl)
        fclose(t->jsonl);
    wsml_loader_close(t->loader);
    wsml_net_free(t->net);
    for (int g = 0; g < WSML_OPTIM_MAX_GROUPS; g++)
        for (int k = 0; k < 2 && t->be && !t->be->host_memory; k++)
            t->be->free(t->be, t->optim_state[g][k]);
    wsml_backend_destroy(t->be);
    wsml_optim_free(&t->optim);
    wsml_loss_state_free(t->loss_state);
    free(t->observed);
    free(t->dlogits);
    if (t->store)
        wsml_store_close(t->store);
}

// ---- the loop ---------------------------------------------------------------------------------

static void reset_epoch_sums(train_state *s) {
    s->loss_sum = 0;
    s->images = 0;
    s->modified = s->modified_hidden_pos = s->hidden_pos = s->flips = s->flips_true_pos = 0;
    s->train_seconds = 0;
}

// "epoch E step S (batch b)" and where the last good checkpoint is, for error messages;
// step and batch count from 1.
static void describe_failure(trainer *t, int epoch, int64_t step, int64_t batch, wsml_err *err) {
    char old[sizeof err->msg];
    memcpy(old, err->msg, sizeof old);
    if (t->saved_step >= 0)
        wsml_errf(err, err->code,
                  "epoch %d step %lld (batch %lld): %s; stopped, %s keeps step %lld (epoch %d)",
                  epoch, (long long)step, (long long)batch, old, t->path_last,
                  (long long)t->saved_step, t->saved_epoch);
    else
        wsml_errf(err, err->code,
                  "epoch %d step %lld (batch %lld): %s; stopped, no checkpoint was written yet",
                  epoch, (long long)step, (long long)batch, old);
}

static int stop_requested(trainer *t) {
    return t->hooks->stop_requested && *t->hooks->stop_requested;
}

static int interrupted(trainer *t, wsml_train_result *res, wsml_err *err) {
    int rc = save_last(t, err);
    if (rc < 0)
        return rc;
    res->interrupted = 1;
    return wsml_errf(err, WSML_ESTATE,
                     "interrupted at epoch %d step %lld; %s saved, continue with --resume",
                     t->st.epoch, (long long)t->st.global_step, t->path_last);
}

// A stretch of training steps (between checkpoints) for gpu_idle_frac: start marks the
// device's busy time and the wall clock, end adds both differences to the epoch's.
static void busy_interval_start(trainer *t) {
    t->busy_mark = device_busy(t);
    t->wall_mark = wsml_now();
}

static void busy_interval_end(trainer *t) {
    if (t->busy_mark < 0)
        return;
    double busy = device_busy(t);
    if (busy < 0)
        return;
    t->idle_wall += wsml_now() - t->wall_mark;
    t->idle_busy += busy - t->busy_mark;
}

static int train_epochs(trainer *t, wsml_train_result *res, wsml_err *err) {
    const wsml_train_opts *o = &t->o;
    train_state *s = &t->st;
    int64_t nb = wsml_loader_num_batches(t->loader);
    if (o->max_steps > 0 && s->global_step >= o->max_steps && s->stop_reason == STOP_NONE) {
        res->max_steps_hit = 1;
        wsml_info("already at step %lld (--max-steps %lld): nothing to do",
                  (long long)s->global_step, (long long)o->max_steps);
        return 0;
    }
    res->started = 1;
    while (s->stop_reason == STOP_NONE) {
        int e = s->epoch;
        if (e > o->epochs) { // resumed with fewer --epochs than already run
            s->stop_reason = STOP_EPOCHS;
            break;
        }
        double t_epoch = wsml_now();
        int rc = wsml_loader_start_epoch(t->loader, e, s->batches_done, err);
        if (rc < 0)
            return rc;
        char label[48];
        snprintf(label, sizeof label, "epoch %d/%d", e, o->epochs);
        wsml_progress *p = wsml_progress_start(label, (uint64_t)nb, "batch");
        wsml_progress_set(p, (uint64_t)s->batches_done);
        wsml_batch *b;
        t->idle_wall = t->idle_busy = 0;
        busy_interval_start(t);
        double t0 = wsml_now();
        while ((rc = wsml_loader_next(t->loader, &b, err)) == 1) {
            wsml_loss_stats ls;
            double t_step = wsml_now();
            rc = train_step(t, b, e, &ls, err);
            t_step = wsml_now() - t_step;
            if (rc < 0) {
                wsml_progress_end(p);
                describe_failure(t, e, s->global_step + 1, b->batch_index + 1, err);
                return rc;
            }
            s->batches_done++;
            s->global_step++;
            s->loss_sum += ls.loss * b->size;
            s->images += b->size;
            s->modified += ls.num_modified;
            if (ls.num_hidden_pos >= 0) {
                s->modified_hidden_pos += ls.num_modified_hidden_pos;
                s->hidden_pos += ls.num_hidden_pos;
            }
            s->flips += ls.num_flips;
            if (o->trace) {
                json_t *j = json_object();
                json_object_set_new(j, "step", json_integer(s->global_step));
                json_object_set_new(j, "epoch", json_integer(e));
                json_object_set_new(j, "batch", json_integer(b->batch_index));
                json_object_set_new(j, "loss", json_real(ls.loss));
                json_object_set_new(j, "modified", json_integer(ls.num_modified));
                if (wsml_loss_is_large_loss(o->loss.kind)) {
                    json_object_set_new(j, "k", json_integer(ls.k));
                    json_object_set_new(j, "threshold",
                                        isfinite(ls.threshold) ? json_real(ls.threshold)
                                                               : json_null());
                }
                if (wsml_loss_state_num_corrected(t->loss_state) >= 0)
                    json_object_set_new(j, "flips", json_integer(ls.num_flips));
                // forward + loss + backward + update, without waiting for the loader
                json_object_set_new(j, "step_s", json_real(t_step));
                rc = jsonl_write(t, j, 0, err);
                if (rc < 0) {
                    wsml_progress_end(p);
                    return rc;
                }
            }
            wsml_progress_add(p, 1);
            char status[64];
            snprintf(status, sizeof status, "loss %.4f", ls.loss);
            wsml_progress_status(p, status);
            int stop = stop_requested(t);
            int max_hit = o->max_steps > 0 && s->global_step >= o->max_steps;
            int periodic = o->save_every > 0 && s->global_step % o->save_every == 0;
            if (stop || max_hit || periodic) {
                busy_interval_end(t);
                s->train_seconds += wsml_now() - t0;
                t0 = wsml_now();
                wsml_progress_end(p);
                p = NULL;
                if (stop)
                    return interrupted(t, res, err);
                rc = save_last(t, err);
                if (rc < 0) {
                    describe_failure(t, e, s->global_step, s->batches_done, err);
                    return rc;
                }
                if (max_hit) {
                    res->max_steps_hit = 1;
                    wsml_info("stopped after %lld steps (--max-steps); %s saved",
                              (long long)s->global_step, t->path_last);
                    return 0;
                }
                p = wsml_progress_start(label, (uint64_t)nb, "batch");
                wsml_progress_set(p, (uint64_t)s->batches_done);
                busy_interval_start(t);
            }
        }
        wsml_progress_end(p);
        if (rc < 0)
            return wsml_err_prefix(err, "epoch %d", e);
        busy_interval_end(t);
        s->train_seconds += wsml_now() - t0;

        double val_map = 0, groups[WSML_METRICS_MAX_GROUPS];
        int ng = 0;
        rc = evaluate(t, WSML_SPLIT_VAL, &val_map, groups, &ng, err);
        if (rc == 1)
            return interrupted(t, res, err);
        if (rc < 0)
            return wsml_err_prefix(err, "epoch %d", e);
        // Model selection and early stop as the reference (train.py): a strictly better
        // val mAP is the new best; otherwise stop if it is more than 3 points below.
        int improved = val_map > s->best_val_map;
        int early = 0;
        if (improved) {
            s->best_val_map = val_map;
            s->best_epoch = e;
        } else if (o->early_stop && s->best_val_map - val_map > 3.0) {
            early = 1;
        }
        json_t *j = json_object();
        json_object_set_new(j, "epoch", json_integer(e));
        json_object_set_new(j, "steps", json_integer(s->global_step));
        json_object_set_new(j, "train_loss", json_real(s->images ? s->loss_sum / s->images : 0));
        json_object_set_new(j, "modified", json_integer(s->modified));
        // SPEC §2 "Diagnostics": how many modified entries are hidden true positives.
        json_object_set_new(j, "modified_hidden_pos", json_integer(s->modified_hidden_pos));
        json_object_set_new(j, "modified_precision",
                            s->modified ? json_real((double)s->modified_hidden_pos / s->modified)
                                        : json_null());
        json_object_set_new(j, "hidden_pos", json_integer(s->hidden_pos));
        if (wsml_loss_is_large_loss(o->loss.kind)) {
            if (o->loss.threshold == WSML_THRESHOLD_RELATIVE)
                json_object_set_new(j, "clean_rate",
                                    json_real(wsml_ll_clean_rate(o->loss.delta_rel_percent, e)));
            else
                json_object_set_new(j, "abs_threshold",
                                    json_real(wsml_ll_abs_threshold(&t->loss, e)));
        }
        int64_t corrected = wsml_loss_state_num_corrected(t->loss_state);
        if (corrected >= 0) {
            s->flips_true_pos_total += s->flips_true_pos;
            json_object_set_new(j, "flips", json_integer(s->flips));
            json_object_set_new(j, "flips_true_pos", json_integer(s->flips_true_pos));
            json_object_set_new(j, "corrected_total", json_integer(corrected));
            json_object_set_new(j, "corrected_true_pos_total",
                                json_integer(s->flips_true_pos_total));
        }
        json_object_set_new(j, "val_map", json_real(val_map));
        json_object_set_new(j, "best_val_map", json_real(s->best_val_map));
        json_object_set_new(j, "best_epoch", json_integer(s->best_epoch));
        double elapsed = wsml_now() - t_epoch;
        json_object_set_new(j, "time_s", json_real(elapsed));
        json_object_set_new(j, "images_per_s",
                            json_real(s->train_seconds > 0 ? s->images / s->train_seconds : 0));
        if (t->busy_mark >= 0 && t->idle_wall > 0) {
            // The share of this epoch's training time (in this process) in which the GPU
            // had nothing queued: waiting for data, the host's loss, launches.
            double idle = 1 - t->idle_busy / t->idle_wall;
            json_object_set_new(j, "gpu_idle_frac", json_real(idle < 0 ? 0 : idle));
        }
        wsml_info("epoch %d/%d: loss %.4f, modified %lld, val mAP %.2f (best %.2f @ %d)%s, "
                  "%.1f img/s",
                  e, o->epochs, s->images ? s->loss_sum / s->images : 0, (long long)s->modified,
                  val_map, s->best_val_map, s->best_epoch, early ? ", early stop" : "",
                  s->train_seconds > 0 ? s->images / s->train_seconds : 0);
        rc = jsonl_write(t, j, 1, err);
        if (rc < 0)
            return rc;
        if (improved) {
            rc = check_finite_weights(t, err);
            if (rc == 0)
                rc = save_best(t, val_map, e, err);
            if (rc < 0)
                return wsml_err_prefix(err, "epoch %d", e);
        }
        res->epochs_run = e;
        s->epoch = e + 1;
        s->batches_done = 0;
        reset_epoch_sums(s);
        if (early)
            s->stop_reason = STOP_EARLY;
        else if (e >= o->epochs)
            s->stop_reason = STOP_EPOCHS;
        rc = save_last(t, err);
        if (rc < 0)
            return wsml_err_prefix(err, "end of epoch %d", e);
        if (stop_requested(t) && s->stop_reason == STOP_NONE)
            return interrupted(t, res, err);
    }
    return 0;
}

// Test mAP of the best epoch (its weights reloaded), and the final line.
static int finish(trainer *t, wsml_train_result *res, wsml_err *err) {
    train_state *s = &t->st;
    res->started = 1;
    res->best_epoch = s->best_epoch;
    res->best_val_map = s->best_val_map;
    res->early_stopped = s->stop_reason == STOP_EARLY;
    res->epochs_run = s->epoch - 1;
    int rc = wsml_net_load(t->net, t->path_best, WSML_NET_LOAD_ALL, err);
    if (rc < 0)
        return rc;
    res->test_map = NAN;
    res->num_groups = 0;
    int have_test = t->meta->count[WSML_SPLIT_TEST] > 0;
    if (have_test) {
        rc = evaluate(t, WSML_SPLIT_TEST, &res->test_map, res->test_group_maps, &res->num_groups,
                      err);
        if (rc == 1) {
            res->interrupted = 1;
            return wsml_errf(err, WSML_ESTATE,
                             "interrupted during the test pass; rerun with --resume to finish");
        }
        if (rc < 0)
            return rc;
    } else {
        wsml_warn("--store %s has no test split: no test mAP", t->o.store);
    }
    json_t *j = json_object();
    json_object_set_new(j, "event", json_string("final"));
    json_object_set_new(j, "best_epoch", json_integer(s->best_epoch));
    json_object_set_new(j, "best_val_map", json_real(s->best_val_map));
    json_object_set_new(j, "test_map", have_test ? json_real(res->test_map) : json_null());
    if (res->num_groups > 0) {
        json_t *g = json_object();
        for (int i = 0; i < res->num_groups; i++) {
            char key[16];
            snprintf(key, sizeof key, "G%d", i + 1);
            json_object_set_new(g, key,
                                isfinite(res->test_group_maps[i])
                                    ? json_real(res->test_group_maps[i])
                                    : json_null());
        }
        json_object_set_new(j, "test_groups", g);
    }
    json_object_set_new(j, "epochs_run", json_integer(res->epochs_run));
    json_object_set_new(j, "steps", json_integer(s->global_step));
    json_object_set_new(j, "early_stopped", json_boolean(res->early_stopped));
    rc = jsonl_write(t, j, 1, err);
    if (rc < 0)
        return rc;
    if (have_test)
        wsml_info("test mAP %.2f with the weights of epoch %d (val mAP %.2f)", res->test_map,
                  s->best_epoch, s->best_val_map);
    return 0;
}

int wsml_train_run(const wsml_train_opts *opts, const wsml_train_hooks *hooks,
                   wsml_train_result *result, wsml_err *err) {
    wsml_train_result dummy;
    wsml_train_result *res = result ? result : &dummy;
    memset(res, 0, sizeof *res);
    res->test_map = NAN;
    int rc = wsml_train_opts_check(opts, err);
    if (rc < 0)
        return rc;
    static const wsml_train_hooks no_hooks = {NULL};
    if (!hooks)
        hooks = &no_hooks;
    trainer *t = calloc(1, sizeof *t);
    if (!t)
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    t->o = *opts;
    t->hooks = hooks;
    // config.json records where the store is, wherever the run is resumed from.
    char *real = realpath(t->o.store, NULL);
    if (real) {
        if (strlen(real) < sizeof t->o.store)
            snprintf(t->o.store, sizeof t->o.store, "%s", real);
        free(real);
    }
    if (t->o.threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        t->o.threads = n > 0 ? (int)n : 1;
    }
    snprintf(t->path_config, sizeof t->path_config, "%s/config.json", t->o.out);
    snprintf(t->path_jsonl, sizeof t->path_jsonl, "%s/run.jsonl", t->o.out);
    snprintf(t->path_best, sizeof t->path_best, "%s/best.safetensors", t->o.out);
    snprintf(t->path_last, sizeof t->path_last, "%s/last.safetensors", t->o.out);
    int resume = t->o.resume;
    rc = prepare_rundir(t, &resume, err);
    if (rc == 0)
        rc = setup(t, resume, err);
    if (rc == 0 && resume)
        wsml_info("resuming %s at epoch %d, batch %lld (step %lld)", t->o.out, t->st.epoch,
                  (long long)t->st.batches_done, (long long)t->st.global_step);
    if (rc == 0)
        rc = train_epochs(t, res, err);
    if (rc == 0 && !res->max_steps_hit)
        rc = finish(t, res, err);
    teardown(t);
    free(t);
    return rc;
}
