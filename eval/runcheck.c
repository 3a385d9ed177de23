// `wsml-eval check-config` (eval/runcheck.h).
#define _GNU_SOURCE
#include "eval/runcheck.h"

#include <jansson.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/fileio.h"
#include "store/store.h"
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

// The store as config.json recorded it (dataset, classes, image size, encoding, split
// counts) against the store at that path now: a store removed and ingested again with
// other flags (INGEST_FLAGS) keeps its path, so the path alone does not tell. Names the
// first difference in err; a store that cannot be opened is not compared (0).
static int store_differs(const char *store_path, const char *config_text, wsml_err *err) {
    wsml_err ignored = {0};
    wsml_store *st = wsml_store_open(store_path, 0, &ignored);
    json_t *j = json_loads(config_text, 0, NULL);
    int rc = 0;
    if (st && j) {
        const wsml_store_meta *m = wsml_store_meta_get(st);
        json_t *ds = json_object_get(j, "dataset"), *enc = json_object_get(j, "encoding");
        json_t *counts = json_object_get(j, "counts");
        char was[128] = "", now[128] = "";
        if (json_is_string(ds) && strcmp(json_string_value(ds), m->name)) {
            snprintf(was, sizeof was, "dataset %s", json_string_value(ds));
            snprintf(now, sizeof now, "dataset %s", m->name);
        } else if (json_integer_value(json_object_get(j, "num_classes")) != m->num_classes ||
                   json_integer_value(json_object_get(j, "height")) != m->height ||
                   json_integer_value(json_object_get(j, "width")) != m->width) {
            snprintf(was, sizeof was, "%lld classes of %lldx%lld images",
                     (long long)json_integer_value(json_object_get(j, "num_classes")),
                     (long long)json_integer_value(json_object_get(j, "height")),
                     (long long)json_integer_value(json_object_get(j, "width")));
            snprintf(now, sizeof now, "%d classes of %dx%d images", m->num_classes, m->height,
                     m->width);
        } else if (json_is_string(enc) &&
                   strcmp(json_string_value(enc), wsml_encoding_name(m->encoding))) {
            snprintf(was, sizeof was, "encoding %s", json_string_value(enc));
            snprintf(now, sizeof now, "encoding %s", wsml_encoding_name(m->encoding));
        } else {
            for (int s = 0; s < WSML_NUM_SPLITS && !was[0]; s++) {
                const char *split = wsml_split_name((wsml_split)s);
                json_int_t n = json_integer_value(json_object_get(counts, split));
                if (json_is_object(counts) && n != (json_int_t)m->count[s]) {
                    snprintf(was, sizeof was, "%lld %s images", (long long)n, split);
                    snprintf(now, sizeof now, "%u %s images", m->count[s], split);
                }
            }
        }
        if (was[0])
            rc = wsml_errf(err, WSML_ESTATE,
                           "the run was trained on %s, the store %s now holds %s (ingested "
                           "again with other flags?)",
                           was, store_path, now);
    }
    json_decref(j);
    if (st)
        wsml_store_close(st);
    return rc;
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
    if (rc < 0) {
        free(text);
        return wsml_err_prefix(err, "%s", path);
    }

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
    if (rc == 0)
        rc = store_differs(given.store, text, err);
    free(text);
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
