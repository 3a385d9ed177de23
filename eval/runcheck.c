// `wsml-eval check-config` (eval/runcheck.h).
#define _GNU_SOURCE
#include "eval/runcheck.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "train/trainer.h"

// A path option as the file it names (realpath), so that "data/stores/voc" and
// "/home/me/wsml/data/stores/voc" are the same store; kept as given where it does not
// resolve (a file since removed).
static void canonical(char *path, size_t cap) {
    if (!path[0])
        return;
    char *real = realpath(path, NULL);
    if (real && strlen(real) < cap)
        snprintf(path, cap, "%s", real);
    free(real);
}

int wsml_run_check_config(const char *run_dir, int argc, char **argv, wsml_err *err) {
    wsml_train_opts given, recorded;
    wsml_train_opts_default(&given);
    // getopt wants argv[0]: the flags follow a program name.
    char **args = calloc((size_t)argc + 2, sizeof(char *));
    if (!args)
        return wsml_errf(err, WSML_ENOMEM, "check-config: out of memory");
    args[0] = "wsml-train";
    for (int i = 0; i < argc; i++)
        args[i + 1] = argv[i];
    int rc = wsml_train_opts_parse(argc + 1, args, &given, 1, err);
    free(args);
    if (rc > 0)
        return wsml_errf(err, WSML_EARG, "check-config: --help/--version among the flags");
    if (rc < 0)
        return rc;

    char path[PATH_MAX + 16], *text = NULL;
    size_t len = 0;
    snprintf(path, sizeof path, "%s/config.json", run_dir);
    if ((rc = wsml_read_file(path, &text, &len, err)) < 0)
        return rc;
    wsml_train_opts_default(&recorded);
    rc = wsml_train_opts_from_json(text, &recorded, err);
    free(text);
    if (rc < 0)
        return wsml_err_prefix(err, "%s", path);

    // What the comparison leaves out: where the run was written and how it was executed.
    snprintf(given.out, sizeof given.out, "%s", recorded.out);
    if (given.threads == 0) // "all usable CPUs", resolved and recorded by wsml-train
        given.threads = recorded.threads;
    if (!given.epr_k_given) // EPR/ROLE's k from the dataset, resolved and recorded
        given.loss.expected_num_pos = recorded.loss.expected_num_pos;
    char(*paths[][2])[WSML_PATH_MAX] = {{&given.store, &recorded.store},
                                        {&given.pretrained, &recorded.pretrained},
                                        {&given.init, &recorded.init}};
    for (size_t i = 0; i < sizeof paths / sizeof paths[0]; i++) {
        canonical(*paths[i][0], WSML_PATH_MAX);
        canonical(*paths[i][1], WSML_PATH_MAX);
    }
    rc = wsml_train_opts_same_run(&recorded, &given, err);
    if (rc == 0 && given.epochs != recorded.epochs)
        rc = wsml_errf(err, WSML_EARG, "--epochs %d differs from the run's %d", given.epochs,
                       recorded.epochs);
    if (rc < 0) {
        // same_run's hint speaks of resuming; here the run is reused, not resumed
        char *hint = strstr(err->msg, "; a resumed run");
        if (hint)
            *hint = 0;
        wsml_err_prefix(err, "%s", path);
        err->code = WSML_ESTATE;
        return WSML_ESTATE;
    }
    return 0;
}
