// Private to the trainer (train/trainer.c: setup and the loop; train/rundir.c: the run
// directory and its checkpoints): the state of one run.
#ifndef WSML_TRAINER_IMPL_H
#define WSML_TRAINER_IMPL_H

#include <jansson.h>
#include <stdint.h>
#include <stdio.h>

#include "common/comm.h"
#include "store/store.h"
#include "train/backend.h"
#include "train/loader.h"
#include "train/loss.h"
#include "train/net.h"
#include "train/optim.h"
#include "train/trainer.h"

enum { STOP_NONE = 0, STOP_EPOCHS = 1, STOP_EARLY = 2 };

// Everything of a run that changes during training and is not a tensor; last.safetensors
// keeps it as metadata (train/rundir.c's field table lists every field).
typedef struct {
    int epoch;            // the epoch in progress, 1-based (t of docs/methods.md §2)
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
    // what the numbers depend on beyond config.json's options: --seed and the resolved
    // --threads (checked against config.json on resume)
    int64_t seed, threads;
} train_state;

typedef struct {
    wsml_train_opts o;
    const wsml_train_hooks *hooks;
    wsml_comm *comm;   // the data-parallel processes (hooks->comm, or one process)
    size_t dp_pending; // gradients [0, dp_pending) not yet sent to the all-reduce
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
    // The optimizer of the network's groups runs on the backend (be->optim_step) over
    // its state as the backend holds it: the host's wsml_optim arrays themselves on a
    // host_memory backend, else device copies that checkpoints copy back and forth (the
    // host's wsml_optim keeps the step counts).
    float *optim_state[WSML_OPTIM_MAX_GROUPS][2]; // exp_avg, exp_avg_sq (NULL: none)
    wsml_loss_config loss;
    wsml_loss_state *loss_state; // ROLE's estimator, LL-Cp's corrections (NULL: none)

    wsml_loader *loader;
    FILE *jsonl;
    train_state st;
    int64_t saved_step; // global step of the last checkpoint (-1: none)
    int saved_epoch;
    // A NaN/Inf loss, logit or weight ended the run (status "diverged", docs/train.md):
    // where (the epoch in progress, the step that failed) and why.
    int diverged, diverged_epoch;
    int64_t diverged_step;
    char diverged_reason[1024];
    // --init names a checkpoint that a diverged run never wrote (a LinearInit frozen
    // phase that diverged): this run ends diverged at once (rundir_init_diverged).
    int init_diverged;
    // The epoch's training time in this process and the device's busy time within it
    // (gpu_idle_frac; busy_mark < 0: the backend does not measure it)
    double idle_wall, idle_busy, busy_mark, wall_mark;

    // per-step scratch (B = --batch)
    int8_t *observed; // (B, C) observed labels with the loss state's corrections
    float *dlogits;   // (B, C)
} trainer;

// ---- train/trainer.c ---------------------------------------------------------------------

// Copies the backend's optimizer state to the host's wsml_optim (to_device 0) or back (1).
int trainer_optim_state_copy(trainer *t, int to_device, wsml_err *err);

// ---- train/rundir.c ----------------------------------------------------------------------

// Creates RUNDIR, removes a dead run's temp files, refuses a run in the way (WSML_ESTATE)
// unless --force (which removes it); *resume becomes 0 when there is nothing to resume.
// A --resume of a finished run (run.jsonl has its final line) does nothing: *finished
// becomes 1 and status receives the final line's "status" (ok, early-stopped, diverged).
int rundir_prepare(trainer *t, int *resume, int *finished, char *status, size_t status_size,
                   wsml_err *err);
// config.json of a new run; and, on resume, the check that it describes the same run
// (options that change the numbers) on the same store.
int rundir_write_config(trainer *t, wsml_err *err);
int rundir_check_config(trainer *t, wsml_err *err);
// 1 when the checkpoint `init` does not exist and its directory holds a run whose
// run.jsonl final line has "status": "diverged" (it ended before writing one).
int rundir_init_diverged(const char *init);
// Appends one line to run.jsonl (takes obj's reference); sync: fsync it.
int rundir_log(trainer *t, json_t *obj, int sync, wsml_err *err);
// best.safetensors: the weights and the model's identity (wsml-eval, wsml-cam).
int rundir_save_best(trainer *t, double val_map, int epoch, wsml_err *err);
// last.safetensors: weights, optimizer state, the loss state and train_state (atomic).
// Refuses non-finite weights (WSML_ENUMERIC), so that the last good state survives.
int rundir_save_last(trainer *t, wsml_err *err);
int rundir_load_last(trainer *t, wsml_err *err);
// WSML_ENUMERIC if the parameters or BN statistics hold a NaN or an infinity.
int rundir_check_finite_weights(trainer *t, wsml_err *err);

#endif
