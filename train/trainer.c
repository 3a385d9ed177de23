// The training loop (train/trainer.h): epochs of the large-loss family and baselines
// (docs/methods.md §2) with the paper's recipe (docs/methods.md §3), validation-based model
// selection, the reference's early stop, and checkpoints that resume exactly. The run directory and
// the checkpoints are train/rundir.c's; the loss's own state (ROLE, LL-Cp) is the loss
// module's (train/loss.h); everything on the device goes through the backend's table.
//
// The order of one step follows the reference (LargeLossMatters train.py):
//   zero_grad; logits = model(images); loss = compute_batch_loss(logits, y_obs);
//   loss.backward(); optimizer.step(); LL-Cp: y_obs[idx[flips]] = 1 (after the step,
//   so the flips affect later batches — here: later epochs, as each image appears once
//   per epoch).
// After each epoch: val mAP on clean labels (docs/methods.md §4), best checkpoint on a strictly
// better val mAP, early stop when val mAP is more than 3 points below the best; the
// clean rate / absolute threshold of the next epoch is a function of its number t.
#define _GNU_SOURCE
#include "train/trainer.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/log.h"
#include "common/metrics.h"
#include "common/sysinfo.h"
#include "train/predict.h"
#include "train/trainer_impl.h"

// ---- the optimizer on the backend ------------------------------------------------------------

// Where the backend keeps the state of the network's groups: the host's own arrays on a
// host_memory backend, else device arrays, zero like wsml_optim's (a resume loads later).
static int optim_state_alloc(trainer *t, wsml_err *err) {
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
    return trainer_optim_state_copy(t, 1, err);
}

// With device copies of the optimizer state: copies the state of the backend-stepped
// groups to the host's wsml_optim (to_device 0, before a checkpoint) or back (1, after a
// load). Nothing to do on a host_memory backend (the state is the host's).
int trainer_optim_state_copy(trainer *t, int to_device, wsml_err *err) {
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

// One optimizer update of the network's groups from the gradients of the last backward.
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

// ---- data parallel ----------------------------------------------------------------------------

// The data-parallel path: several processes, or one that WSML_MPI=1 puts on it.
static int parallel(const trainer *t) {
    return t->comm->size > 1 || t->comm->forced;
}

// Sums n doubles over the processes (nothing with one).
static int sum_doubles(trainer *t, double *v, size_t n, wsml_err *err) {
    return parallel(t) ? t->comm->allreduce_f64(t->comm, v, n, err) : 0;
}

// Device floats summed over the processes in place: the communicator on host memory, or
// through a host copy.
static int allreduce_device(trainer *t, float *buf, size_t n, wsml_err *err) {
    if (t->be->host_memory)
        return t->comm->allreduce_f32(t->comm, buf, n, err);
    float *h = malloc(n * sizeof(float) + 4);
    int rc = h ? 0 : wsml_errf(err, WSML_ENOMEM, "out of memory for the all-reduce");
    if (rc == 0 && t->be->copy_to_host(t->be, h, buf, n * sizeof(float)) < 0)
        rc = wsml_errf(err, WSML_EDEVICE, "%s", t->be->err.msg);
    if (rc == 0)
        rc = t->comm->allreduce_f32(t->comm, h, n, err);
    if (rc == 0 && t->be->copy_to_device(t->be, buf, h, n * sizeof(float)) < 0)
        rc = wsml_errf(err, WSML_EDEVICE, "%s", t->be->err.msg);
    free(h);
    return rc;
}

// PyTorch DDP's broadcast_buffers: rank 0's BatchNorm running statistics to every process,
// before each training forward and before validation, so that every process (and the
// checkpoint, written by rank 0) holds the same ones. With --sync-bn they are equal
// already (every process computes them from the same global sums).
static int broadcast_bn_buffers(trainer *t, wsml_err *err) {
    if (!parallel(t) || t->o.sync_bn || t->comm->size == 1) // one process (WSML_MPI=1) has them
        return 0;
    size_t n = wsml_net_num_buffer_floats(t->net);
    float *buf = wsml_net_buffers(t->net);
    if (t->be->host_memory)
        return t->comm->broadcast(t->comm, buf, n * sizeof(float), 0, err);
    float *h = malloc(n * sizeof(float) + 4);
    int rc = h ? 0 : wsml_errf(err, WSML_ENOMEM, "out of memory for the BN statistics");
    if (rc == 0 && t->be->copy_to_host(t->be, h, buf, n * sizeof(float)) < 0)
        rc = wsml_errf(err, WSML_EDEVICE, "%s", t->be->err.msg);
    if (rc == 0)
        rc = t->comm->broadcast(t->comm, h, n * sizeof(float), 0, err);
    if (rc == 0 && t->be->copy_to_device(t->be, buf, h, n * sizeof(float)) < 0)
        rc = wsml_errf(err, WSML_EDEVICE, "%s", t->be->err.msg);
    free(h);
    return rc;
}

// The gradients of the global batch: each process's (already scaled by its share of the
// global batch, see train_step) summed over the processes; the backbone's are left out
// while it is frozen (they stay zero). On the device with NCCL (dp_allreduce), else
// through the communicator.
static int allreduce_grads(trainer *t, wsml_err *err) {
    if (!parallel(t))
        return 0;
    size_t first = wsml_net_frozen_backbone(t->net) ? wsml_net_num_backbone_params(t->net) : 0;
    size_t n = wsml_net_num_params(t->net) - first;
    float *g = wsml_net_grads(t->net) + first;
    if (t->be->dp_allreduce) {
        // the buckets backward left (dp_grads_ready), then the optimizer waits for all
        if (t->dp_pending > first && t->be->dp_allreduce(t->be, g, t->dp_pending - first) < 0)
            return wsml_errf(err, WSML_EDEVICE, "gradient all-reduce: %s", t->be->err.msg);
        t->dp_pending = first;
        if (t->be->dp_wait(t->be) < 0)
            return wsml_errf(err, WSML_EDEVICE, "gradient all-reduce: %s", t->be->err.msg);
        return 0;
    }
    int rc = allreduce_device(t, g, n, err);
    return rc < 0 ? wsml_err_prefix(err, "gradient all-reduce") : 0;
}

// Gradient buckets on the device (dp_allreduce: NCCL), as PyTorch DDP: backward says which
// gradients are final (train/net.h wsml_net_set_grads_ready: from the head towards the
// stem); once those not yet sent hold a bucket's worth, their all-reduce starts on the
// backend's communication stream while backward goes on with the layers before them.
#define DP_BUCKET_FLOATS (((size_t)25 << 20) / sizeof(float)) // DDP's bucket_cap_mb = 25
static int dp_grads_ready(void *ctx, size_t first, wsml_err *err) {
    trainer *t = ctx;
    if (t->dp_pending - first < DP_BUCKET_FLOATS)
        return 0; // the rest goes with a later bucket (or allreduce_grads)
    if (t->be->dp_allreduce(t->be, wsml_net_grads(t->net) + first, t->dp_pending - first) < 0)
        return wsml_errf(err, WSML_EDEVICE, "gradient all-reduce: %s", t->be->err.msg);
    t->dp_pending = first;
    return 0;
}

// --sync-bn's per-channel sums (train/backend.h bn_allreduce).
static int bn_allreduce(void *ctx, double *buf, size_t n, wsml_err *err) {
    wsml_comm *comm = ctx;
    return comm->allreduce_f64(comm, buf, n, err);
}

// After a phase every process went through (setup): 0 when it succeeded everywhere, else
// the error of the lowest failing rank on every process — that rank reports it (its own
// err), the others are silent — so that all exit alike without waiting on each other.
static int agree(trainer *t, int rc, wsml_train_result *res, wsml_err *err) {
    if (!parallel(t))
        return rc;
    int W = t->comm->size, mine = rc < 0 ? rc : 0, first = -1;
    int *codes = malloc(sizeof(int) * (size_t)W);
    if (!codes) // this process's alone: main stops the others
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    wsml_err cerr;
    if (t->comm->allgather(t->comm, &mine, sizeof mine, codes, &cerr) < 0) {
        free(codes);
        *err = cerr;
        return cerr.code;
    }
    for (int r = 0; r < W && first < 0; r++)
        if (codes[r] < 0)
            first = r;
    int code = first >= 0 ? codes[first] : 0;
    free(codes);
    if (first < 0)
        return 0;
    res->error_everywhere = 1;
    res->silent = first != t->comm->rank;
    if (res->silent)
        wsml_errf(err, code, "rank %d failed", first);
    return code;
}

// Test only (tests/e2e/train_mpi.sh): WSML_TEST_FAIL_SETUP=RANK:POINT makes process RANK
// fail at POINT of the setup — "store" (opening the store), "backend" (after creating the
// backend), "connect" (where rank 0 makes the device communicator's id and the others join
// it: right before the setup's collectives) — so that the paths where one process fails
// and the others wait in a collective can be run on the cpu backend. Unset: nothing.
static int test_fail_setup(const trainer *t, const char *point, wsml_err *err) {
    const char *v = getenv("WSML_TEST_FAIL_SETUP");
    char *end;
    long rank = v && *v ? strtol(v, &end, 10) : -1;
    if (rank != t->comm->rank || *end != ':' || strcmp(end + 1, point))
        return 0;
    return wsml_errf(err, WSML_EDEVICE, "WSML_TEST_FAIL_SETUP: failing at %s (test)", point);
}

// The device communicator (NCCL), after setup agreed: rank 0 makes its id and always
// broadcasts it with its outcome, so every process reaches the same collectives in the
// same order whichever fails; then all agree on dp_init. Backends without one (cpu) go
// through the same two collectives with an empty id (one small message per run).
static int connect_devices(trainer *t, wsml_train_result *res, wsml_err *err) {
    if (!parallel(t))
        return 0;
    struct {
        int32_t code; // rank 0's outcome: 0, or its error (it reports it)
        uint32_t len; // bytes of id (0: the backend needs none)
        char id[256];
    } msg;
    memset(&msg, 0, sizeof msg);
    int rc = 0;
    if (t->comm->rank == 0) {
        size_t len = 0;
        rc = test_fail_setup(t, "connect", err);
        if (rc == 0 && t->be->dp_unique_id &&
            t->be->dp_unique_id(t->be, msg.id, sizeof msg.id, &len) < 0)
            rc = wsml_errf(err, WSML_EDEVICE, "%s", t->be->err.msg);
        msg.code = rc;
        msg.len = rc == 0 ? (uint32_t)len : 0;
    }
    wsml_err cerr;
    if (t->comm->broadcast(t->comm, &msg, sizeof msg, 0, &cerr) < 0) {
        *err = cerr; // MPI itself failed: main stops every process
        return cerr.code;
    }
    if (msg.code < 0) { // every process saw rank 0 fail: all exit alike, rank 0 says why
        res->error_everywhere = 1;
        res->silent = t->comm->rank != 0;
        if (res->silent)
            wsml_errf(err, msg.code, "rank 0 failed");
        return msg.code;
    }
    if (t->comm->rank != 0)
        rc = test_fail_setup(t, "connect", err);
    if (rc == 0 && msg.len > 0 && t->be->dp_init &&
        t->be->dp_init(t->be, msg.id, msg.len, t->comm->rank, t->comm->size) < 0)
        rc = wsml_errf(err, WSML_EDEVICE, "%s", t->be->err.msg);
    rc = agree(t, rc, res, err);
    if (rc == 0) // which path the gradients take (rank 0 speaks for all)
        wsml_info("data parallel: %d process(es), gradients summed %s%s", t->comm->size,
                  t->be->dp_allreduce  ? "on the devices by "
                  : t->be->host_memory ? "by MPI_Allreduce"
                                       : "by MPI_Allreduce through host copies (no NCCL)",
                  t->be->dp_allreduce ? (t->be->dp_desc ? t->be->dp_desc : "NCCL") : "");
    return rc;
}

// ---- one step ------------------------------------------------------------------------------

// One step of the global batch: this process's share b; stats and *stop (a stop request
// of any process) come back the same on every process. With one process, exactly the
// single-process step.
static int train_step(trainer *t, const wsml_batch *b, int epoch, wsml_loss_stats *stats, int *stop,
                      wsml_err *err) {
    const int B = b->size, C = t->C;
    int rc = broadcast_bn_buffers(t, err);
    if (rc == 0)
        rc = wsml_net_zero_grad(t->net, err);
    if (rc == 0)
        rc = wsml_net_forward(t->net, b->images, B, WSML_NET_TRAIN, err);
    if (rc < 0)
        return rc;
    memcpy(t->observed, b->observed, (size_t)B * C);
    wsml_loss_input in = {.batch_size = B,
                          .num_classes = C,
                          .epoch = epoch,
                          .logits = wsml_net_logits(t->net),
                          .observed = t->observed,
                          .full = b->full};
    wsml_loss_output out = {.dlogits = t->dlogits};
    wsml_loss_state_begin_batch(t->loss_state, b->index, B, t->observed, &in, &out);
    rc = wsml_loss_compute(&t->loss, &in, &out, err);
    if (rc < 0 && (rc != WSML_ENUMERIC || !parallel(t)))
        return rc; // an error of this process alone (main stops the others)
    *stats = out.stats;
    if (parallel(t)) {
        // The global batch's loss: its images' mean (each process's is the mean of its
        // share, docs/methods.md); the gradients follow by scaling each process's by its
        // share B / global before the sum (a power of two for equal shares: exact). A
        // non-finite logit in any share makes every process stop as diverged.
        int bad = rc == WSML_ENUMERIC;
        double v[3] = {bad ? 0.0 : out.stats.loss * B, B, bad};
        int crc = sum_doubles(t, v, 3, err);
        if (crc < 0)
            return crc;
        if (v[2] > 0)
            return bad ? rc
                       : wsml_errf(err, WSML_ENUMERIC,
                                   "another process's share of the batch has a non-finite logit");
        stats->loss = v[0] / v[1];
        float share = (float)B / (float)b->global_size;
        for (size_t i = 0; i < (size_t)B * C; i++)
            t->dlogits[i] *= share;
        if (out.destimator_logits)
            for (size_t i = 0; i < (size_t)B * C; i++)
                out.destimator_logits[i] *= share;
    }
    if (!isfinite(stats->loss))
        return wsml_errf(err, WSML_ENUMERIC, "the loss is %g", stats->loss);
    t->dp_pending = wsml_net_num_params(t->net); // no bucket sent yet (dp_grads_ready)
    rc = wsml_net_backward(t->net, t->dlogits, err);
    if (rc == 0)
        rc = allreduce_grads(t, err);
    if (rc == 0)
        rc = optimizer_step(t, err);
    int64_t flips_true_pos = 0;
    if (rc == 0)
        rc = wsml_loss_state_end_batch(t->loss_state, t->comm, b->index, B, b->full, &out,
                                       &flips_true_pos, err);
    if (rc < 0)
        return rc;
    *stop = t->hooks->stop_requested && *t->hooks->stop_requested;
    if (parallel(t)) {
        // the step's counts over the global batch, and whether any process must stop
        double v[6] = {(double)stats->num_modified,   (double)stats->num_modified_hidden_pos,
                       (double)stats->num_hidden_pos, (double)stats->num_flips,
                       (double)flips_true_pos,        (double)*stop};
        if ((rc = sum_doubles(t, v, 6, err)) < 0)
            return rc;
        stats->num_modified = (int64_t)v[0];
        if (stats->num_hidden_pos >= 0) { // -1 on every process: no full labels
            stats->num_modified_hidden_pos = (int64_t)v[1];
            stats->num_hidden_pos = (int64_t)v[2];
        }
        stats->num_flips = (int64_t)v[3];
        flips_true_pos = (int64_t)v[4];
        *stop = v[5] > 0;
    }
    t->st.flips_true_pos += flips_true_pos;
    return 0;
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

// Scores and labels of a whole split: with several processes, each scores a contiguous
// share of the split's batches (of --batch images, the grid of one process, so every image
// is scored in the batch it would be in alone: the same bits), then every process
// gathers all of them. Returns 1 when any process was asked to stop.
static int predict_sharded(trainer *t, wsml_split split, float *scores, int8_t *labels,
                           wsml_err *err) {
    const int64_t n = t->meta->count[split], B = t->o.batch, nb = (n + B - 1) / B;
    const int R = t->comm->rank, W = t->comm->size;
    int rc = broadcast_bn_buffers(t, err);
    if (rc < 0)
        return rc;
    if (!parallel(t))
        return wsml_predict_split(t->net, t->store, split, t->o.batch, t->o.workers,
                                  t->hooks->stop_requested, scores, labels, err);
    rc = wsml_predict_split_part(t->net, t->store, split, t->o.batch, t->o.workers, nb * R / W,
                                 nb * (R + 1) / W, t->hooks->stop_requested, scores, labels, err);
    if (rc < 0)
        return rc;
    double stop = rc == 1;
    if ((rc = sum_doubles(t, &stop, 1, err)) < 0)
        return rc;
    if (stop > 0)
        return 1;
    // rows of rank r: its batches' records; gathered in rank order = record order
    size_t *cs = malloc(sizeof(size_t) * 2 * (size_t)W);
    if (!cs)
        return wsml_errf(err, WSML_ENOMEM, "out of memory");
    size_t *cl = cs + W;
    for (int r = 0; r < W; r++) {
        int64_t b = nb * r / W * B, e = nb * (r + 1) / W * B;
        int64_t rows = (e < n ? e : n) - (b < n ? b : n);
        cs[r] = (size_t)rows * t->C * sizeof(float);
        cl[r] = (size_t)rows * t->C;
    }
    int64_t first = nb * R / W * B;
    first = first < n ? first : n;
    void *mine = malloc(cs[R] + cl[R] + 1);
    rc = mine ? 0 : wsml_errf(err, WSML_ENOMEM, "out of memory");
    if (rc == 0) {
        memcpy(mine, scores + first * t->C, cs[R]);
        rc = t->comm->allgatherv(t->comm, mine, cs, scores, err);
    }
    if (rc == 0) {
        memcpy(mine, labels + first * t->C, cl[R]);
        rc = t->comm->allgatherv(t->comm, mine, cl, labels, err);
    }
    free(mine);
    free(cs);
    return rc < 0 ? wsml_err_prefix(err, "gathering %s scores", wsml_split_name(split)) : 0;
}

// Scores of a whole split in eval mode (train/predict.h), then the metrics against its
// full labels (docs/methods.md §4). Returns 1 if a stop was requested meanwhile.
static int evaluate(trainer *t, wsml_split split, double *map, double *groups, int *num_groups,
                    wsml_err *err) {
    int64_t n = t->meta->count[split];
    float *scores = malloc((size_t)n * t->C * sizeof(float) + 4);
    int8_t *labels = malloc((size_t)n * t->C + 1);
    int rc = scores && labels ? 0
                              : wsml_errf(err, WSML_ENOMEM, "out of memory for %s scores",
                                          wsml_split_name(split));
    if (rc == 0)
        rc = predict_sharded(t, split, scores, labels, err);
    for (int64_t i = 0; rc == 0 && i < n * t->C; i++)
        if (!isfinite(scores[i]))
            rc = wsml_errf(err, WSML_ENUMERIC, "%s score of image %lld, class %lld is %g",
                           wsml_split_name(split), (long long)(i / t->C), (long long)(i % t->C),
                           scores[i]);
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

// The training split's full (observed = 0) or observed labels, (N, C).
static int read_train_labels(trainer *t, int observed, int8_t *labels, wsml_err *err) {
    wsml_reader *r = wsml_reader_begin(t->store, err);
    if (!r)
        return err->code;
    int rc = 0;
    for (int64_t i = 0; i < t->n_train && rc >= 0; i++) {
        wsml_record rec;
        rc = wsml_reader_get(r, WSML_SPLIT_TRAIN, (uint32_t)i, &rec, err);
        if (rc >= 0 && observed)
            wsml_record_observed_labels(&rec, t->C, labels + (size_t)i * t->C);
        else if (rc >= 0)
            wsml_record_full_labels(&rec, t->C, labels + (size_t)i * t->C);
    }
    wsml_reader_end(r);
    return rc < 0 ? rc : 0;
}

// wsml_loss_state_env.read_observed
static int read_train_observed(void *ctx, int8_t *observed, wsml_err *err) {
    return read_train_labels(ctx, 1, observed, err);
}

// EPR/ROLE's expected positives per image (docs/methods.md §2): Cole et al.'s constant for
// the dataset the store's info records (format, or the ingest name of a generic format);
// for any other dataset the mean over the training split's full labels, with a warning.
static int resolve_epr_k(trainer *t, wsml_err *err) {
    if (t->o.epr_k_given || !wsml_loss_uses_expected_num_pos(t->o.loss.kind))
        return 0;
    json_t *info = json_loads(t->meta->info_json, 0, NULL);
    const char *format = json_string_value(json_object_get(info, "format"));
    char fmt[64];
    snprintf(fmt, sizeof fmt, "%s", format ? format : "?");
    json_decref(info);
    double k = wsml_expected_num_pos_for_store(fmt, t->meta->name);
    if (k <= 0) {
        int8_t *full = malloc((size_t)t->n_train * t->C + 1);
        if (!full)
            return wsml_errf(err, WSML_ENOMEM, "out of memory for labels");
        int rc = read_train_labels(t, 0, full, err);
        if (rc == 0)
            k = wsml_expected_num_pos(NULL, full, t->n_train, t->C);
        free(full);
        if (rc < 0)
            return rc;
        if (!t->o.resume)
            wsml_warn("--loss %s: the store's dataset '%s' (format %s) has no expected-positives "
                      "constant (Cole et al.: VOC 1.5, COCO 2.9, NUS-WIDE 1.9, CUB 31.4); using "
                      "the train split's mean positives per image, %.4g (--epr-k sets it)",
                      wsml_loss_kind_name(t->o.loss.kind), t->meta->name, fmt, k);
    }
    t->loss.expected_num_pos = k;
    t->o.loss.expected_num_pos = k;
    return 0;
}

// The store, and what its shape allows (sizes, splits, the last batch's BatchNorm); the
// loss configuration that depends on it.
static int open_store(trainer *t, int resume, wsml_err *err) {
    const wsml_train_opts *o = &t->o;
    if (test_fail_setup(t, "store", err) < 0)
        return err->code;
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
    // --init starts from trained weights (a LinearInit frozen run's), as --pretrained does
    int trained = o->pretrained[0] || o->init[0];
    if (!strcmp(o->recipe, "paper") && (t->H != 448 || t->W != 448 || !trained) && !resume)
        wsml_warn("--recipe paper: the paper trains ImageNet-pretrained weights (--pretrained) "
                  "on 448x448 images; this run uses %s on %dx%d",
                  o->pretrained[0] ? "pretrained weights"
                  : o->init[0]     ? "the weights of --init"
                                   : "random weights",
                  t->H, t->W);

    // BatchNorm in train mode needs two values per channel (PyTorch refuses one too):
    // the smallest batch times the last feature map's positions.
    int64_t smallest = t->n_train % o->batch ? t->n_train % o->batch : o->batch;
    if (parallel(t)) { // the smallest share of the last global batch (train/loader.h)
        int64_t G = (int64_t)t->comm->size * o->batch, last = t->n_train % G;
        smallest = last >= t->comm->size ? last / t->comm->size : o->batch;
        if (last > 0 && last < t->comm->size && t->comm->rank == 0)
            wsml_warn("%lld train image(s) of each epoch's last global batch are left out: %d "
                      "processes need one image each at least (train/loader.h)",
                      (long long)last, t->comm->size);
    }
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
    return rc;
}

// The backend and the network with its initial weights (a resumed run overwrites them
// from last.safetensors).
static int build_network(trainer *t, wsml_err *err) {
    const wsml_train_opts *o = &t->o;
    wsml_backend_options bo = {.num_threads = o->threads,
                               .device = o->device,
                               .precision = (wsml_precision)wsml_precision_parse(o->precision)};
    int rc = wsml_backend_create(o->backend, &bo, &t->be, err);
    if (rc == 0)
        rc = test_fail_setup(t, "backend", err);
    if (rc < 0)
        return rc;
    if (o->sync_bn && parallel(t)) {
        t->be->sync_bn = 1;
        t->be->bn_allreduce = bn_allreduce;
        t->be->bn_allreduce_ctx = t->comm;
    }
    // NCCL's library on every process before any of them waits for another
    // (connect_devices); the communicator itself comes after setup agreed
    if (parallel(t) && t->be->dp_load && t->be->dp_load(t->be) < 0)
        return wsml_errf(err, WSML_EDEVICE, "%s", t->be->err.msg);
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
    if (parallel(t) && t->be->dp_allreduce)
        wsml_net_set_grads_ready(t->net, dp_grads_ready, t);
    wsml_net_init(t->net, o->seed);
    if (o->pretrained[0]) {
        rc = wsml_net_load(t->net, o->pretrained, WSML_NET_LOAD_BACKBONE, err);
        if (rc < 0)
            return wsml_err_prefix(err, "--pretrained %s", o->pretrained);
        wsml_net_init_head(t->net, o->seed);
    } else if (o->init[0] && rundir_init_diverged(o->init)) {
        t->init_diverged = 1; // wsml_train_run ends the run as diverged before training
    } else if (o->init[0]) {
        rc = wsml_net_load(t->net, o->init, WSML_NET_LOAD_ALL, err);
        if (rc < 0)
            return wsml_err_prefix(err, "--init %s", o->init);
    }
    wsml_net_set_frozen_backbone(t->net, o->freeze_backbone);
    return 0;
}

// Optimizer groups (docs/methods.md §3): backbone at lr, head at lr_mult·lr; a frozen backbone has
// no group (requires_grad=False). Then the loss's own state, which may add a group of
// its own (ROLE's estimator, at lr_mult·lr as Cole et al.), and the step's scratch.
static int build_optimizer(trainer *t, wsml_err *err) {
    const wsml_train_opts *o = &t->o;
    wsml_optim_config oc;
    wsml_optim_config_default(&oc, o->optimizer);
    int rc = wsml_optim_init(&t->optim, &oc, err);
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
    return optim_state_alloc(t, err);
}

static int open_train_loader(trainer *t, wsml_err *err) {
    const wsml_train_opts *o = &t->o;
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
    lc.rank = t->comm->rank; // data parallel: this process's share of each global batch
    lc.world = t->comm->size;
    wsml_loader_use_backend(&lc, t->be);
    t->loader = wsml_loader_open(t->store, &lc, err);
    return t->loader ? 0 : err->code < 0 ? err->code : WSML_EIO;
}

// --init from a LinearInit frozen run: the loss state it carries (ROLE's label estimates;
// train/loss.h wsml_loss_state_carry) replaces the fresh one.
static int carry_init_state(trainer *t, wsml_err *err) {
    if (!t->o.init[0] || !t->loss_state || t->init_diverged)
        return 0;
    wsml_safetensors st;
    int rc = wsml_st_read(t->o.init, &st, err);
    if (rc < 0)
        return wsml_err_prefix(err, "--init %s", t->o.init);
    rc = wsml_loss_state_carry(t->loss_state, &st, err);
    wsml_st_free(&st);
    if (rc < 0)
        return wsml_err_prefix(err, "--init %s", t->o.init);
    if (rc == 1)
        wsml_info("--init %s: the loss state (%s's label estimates) carried over", t->o.init,
                  wsml_loss_kind_name(t->o.loss.kind));
    else if (t->o.loss.kind == WSML_LOSS_ROLE)
        wsml_info("--init %s holds no ROLE label estimates: they start afresh", t->o.init);
    return 0;
}

// A new run writes config.json and starts run.jsonl; a resumed one checks config.json,
// loads last.safetensors and cuts run.jsonl back to what that checkpoint had seen.
static int start_or_resume(trainer *t, int resume, wsml_err *err) {
    t->st.epoch = 1;
    t->st.best_val_map = -INFINITY;
    t->saved_step = -1;
    int rc;
    if (resume) {
        rc = rundir_check_config(t, err);
        if (rc == 0)
            rc = rundir_load_last(t, err);
        if (rc < 0)
            return rc;
        // A run that ended by reaching its --epochs continues when given more (the
        // schedule depends on the epoch number only, so this equals a longer run).
        if (t->st.stop_reason == STOP_EPOCHS && t->st.epoch <= t->o.epochs)
            t->st.stop_reason = STOP_NONE;
        if (t->comm->rank != 0)
            return 0; // rank 0 alone writes the run directory
        // Drop what was appended after the checkpoint; it is recomputed identically.
        if (truncate(t->path_jsonl, (off_t)t->st.jsonl_bytes) != 0)
            return wsml_errf(err, WSML_EIO, "%s: cannot truncate to %lld bytes: %s", t->path_jsonl,
                             (long long)t->st.jsonl_bytes, strerror(errno));
        t->jsonl = fopen(t->path_jsonl, "a");
    } else {
        rc = carry_init_state(t, err);
        if (rc == 0 && t->comm->rank != 0)
            return 0; // rank 0 alone writes the run directory
        if (rc == 0)
            rc = rundir_write_config(t, err);
        if (rc < 0)
            return rc;
        t->jsonl = fopen(t->path_jsonl, "w");
    }
    if (!t->jsonl)
        return wsml_errf(err, WSML_EIO, "%s: cannot open: %s", t->path_jsonl, strerror(errno));
    return 0;
}

static int setup(trainer *t, int resume, wsml_err *err) {
    int rc = open_store(t, resume, err);
    if (rc == 0)
        rc = build_network(t, err);
    if (rc == 0)
        rc = build_optimizer(t, err);
    if (rc == 0)
        rc = open_train_loader(t, err);
    if (rc == 0)
        rc = start_or_resume(t, resume, err);
    return rc;
}

// failed_alone: this process failed while the others may wait for it in a collective
// (main then stops them all): the device communicator is aborted, not waited for.
static void teardown(trainer *t, int failed_alone) {
    if (failed_alone && t->be && t->be->dp_abort)
        t->be->dp_abort(t->be);
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

// A NaN/Inf (WSML_ENUMERIC in err) ends the run as "diverged" (docs/methods.md §3): remembers
// where (the epoch in progress, the step that failed) and why, before err gets context.
static void mark_diverged(trainer *t, int epoch, int64_t step, const wsml_err *err) {
    t->diverged = 1;
    t->diverged_epoch = epoch;
    t->diverged_step = step;
    snprintf(t->diverged_reason, sizeof t->diverged_reason, "%s", err->msg);
}

static int stop_requested(trainer *t) {
    return t->hooks->stop_requested && *t->hooks->stop_requested;
}

static int interrupted(trainer *t, wsml_train_result *res, wsml_err *err) {
    int rc = broadcast_bn_buffers(t, err); // every process checks the weights rank 0 saves
    if (rc == 0)
        rc = rundir_save_last(t, err);
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

// A step's numbers into the epoch's sums.
static void add_step(train_state *s, const wsml_batch *b, const wsml_loss_stats *ls) {
    s->batches_done++;
    s->global_step++;
    s->loss_sum += ls->loss * b->global_size; // the global batch's (one process: b->size)
    s->images += b->global_size;
    s->modified += ls->num_modified;
    if (ls->num_hidden_pos >= 0) {
        s->modified_hidden_pos += ls->num_modified_hidden_pos;
        s->hidden_pos += ls->num_hidden_pos;
    }
    s->flips += ls->num_flips;
}

// --trace: one run.jsonl line per step. step_s: forward + loss + backward + update,
// without waiting for the loader.
static int trace_step(trainer *t, int epoch, const wsml_batch *b, const wsml_loss_stats *ls,
                      double step_s, wsml_err *err) {
    json_t *j = json_object();
    json_object_set_new(j, "step", json_integer(t->st.global_step));
    json_object_set_new(j, "epoch", json_integer(epoch));
    json_object_set_new(j, "batch", json_integer(b->batch_index));
    json_object_set_new(j, "loss", json_real(ls->loss));
    json_object_set_new(j, "modified", json_integer(ls->num_modified));
    if (wsml_loss_is_large_loss(t->o.loss.kind)) {
        json_object_set_new(j, "k", json_integer(ls->k));
        json_object_set_new(j, "threshold",
                            isfinite(ls->threshold) ? json_real(ls->threshold) : json_null());
    }
    if (wsml_loss_state_num_corrected(t->loss_state) >= 0)
        json_object_set_new(j, "flips", json_integer(ls->num_flips));
    json_object_set_new(j, "step_s", json_real(step_s));
    return rundir_log(t, j, 0, err);
}

// The batches of epoch e that are left (from st.batches_done), with the checkpoints that
// --save-every, --max-steps and a stop request ask for on the way. Returns 0 when the
// epoch's batches are done, 1 when the run stops here (--max-steps; last.safetensors
// saved), or a negative wsml_code (an interrupt: WSML_ESTATE after saving).
static int train_batches(trainer *t, int e, wsml_train_result *res, wsml_err *err) {
    const wsml_train_opts *o = &t->o;
    train_state *s = &t->st;
    int64_t nb = wsml_loader_num_batches(t->loader);
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
        int stop = 0;
        rc = train_step(t, b, e, &ls, &stop, err);
        t_step = wsml_now() - t_step;
        if (rc < 0) {
            wsml_progress_end(p);
            if (rc == WSML_ENUMERIC)
                mark_diverged(t, e, s->global_step + 1, err);
            describe_failure(t, e, s->global_step + 1, b->batch_index + 1, err);
            return rc;
        }
        add_step(s, b, &ls);
        if (o->trace && (rc = trace_step(t, e, b, &ls, t_step, err)) < 0) {
            wsml_progress_end(p);
            return rc;
        }
        wsml_progress_add(p, 1);
        char status[64];
        snprintf(status, sizeof status, "loss %.4f", ls.loss);
        wsml_progress_status(p, status);
        int max_hit = o->max_steps > 0 && s->global_step >= o->max_steps;
        int periodic = o->save_every > 0 && s->global_step % o->save_every == 0;
        if (!stop && !max_hit && !periodic)
            continue;
        busy_interval_end(t);
        s->train_seconds += wsml_now() - t0;
        t0 = wsml_now();
        wsml_progress_end(p);
        p = NULL;
        if (stop)
            return interrupted(t, res, err);
        rc = broadcast_bn_buffers(t, err); // every process checks the weights rank 0 saves
        if (rc == 0)
            rc = rundir_save_last(t, err);
        if (rc < 0) {
            if (rc == WSML_ENUMERIC) // the weights overflowed: last.safetensors is kept
                mark_diverged(t, e, s->global_step, err);
            describe_failure(t, e, s->global_step, s->batches_done, err);
            return rc;
        }
        if (max_hit) {
            res->max_steps_hit = 1;
            wsml_info("stopped after %lld steps (--max-steps); %s saved", (long long)s->global_step,
                      t->path_last);
            return 1;
        }
        p = wsml_progress_start(label, (uint64_t)nb, "batch");
        wsml_progress_set(p, (uint64_t)s->batches_done);
        busy_interval_start(t);
    }
    wsml_progress_end(p);
    if (rc < 0)
        return wsml_err_prefix(err, "epoch %d", e);
    busy_interval_end(t);
    s->train_seconds += wsml_now() - t0;
    return 0;
}

// run.jsonl's line of epoch e (docs/methods.md §2 "Diagnostics": how many modified entries are
// hidden true positives; LL-Cp's corrections so far).
static json_t *epoch_line(trainer *t, int e, double val_map, double seconds) {
    const wsml_train_opts *o = &t->o;
    train_state *s = &t->st;
    json_t *j = json_object();
    json_object_set_new(j, "epoch", json_integer(e));
    json_object_set_new(j, "steps", json_integer(s->global_step));
    json_object_set_new(j, "train_loss", json_real(s->images ? s->loss_sum / s->images : 0));
    json_object_set_new(j, "modified", json_integer(s->modified));
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
            json_object_set_new(j, "abs_threshold", json_real(wsml_ll_abs_threshold(&t->loss, e)));
    }
    int64_t corrected = wsml_loss_state_num_corrected(t->loss_state);
    if (corrected >= 0) {
        s->flips_true_pos_total += s->flips_true_pos;
        json_object_set_new(j, "flips", json_integer(s->flips));
        json_object_set_new(j, "flips_true_pos", json_integer(s->flips_true_pos));
        json_object_set_new(j, "corrected_total", json_integer(corrected));
        json_object_set_new(j, "corrected_true_pos_total", json_integer(s->flips_true_pos_total));
    }
    json_object_set_new(j, "val_map", json_real(val_map));
    json_object_set_new(j, "best_val_map", json_real(s->best_val_map));
    json_object_set_new(j, "best_epoch", json_integer(s->best_epoch));
    json_object_set_new(j, "time_s", json_real(seconds));
    json_object_set_new(j, "images_per_s",
                        json_real(s->train_seconds > 0 ? s->images / s->train_seconds : 0));
    if (t->busy_mark >= 0 && t->idle_wall > 0) {
        // The share of this epoch's training time (in this process) in which the GPU
        // had nothing queued: waiting for data, the host's loss, launches.
        double idle = 1 - t->idle_busy / t->idle_wall;
        json_object_set_new(j, "gpu_idle_frac", json_real(idle < 0 ? 0 : idle));
    }
    return j;
}

// After epoch e's batches: validation, model selection and early stop as the reference
// (train.py: a strictly better val mAP is the new best; otherwise stop if it is more
// than 3 points below), the epoch's line, best.safetensors, last.safetensors.
static int end_epoch(trainer *t, int e, double t_epoch, wsml_train_result *res, wsml_err *err) {
    const wsml_train_opts *o = &t->o;
    train_state *s = &t->st;
    double val_map = 0, groups[WSML_METRICS_MAX_GROUPS];
    int ng = 0;
    // Weights that overflowed in the epoch's last steps would only show as NaN scores.
    // (Every process checks rank 0's BN statistics, the ones validation and checkpoints use.)
    int rc = broadcast_bn_buffers(t, err);
    if (rc == 0)
        rc = rundir_check_finite_weights(t, err);
    if (rc == 0)
        rc = evaluate(t, WSML_SPLIT_VAL, &val_map, groups, &ng, err);
    if (rc == 1)
        return interrupted(t, res, err);
    if (rc == WSML_ENUMERIC)
        mark_diverged(t, e, s->global_step, err);
    if (rc < 0)
        return wsml_err_prefix(err, "epoch %d", e);
    int improved = val_map > s->best_val_map;
    int early = 0;
    if (improved) {
        s->best_val_map = val_map;
        s->best_epoch = e;
    } else if (o->early_stop && s->best_val_map - val_map > 3.0) {
        early = 1;
    }
    json_t *j = epoch_line(t, e, val_map, wsml_now() - t_epoch);
    wsml_info("epoch %d/%d: loss %.4f, modified %lld, val mAP %.2f (best %.2f @ %d)%s, "
              "%.1f img/s",
              e, o->epochs, s->images ? s->loss_sum / s->images : 0, (long long)s->modified,
              val_map, s->best_val_map, s->best_epoch, early ? ", early stop" : "",
              s->train_seconds > 0 ? s->images / s->train_seconds : 0);
    rc = rundir_log(t, j, 1, err);
    if (rc < 0)
        return rc;
    if (improved) {
        rc = rundir_check_finite_weights(t, err);
        if (rc == 0)
            rc = rundir_save_best(t, val_map, e, err);
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
    rc = rundir_save_last(t, err);
    if (rc < 0)
        return wsml_err_prefix(err, "end of epoch %d", e);
    double stop = stop_requested(t); // any process's request stops them all here
    if ((rc = sum_doubles(t, &stop, 1, err)) < 0)
        return rc;
    if (stop > 0 && s->stop_reason == STOP_NONE)
        return interrupted(t, res, err);
    return 0;
}

static int train_epochs(trainer *t, wsml_train_result *res, wsml_err *err) {
    const wsml_train_opts *o = &t->o;
    train_state *s = &t->st;
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
        int rc = train_batches(t, e, res, err);
        if (rc == 0)
            rc = end_epoch(t, e, t_epoch, res, err);
        if (rc == WSML_ENUMERIC && t->diverged)
            return 0; // a finished run all the same: finish() writes its final line
        if (rc != 0)
            return rc < 0 ? rc : 0;
    }
    return 0;
}

// The final line's "status" (docs/methods.md §3 "How a run ends").
static const char *run_status(const trainer *t) {
    return t->diverged ? "diverged" : t->st.stop_reason == STOP_EARLY ? "early-stopped" : "ok";
}

// Test mAP of the best epoch (its weights reloaded), and the final line. A diverged run
// ends here too: its final line says where, and the test mAP is the best epoch's if an
// epoch completed (null otherwise). Best weights whose test scores are not finite make
// the run diverged as well (test mAP null).
static int finish(trainer *t, wsml_train_result *res, wsml_err *err) {
    train_state *s = &t->st;
    res->started = 1;
    res->best_epoch = s->best_epoch;
    res->best_val_map = s->best_val_map;
    res->epochs_run = s->epoch - 1;
    int have_best = s->best_epoch > 0;
    int rc = have_best ? wsml_net_load(t->net, t->path_best, WSML_NET_LOAD_ALL, err) : 0;
    if (rc < 0)
        return rc;
    res->test_map = NAN;
    res->num_groups = 0;
    int have_test = t->meta->count[WSML_SPLIT_TEST] > 0 && have_best;
    if (have_test) {
        rc = evaluate(t, WSML_SPLIT_TEST, &res->test_map, res->test_group_maps, &res->num_groups,
                      err);
        if (rc == 1) {
            res->interrupted = 1;
            return wsml_errf(err, WSML_ESTATE,
                             "interrupted during the test pass; rerun with --resume to finish");
        }
        if (rc == WSML_ENUMERIC) {
            if (!t->diverged) {
                wsml_err_prefix(err, "test pass with the weights of epoch %d", s->best_epoch);
                mark_diverged(t, s->best_epoch, s->global_step, err);
            }
            have_test = 0;
            res->test_map = NAN;
            res->num_groups = 0;
            rc = 0;
        }
        if (rc < 0)
            return rc;
    } else if (t->meta->count[WSML_SPLIT_TEST] == 0) {
        wsml_warn("--store %s has no test split: no test mAP", t->o.store);
    }
    res->early_stopped = s->stop_reason == STOP_EARLY && !t->diverged;
    res->diverged = t->diverged;
    snprintf(res->status, sizeof res->status, "%s", run_status(t));
    if (t->diverged) {
        char best[96] = "no epoch completed";
        if (have_best)
            snprintf(best, sizeof best, "best epoch %d, val mAP %.2f", s->best_epoch,
                     s->best_val_map);
        char kept[WSML_PATH_MAX + 64] = "no checkpoint was written";
        if (t->saved_step >= 0)
            snprintf(kept, sizeof kept, "%s keeps step %lld", t->path_last,
                     (long long)t->saved_step);
        if (t->comm->rank == 0) // every process diverged alike: one says so
            wsml_warn("diverged at epoch %d step %lld: %s; the run ends with status \"diverged\" "
                      "(%s; %s)",
                      t->diverged_epoch, (long long)t->diverged_step, t->diverged_reason, best,
                      kept);
    }
    json_t *j = json_object();
    json_object_set_new(j, "event", json_string("final"));
    json_object_set_new(j, "status", json_string(res->status));
    json_object_set_new(j, "best_epoch", have_best ? json_integer(s->best_epoch) : json_null());
    json_object_set_new(j, "best_val_map", have_best ? json_real(s->best_val_map) : json_null());
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
    if (t->diverged) {
        json_object_set_new(j, "diverged_epoch", json_integer(t->diverged_epoch));
        json_object_set_new(j, "diverged_step", json_integer(t->diverged_step));
        json_object_set_new(j, "diverged_reason", json_string(t->diverged_reason));
    }
    rc = rundir_log(t, j, 1, err);
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
    t->comm = hooks->comm ? hooks->comm : wsml_comm_single();
    t->o.world_size = t->comm->size; // config.json records it; a resume must keep it
    // config.json records where the store is, wherever the run is resumed from.
    char *real = realpath(t->o.store, NULL);
    if (real) {
        if (strlen(real) < sizeof t->o.store)
            snprintf(t->o.store, sizeof t->o.store, "%s", real);
        free(real);
    }
    if (t->o.threads <= 0)
        t->o.threads = wsml_cpu_count(); // config.json keeps it: a resumed run needs it
    // wsml-train's main has picked it already (config.json records the device used)
    if (t->o.device < 0 && (rc = wsml_backend_pick_device_at(t->o.backend, -1, t->comm->local_rank,
                                                             &t->o.device, err))) {
        free(t);
        return rc;
    }
    snprintf(t->path_config, sizeof t->path_config, "%s/config.json", t->o.out);
    snprintf(t->path_jsonl, sizeof t->path_jsonl, "%s/run.jsonl", t->o.out);
    snprintf(t->path_best, sizeof t->path_best, "%s/best.safetensors", t->o.out);
    snprintf(t->path_last, sizeof t->path_last, "%s/last.safetensors", t->o.out);
    int resume = t->o.resume, finished = 0;
    // rank 0 prepares the run directory and says whether there is a run to resume, or
    // one that is finished already
    rc = t->comm->rank == 0
             ? rundir_prepare(t, &resume, &finished, res->status, sizeof res->status, err)
             : 0;
    rc = agree(t, rc, res, err);
    if (rc == 0 && parallel(t)) {
        int flags[2] = {resume, finished};
        rc = t->comm->broadcast(t->comm, flags, sizeof flags, 0, err);
        if (rc == 0)
            rc = t->comm->broadcast(t->comm, res->status, sizeof res->status, 0, err);
        resume = flags[0];
        finished = flags[1];
    }
    if (rc == 0 && finished) {
        res->already_finished = 1;
        res->diverged = !strcmp(res->status, "diverged");
        wsml_info("%s is a finished run (status %s): nothing to do (--force starts it over)",
                  t->o.out, res->status);
        free(t);
        return 0;
    }
    if (rc == 0)
        rc = agree(t, setup(t, resume, err), res, err);
    if (rc == 0)
        rc = connect_devices(t, res, err);
    if (rc == 0 && resume)
        wsml_info("resuming %s at epoch %d, batch %lld (step %lld)", t->o.out, t->st.epoch,
                  (long long)t->st.batches_done, (long long)t->st.global_step);
    if (rc == 0 && t->init_diverged) {
        // nothing to fine-tune: the run is finished, diverged like the one it starts from
        wsml_err why = {0};
        wsml_errf(&why, WSML_ENUMERIC, "init run diverged (%s has no checkpoint)", t->o.init);
        mark_diverged(t, 1, 0, &why);
    } else if (rc == 0) {
        rc = train_epochs(t, res, err);
    }
    if (rc == 0 && !res->max_steps_hit)
        rc = finish(t, res, err);
    if (rc < 0 && parallel(t) && !res->error_everywhere &&
        (res->interrupted || rc == WSML_ENUMERIC)) {
        // an agreed stop and a NaN loss of the global batch happen on every process alike
        res->error_everywhere = 1;
        res->silent = t->comm->rank != 0;
    }
    teardown(t, rc < 0 && parallel(t) && !res->error_everywhere);
    free(t);
    return rc;
}
