// wsml-train's options: defaults, the paper recipe, checks, and config.json's
// "options" object (train/trainer.h).
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "train/backend.h"
#include "train/trainer.h"

void wsml_train_opts_default(wsml_train_opts *o) {
    memset(o, 0, sizeof *o);
    snprintf(o->arch, sizeof o->arch, "resnet18");
    o->width_mult = 1.0;
    snprintf(o->head, sizeof o->head, "linear");
    o->alpha = 5.0; // BoostLU's default (docs/methods.md §2)
    wsml_loss_config_default(&o->loss);
    o->optimizer = WSML_OPTIM_ADAM;
    o->lr = 1e-4;
    o->lr_mult = 10.0;
    o->epochs = 10;
    o->batch = 16;
    o->seed = 1;
    o->flip = 1;
    o->shuffle = 1;
    o->early_stop = 1;
    snprintf(o->backend, sizeof o->backend, "cpu");
    snprintf(o->precision, sizeof o->precision, "tf32");
    o->threads = 0; // resolved to the online CPUs at the start of a run
    o->workers = 2;
    o->save_every = 200;
}

void wsml_train_opts_paper(wsml_train_opts *o) {
    // docs/methods.md §3: ResNet-50 (ImageNet weights via --pretrained), 448x448 (the store's
    // size), flip, batch 16, Adam, lr 1e-5, head 10x, 10 epochs, best-val selection,
    // the reference's early stop.
    snprintf(o->arch, sizeof o->arch, "resnet50");
    o->width_mult = 1.0;
    o->optimizer = WSML_OPTIM_ADAM;
    o->lr = 1e-5;
    o->lr_mult = 10.0;
    o->epochs = 10;
    o->batch = 16;
    o->flip = 1;
    o->shuffle = 1;
    o->early_stop = 1;
    snprintf(o->recipe, sizeof o->recipe, "paper");
}

int wsml_train_opts_check(const wsml_train_opts *o, wsml_err *err) {
    if (!o->store[0])
        return wsml_errf(err, WSML_EARG, "--store is required");
    if (!o->out[0])
        return wsml_errf(err, WSML_EARG, "--out is required");
    static const char *archs[] = {"resnet18", "resnet34", "resnet50", "resnet101"};
    int ok = 0;
    for (size_t i = 0; i < sizeof archs / sizeof *archs; i++)
        ok |= !strcmp(o->arch, archs[i]);
    if (!ok)
        return wsml_errf(err, WSML_EARG,
                         "--arch %s: expected resnet18, resnet34, resnet50 or resnet101", o->arch);
    if (!(o->width_mult > 0 && o->width_mult <= 4))
        return wsml_errf(err, WSML_EARG, "--width-mult %g: expected a value in (0, 4]",
                         o->width_mult);
    if (strcmp(o->head, "linear") && strcmp(o->head, "boostlu"))
        return wsml_errf(err, WSML_EARG, "--head %s: expected linear or boostlu", o->head);
    if (!isfinite(o->alpha) || o->alpha <= 0)
        return wsml_errf(err, WSML_EARG, "--alpha %g: must be a positive number", o->alpha);
    if (o->pretrained[0] && o->init[0])
        return wsml_errf(err, WSML_EARG,
                         "--pretrained and --init exclude each other (--init holds a whole "
                         "network, head included)");
    if (o->freeze_backbone && !o->pretrained[0] && !o->init[0])
        return wsml_errf(err, WSML_EARG,
                         "--freeze-backbone needs trained backbone weights: give --init CKPT "
                         "or --pretrained FILE");
    if (!(o->lr > 0 && isfinite(o->lr)))
        return wsml_errf(err, WSML_EARG, "--lr %g: must be a positive number", o->lr);
    if (!(o->lr_mult > 0 && isfinite(o->lr_mult)))
        return wsml_errf(err, WSML_EARG, "--lr-mult %g: must be a positive number", o->lr_mult);
    if (o->epochs < 1 || o->epochs > 100000)
        return wsml_errf(err, WSML_EARG, "--epochs %d: expected 1..100000", o->epochs);
    if (o->batch < 1 || o->batch > 65536)
        return wsml_errf(err, WSML_EARG, "--batch %d: expected 1..65536", o->batch);
    if (o->max_steps < 0)
        return wsml_errf(err, WSML_EARG, "--max-steps %lld: must be >= 0", (long long)o->max_steps);
    if (strcmp(o->backend, "cpu") && strcmp(o->backend, "cuda"))
        return wsml_errf(err, WSML_EARG, "--backend %s: expected cpu or cuda", o->backend);
    if (wsml_precision_parse(o->precision) < 0)
        return wsml_errf(err, WSML_EARG, "--precision %s: expected fp32, tf32 or bf16",
                         o->precision);
    if (!strcmp(o->precision, "bf16") && strcmp(o->backend, "cuda"))
        return wsml_errf(err, WSML_EARG,
                         "--precision bf16 needs --backend cuda (the cpu backend computes in "
                         "fp32; tf32 runs as fp32 there)");
    if (o->threads < 0 || o->threads > 1024)
        return wsml_errf(err, WSML_EARG, "--threads %d: expected 1..1024 (0 = all CPUs)",
                         o->threads);
    if (o->workers < 1 || o->workers > 256)
        return wsml_errf(err, WSML_EARG, "--workers %d: expected 1..256", o->workers);
    if (o->save_every < 0)
        return wsml_errf(err, WSML_EARG, "--save-every %d: must be >= 0", o->save_every);
    if (o->resume && o->force)
        return wsml_errf(err, WSML_EARG, "--resume and --force exclude each other");
    if (o->epr_k_given && !(o->loss.expected_num_pos > 0 && isfinite(o->loss.expected_num_pos)))
        return wsml_errf(err, WSML_EARG, "--epr-k %g: must be a positive number",
                         o->loss.expected_num_pos);
    if (o->loss.reference_quirks && !wsml_loss_is_large_loss(o->loss.kind))
        return wsml_errf(err, WSML_EARG,
                         "--reference-quirks only changes ll-r, ll-ct and ll-cp (got --loss %s)",
                         wsml_loss_kind_name(o->loss.kind));
    // The remaining loss ranges (Δrel, R0, Δabs, ls) are the loss module's to judge;
    // EPR/ROLE's k may still come from the store, and C is checked again with the store.
    wsml_loss_config loss = o->loss;
    if (!o->epr_k_given)
        loss.expected_num_pos = 1.0;
    return wsml_loss_config_check(&loss, 2, err);
}

// ---- config.json "options" -----------------------------------------------------------

char *wsml_train_opts_to_json(const wsml_train_opts *o) {
    json_t *j = json_object();
    json_object_set_new(j, "store", json_string(o->store));
    json_object_set_new(j, "out", json_string(o->out));
    json_object_set_new(j, "arch", json_string(o->arch));
    json_object_set_new(j, "width_mult", json_real(o->width_mult));
    json_object_set_new(j, "head", json_string(o->head));
    json_object_set_new(j, "alpha", json_real(o->alpha));
    json_object_set_new(j, "pretrained", json_string(o->pretrained));
    json_object_set_new(j, "init", json_string(o->init));
    json_object_set_new(j, "freeze_backbone", json_boolean(o->freeze_backbone));
    json_object_set_new(j, "loss", json_string(wsml_loss_kind_name(o->loss.kind)));
    json_object_set_new(j, "threshold", json_string(wsml_threshold_kind_name(o->loss.threshold)));
    json_object_set_new(j, "delta_rel", json_real(o->loss.delta_rel_percent));
    json_object_set_new(j, "r0", json_real(o->loss.r0));
    json_object_set_new(j, "delta_abs", json_real(o->loss.delta_abs));
    json_object_set_new(j, "ls", json_real(o->loss.ls_coef));
    json_object_set_new(j, "epr_k", json_real(o->loss.expected_num_pos));
    json_object_set_new(j, "epr_k_given", json_boolean(o->epr_k_given));
    json_object_set_new(j, "reference_quirks", json_boolean(o->loss.reference_quirks));
    json_object_set_new(j, "optimizer", json_string(wsml_optim_kind_name(o->optimizer)));
    json_object_set_new(j, "lr", json_real(o->lr));
    json_object_set_new(j, "lr_mult", json_real(o->lr_mult));
    json_object_set_new(j, "epochs", json_integer(o->epochs));
    json_object_set_new(j, "batch", json_integer(o->batch));
    json_object_set_new(j, "seed", json_integer(o->seed));
    json_object_set_new(j, "flip", json_boolean(o->flip));
    json_object_set_new(j, "shuffle", json_boolean(o->shuffle));
    json_object_set_new(j, "early_stop", json_boolean(o->early_stop));
    json_object_set_new(j, "max_steps", json_integer(o->max_steps));
    json_object_set_new(j, "backend", json_string(o->backend));
    json_object_set_new(j, "precision", json_string(o->precision));
    json_object_set_new(j, "threads", json_integer(o->threads));
    json_object_set_new(j, "workers", json_integer(o->workers));
    json_object_set_new(j, "save_every", json_integer(o->save_every));
    json_object_set_new(j, "trace", json_boolean(o->trace));
    json_object_set_new(j, "recipe", json_string(o->recipe));
    // %.17g keeps every double exact through a round trip.
    char *s = json_dumps(j, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
    json_decref(j);
    return s;
}

static int get_str(json_t *j, const char *key, char *dst, size_t cap, wsml_err *err) {
    json_t *v = json_object_get(j, key);
    if (!v)
        return 0;
    if (!json_is_string(v) || strlen(json_string_value(v)) >= cap)
        return wsml_errf(err, WSML_EFORMAT, "config.json: \"%s\" must be a string (< %zu bytes)",
                         key, cap);
    snprintf(dst, cap, "%s", json_string_value(v));
    return 0;
}

static int get_num(json_t *j, const char *key, double *dst, wsml_err *err) {
    json_t *v = json_object_get(j, key);
    if (!v)
        return 0;
    if (!json_is_number(v))
        return wsml_errf(err, WSML_EFORMAT, "config.json: \"%s\" must be a number", key);
    *dst = json_number_value(v);
    return 0;
}

static int get_int(json_t *j, const char *key, int64_t *dst, wsml_err *err) {
    json_t *v = json_object_get(j, key);
    if (!v)
        return 0;
    if (!json_is_integer(v))
        return wsml_errf(err, WSML_EFORMAT, "config.json: \"%s\" must be an integer", key);
    *dst = json_integer_value(v);
    return 0;
}

static int get_bool(json_t *j, const char *key, int *dst, wsml_err *err) {
    json_t *v = json_object_get(j, key);
    if (!v)
        return 0;
    if (!json_is_boolean(v))
        return wsml_errf(err, WSML_EFORMAT, "config.json: \"%s\" must be true or false", key);
    *dst = json_is_true(v);
    return 0;
}

int wsml_train_opts_from_json(const char *json_text, wsml_train_opts *o, wsml_err *err) {
    json_error_t jerr;
    json_t *j = json_loads(json_text, 0, &jerr);
    if (!j || !json_is_object(j)) {
        if (j)
            json_decref(j);
        return wsml_errf(err, WSML_EFORMAT, "config.json: line %d: %s", jerr.line, jerr.text);
    }
    char loss[32] = "", threshold[32] = "", optimizer[32] = "";
    int64_t epochs = o->epochs, batch = o->batch, seed = o->seed, threads = o->threads,
            workers = o->workers, save_every = o->save_every, max_steps = o->max_steps;
    int rc = 0;
#define TRY(x)                                                                                     \
    if (rc == 0)                                                                                   \
    rc = (x)
    TRY(get_str(j, "store", o->store, sizeof o->store, err));
    TRY(get_str(j, "out", o->out, sizeof o->out, err));
    TRY(get_str(j, "arch", o->arch, sizeof o->arch, err));
    TRY(get_num(j, "width_mult", &o->width_mult, err));
    TRY(get_str(j, "head", o->head, sizeof o->head, err));
    TRY(get_num(j, "alpha", &o->alpha, err));
    TRY(get_str(j, "pretrained", o->pretrained, sizeof o->pretrained, err));
    TRY(get_str(j, "init", o->init, sizeof o->init, err));
    TRY(get_bool(j, "freeze_backbone", &o->freeze_backbone, err));
    TRY(get_str(j, "loss", loss, sizeof loss, err));
    TRY(get_str(j, "threshold", threshold, sizeof threshold, err));
    TRY(get_num(j, "delta_rel", &o->loss.delta_rel_percent, err));
    TRY(get_num(j, "r0", &o->loss.r0, err));
    TRY(get_num(j, "delta_abs", &o->loss.delta_abs, err));
    TRY(get_num(j, "ls", &o->loss.ls_coef, err));
    TRY(get_num(j, "epr_k", &o->loss.expected_num_pos, err));
    TRY(get_bool(j, "epr_k_given", &o->epr_k_given, err));
    TRY(get_bool(j, "reference_quirks", &o->loss.reference_quirks, err));
    TRY(get_str(j, "optimizer", optimizer, sizeof optimizer, err));
    TRY(get_num(j, "lr", &o->lr, err));
    TRY(get_num(j, "lr_mult", &o->lr_mult, err));
    TRY(get_int(j, "epochs", &epochs, err));
    TRY(get_int(j, "batch", &batch, err));
    TRY(get_int(j, "seed", &seed, err));
    TRY(get_bool(j, "flip", &o->flip, err));
    TRY(get_bool(j, "shuffle", &o->shuffle, err));
    TRY(get_bool(j, "early_stop", &o->early_stop, err));
    TRY(get_int(j, "max_steps", &max_steps, err));
    TRY(get_str(j, "backend", o->backend, sizeof o->backend, err));
    TRY(get_str(j, "precision", o->precision, sizeof o->precision, err));
    TRY(get_int(j, "threads", &threads, err));
    TRY(get_int(j, "workers", &workers, err));
    TRY(get_int(j, "save_every", &save_every, err));
    TRY(get_bool(j, "trace", &o->trace, err));
    TRY(get_str(j, "recipe", o->recipe, sizeof o->recipe, err));
#undef TRY
    json_decref(j);
    if (rc < 0)
        return rc;
    if (loss[0]) {
        int k = wsml_loss_kind_parse(loss);
        if (k < 0)
            return wsml_errf(err, WSML_EFORMAT, "config.json: unknown loss \"%s\"", loss);
        o->loss.kind = (wsml_loss_kind)k;
    }
    if (threshold[0]) {
        int k = wsml_threshold_kind_parse(threshold);
        if (k < 0)
            return wsml_errf(err, WSML_EFORMAT, "config.json: unknown threshold \"%s\"", threshold);
        o->loss.threshold = (wsml_threshold_kind)k;
    }
    if (optimizer[0]) {
        int k = wsml_optim_kind_parse(optimizer);
        if (k < 0)
            return wsml_errf(err, WSML_EFORMAT, "config.json: unknown optimizer \"%s\"", optimizer);
        o->optimizer = (wsml_optim_kind)k;
    }
    if (seed < 0 || seed > UINT32_MAX)
        return wsml_errf(err, WSML_EFORMAT, "config.json: seed %lld out of range", (long long)seed);
    o->epochs = (int)epochs;
    o->batch = (int)batch;
    o->seed = (uint32_t)seed;
    o->threads = (int)threads;
    o->workers = (int)workers;
    o->save_every = (int)save_every;
    o->max_steps = max_steps;
    return 0;
}

int wsml_train_opts_same_run(const wsml_train_opts *a, const wsml_train_opts *b, wsml_err *err) {
    const char *hint = "; a resumed run needs the values it started with (config.json)";
#define SAME_STR(field, flag)                                                                      \
    if (strcmp(a->field, b->field))                                                                \
    return wsml_errf(err, WSML_EARG, "%s '%s' differs from the run's '%s'%s", flag, b->field,      \
                     a->field, hint)
#define SAME_NUM(field, flag)                                                                      \
    if (a->field != b->field)                                                                      \
    return wsml_errf(err, WSML_EARG, "%s %.17g differs from the run's %.17g%s", flag,              \
                     (double)b->field, (double)a->field, hint)
    SAME_STR(arch, "--arch");
    SAME_NUM(width_mult, "--width-mult");
    SAME_STR(head, "--head");
    SAME_NUM(alpha, "--alpha");
    SAME_STR(pretrained, "--pretrained");
    SAME_STR(init, "--init");
    SAME_NUM(freeze_backbone, "--freeze-backbone");
    if (a->loss.kind != b->loss.kind)
        return wsml_errf(err, WSML_EARG, "--loss %s differs from the run's %s%s",
                         wsml_loss_kind_name(b->loss.kind), wsml_loss_kind_name(a->loss.kind),
                         hint);
    if (a->loss.threshold != b->loss.threshold)
        return wsml_errf(err, WSML_EARG, "--threshold %s differs from the run's %s%s",
                         wsml_threshold_kind_name(b->loss.threshold),
                         wsml_threshold_kind_name(a->loss.threshold), hint);
    SAME_NUM(loss.delta_rel_percent, "--delta-rel");
    SAME_NUM(loss.r0, "--r0");
    SAME_NUM(loss.delta_abs, "--delta-abs");
    SAME_NUM(loss.ls_coef, "--ls");
    SAME_NUM(loss.expected_num_pos, "--epr-k");
    SAME_NUM(loss.reference_quirks, "--reference-quirks");
    if (a->optimizer != b->optimizer)
        return wsml_errf(err, WSML_EARG, "--optimizer %s differs from the run's %s%s",
                         wsml_optim_kind_name(b->optimizer), wsml_optim_kind_name(a->optimizer),
                         hint);
    SAME_NUM(lr, "--lr");
    SAME_NUM(lr_mult, "--lr-mult");
    SAME_NUM(batch, "--batch");
    SAME_NUM(seed, "--seed");
    SAME_NUM(flip, "--flip");
    SAME_NUM(shuffle, "--shuffle");
    SAME_NUM(early_stop, "--early-stop");
    SAME_STR(backend, "--backend");
    SAME_STR(precision, "--precision");
    SAME_NUM(threads, "--threads");
#undef SAME_STR
#undef SAME_NUM
    return 0;
}
