// wsml-train: trains a multi-label classifier from a store's partial labels with one of
// the losses of docs/methods.md §2 and writes a run directory (train/trainer.h).
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/comm.h"
#include "common/fileio.h"
#include "common/log.h"
#include "common/sysinfo.h"
#include "train/backend.h"
#include "train/trainer.h"

#define PROG "wsml-train"

static void usage(FILE *f) {
    fprintf(f, "Usage: wsml-train --store STORE --out RUNDIR [options]\n"
               "Trains a ResNet on a store's observed (partial) labels with one of the losses of\n"
               "Kim et al. (CVPR 2022) or its baselines; selects the epoch with the best val mAP\n"
               "(clean labels) and reports its test mAP. RUNDIR receives config.json, run.jsonl\n"
               "(one line per epoch), best.safetensors, last.safetensors (for --resume) and\n"
               "train.log (timestamped lines of every invocation: command, versions, progress).\n"
               "\n");
    wsml_train_opts_help(f);
    fprintf(f,
            "\n"
            "Examples:\n"
            "  # the paper's recipe on PASCAL VOC (LL-Ct, relative threshold 0.2%% per epoch)\n"
            "  wsml-ingest --format voc --root data/VOCdevkit/VOC2012 --out stores/voc\n"
            "  wsml-train --store stores/voc --out runs/voc-llct --recipe paper \\\n"
            "             --pretrained resnet50-imagenet.safetensors --loss ll-ct --delta-rel 0.2\n"
            "  # the demo-size run: a small ResNet-18 on Fashion-MNIST mosaics, on the CPU\n"
            "  wsml-ingest --format fashion-mosaic --size 64 --out stores/mosaic\n"
            "  wsml-train --store stores/mosaic --out runs/mosaic-llcp --arch resnet18 \\\n"
            "             --width-mult 0.25 --loss ll-cp --delta-rel 1 --lr 1e-3 --epochs 8\n"
            "  # the same on a GPU in bf16\n"
            "  wsml-train --store stores/mosaic --out runs/mosaic-bf16 --arch resnet18 \\\n"
            "             --width-mult 0.25 --loss ll-cp --backend cuda --precision bf16\n"
            "  # continue a run that was killed\n"
            "  wsml-train --out runs/mosaic-llcp --resume\n"
            "  # data parallel: 4 processes (one per GPU; --batch is per process), Slurm\n"
            "  mpirun -n 4 wsml-train --store stores/voc --out runs/voc-dp --backend cuda \\\n"
            "             --batch 4 --sync-bn --loss ll-ct\n"
            "  srun --ntasks=32 --gpus-per-task=1 wsml-train --store ... --backend cuda\n"
            "  (WSML_MPI=1: the data-parallel path with one process; WSML_MPI=0: never MPI)\n"
            "\n"
            "  # a finished run: --resume does nothing and exits with its status\n"
            "  wsml-train --out runs/mosaic-llcp --resume\n"
            "\n"
            "Exit status: 0 ok (the run finished, early stop included; also after --max-steps),\n"
            "1 runtime error (I/O, an interrupt: last.safetensors keeps the last good state),\n"
            "2 usage error, 3 the run diverged: a NaN/Inf loss, logit or weight ended it; it is\n"
            "finished all the same (run.jsonl's final line has \"status\": \"diverged\" and\n"
            "where; last.safetensors keeps the last good state; --resume is a no-op).\n");
}

// The table's parse (train/trainer_opts.c) with the command line's conventions: returns 0
// to go on, or the exit status (0 after --help/--version, 2 after a usage error).
// This process's rank (data parallel): only rank 0 prints what every process would.
static int g_rank;

static int parse_args(int argc, char **argv, wsml_train_opts *o, int apply_recipe, int *done) {
    wsml_err err;
    int rc = wsml_train_opts_parse(argc, argv, o, apply_recipe, &err);
    *done = rc != 0;
    if (g_rank != 0)
        return rc < 0 ? 2 : 0;
    if (rc == WSML_OPTS_HELP)
        usage(stdout);
    if (rc == WSML_OPTS_VERSION)
        wsml_print_version(stdout);
    if (rc < 0) {
        fprintf(stderr, "%s: error: %s (see --help)\n", PROG, err.msg);
        return 2;
    }
    return 0;
}

// RUNDIR/train.log (common/log.h): every invocation appends its header and lines
// (--resume continues the story); --force starts it afresh with the run.
static int open_run_log(const wsml_train_opts *o, int argc, char **argv, wsml_err *err) {
    char path[WSML_PATH_MAX + 32];
    snprintf(path, sizeof path, "%s/train.log", o->out);
    int rc = wsml_mkdirs(o->out, err);
    if (rc == 0)
        rc = wsml_log_open(path, o->force, err);
    if (rc < 0)
        return rc;
    wsml_set_run_dir(o->out);
    wsml_log_header(argc, argv);
    return 0;
}

// ---- signals ---------------------------------------------------------------------------------

static volatile sig_atomic_t g_stop;

static void on_signal(int sig) {
    (void)sig;
    g_stop = 1; // the loop finishes the step, saves last.safetensors and stops
}

static int train_main(int argc, char **argv, wsml_comm *comm);

// The rank the launcher gave this process, from its environment (before MPI is up).
static int launched_rank(void) {
    static const char *const vars[] = {"OMPI_COMM_WORLD_RANK", "PMI_RANK", "SLURM_PROCID"};
    return (int)wsml_env_first_long(vars, 3, 0, (1 << 24) - 1, 0);
}

int main(int argc, char **argv) {
    wsml_set_prog(PROG);
    wsml_comm *comm = NULL;
    wsml_err err;
    if (wsml_comm_init(&argc, &argv, &comm, &err) < 0) {
        if (launched_rank() == 0) // one line, not one per process
            wsml_err_print(PROG, &err);
        return err.code == WSML_EARG ? 2 : 1; // a launch that cannot work: a usage error
    }
    g_rank = comm->rank;
    int status = train_main(argc, argv, comm);
    wsml_comm_finalize(comm);
    return status;
}

static int train_main(int argc, char **argv, wsml_comm *comm) {
    wsml_train_opts o;
    wsml_train_opts_default(&o);
    int done = 0;
    int rc = parse_args(argc, argv, &o, 1, &done);
    if (done)
        return rc;
    if (o.resume && o.out[0]) {
        // Options default to the run's own (config.json); given flags must agree with
        // them (checked by the trainer) except the ones that do not change numbers.
        char path[WSML_PATH_MAX + 32], *text = NULL;
        size_t len = 0;
        wsml_err err;
        snprintf(path, sizeof path, "%s/config.json", o.out);
        if (wsml_read_file(path, &text, &len, &err) == 0) {
            wsml_train_opts recorded;
            wsml_train_opts_default(&recorded);
            recorded.trace = 0;
            if (wsml_train_opts_from_json(text, &recorded, &err) < 0) {
                free(text);
                wsml_err_prefix(&err, "%s", path);
                wsml_err_print(PROG, &err);
                return 1;
            }
            free(text);
            recorded.max_steps = 0; // a limit of one invocation, not of the run
            rc = parse_args(argc, argv, &recorded, 0, &done);
            if (done)
                return rc;
            o = recorded;
        }
    }
    // data parallel: rank 0 speaks for all (info lines, progress, train.log)
    wsml_set_quiet(o.quiet || comm->rank != 0);
    wsml_err err;
    wsml_err_clear(&err);
    if (wsml_train_opts_check(&o, &err) < 0) {
        if (comm->rank == 0)
            fprintf(stderr, "%s: error: %s (see --help)\n", PROG, err.msg);
        return 2;
    }

    if (o.threads <= 0)
        o.threads = wsml_cpu_count();
    if (comm->rank == 0 && open_run_log(&o, argc, argv, &err) < 0) {
        wsml_err_print(PROG, &err);
        comm->abort(comm, 1);
        return 1;
    }
    // --device given, else the default (also on resume: config.json's is not a given one)
    // (the communicator's local rank: MPI's, or the launcher's without MPI)
    if (wsml_backend_pick_device_at(o.backend, o.device_given ? o.device : -1, comm->local_rank,
                                    &o.device, &err) < 0) {
        if (comm->rank == 0)
            fprintf(stderr, "%s: error: %s (see --help)\n", PROG, err.msg);
        wsml_log_note("exit status 2");
        return 2;
    }
    if (comm->size > 1 || comm->forced)
        wsml_log_note("data parallel: %d processes (%s), global batch %d x %d%s", comm->size,
                      comm->kind, comm->size, o.batch, o.sync_bn ? ", --sync-bn" : "");
    wsml_log_note("threads %d, backend %s, device %d", o.threads, o.backend, o.device);
    char device_line[1024];
    if (wsml_backend_describe(o.backend, o.device, device_line, sizeof device_line) != 1)
        wsml_log_note("%s", device_line);

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sa.sa_flags = SA_RESETHAND; // a second signal kills at once (checkpoints are atomic)
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    wsml_train_hooks hooks = {&g_stop, comm};
    wsml_train_result res;
    rc = wsml_train_run(&o, &hooks, &res, &err);
    // Options the store or the build cannot serve are usage errors (exit 2), found before
    // any training; anything later is a runtime error.
    int status = rc < 0 ? (rc == WSML_EARG && !res.started ? 2 : 1) : res.diverged ? 3 : 0;
    if (rc < 0 && comm->size > 1 && !res.silent && !res.interrupted && rc != WSML_ENUMERIC)
        wsml_err_prefix(&err, "rank %d", comm->rank); // which process failed (a stop and a
                                                      // NaN loss are every process's)
    if (rc < 0 && !res.silent)
        wsml_err_print(PROG, &err);
    wsml_log_note("exit status %d", status);
    if (rc < 0 && comm->size > 1 && !res.error_everywhere)
        comm->abort(comm, status); // the others wait in a collective: stop them all
    return status;
}
