// The one predict path (train/predict.h): checkpoints to networks, networks to scores.
#include "train/predict.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/cli.h"
#include "common/log.h"
#include "train/loader.h"

// ---- config from checkpoint ------------------------------------------------------------

// Architecture, width and classes from the checkpoint's tensors (see train/predict.h).
static int config_from_tensors(const wsml_safetensors *st, const char *path, wsml_net_config *cfg,
                               wsml_err *err) {
    const wsml_tensor_view *conv1 = wsml_st_find(st, "conv1.weight");
    const wsml_tensor_view *fc = wsml_st_find(st, "fc.weight");
    if (!conv1 || conv1->ndim != 4 || !fc || fc->ndim != 2)
        return wsml_errf(err, WSML_EFORMAT,
                         "%s: not a ResNet checkpoint (needs conv1.weight (O, 3, 7, 7) and "
                         "fc.weight (C, F))",
                         path);
    int bottleneck = wsml_st_find(st, "layer1.0.conv3.weight") != NULL;
    int layer3_blocks = 0;
    for (;; layer3_blocks++) {
        char name[64];
        snprintf(name, sizeof(name), "layer3.%d.conv1.weight", layer3_blocks);
        if (!wsml_st_find(st, name))
            break;
    }
    if (!bottleneck && layer3_blocks == 2)
        cfg->arch = WSML_ARCH_RESNET18;
    else if (!bottleneck && layer3_blocks == 6)
        cfg->arch = WSML_ARCH_RESNET34;
    else if (bottleneck && layer3_blocks == 6)
        cfg->arch = WSML_ARCH_RESNET50;
    else if (bottleneck && layer3_blocks == 23)
        cfg->arch = WSML_ARCH_RESNET101;
    else
        return wsml_errf(err, WSML_EFORMAT,
                         "%s: unknown ResNet (%s blocks, %d blocks in layer3; expected "
                         "ResNet-18/34/50/101)",
                         path, bottleneck ? "bottleneck" : "basic", layer3_blocks);
    // The stem has base = round(64 · width_mult) outputs (train/net.h), so base / 64
    // rebuilds exactly that base.
    cfg->width_mult = (double)conv1->shape[0] / 64.0;
    cfg->num_classes = (int)fc->shape[0];
    return 0;
}

// Head and alpha: the caller's, else checkpoint metadata, else the run's config.json.
static int head_settings(const char *head_arg, double alpha_arg, const wsml_safetensors *st,
                         const char *model_path, wsml_net_config *cfg, wsml_err *err) {
    char head[64] = "", buf[64];
    double alpha = 0;
    if (head_arg)
        snprintf(head, sizeof(head), "%s", head_arg);
    if (alpha_arg > 0)
        alpha = alpha_arg;
    if (!head[0] && wsml_st_meta(st, "head", buf, sizeof(buf)))
        snprintf(head, sizeof(head), "%s", buf);
    if (alpha <= 0 && wsml_st_meta(st, "alpha", buf, sizeof(buf)))
        wsml_parse_double(buf, 0, HUGE_VAL, &alpha); // unreadable: left to config.json
    if (!head[0] || alpha <= 0) {
        char config_path[4200];
        const char *slash = strrchr(model_path, '/');
        int dir_len = slash ? (int)(slash - model_path) : 1;
        snprintf(config_path, sizeof(config_path), "%.*s/config.json", dir_len,
                 slash ? model_path : ".");
        json_t *root = json_load_file(config_path, 0, NULL);
        json_t *options = json_object_get(root, "options");
        if (!json_is_object(options))
            options = root;
        json_t *h = json_object_get(options, "head"), *a = json_object_get(options, "alpha");
        if (!head[0] && json_is_string(h))
            snprintf(head, sizeof(head), "%s", json_string_value(h));
        if (alpha <= 0 && json_is_number(a))
            alpha = json_number_value(a);
        json_decref(root);
    }
    if (head[0]) {
        int kind = wsml_head_parse(head);
        if (kind < 0)
            return wsml_errf(err, WSML_EARG, "--head %s: expected linear or boostlu", head);
        cfg->head = (wsml_head_kind)kind;
    }
    if (alpha > 0)
        cfg->alpha = (float)alpha;
    return 0;
}

int wsml_checkpoint_config(const wsml_safetensors *st, const char *path, const char *head,
                           double alpha, wsml_net_config *cfg, wsml_err *err) {
    wsml_net_config_default(cfg);
    int rc = config_from_tensors(st, path, cfg, err);
    if (rc == 0)
        rc = head_settings(head, alpha, st, path, cfg, err);
    return rc;
}

int wsml_checkpoint_net(const wsml_safetensors *st, const char *path, const wsml_net_config *cfg,
                        wsml_backend *be, wsml_net **out, wsml_err *err) {
    wsml_net *net = NULL;
    *out = NULL;
    int rc = wsml_net_create(cfg, be, &net, err);
    if (rc)
        return rc;
    if ((rc = wsml_net_load_st(net, st, WSML_NET_LOAD_ALL, err))) {
        wsml_err_prefix(err, "%s", path);
        wsml_net_free(net);
        return rc;
    }
    *out = net;
    return 0;
}

// ---- scores of a split ------------------------------------------------------------------

int wsml_predict_split(wsml_net *net, wsml_store *store, wsml_split split, int batch, int workers,
                       volatile sig_atomic_t *stop, float *scores, int8_t *labels, wsml_err *err) {
    const int64_t n = wsml_store_meta_get(store)->count[split];
    return wsml_predict_split_part(net, store, split, batch, workers, 0, (n + batch - 1) / batch,
                                   stop, scores, labels, err);
}

int wsml_predict_split_part(wsml_net *net, wsml_store *store, wsml_split split, int batch,
                            int workers, int64_t first_batch, int64_t end_batch,
                            volatile sig_atomic_t *stop, float *scores, int8_t *labels,
                            wsml_err *err) {
    const wsml_store_meta *meta = wsml_store_meta_get(store);
    const int64_t total = meta->count[split];
    int64_t end_row = end_batch * batch < total ? end_batch * batch : total;
    const int64_t n = end_row > first_batch * batch ? end_row - first_batch * batch : 0;
    if (n == 0)
        return 0;
    const int c = meta->num_classes;
    if (wsml_net_get_config(net)->num_classes != c)
        return wsml_errf(err, WSML_EFORMAT, "the network has %d classes but store %s has %d",
                         wsml_net_get_config(net)->num_classes, meta->name, c);
    wsml_loader_config lcfg;
    wsml_loader_config_default(&lcfg);
    lcfg.split = split;
    lcfg.batch_size = batch;
    lcfg.num_workers = workers;
    lcfg.shuffle = 0;
    lcfg.flip = 0;
    lcfg.height = meta->height;
    lcfg.width = meta->width;
    lcfg.nhwc = 1; // train/net.h takes NHWC input
    wsml_loader_use_backend(&lcfg, wsml_net_backend(net));
    wsml_loader *loader = wsml_loader_open(store, &lcfg, err);
    if (!loader)
        return err->code < 0 ? err->code : WSML_EIO;
    int rc = wsml_loader_start_epoch(loader, 1, first_batch, err);
    wsml_progress *progress =
        rc == 0 ? wsml_progress_start(wsml_split_name(split), (uint64_t)n, "img") : NULL;
    int64_t seen = 0;
    while (rc == 0 && seen < n) {
        wsml_batch *b = NULL;
        int got = wsml_loader_next(loader, &b, err);
        if (got <= 0) {
            rc = got;
            break;
        }
        if ((rc = wsml_net_forward(net, b->images, b->size, WSML_NET_EVAL, err)))
            break;
        const float *logits = wsml_net_logits(net);
        for (int i = 0; i < b->size; i++) {
            int64_t row = b->index[i];
            // scores: (N, C) probabilities, row = record index
            for (int k = 0; k < c; k++)
                scores[row * c + k] = 1.0f / (1.0f + expf(-logits[(int64_t)i * c + k]));
            memcpy(labels + row * c, b->full + (int64_t)i * c, (size_t)c);
        }
        seen += b->size;
        wsml_progress_add(progress, (uint64_t)b->size);
        if (stop && *stop)
            rc = 1;
    }
    wsml_progress_end(progress);
    wsml_loader_close(loader);
    if (rc == 0 && seen != n)
        rc = wsml_errf(err, WSML_ECORRUPT, "store %s, split %s: %lld records read, %lld expected",
                       meta->name, wsml_split_name(split), (long long)seen, (long long)n);
    return rc;
}

int wsml_predict_checkpoint(wsml_store *store, wsml_split split, const char *model_path,
                            const wsml_predict_opts *opts, float **scores_out, int8_t **labels_out,
                            int64_t *n_out, wsml_err *err) {
    const wsml_store_meta *meta = wsml_store_meta_get(store);
    int64_t n = meta->count[split];
    int c = meta->num_classes;
    int batch = opts->batch > 0 ? opts->batch : 32;
    wsml_safetensors st = {0};
    wsml_backend *be = NULL;
    wsml_net *net = NULL;
    float *scores = NULL;
    int8_t *labels = NULL;
    int rc = wsml_st_read(model_path, &st, err);
    if (rc)
        return rc;

    wsml_net_config cfg;
    if ((rc = wsml_checkpoint_config(&st, model_path, opts->head, opts->alpha, &cfg, err)))
        goto done;
    if (cfg.num_classes != c) {
        rc = wsml_errf(err, WSML_EFORMAT, "%s has %d classes but store %s has %d", model_path,
                       cfg.num_classes, meta->name, c);
        goto done;
    }
    cfg.height = meta->height;
    cfg.width = meta->width;
    cfg.max_batch = batch;

    wsml_backend_options bopt = {.num_threads = opts->threads, .device = opts->device};
    if (opts->precision)
        bopt.precision = (wsml_precision)wsml_precision_parse(opts->precision);
    if ((rc = wsml_backend_create(opts->backend ? opts->backend : "cpu", &bopt, &be, err)))
        goto done;
    if ((rc = wsml_checkpoint_net(&st, model_path, &cfg, be, &net, err)))
        goto done;
    wsml_st_free(&st); // the weights now live in the network
    memset(&st, 0, sizeof(st));

    scores = malloc((size_t)(n * c) * sizeof(float) + 1);
    labels = malloc((size_t)(n * c) + 1);
    if (!scores || !labels) {
        rc = wsml_errf(err, WSML_ENOMEM, "out of memory for %lld x %d scores", (long long)n, c);
        goto done;
    }
    rc = wsml_predict_split(net, store, split, batch, opts->workers > 0 ? opts->workers : 2, NULL,
                            scores, labels, err);
    if (rc)
        goto done;
    *scores_out = scores;
    *labels_out = labels;
    *n_out = n;
    scores = NULL;
    labels = NULL;
done:
    wsml_net_free(net);
    wsml_backend_destroy(be);
    wsml_st_free(&st);
    free(scores);
    free(labels);
    return rc;
}
