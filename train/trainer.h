// The training of wsml-train (docs/train.md, docs/methods.md §2–3): its options, the run
// directory (config.json, run.jsonl, best/last checkpoints) and exact resume.
//
// train/ is layered (docs/train.md): this header and its three files sit on top —
//   trainer_opts.c  the option table: every option once (flag, field, range, default,
//                   config.json key, --help, whether it changes the numbers)
//   trainer.c       setup and the loop (one step, epochs, validation, the test pass)
//   rundir.c        the run directory and its checkpoints (train/trainer_impl.h)
// — over the layers they use and never look inside: the network (net.h), the backend
// table (backend.h), the losses with their state (loss.h), the optimizer (optim.h), the
// loader (loader.h) and the predict path (predict.h); metrics come from
// common/metrics.h.
//
// Run directory:
//   config.json       every option with its resolved value, the store's identity, the
//                     wsml version and the BLAS kernel (written at the start)
//   run.jsonl         one JSON object per epoch; one per step with --trace; a last
//                     {"event": "final", ...} when the run is finished
//   best.safetensors  the weights of the best validation epoch (torchvision names)
//   last.safetensors  the weights plus everything an exact resume needs (optimiser
//                     state, the loss's state: LL-Cp's corrected labels, ROLE's
//                     estimator; epoch/step counters, best so far, the run.jsonl length);
//                     written at the end of every epoch and every --save-every steps,
//                     atomically (temp, fsync, rename)
// Resume: `--resume` continues from last.safetensors so that the final weights and
// metrics equal those of an uninterrupted run on the CPU backend, bit for bit. Every
// random draw is a function of (seed, epoch) (train/loader.h) or happens once at the
// start (weights, ROLE's estimator), so there is no generator state to carry.
#ifndef WSML_TRAINER_H
#define WSML_TRAINER_H

#include <signal.h>
#include <stdint.h>
#include <stdio.h>

#include "common/comm.h"
#include "common/err.h"
#include "common/metrics.h"
#include "common/sysinfo.h" // WSML_VERSION
#include "train/loss.h"
#include "train/optim.h"

#define WSML_PATH_MAX 4096

typedef struct {
    // data and output
    char store[WSML_PATH_MAX];
    char out[WSML_PATH_MAX];
    // model
    char arch[16];                  // resnet18 resnet34 resnet50 resnet101
    double width_mult;              // channel multiplier (1 = torchvision's widths)
    char head[16];                  // linear | boostlu
    double alpha;                   // BoostLU's boost of positive CAM values
    char pretrained[WSML_PATH_MAX]; // ImageNet weights by name, fc re-initialised ("" none)
    char init[WSML_PATH_MAX];       // a checkpoint to start from, head included ("" none)
    int freeze_backbone;            // train the head only (LinearInit, docs/methods.md §3)
    // loss (docs/methods.md §2)
    wsml_loss_config loss;
    int epr_k_given; // --epr-k given (else from the dataset)
    // optimisation (docs/methods.md §3)
    wsml_optim_kind optimizer;
    double lr, lr_mult;
    int epochs, batch;
    uint32_t seed;
    int flip, shuffle;
    int early_stop;    // the reference's rule: stop when val mAP < best − 3
    int64_t max_steps; // stop after this many steps in total (0 = no limit)
    // execution
    char backend[8];   // cpu | cuda
    char precision[8]; // fp32 | tf32 | bf16 (train/backend.h; cpu: tf32 = fp32)
    int threads;       // compute threads (numerics may depend on it)
    int device;        // CUDA device ordinal (-1 until resolved: wsml_backend_pick_device)
    int device_given;  // --device given (else the default; a resumed run picks again)
    int workers;       // loader threads (never change numerics)
    int save_every;    // steps between mid-epoch checkpoints (0 = only epochs)
    int sync_bn;       // data parallel: BN statistics over the global batch
    int world_size;    // data-parallel processes (set by the trainer from hooks->comm)
    // behaviour
    int resume, force, trace, quiet;
    char recipe[16]; // "" or "paper"
} wsml_train_opts;

// Defaults: the option table's (train/trainer_opts.c; `wsml-train --help` lists them)
// and, for the loss's settings, wsml_loss_config_default's: resnet18, width 1, linear
// head, alpha 5, loss an, relative threshold, Δrel 0.2 %, R0 2, Δabs 0.1, Adam, lr 1e-4,
// lr_mult 10, 10 epochs, batch 16, seed 1, flip and shuffle on, early stop on, cpu, tf32,
// threads 0 (all CPUs), workers 2, save every 200.
void wsml_train_opts_default(wsml_train_opts *o);
// The paper's recipe (docs/methods.md §3): resnet50, batch 16, Adam, lr 1e-5, lr_mult 10, 10
// epochs, flip, early stop. Applied before the other flags, so flags override it.
void wsml_train_opts_paper(wsml_train_opts *o);
// Checks values and combinations (WSML_EARG naming the flag).
int wsml_train_opts_check(const wsml_train_opts *o, wsml_err *err);

// Applies a command line's options on top of *o (getopt_long over the option table of
// train/trainer_opts.c; --recipe first, unless apply_recipe is 0: a resumed run's
// config.json already holds the resolved values). Returns 0; WSML_OPTS_HELP or
// WSML_OPTS_VERSION for --help / --version (nothing printed); or WSML_EARG with err
// naming the flag and what it expects (a usage error).
#define WSML_OPTS_HELP 1
#define WSML_OPTS_VERSION 2
int wsml_train_opts_parse(int argc, char **argv, wsml_train_opts *o, int apply_recipe,
                          wsml_err *err);
// The options part of --help, section by section, from the same table.
void wsml_train_opts_help(FILE *f);

typedef struct {
    // Set asynchronously (SIGINT/SIGTERM handler): finish the step, save, stop. With
    // several processes, the step after which any of them asked is where all stop.
    volatile sig_atomic_t *stop_requested;
    // Data-parallel training (common/comm.h; NULL: one process): every process runs
    // wsml_train_run with the same options; rank 0 writes the run directory.
    wsml_comm *comm;
} wsml_train_hooks;

// Results of a run (also in run.jsonl's final line).
typedef struct {
    int epochs_run;
    int best_epoch;
    double best_val_map;
    double test_map;
    int num_groups; // OpenImages: test mAP per frequency group
    double test_group_maps[WSML_METRICS_MAX_GROUPS];
    int early_stopped;
    int started;     // training (or the final test pass) began: a later error is a
                     // runtime error, not a usage error
    int interrupted; // stopped by a signal after saving last.safetensors
    int max_steps_hit;
    // Data parallel, after an error: 1 when every process returns it (an agreed stop,
    // a NaN loss, an error before training) so that each may simply exit; 0 when it is
    // this process's alone and the others must be stopped (wsml_comm.abort).
    int error_everywhere;
    int silent; // another process reports the error (error_everywhere)
    // How the run ended, as run.jsonl's final line says: "ok", "early-stopped" or
    // "diverged" (a NaN/Inf loss, logit or weight: the run is finished all the same,
    // last.safetensors keeps the last good state); "" when it did not end.
    char status[16];
    int diverged;         // status "diverged" (wsml-train exits 3)
    int already_finished; // --resume of a run that had ended: nothing was done
} wsml_train_result;

// Runs (or resumes) a training run as the options say. Returns 0 (also when the run
// diverged: result->diverged), or a negative wsml_code with err set: WSML_EARG bad option,
// WSML_ESTATE run directory in the way, WSML_EIO ...
// An interrupted run returns WSML_ESTATE with result->interrupted = 1.
int wsml_train_run(const wsml_train_opts *o, const wsml_train_hooks *hooks,
                   wsml_train_result *result, wsml_err *err);

// ---- run directory files (exposed for tests) -----------------------------------------

// The options as config.json's "options" object text (malloc'd), and back: reading
// fills o from the object (keys not present keep their value).
char *wsml_train_opts_to_json(const wsml_train_opts *o);
int wsml_train_opts_from_json(const char *json_text, wsml_train_opts *o, wsml_err *err);
// Compares the options that decide the numbers of a run (everything but out, resume,
// force, trace, quiet, workers, save_every, epochs and max_steps); on a difference
// fills err (WSML_EARG) naming the flag and both values.
int wsml_train_opts_same_run(const wsml_train_opts *recorded, const wsml_train_opts *given,
                             wsml_err *err);

#endif
