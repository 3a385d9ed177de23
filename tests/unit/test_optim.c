// train/optim.c against torch.optim.Adam / torch.optim.SGD (tests/oracles/losses_ref.py
// optim): two parameter groups (lr and 10·lr), 20 steps of random gradients, and a
// save/restore of the state after step 10 that must not change the result.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/oracle_stream.h"
#include "train/optim.h"

// Largest |a - b| / max(|b|, 1e-30), and the number of differing entries.
static double rel_err(const float *a, const float *b, size_t n, size_t *differ) {
    double worst = 0;
    for (size_t i = 0; i < n; i++) {
        if (a[i] != b[i])
            (*differ)++;
        worst = fmax(worst, fabs((double)a[i] - b[i]) / fmax(fabs((double)b[i]), 1e-30));
    }
    return worst;
}

// Copies the optimiser state out (as a checkpoint would) and into a fresh optimiser.
static void save_and_restore(wsml_optim *o, const wsml_optim_config *cfg, const double *lrs,
                             const size_t *sizes) {
    wsml_tensor_view views[3 * WSML_OPTIM_MAX_GROUPS];
    size_t n;
    wsml_err err = {0};
    cr_assert_eq(wsml_optim_state_views(o, views, 3 * WSML_OPTIM_MAX_GROUPS, &n, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(n, cfg->kind == WSML_OPTIM_ADAM ? 6u : 4u);
    wsml_tensor_view copies[3 * WSML_OPTIM_MAX_GROUPS];
    for (size_t i = 0; i < n; i++) {
        copies[i] = views[i];
        copies[i].name = strdup(views[i].name);
        void *data = malloc(views[i].nbytes);
        memcpy(data, views[i].data, views[i].nbytes);
        copies[i].data = data;
    }
    wsml_optim_free(o);
    cr_assert_eq(wsml_optim_init(o, cfg, &err), 0);
    cr_assert_eq(wsml_optim_add_group(o, "backbone", sizes[0], lrs[0], &err), 0);
    cr_assert_eq(wsml_optim_add_group(o, "head", sizes[1], lrs[1], &err), 1);
    // A checkpoint missing a tensor is refused by name and changes nothing.
    cr_expect_eq(wsml_optim_state_load(o, copies, n - 1, &err), WSML_ECORRUPT);
    cr_expect(strstr(err.msg, copies[n - 1].name), "%s", err.msg);
    cr_expect_eq(o->group[0].step, 0);
    cr_assert_eq(wsml_optim_state_load(o, copies, n, &err), 0, "%s", err.msg);
    for (size_t i = 0; i < n; i++) {
        free(copies[i].name);
        free((void *)copies[i].data);
    }
}

Test(optim, matches_torch_optim, .timeout = 60) {
    FILE *fp = oracle_open("optim");
    int32_t *nconfigs = read_array(fp, DT_I32, 1, NULL);
    for (int ci = 0; ci < nconfigs[0]; ci++) {
        int32_t *h = read_array(fp, DT_I32, 4, NULL);
        double *f = read_array(fp, DT_F64, 3, NULL);
        const int steps = h[1];
        const size_t sizes[2] = {(size_t)h[2], (size_t)h[3]};
        const double lrs[2] = {f[0], 10 * f[0]};
        wsml_optim_config cfg;
        wsml_optim_config_default(&cfg, h[0] == 0 ? WSML_OPTIM_ADAM : WSML_OPTIM_SGD);
        cfg.weight_decay = f[1];
        if (cfg.kind == WSML_OPTIM_SGD)
            cfg.momentum = f[2];
        wsml_optim o;
        wsml_err err = {0};
        cr_assert_eq(wsml_optim_init(&o, &cfg, &err), 0, "%s", err.msg);
        cr_assert_eq(wsml_optim_add_group(&o, "backbone", sizes[0], lrs[0], &err), 0);
        cr_assert_eq(wsml_optim_add_group(&o, "head", sizes[1], lrs[1], &err), 1);
        float *params[2];
        for (int g = 0; g < 2; g++)
            params[g] = read_array(fp, DT_F32, sizes[g], NULL);
        double worst = 0;
        size_t differ = 0, total = 0;
        for (int step = 1; step <= steps; step++) {
            float *grads[2];
            for (int g = 0; g < 2; g++)
                grads[g] = read_array(fp, DT_F32, sizes[g], NULL);
            for (int g = 0; g < 2; g++)
                wsml_optim_step(&o, g, params[g], grads[g]);
            for (int g = 0; g < 2; g++) {
                float *want = read_array(fp, DT_F32, sizes[g], NULL);
                double e = rel_err(params[g], want, sizes[g], &differ);
                total += sizes[g];
                worst = fmax(worst, e);
                cr_expect_leq(e, 1e-6, "%s group %d step %d: params off by %g relative",
                              wsml_optim_kind_name(cfg.kind), g, step, e);
                free(want);
                free(grads[g]);
            }
            if (step == steps / 2)
                save_and_restore(&o, &cfg, lrs, sizes);
        }
        for (int g = 0; g < 2; g++) {
            cr_expect_eq(o.group[g].step, steps);
            float *want_m = read_array(fp, DT_F32, sizes[g], NULL);
            size_t d = 0;
            cr_expect_leq(rel_err(o.group[g].exp_avg, want_m, sizes[g], &d), 1e-6);
            free(want_m);
            if (cfg.kind == WSML_OPTIM_ADAM) {
                float *want_v = read_array(fp, DT_F32, sizes[g], NULL);
                cr_expect_leq(rel_err(o.group[g].exp_avg_sq, want_v, sizes[g], &d), 1e-6);
                free(want_v);
            }
            free(params[g]);
        }
        cr_log_info("optim %s wd %g: %d steps x 2 groups, worst rel err %.3g, %zu of %zu "
                    "values not bit-identical",
                    wsml_optim_kind_name(cfg.kind), cfg.weight_decay, steps, worst, differ, total);
        wsml_optim_free(&o);
        free(h), free(f);
    }
    free(nconfigs);
    oracle_close(fp);
}

Test(optim, config_checks) {
    wsml_optim_config cfg;
    wsml_optim o;
    wsml_err err = {0};
    cr_expect_eq(wsml_optim_kind_parse("sgd"), WSML_OPTIM_SGD);
    cr_expect_eq(wsml_optim_kind_parse("rmsprop"), -1);
    wsml_optim_config_default(&cfg, WSML_OPTIM_SGD);
    cr_expect_eq(cfg.momentum, 0.9);
    cr_expect_eq(cfg.weight_decay, 1e-3);
    wsml_optim_config_default(&cfg, WSML_OPTIM_ADAM);
    cr_expect_eq(cfg.weight_decay, 0.0);
    cfg.beta2 = 1.0;
    cr_expect_eq(wsml_optim_init(&o, &cfg, &err), WSML_EARG);
    wsml_optim_config_default(&cfg, WSML_OPTIM_ADAM);
    cr_assert_eq(wsml_optim_init(&o, &cfg, &err), 0);
    cr_expect_eq(wsml_optim_add_group(&o, "head", 3, 1e-4, &err), 0);
    cr_expect_eq(wsml_optim_add_group(&o, "head", 3, 1e-4, &err), WSML_EARG);
    cr_expect_eq(wsml_optim_add_group(&o, "bad name", 3, 1e-4, &err), WSML_EARG);
    cr_expect_eq(wsml_optim_add_group(&o, "neg", 3, -1, &err), WSML_EARG);
    wsml_optim_free(&o);
}
