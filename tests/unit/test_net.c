// train/resnet.c + train/backend_cpu.c against PyTorch/torchvision
// (tests/oracles/net_ref.py, Debian python3-torch).
//
// For each case the oracle writes torchvision weights (random, with random BN affine
// parameters and running statistics) and a batch; we load the same safetensors, run
//   eval forward            -> logits vs torchvision in float64
//   train forward, backward of sum(logits · R)
//                           -> logits, every parameter gradient, running statistics,
//                              num_batches_tracked vs torchvision in float64 run with
//                              OUR ReLU / max-pool / BoostLU decisions (see net_ref.py
//                              "replay" for why), and every decision of ours must be
//                              float64's own or a near-tie (margin <= 1e-4)
// Metric, per tensor: err = max_i |ours_i − ref_i| / max_i |ref_i|, required <= 1e-4.
// (The reference is float64 rounded to float32, so err also bounds our float32 error.)
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/rng.h"
#include "common/safetensors.h"
#include "train/backend.h"
#include "train/net.h"

#define TOL 1e-4

typedef struct {
    const char *arch;
    int base; // stem width; width_mult = base / 64
    int classes, height, width, batch;
    const char *head;
    double alpha;
    int seed;
    int threads;
    size_t workspace_bytes; // 0: default; small: forces im2col in chunks
} net_case;

static const char *python(void) {
    const char *p = getenv("PYTHON");
    return p && *p ? p : "/usr/bin/python3";
}

static const char *oracle(void) {
    static char path[1024];
    const char *tests = getenv("WSML_TESTS");
    snprintf(path, sizeof(path), "%s/oracles/net_ref.py", tests && *tests ? tests : "tests");
    return path;
}

static void run_oracle(const char *cmd, const net_case *c, const char *dir) {
    char line[4096];
    snprintf(line, sizeof(line),
             "%s -W ignore %s %s --arch %s --base %d --classes %d --height %d --width %d "
             "--batch %d --head %s --alpha %g --seed %d --out %s",
             python(), oracle(), cmd, c->arch, c->base, c->classes, c->height, c->width, c->batch,
             c->head, c->alpha, c->seed, dir);
    int status = system(line);
    cr_assert_eq(status, 0, "oracle failed (%d): %s", status, line);
}

static void make_dir(char *dir) {
    strcpy(dir, "/tmp/wsml-test-net-XXXXXX");
    cr_assert(mkdtemp(dir), "mkdtemp");
}

static void remove_dir(const char *dir) {
    char cmd[256];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    cr_assert_eq(system(cmd), 0);
}

static void read_st(const char *dir, const char *file, wsml_safetensors *st) {
    char path[512];
    wsml_err err;
    snprintf(path, sizeof(path), "%s/%s", dir, file);
    cr_assert_eq(wsml_st_read(path, st, &err), 0, "%s", err.msg);
}

// The reference tensor as float (must exist with `count` elements).
static float *ref_f32(const wsml_safetensors *st, const char *name, size_t count) {
    const wsml_tensor_view *v = wsml_st_find(st, name);
    cr_assert(v, "oracle output lacks %s", name);
    cr_assert_eq(v->count, count, "%s: %zu elements, expected %zu", name, v->count, count);
    cr_assert_eq(v->dtype, WSML_DT_F32, "%s: not F32", name);
    float *out = malloc(count * sizeof(float));
    cr_assert(out);
    memcpy(out, v->data, count * sizeof(float));
    return out;
}

// max |a − b| / max |b| (0 when b is all zero and a equals it).
static double rel_err(const float *a, const float *b, size_t n) {
    double maxb = 0, maxd = 0;
    for (size_t i = 0; i < n; i++) {
        maxb = fmax(maxb, fabs(b[i]));
        double d = fabs((double)a[i] - (double)b[i]);
        if (isnan(a[i]) || isnan(b[i]))
            d = INFINITY;
        maxd = fmax(maxd, d);
    }
    return maxb > 0 ? maxd / maxb : maxd;
}

typedef struct {
    double worst;
    char worst_name[96];
    int tensors;
    int relaxed; // tensors above TOL but within 2x PyTorch's own float32 error
} tally;

// err <= TOL, or, where the instance itself amplifies float32 rounding beyond TOL (deep
// tiny nets in train-mode BN), err <= 2 x PyTorch's own float32 error on that tensor with
// the same decisions (torch32 < 0: not known, TOL only).
static void check2(tally *t, const char *name, const float *ours, const float *ref, size_t n,
                   double torch32) {
    double e = rel_err(ours, ref, n);
    t->tensors++;
    if (e >= t->worst) {
        t->worst = e;
        snprintf(t->worst_name, sizeof(t->worst_name), "%s", name);
    }
    if (e > TOL && e <= 2 * torch32)
        t->relaxed++;
    cr_expect(e <= TOL || e <= 2 * torch32,
              "%s: relative error %.3g > %g (PyTorch float32 on this tensor: %.3g)", name, e, TOL,
              torch32);
}

static void check(tally *t, const char *name, const float *ours, const float *ref, size_t n) {
    check2(t, name, ours, ref, n, -1.0);
}

// PyTorch's float32 error of a replayed tensor (net_ref.py replay metadata).
static double torch32_err(const wsml_safetensors *replay, const char *name) {
    char key[160], buf[64];
    snprintf(key, sizeof(key), "torch32_err.%s", name);
    const char *v = wsml_st_meta(replay, key, buf, sizeof(buf));
    cr_assert(v, "replay metadata lacks %s", key);
    return atof(v);
}

static wsml_backend *make_backend(const net_case *c) {
    wsml_backend_options opt = {.num_threads = c->threads, .workspace_bytes = c->workspace_bytes};
    wsml_backend *be;
    wsml_err err;
    cr_assert_eq(wsml_backend_create("cpu", &opt, &be, &err), 0, "%s", err.msg);
    return be;
}

static wsml_net *make_net(const net_case *c, wsml_backend *be) {
    wsml_net_config cfg;
    wsml_net_config_default(&cfg);
    cfg.arch = (wsml_arch)wsml_arch_parse(c->arch);
    cfg.width_mult = c->base / 64.0;
    cfg.num_classes = c->classes;
    cfg.head = (wsml_head_kind)wsml_head_parse(c->head);
    cfg.alpha = (float)c->alpha;
    cfg.height = c->height;
    cfg.width = c->width;
    cfg.max_batch = c->batch;
    wsml_net *net;
    wsml_err err;
    cr_assert_eq(wsml_net_create(&cfg, be, &net, &err), 0, "%s", err.msg);
    return net;
}

// Our decisions for the replay: every unit's output, the max pool's argmax, the CAM.
static void write_decisions(wsml_net *net, const net_case *c, const char *dir) {
    wsml_err err;
    size_t nt = wsml_net_num_tensors(net), nv = 0;
    wsml_tensor_view *views = calloc(nt + 2, sizeof(*views));
    char(*names)[112] = calloc(nt + 2, sizeof(*names));
    size_t cap = (size_t)c->batch * c->height * c->width * 64 * 4;
    for (size_t i = 0; i < nt; i++) {
        const wsml_net_tensor_info *t = wsml_net_tensor(net, i);
        if (t->kind != WSML_NET_COUNTER)
            continue; // one per BN: its module name
        size_t len = strlen(t->name) - strlen(".num_batches_tracked");
        char bn[96];
        memcpy(bn, t->name, len);
        bn[len] = 0;
        float *a = malloc(cap * sizeof(float));
        size_t count;
        cr_assert_eq(wsml_net_read_activation(net, bn, a, cap, &count, &err), 0, "%s", err.msg);
        snprintf(names[nv], sizeof(names[nv]), "act.%s", bn);
        // NHWC (n, h, w, C); the replay checks every shape against torchvision's
        int hh, ww, C;
        cr_assert_eq(wsml_net_activation_shape(net, bn, &hh, &ww, &C, &err), 0, "%s", err.msg);
        cr_assert_eq(C, (int)wsml_net_tensor(net, i - 2)->count, "%s: channels", bn);
        views[nv] = (wsml_tensor_view){.name = names[nv],
                                       .dtype = WSML_DT_F32,
                                       .ndim = 4,
                                       .shape = {c->batch, hh, ww, C},
                                       .count = count,
                                       .data = a,
                                       .nbytes = count * sizeof(float)};
        cr_assert_eq((size_t)c->batch * hh * ww * C, count, "%s: shape", bn);
        nv++;
    }
    int32_t *argmax = malloc(cap * sizeof(int32_t));
    size_t count;
    cr_assert_eq(wsml_net_read_maxpool_argmax(net, argmax, cap, &count, &err), 0, "%s", err.msg);
    int ph, pw, pc;
    cr_assert_eq(wsml_net_activation_shape(net, "maxpool", &ph, &pw, &pc, &err), 0, "%s", err.msg);
    cr_assert_eq(pc, c->base);
    cr_assert_eq(count, (size_t)c->batch * ph * pw * pc);
    views[nv++] = (wsml_tensor_view){.name = "maxpool.argmax",
                                     .dtype = WSML_DT_I32,
                                     .ndim = 4,
                                     .shape = {c->batch, ph, pw, pc},
                                     .count = count,
                                     .data = argmax,
                                     .nbytes = count * sizeof(int32_t)};
    if (strcmp(c->head, "boostlu") == 0) {
        float *cam = malloc(cap * sizeof(float));
        cr_assert_eq(wsml_net_read_activation(net, "cam", cam, cap, &count, &err), 0, "%s",
                     err.msg);
        int fh, fw, fc;
        cr_assert_eq(wsml_net_activation_shape(net, "cam", &fh, &fw, &fc, &err), 0, "%s", err.msg);
        cr_assert_eq(fh, wsml_net_feature_side(c->height));
        cr_assert_eq(fw, wsml_net_feature_side(c->width));
        cr_assert_eq(count, (size_t)c->batch * fh * fw * fc);
        views[nv++] = (wsml_tensor_view){.name = "cam",
                                         .dtype = WSML_DT_F32,
                                         .ndim = 4,
                                         .shape = {c->batch, fh, fw, c->classes},
                                         .count = count,
                                         .data = cam,
                                         .nbytes = count * sizeof(float)};
    }
    char path[512];
    snprintf(path, sizeof(path), "%s/decisions.safetensors", dir);
    cr_assert_eq(wsml_st_write(path, views, nv, NULL, &err), 0, "%s", err.msg);
    for (size_t i = 0; i < nv; i++)
        free((void *)views[i].data);
    free(views);
    free(names);
}

static void run_case(const net_case *c) {
    char dir[64];
    make_dir(dir);
    run_oracle("forward", c, dir);
    wsml_safetensors weights, expected, replay;
    read_st(dir, "weights.safetensors", &weights);
    read_st(dir, "expected.safetensors", &expected);

    wsml_backend *be = make_backend(c);
    wsml_net *net = make_net(c, be);
    wsml_err err;
    char path[512];
    snprintf(path, sizeof(path), "%s/weights.safetensors", dir);
    cr_assert_eq(wsml_net_load(net, path, WSML_NET_LOAD_ALL, &err), 0, "%s", err.msg);

    const size_t B = c->batch, C = c->classes;
    float *input = ref_f32(&expected, "input", B * c->height * c->width * 3);
    float *R = ref_f32(&expected, "R", B * C);
    tally fwd = {0}, grads = {0}, stats = {0};

    // eval mode: running statistics
    cr_assert_eq(wsml_net_forward(net, input, (int)B, WSML_NET_EVAL, &err), 0, "%s", err.msg);
    float *ref = ref_f32(&expected, "logits_eval", B * C);
    check(&fwd, "logits_eval", wsml_net_logits(net), ref, B * C);
    free(ref);

    // train mode: batch statistics, backward of sum(logits · R)
    cr_assert_eq(wsml_net_zero_grad(net, &err), 0);
    cr_assert_eq(wsml_net_forward(net, input, (int)B, WSML_NET_TRAIN, &err), 0, "%s", err.msg);
    float *logits_train = malloc(B * C * sizeof(float));
    memcpy(logits_train, wsml_net_logits(net), B * C * sizeof(float));
    cr_assert_eq(wsml_net_backward(net, R, &err), 0, "%s", err.msg);
    write_decisions(net, c, dir);
    // Checkpoint round trip (after the running statistics moved): the replay also loads
    // our file into torchvision (strict) and runs it in eval mode; it must give our
    // eval-mode logits. The extra tensor stands for optimizer state (dropped there).
    snprintf(path, sizeof(path), "%s/ckpt.safetensors", dir);
    wsml_tensor_view extra = {.name = "optim.extra",
                              .dtype = WSML_DT_F32,
                              .ndim = 1,
                              .shape = {2},
                              .count = 2,
                              .data = R,
                              .nbytes = 8};
    cr_assert_eq(wsml_net_save(net, path, &extra, 1, "{\"arch\": \"x\"}", &err), 0, "%s", err.msg);
    cr_assert_eq(wsml_net_forward(net, input, (int)B, WSML_NET_EVAL, &err), 0, "%s", err.msg);
    float *ours_eval = malloc(B * C * sizeof(float));
    memcpy(ours_eval, wsml_net_logits(net), B * C * sizeof(float));
    run_oracle("replay", c, dir);
    read_st(dir, "replay.safetensors", &replay);
    ref = ref_f32(&replay, "ckpt_logits_eval", B * C);
    tally rt = {0};
    check(&rt, "torchvision eval logits of our checkpoint", ours_eval, ref, B * C);
    free(ref);
    char buf[64];
    const char *flips = wsml_st_meta(&replay, "flips", buf, sizeof(buf));
    cr_assert(flips);
    long num_flips = atol(flips);
    double margin = atof(wsml_st_meta(&replay, "flip_margin", buf, sizeof(buf)));
    cr_expect(margin <= TOL,
              "a ReLU/max-pool/BoostLU decision differs from float64's with "
              "margin %.3g (%ld differ)",
              margin, num_flips);
    ref = ref_f32(&replay, "logits_train", B * C);
    double worst_torch32 = torch32_err(&replay, "logits_train");
    check2(&fwd, "logits_train", logits_train, ref, B * C, worst_torch32);
    free(ref);

    for (size_t i = 0; i < wsml_net_num_tensors(net); i++) {
        const wsml_net_tensor_info *t = wsml_net_tensor(net, i);
        char name[128];
        if (t->kind == WSML_NET_COUNTER) {
            const wsml_tensor_view *v = wsml_st_find(&weights, t->name);
            cr_assert(v && v->dtype == WSML_DT_I64);
            int64_t before, now;
            memcpy(&before, v->data, sizeof(before));
            cr_assert_eq(wsml_net_read_tensor(net, i, &now, &err), 0);
            cr_expect_eq(now, before + 1, "%s: %lld, expected %lld", t->name, (long long)now,
                         (long long)before + 1);
            continue;
        }
        float *ours = malloc(t->count * sizeof(float));
        if (t->kind == WSML_NET_PARAM) {
            cr_assert_eq(wsml_net_read_grad(net, i, ours, &err), 0, "%s", err.msg);
            snprintf(name, sizeof(name), "grad.%s", t->name);
            ref = ref_f32(&replay, name, t->count);
            double t32 = torch32_err(&replay, name);
            worst_torch32 = fmax(worst_torch32, t32);
            check2(&grads, name, ours, ref, t->count, t32);
        } else {
            cr_assert_eq(wsml_net_read_tensor(net, i, ours, &err), 0, "%s", err.msg);
            snprintf(name, sizeof(name), "after.%s", t->name);
            ref = ref_f32(&replay, name, t->count);
            check2(&stats, name, ours, ref, t->count, torch32_err(&replay, name));
        }
        free(ref);
        free(ours);
    }
    printf("net: %s base %d %dx%d batch %d %s: logits err %.2g (%s); %d grads, worst %.2g "
           "(%s), %d above %g but within 2x PyTorch float32; %d running stats, worst %.2g; "
           "%ld decisions differ from float64 (margin <= %.2g); PyTorch float32 worst %.2g\n",
           c->arch, c->base, c->height, c->width, c->batch, c->head, fwd.worst, fwd.worst_name,
           grads.tensors, grads.worst, grads.worst_name, grads.relaxed + fwd.relaxed, TOL,
           stats.tensors, stats.worst, num_flips, margin, worst_torch32);

    // LinearInit (Cole et al.'s linear phase on pre-extracted features): a frozen backbone
    // runs in eval mode even in a train forward — its logits are torchvision's eval-mode
    // logits of the same weights (the checkpoint above), the BN running statistics do not
    // move — and backward gives the backbone no gradient; fc.bias's gradient is then
    // Σ_b R[b, c] exactly as for any linear head (fc.weight's is checked against PyTorch
    // through whole training steps in tests/e2e/train_linearinit.sh).
    wsml_net_set_frozen_backbone(net, 1);
    size_t nbuf = wsml_net_num_buffer_floats(net);
    float *stats_before = malloc(nbuf * sizeof(float) + 4);
    memcpy(stats_before, wsml_net_buffers(net), nbuf * sizeof(float));
    cr_assert_eq(wsml_net_zero_grad(net, &err), 0);
    cr_assert_eq(wsml_net_forward(net, input, (int)B, WSML_NET_TRAIN, &err), 0, "%s", err.msg);
    ref = ref_f32(&replay, "ckpt_logits_eval", B * C);
    tally fz = {0};
    check(&fz, "frozen train-mode logits vs torchvision eval", wsml_net_logits(net), ref, B * C);
    free(ref);
    cr_expect_eq(memcmp(stats_before, wsml_net_buffers(net), nbuf * sizeof(float)), 0,
                 "a frozen backbone's train forward moved the BN running statistics");
    free(stats_before);
    cr_assert_eq(wsml_net_backward(net, R, &err), 0, "%s", err.msg);
    const float *g = wsml_net_grads(net);
    size_t nonzero = 0;
    for (size_t k = 0; k < wsml_net_num_backbone_params(net); k++)
        nonzero += g[k] != 0.0f;
    cr_expect_eq(nonzero, 0, "frozen backbone: %zu backbone gradients are not zero", nonzero);
    if (!strcmp(c->head, "linear")) {
        int64_t i = wsml_net_find_tensor(net, "fc.bias");
        const wsml_net_tensor_info *t = wsml_net_tensor(net, (size_t)i);
        cr_assert(t && t->is_head && t->count == (size_t)C);
        float *ours = malloc(t->count * sizeof(float));
        cr_assert_eq(wsml_net_read_grad(net, (size_t)i, ours, &err), 0);
        float *want = calloc(C, sizeof(float));
        for (size_t b = 0; b < (size_t)B; b++)
            for (size_t k = 0; k < (size_t)C; k++)
                want[k] += R[b * C + k];
        check(&fz, "frozen fc.bias grad", ours, want, t->count);
        free(ours);
        free(want);
    }
    wsml_net_set_frozen_backbone(net, 0);

    free(ours_eval);
    free(logits_train);
    free(input);
    free(R);
    wsml_st_free(&weights);
    wsml_st_free(&expected);
    wsml_st_free(&replay);
    wsml_net_free(net);
    wsml_backend_destroy(be);
    remove_dir(dir);
}

Test(net, resnet18_64x64_matches_torchvision, .timeout = 300) {
    net_case c = {"resnet18", 64, 5, 64, 64, 3, "linear", 5.0, 1, 2, 0};
    run_case(&c);
}

// Tiny bottleneck ResNet-50 on one thread, with an im2col workspace so small that every
// convolution with im2col runs image by image.
Test(net, resnet50_tiny_64x64_matches_torchvision, .timeout = 300) {
    net_case c = {"resnet50", 8, 7, 64, 64, 4, "linear", 5.0, 2, 1, 4096};
    run_case(&c);
}

// BoostLU head on a non-square input (96x64 -> a 3x2 CAM).
Test(net, boostlu_head_matches_torch_transcription, .timeout = 300) {
    net_case c = {"resnet18", 16, 4, 96, 64, 2, "boostlu", 5.0, 3, 2, 0};
    run_case(&c);
}

// Sizes that are not multiples of 32 (torchvision's floor rule at every layer, the
// global average pool over what is left): the demo's 56x56 (2x2 features), 33x47 (odd
// sides: 17x24 after the stem, 9x12 after the max pool, 2x2 features) and 100x75 (4x3).
Test(net, resnet18_56x56_matches_torchvision, .timeout = 300) {
    net_case c = {"resnet18", 32, 5, 56, 56, 3, "linear", 5.0, 4, 2, 0};
    run_case(&c);
}

Test(net, resnet18_33x47_matches_torchvision, .timeout = 300) {
    net_case c = {"resnet18", 16, 3, 33, 47, 2, "linear", 5.0, 5, 2, 0};
    run_case(&c);
}

Test(net, resnet18_100x75_boostlu_matches_torchvision, .timeout = 300) {
    net_case c = {"resnet18", 16, 4, 100, 75, 2, "boostlu", 5.0, 6, 2, 0};
    run_case(&c);
}

Test(net, resnet50_tiny_56x56_matches_torchvision, .timeout = 300) {
    net_case c = {"resnet50", 8, 6, 56, 56, 3, "linear", 5.0, 7, 1, 0};
    run_case(&c);
}

// With an im2col workspace small enough that convolutions run image by image. Batch 4:
// with batch 2, layer4's BN has only 8 rows per channel and the instance amplifies
// float32 rounding past 2x PyTorch's own error on one gradient (measured 2.4x).
Test(net, resnet50_tiny_33x47_matches_torchvision, .timeout = 300) {
    net_case c = {"resnet50", 8, 3, 33, 47, 4, "linear", 5.0, 8, 2, 4096};
    run_case(&c);
}

Test(net, resnet50_tiny_100x75_matches_torchvision, .timeout = 300) {
    net_case c = {"resnet50", 8, 5, 100, 75, 2, "linear", 5.0, 9, 2, 0};
    run_case(&c);
}

// ---- layout, initialisation, checkpoints, errors ----------------------------------------

static wsml_net *small_net(wsml_backend *be, const char *arch, int base, int classes, int hw,
                           int batch) {
    net_case c = {arch, base, classes, hw, hw, batch, "linear", 5.0, 1, 1, 0};
    return make_net(&c, be);
}

// Every architecture's tensor list (names, order, shapes) is torchvision's state_dict.
Test(net, tensor_names_and_shapes_are_torchvisions, .timeout = 120) {
    static const char *const archs[] = {"resnet18", "resnet34", "resnet50", "resnet101"};
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "%s -W ignore %s names --arch resnet18,resnet34,resnet50,resnet101 --classes 3",
             python(), oracle());
    FILE *fp = popen(cmd, "r");
    cr_assert(fp);
    wsml_backend *be = make_backend(&(net_case){.threads = 1});
    char line[256];
    wsml_net *net = NULL;
    size_t next = 0;
    int archs_seen = 0;
    while (fgets(line, sizeof(line), fp)) {
        line[strcspn(line, "\n")] = 0;
        if (line[0] == '#') {
            if (net)
                cr_expect_eq(next, wsml_net_num_tensors(net), "%s: tensor count",
                             archs[archs_seen - 1]);
            wsml_net_free(net);
            cr_assert_str_eq(line + 2, archs[archs_seen]);
            net = small_net(be, archs[archs_seen++], 64, 3, 32, 1);
            next = 0;
            continue;
        }
        const wsml_net_tensor_info *t = wsml_net_tensor(net, next++);
        cr_assert(t, "%s: we have fewer tensors than torchvision", line);
        char ours[256];
        int len = snprintf(ours, sizeof(ours), "%s", t->name);
        if (t->ndim == 0)
            snprintf(ours + len, sizeof(ours) - len, " -");
        for (int d = 0; d < t->ndim; d++)
            len += snprintf(ours + len, sizeof(ours) - len, "%s%lld", d ? " " : " ",
                            (long long)t->shape[d]);
        cr_expect_str_eq(ours, line, "tensor %zu: ours '%s', torchvision '%s'", next - 1, ours,
                         line);
        cr_expect_eq(t->is_head, strncmp(t->name, "fc.", 3) == 0, "%s: head flag", t->name);
    }
    cr_assert_eq(pclose(fp), 0, "%s", cmd);
    cr_assert_eq(archs_seen, 4);
    cr_expect_eq(next, wsml_net_num_tensors(net));
    // the head is the contiguous tail of the parameters
    int64_t fc = wsml_net_find_tensor(net, "fc.weight");
    cr_expect_eq(wsml_net_tensor(net, (size_t)fc)->offset, wsml_net_num_backbone_params(net));
    cr_expect_eq(wsml_net_num_params(net), wsml_net_num_backbone_params(net) + 2048 * 3 + 3);
    wsml_net_free(net);
    wsml_backend_destroy(be);
}

// wsml_net_init draws exactly what its documentation says (numpy RandomState oracle).
Test(net, init_matches_documented_numpy_draws, .timeout = 120) {
    char dir[64], cmd[2048];
    make_dir(dir);
    snprintf(cmd, sizeof(cmd),
             "%s -W ignore %s init --arch resnet50 --base 8 --classes 3 --seed 7 --out %s",
             python(), oracle(), dir);
    cr_assert_eq(system(cmd), 0, "%s", cmd);
    wsml_backend *be = make_backend(&(net_case){.threads = 1});
    wsml_net *net = small_net(be, "resnet50", 8, 3, 32, 1);
    wsml_net_init(net, 7);
    wsml_safetensors st;
    read_st(dir, "init.safetensors", &st);
    wsml_err err;
    for (size_t i = 0; i < wsml_net_num_tensors(net); i++) {
        const wsml_net_tensor_info *t = wsml_net_tensor(net, i);
        const wsml_tensor_view *v = wsml_st_find(&st, t->name);
        cr_assert(v, "%s missing in the oracle", t->name);
        if (t->kind == WSML_NET_COUNTER) {
            int64_t ours;
            wsml_net_read_tensor(net, i, &ours, &err);
            cr_expect_eq(ours, 0);
            continue;
        }
        float *ours = malloc(t->count * sizeof(float));
        cr_assert_eq(wsml_net_read_tensor(net, i, ours, &err), 0);
        cr_expect_eq(memcmp(ours, v->data, t->count * sizeof(float)), 0,
                     "%s differs from the documented draws", t->name);
        free(ours);
    }
    // init_head redraws only fc.*, from a fresh RandomState(seed); the backbone stays
    size_t nb = wsml_net_num_backbone_params(net), np = wsml_net_num_params(net);
    float *before = malloc(np * sizeof(float));
    memcpy(before, wsml_net_params(net), np * sizeof(float));
    wsml_net_init_head(net, 11);
    cr_expect_eq(memcmp(before, wsml_net_params(net), nb * sizeof(float)), 0);
    wsml_rng rng;
    wsml_rng_seed(&rng, 11);
    double bound = 1.0 / sqrt(64.0 * 8 / 64 * 8 * 4); // F = 8·8·4 = 256
    const float *head = wsml_net_params(net) + nb;
    for (size_t k = 0; k < np - nb; k++)
        cr_assert_eq(head[k], (float)wsml_rng_uniform(&rng, -bound, bound), "fc element %zu", k);
    free(before);
    wsml_st_free(&st);
    wsml_net_free(net);
    wsml_backend_destroy(be);
    remove_dir(dir);
}

// Checkpoints: round trip, head re-initialisation for a new class count, errors naming
// the missing or mis-shaped tensor.
Test(net, load_errors_name_the_tensor) {
    char dir[64], path[512], path2[512];
    make_dir(dir);
    wsml_err err;
    wsml_backend *be = make_backend(&(net_case){.threads = 2});
    wsml_net *a = small_net(be, "resnet18", 8, 3, 32, 2);
    wsml_net_init(a, 1);
    snprintf(path, sizeof(path), "%s/a.safetensors", dir);
    cr_assert_eq(wsml_net_save(a, path, NULL, 0, NULL, &err), 0, "%s", err.msg);

    // same shape: exact round trip
    wsml_net *b = small_net(be, "resnet18", 8, 3, 32, 2);
    wsml_net_init(b, 2);
    cr_assert_eq(wsml_net_load(b, path, WSML_NET_LOAD_ALL, &err), 0, "%s", err.msg);
    cr_assert_eq(
        memcmp(wsml_net_params(a), wsml_net_params(b), wsml_net_num_params(a) * sizeof(float)), 0);
    cr_assert_eq(memcmp(wsml_net_buffers(a), wsml_net_buffers(b),
                        wsml_net_num_buffer_floats(a) * sizeof(float)),
                 0);

    // 5 classes: the head does not fit, the backbone does
    wsml_net *c5 = small_net(be, "resnet18", 8, 5, 32, 2);
    wsml_net_init(c5, 3);
    cr_assert_eq(wsml_net_load(c5, path, WSML_NET_LOAD_ALL, &err), WSML_EFORMAT);
    cr_expect(strstr(err.msg, "fc.weight has shape [3, 64], expected [5, 64]"), "%s", err.msg);
    cr_expect(strstr(err.msg, path), "%s", err.msg);
    cr_assert_eq(wsml_net_load(c5, path, WSML_NET_LOAD_BACKBONE, &err), 0, "%s", err.msg);
    cr_expect_eq(memcmp(wsml_net_params(a), wsml_net_params(c5),
                        wsml_net_num_backbone_params(a) * sizeof(float)),
                 0);

    // a file without one tensor
    wsml_safetensors st;
    cr_assert_eq(wsml_st_read(path, &st, &err), 0);
    wsml_tensor_view *views = calloc(st.n, sizeof(*views));
    size_t nv = 0;
    for (size_t i = 0; i < st.n; i++)
        if (strcmp(st.tensors[i].name, "layer2.1.conv1.weight") != 0)
            views[nv++] = st.tensors[i];
    cr_assert_eq(nv, st.n - 1);
    snprintf(path2, sizeof(path2), "%s/missing.safetensors", dir);
    cr_assert_eq(wsml_st_write(path2, views, nv, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(wsml_net_load(b, path2, WSML_NET_LOAD_ALL, &err), WSML_EFORMAT);
    cr_expect(strstr(err.msg, "layer2.1.conv1.weight is missing"), "%s", err.msg);
    // the boostlu reference's 1x1 conv kernel (C, F, 1, 1) is accepted for fc.weight
    for (size_t i = 0; i < nv; i++)
        if (strcmp(views[i].name, "fc.weight") == 0) {
            views[i].ndim = 4;
            views[i].shape[2] = views[i].shape[3] = 1;
        }
    views[nv++] = *wsml_st_find(&st, "layer2.1.conv1.weight");
    cr_assert_eq(wsml_st_write(path2, views, nv, NULL, &err), 0, "%s", err.msg);
    cr_assert_eq(wsml_net_load(b, path2, WSML_NET_LOAD_ALL, &err), 0, "%s", err.msg);
    free(views);
    wsml_st_free(&st);

    // extra tensors may not collide with the network's
    wsml_tensor_view dup = {.name = "bn1.weight",
                            .dtype = WSML_DT_F32,
                            .ndim = 1,
                            .shape = {1},
                            .count = 1,
                            .data = &(float){1},
                            .nbytes = 4};
    cr_assert_eq(wsml_net_save(a, path2, &dup, 1, NULL, &err), WSML_EARG);

    wsml_net_free(a);
    wsml_net_free(b);
    wsml_net_free(c5);
    wsml_backend_destroy(be);
    remove_dir(dir);
}

Test(net, rejects_bad_configurations_and_calls) {
    wsml_err err;
    wsml_backend *be = make_backend(&(net_case){.threads = 1});
    wsml_net_config cfg;
    wsml_net_config_default(&cfg);
    wsml_net *net;
    cfg.num_classes = 3;
    cfg.height = 31;
    cr_expect_eq(wsml_net_create(&cfg, be, &net, &err), WSML_EARG);
    cr_expect(strstr(err.msg, "input size 31x448: height and width must be in [32, 8192]"), "%s",
              err.msg);
    cfg.height = 64;
    cfg.width = 8193;
    cr_expect_eq(wsml_net_create(&cfg, be, &net, &err), WSML_EARG);
    cfg.width = 448;
    cfg.num_classes = 0;
    cr_expect_eq(wsml_net_create(&cfg, be, &net, &err), WSML_EARG);
    cfg.num_classes = 3;
    cfg.width_mult = 0;
    cr_expect_eq(wsml_net_create(&cfg, be, &net, &err), WSML_EARG);
    cr_expect_eq(wsml_arch_parse("resnet152"), -1);
    cr_expect_eq(wsml_arch_parse("resnet101"), WSML_ARCH_RESNET101);
    cr_expect_eq(wsml_head_parse("boostlu"), WSML_HEAD_BOOSTLU);

    // 32x32 input: layer4 is 1x1, so one image has one value per BN channel there
    net = small_net(be, "resnet18", 8, 3, 32, 2);
    wsml_net_init(net, 1);
    float *x = calloc(2 * 32 * 32 * 3, sizeof(float));
    for (int i = 0; i < 2 * 32 * 32 * 3; i++)
        x[i] = (float)((i * 7919) % 13) - 6.0f;
    cr_expect_eq(wsml_net_forward(net, x, 3, WSML_NET_EVAL, &err), WSML_EARG); // > max_batch
    cr_expect_eq(wsml_net_forward(net, x, 1, WSML_NET_TRAIN, &err), WSML_EARG);
    cr_expect(strstr(err.msg, "layer4.0.bn1: expected more than 1 value per channel"), "%s",
              err.msg);
    float dl[6] = {0};
    cr_expect_eq(wsml_net_backward(net, dl, &err), WSML_ESTATE);
    cr_assert_eq(wsml_net_forward(net, x, 1, WSML_NET_EVAL, &err), 0, "%s", err.msg);
    cr_expect_eq(wsml_net_backward(net, dl, &err), WSML_ESTATE);
    cr_assert_eq(wsml_net_forward(net, x, 2, WSML_NET_TRAIN, &err), 0, "%s", err.msg);
    cr_expect_eq(wsml_net_backward(net, dl, &err), 0, "%s", err.msg);
    // CAM = features · fc.weight^T per position (1x1 features here)
    float feats[2 * 64], w[3 * 64], cam[2 * 3];
    cr_assert_eq(wsml_net_read_features(net, feats, &err), 0);
    cr_assert_eq(wsml_net_read_tensor(net, (size_t)wsml_net_find_tensor(net, "fc.weight"), w, &err),
                 0);
    cr_assert_eq(wsml_net_cam(net, cam, &err), 0);
    for (int b = 0; b < 2; b++)
        for (int c = 0; c < 3; c++) {
            double s = 0;
            for (int k = 0; k < 64; k++)
                s += (double)feats[b * 64 + k] * w[c * 64 + k];
            cr_expect(fabs(cam[b * 3 + c] - s) <= 1e-5 * (1 + fabs(s)), "cam %d %d", b, c);
        }
    free(x);
    wsml_net_free(net);

    // 33x47: ceil(33/32) x ceil(47/32) = 2x2 features, so one image trains
    net_case odd = {"resnet18", 8, 3, 33, 47, 1, "linear", 5.0, 1, 1, 0};
    net = make_net(&odd, be);
    wsml_net_init(net, 1);
    int fh, fw, F;
    wsml_net_feature_shape(net, &fh, &fw, &F);
    cr_expect(fh == 2 && fw == 2 && F == 64, "features %dx%dx%d", fh, fw, F);
    cr_expect_eq(wsml_net_feature_side(32), 1);
    cr_expect_eq(wsml_net_feature_side(33), 2);
    cr_expect_eq(wsml_net_feature_side(100), 4);
    x = calloc(33 * 47 * 3, sizeof(float));
    for (int i = 0; i < 33 * 47 * 3; i++)
        x[i] = (float)((i * 7919) % 13) - 6.0f;
    cr_expect_eq(wsml_net_forward(net, x, 1, WSML_NET_TRAIN, &err), 0, "%s", err.msg);
    free(x);
    wsml_net_free(net);
    wsml_backend_destroy(be);
}

// PyTorch's max pool rule: the first maximum in row-major window order wins, padding
// never does.
Test(net, maxpool_ties_pick_the_first_maximum) {
    wsml_backend *be = make_backend(&(net_case){.threads = 2});
    wsml_pool_desc d = {.channels = 2,
                        .in_h = 4,
                        .in_w = 4,
                        .out_h = 2,
                        .out_w = 2,
                        .kernel = 3,
                        .stride = 2,
                        .pad = 1};
    float x[4 * 4 * 2], y[2 * 2 * 2], dx[4 * 4 * 2], dy[2 * 2 * 2] = {1, 2, 3, 4, 5, 6, 7, 8};
    int32_t arg[2 * 2 * 2];
    for (int i = 0; i < 16; i++) {
        x[i * 2] = -1.0f;                    // channel 0: all equal (negative: padding is
                                             // not 0 but ignored)
        x[i * 2 + 1] = (float)((i % 4) / 2); // channel 1: columns 0,0,1,1
    }
    cr_assert_eq(be->maxpool_forward(be, &d, 1, y, x, arg), 0);
    // windows: rows/cols {0,1} for index 0, {1,2,3} for index 1
    static const int first_ch0[4] = {0, 1, 4, 5}; // top-left of each clipped window
    static const int first_ch1[4] = {0, 2, 4, 6}; // first column with value 1 (or 0,0 → 0)
    for (int o = 0; o < 4; o++) {
        cr_expect_eq(arg[o * 2], first_ch0[o], "ch0 window %d: %d", o, arg[o * 2]);
        cr_expect_eq(y[o * 2], -1.0f);
        cr_expect_eq(arg[o * 2 + 1], first_ch1[o], "ch1 window %d: %d", o, arg[o * 2 + 1]);
    }
    cr_assert_eq(be->maxpool_backward(be, &d, 1, dx, dy, x, y, arg), 0);
    double total = 0;
    for (int i = 0; i < 32; i++)
        total += dx[i];
    cr_expect_eq(total, 36.0);
    cr_expect_eq(dx[0], 1.0f);     // channel 0 of window 0
    cr_expect_eq(dx[1 * 2], 3.0f); // position 1: channel 0 of window 1
    wsml_backend_destroy(be);
}
