// `wsml-eval check-config`: does a run directory hold the run a pipeline asks for? The
// pipelines (pipelines/runs.mk) call it before they reuse or resume a run, so that a run
// made with other settings is never taken for the requested one.
#ifndef WSML_EVAL_RUNCHECK_H
#define WSML_EVAL_RUNCHECK_H

#include "common/err.h"

// Compares RUNDIR/config.json with the wsml-train flags argv[0..argc-1] (as the pipeline
// would pass them, --recipe applied first; --out, --resume, --force and the execution
// flags that never change the numbers are not compared). Compared: every option that
// decides the numbers (train/trainer.h, wsml_train_opts_same_run) and --epochs; paths
// (--pretrained, --init) by the file they name (--store is not compared: a pipeline
// keeps one store per dataset, and wsml-train --resume checks the store itself); --threads and
// --epr-k only when given (else wsml-train resolved them: the CPUs usable, the dataset's k).
// Returns 0 when they agree; WSML_EARG when a flag is bad; WSML_ESTATE with err naming the first
// differing flag and both values ("--lr 2e-05 differs from the run's 1e-05"), or WSML_EIO /
// WSML_EFORMAT when config.json cannot be read.
int wsml_run_check_config(const char *run_dir, int argc, char **argv, wsml_err *err);

#endif
