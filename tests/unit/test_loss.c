// train/loss.c against tests/oracles/losses_ref.py: line-by-line transcriptions of the
// reference loss code (LargeLossMatters; single-positive-multi-label) run by PyTorch.
// Each test starts the oracle once and reads all its cases from a pipe.
#include <criterion/criterion.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tests/unit/oracle_stream.h"
#include "train/loss.h"

// Errors of a against the reference b: norm_err = max |a − b| / max|b|; elem_err = max
// |a − b| / |b| over entries with |b| >= 1e-3·max|b|; and `bad` = entries outside
// |a − b| <= 1e-5·|b| + 1e-6·max|b|. The absolute part is needed where an entry is a
// difference of nearly equal terms (ROLE's cross terms when p ≈ q): there a 1-ulp
// difference of exp() between glibc and PyTorch's SLEEF becomes a large relative error
// of the small result, in PyTorch's own float32 answer as much as in ours.
static void compare_f32(const float *a, const float *b, size_t n, double *norm_err,
                        double *elem_err, size_t *bad) {
    double maxb = 0;
    for (size_t i = 0; i < n; i++)
        maxb = fmax(maxb, fabs(b[i]));
    *norm_err = 0;
    *elem_err = 0;
    *bad = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (maxb > 0)
            *norm_err = fmax(*norm_err, d / maxb);
        if (fabs(b[i]) >= 1e-3 * maxb && b[i] != 0)
            *elem_err = fmax(*elem_err, d / fabs(b[i]));
        *bad += d > 1e-5 * fabs(b[i]) + 1e-6 * maxb;
    }
}

// ---- every loss, every threshold, 5 epochs with LL-Cp label state ---------------------------

Test(loss, matches_reference_transcription, .timeout = 120) {
    static const char *const names[] = {"full", "an",   "an-ls", "wan",  "epr",
                                        "role", "ll-r", "ll-ct", "ll-cp"};
    FILE *fp = oracle_open("loss");
    int32_t *ncases = read_array(fp, DT_I32, 1, NULL);
    const int num_cases = ncases[0];
    double worst_loss = 0, worst_grad_norm = 0, worst_grad_elem = 0;
    double worst_dg_norm = 0, worst_dg_elem = 0, worst_grad_elem_not_role = 0;
    long batches = 0, modified_total = 0, flips_total = 0, quirk_observed_modified = 0;
    for (int cs = 0; cs < ncases[0]; cs++) {
        int32_t *h = read_array(fp, DT_I32, 7, NULL);
        double *f = read_array(fp, DT_F64, 5, NULL);
        const int kind = h[0], absolute = h[1], quirks = h[2], N = h[3], B = h[4], C = h[5],
                  epochs = h[6];
        cr_assert_eq(wsml_loss_kind_parse(names[kind]), kind);
        wsml_loss_config cfg;
        wsml_loss_config_default(&cfg);
        cfg.kind = (wsml_loss_kind)kind;
        cfg.threshold = absolute ? WSML_THRESHOLD_ABSOLUTE : WSML_THRESHOLD_RELATIVE;
        cfg.reference_quirks = quirks;
        cfg.delta_rel_percent = f[0];
        cfg.r0 = f[1];
        cfg.delta_abs = f[2];
        cfg.ls_coef = f[3];
        cfg.expected_num_pos = f[4];
        int8_t *full = read_array(fp, DT_I8, (size_t)N * C, NULL);
        int8_t *observed0 = read_array(fp, DT_I8, (size_t)N * C, NULL);
        wsml_label_state state;
        wsml_err err = {0};
        cr_assert_eq(wsml_label_state_init(&state, N, C, &err), 0, "%s", err.msg);

        float *dz = malloc(sizeof(float) * B * C), *dg = malloc(sizeof(float) * B * C);
        int32_t *flips = malloc(sizeof(int32_t) * 2 * B * C);
        uint8_t *mod = malloc((size_t)B * C);
        int8_t *obs = malloc((size_t)B * C), *full_rows = malloc((size_t)B * C);
        for (int epoch = 1; epoch <= epochs; epoch++) {
            for (int start = 0; start < N; start += B) {
                const int bb = N - start < B ? N - start : B;
                const size_t n = (size_t)bb * C;
                int64_t *idx = read_array(fp, DT_I64, bb, NULL);
                float *z = read_array(fp, DT_F32, n, NULL);
                float *g = kind == WSML_LOSS_ROLE ? read_array(fp, DT_F32, n, NULL) : NULL;
                double *want_loss = read_array(fp, DT_F64, 1, NULL);
                float *want_dz = read_array(fp, DT_F32, n, NULL);
                float *want_dg = g ? read_array(fp, DT_F32, n, NULL) : NULL;
                uint8_t *want_mod = read_array(fp, DT_U8, n, NULL);
                size_t nflip2;
                int32_t *want_flips = read_array(fp, DT_I32, ANY, &nflip2);

                // The trainer's path: store labels, then LL-Cp's label state on top.
                for (int b = 0; b < bb; b++) {
                    memcpy(obs + (size_t)b * C, observed0 + idx[b] * C, C);
                    memcpy(full_rows + (size_t)b * C, full + idx[b] * C, C);
                }
                wsml_label_state_overlay(&state, idx, bb, obs);

                wsml_loss_input in = {.batch_size = bb,
                                      .num_classes = C,
                                      .epoch = epoch,
                                      .logits = z,
                                      .observed = obs,
                                      .full = full_rows,
                                      .estimator_logits = g};
                wsml_loss_output out = {.dlogits = dz,
                                        .destimator_logits = g ? dg : NULL,
                                        .flips = flips,
                                        .modified = mod};
                int rc = wsml_loss_compute(&cfg, &in, &out, &err);
                cr_assert_eq(rc, 0, "%s", err.msg);
                const char *what = names[kind];

                double rel = fabs(out.stats.loss - want_loss[0]) / fmax(fabs(want_loss[0]), 1e-30);
                worst_loss = fmax(worst_loss, rel);
                cr_expect_leq(rel, 1e-6, "%s%s%s C=%d epoch %d batch %d: loss %.9g, torch %.9g",
                              what, absolute ? " absolute" : "", quirks ? " quirks" : "", C, epoch,
                              start / B, out.stats.loss, want_loss[0]);
                double norm_err, elem_err;
                size_t bad;
                compare_f32(dz, want_dz, n, &norm_err, &elem_err, &bad);
                worst_grad_norm = fmax(worst_grad_norm, norm_err);
                worst_grad_elem = fmax(worst_grad_elem, elem_err);
                if (kind != WSML_LOSS_ROLE)
                    worst_grad_elem_not_role = fmax(worst_grad_elem_not_role, elem_err);
                cr_expect_eq(bad, 0,
                             "%s C=%d epoch %d: %zu entries of dL/dz off (worst %g of "
                             "max|dL/dz|, %g relative)",
                             what, C, epoch, bad, norm_err, elem_err);
                if (g) {
                    compare_f32(dg, want_dg, n, &norm_err, &elem_err, &bad);
                    worst_dg_norm = fmax(worst_dg_norm, norm_err);
                    worst_dg_elem = fmax(worst_dg_elem, elem_err);
                    cr_expect_eq(bad, 0,
                                 "role C=%d epoch %d: %zu entries of dL/dG off (worst %g "
                                 "of max|dL/dG|, %g relative)",
                                 C, epoch, bad, norm_err, elem_err);
                }

                // The modified set, exactly; the diagnostics from it.
                long want_modified = 0, want_hidden = 0, want_mod_hidden = 0;
                for (size_t i = 0; i < n; i++) {
                    cr_expect_eq(mod[i], want_mod[i],
                                 "%s%s%s C=%d epoch %d: entry (%zu, %zu) modified %d, torch %d",
                                 what, absolute ? " absolute" : "", quirks ? " quirks" : "", C,
                                 epoch, i / C, i % C, mod[i], want_mod[i]);
                    want_modified += want_mod[i];
                    int hidden = obs[i] == 0 && full_rows[i] == 1;
                    want_hidden += hidden;
                    want_mod_hidden += hidden && want_mod[i];
                    quirk_observed_modified += want_mod[i] && obs[i] != 0;
                }
                cr_expect_eq(out.stats.num_modified, want_modified);
                cr_expect_eq(out.stats.num_hidden_pos, want_hidden);
                cr_expect_eq(out.stats.num_modified_hidden_pos, want_mod_hidden);
                modified_total += want_modified;

                // LL-Cp's flips, exactly (both in row-major order).
                cr_expect_eq((size_t)out.stats.num_flips * 2, nflip2,
                             "%s C=%d epoch %d: %lld flips, reference %zu", what, C, epoch,
                             (long long)out.stats.num_flips, nflip2 / 2);
                if ((size_t)out.stats.num_flips * 2 == nflip2)
                    cr_expect_eq(memcmp(flips, want_flips, nflip2 * sizeof(int32_t)), 0,
                                 "%s C=%d epoch %d: flipped entries differ", what, C, epoch);
                flips_total += (long)nflip2 / 2;
                rc = wsml_label_state_apply(&state, idx, bb, flips, out.stats.num_flips, &err);
                cr_assert_eq(rc, 0, "%s", err.msg);
                batches++;
                free(idx), free(z), free(g), free(want_loss), free(want_dz), free(want_dg);
                free(want_mod), free(want_flips);
            }
        }
        // The dataset's label matrix after all epochs = store labels + label state.
        int8_t *want_final = read_array(fp, DT_I8, (size_t)N * C, NULL);
        for (int64_t i = 0; i < N; i++) {
            int8_t row[400];
            cr_assert_leq(C, 400);
            memcpy(row, observed0 + i * C, C);
            wsml_label_state_overlay(&state, &i, 1, row);
            cr_expect_eq(memcmp(row, want_final + i * C, C), 0,
                         "%s: label state of image %lld differs from the reference's", names[kind],
                         (long long)i);
        }
        wsml_label_state_free(&state);
        free(want_final), free(dz), free(dg), free(flips), free(mod), free(obs), free(full_rows);
        free(h), free(f), free(full), free(observed0);
    }
    free(ncases);
    oracle_close(fp);
    cr_log_info("loss: %d cases, %ld batches, %ld modified entries (%ld observed ones under "
                "quirks), %ld flips; worst rel loss err %.3g, dL/dz err %.3g of max / %.3g "
                "elementwise (%.3g without ROLE), dL/dG %.3g of max / %.3g elementwise",
                num_cases, batches, modified_total, quirk_observed_modified, flips_total,
                worst_loss, worst_grad_norm, worst_grad_elem, worst_grad_elem_not_role,
                worst_dg_norm, worst_dg_elem);
    // The cases must exercise what they claim to.
    cr_expect_gt(modified_total, 1000);
    cr_expect_gt(flips_total, 100);
    cr_expect_gt(quirk_observed_modified, 0);
}

// ---- the reference's k, including its floating-point rounding -------------------------------

Test(loss, k_schedule_matches_reference, .timeout = 60) {
    FILE *fp = oracle_open("k");
    int32_t *ncombos = read_array(fp, DT_I32, 1, NULL);
    long checked = 0;
    for (int i = 0; i < ncombos[0]; i++) {
        double *pct = read_array(fp, DT_F64, 1, NULL);
        int32_t *bc = read_array(fp, DT_I32, 2, NULL);
        int64_t *ks = read_array(fp, DT_I64, 20, NULL);
        wsml_loss_config cfg;
        wsml_loss_config_default(&cfg);
        cfg.delta_rel_percent = pct[0];
        for (int epoch = 1; epoch <= 10; epoch++) {
            cfg.kind = WSML_LOSS_LL_CT;
            cr_expect_eq(wsml_ll_k(&cfg, bc[0], bc[1], epoch), ks[2 * (epoch - 1)],
                         "pct %g B %d C %d epoch %d", pct[0], bc[0], bc[1], epoch);
            cfg.kind = WSML_LOSS_LL_CP;
            cr_expect_eq(wsml_ll_k(&cfg, bc[0], bc[1], epoch), ks[2 * (epoch - 1) + 1],
                         "LL-Cp pct %g B %d C %d epoch %d", pct[0], bc[0], bc[1], epoch);
            cfg.reference_quirks = 1; // the public code's LL-Cp is LL-Ct
            cr_expect_eq(wsml_ll_k(&cfg, bc[0], bc[1], epoch), ks[2 * (epoch - 1)]);
            cfg.reference_quirks = 0;
            checked += 3;
        }
        free(pct), free(bc), free(ks);
    }
    free(ncombos);
    oracle_close(fp);
    cr_log_info("k: %ld values equal the reference's", checked);
}

// ---- ROLE's label estimator initialisation -----------------------------------------------

Test(loss, role_estimator_init_matches_numpy, .timeout = 60) {
    FILE *fp = oracle_open("role-init");
    int32_t *h = read_array(fp, DT_I32, 3, NULL);
    const int n = h[0], c = h[1];
    int8_t *observed = read_array(fp, DT_I8, (size_t)n * c, NULL);
    float *want = read_array(fp, DT_F32, (size_t)n * c, NULL);
    oracle_close(fp);
    float *g = malloc(sizeof(float) * n * c);
    wsml_role_init_estimator(g, observed, n, c, (uint32_t)h[2]);
    size_t exact = 0;
    for (size_t i = 0; i < (size_t)n * c; i++) {
        cr_expect_leq(fabsf(g[i] - want[i]), 1e-6f * fabsf(want[i]), "G[%zu] = %.9g, numpy %.9g", i,
                      g[i], want[i]);
        exact += g[i] == want[i];
    }
    cr_log_info("role init: %zu of %d values bit-identical", exact, n * c);
    free(h), free(observed), free(want), free(g);
}

// ---- small properties that need no oracle ------------------------------------------------

Test(loss, names_round_trip) {
    for (int k = 0; k < WSML_LOSS_NUM_KINDS; k++)
        cr_expect_eq(wsml_loss_kind_parse(wsml_loss_kind_name((wsml_loss_kind)k)), k);
    cr_expect_eq(wsml_loss_kind_parse("LL-Cp"), -1);
    cr_expect_eq(wsml_threshold_kind_parse("absolute"), WSML_THRESHOLD_ABSOLUTE);
    cr_expect_eq(wsml_threshold_kind_parse("rel"), -1);
}

Test(loss, expected_num_pos) {
    cr_expect_eq(wsml_expected_num_pos("coco", NULL, 0, 80), 2.9);
    cr_expect_eq(wsml_expected_num_pos("cub", NULL, 0, 312), 31.4);
    int8_t full[6] = {1, 0, 1, -1, 1, 1}; // 2 images x 3 classes: 2 + 2 positives
    cr_expect_eq(wsml_expected_num_pos("mosaic", full, 2, 3), 2.0);
}

// keyed by the store's info: the dedicated formats by format, whatever the name; the
// generic ones by the ingest name, without case, '-', '_' or ' '
Test(loss, expected_num_pos_for_store) {
    cr_expect_eq(wsml_expected_num_pos_for_store("voc", "my-voc-2012"), 1.5);
    cr_expect_eq(wsml_expected_num_pos_for_store("coco", "coco2014"), 2.9);
    cr_expect_eq(wsml_expected_num_pos_for_store("cub", "birds"), 31.4);
    cr_expect_eq(wsml_expected_num_pos_for_store("npy", "NUS-WIDE"), 1.9);
    cr_expect_eq(wsml_expected_num_pos_for_store("npy", "nus_wide"), 1.9);
    cr_expect_eq(wsml_expected_num_pos_for_store("csv", "Pascal"), 1.5);
    cr_expect_eq(wsml_expected_num_pos_for_store("npy", "nuswide-small"), 0.0);
    cr_expect_eq(wsml_expected_num_pos_for_store("fashion-mosaic", "fashion-mosaic"), 0.0);
    cr_expect_eq(wsml_expected_num_pos_for_store("openimages", "openimages"), 0.0);
    cr_expect_eq(wsml_expected_num_pos_for_store(NULL, NULL), 0.0);
}

Test(loss, rejects_bad_input) {
    wsml_loss_config cfg;
    wsml_loss_config_default(&cfg);
    float z[4] = {0, 1, NAN, 2}, dz[4];
    int8_t obs[4] = {1, 0, 0, 0};
    wsml_loss_input in = {
        .batch_size = 2, .num_classes = 2, .epoch = 1, .logits = z, .observed = obs};
    wsml_loss_output out = {.dlogits = dz};
    wsml_err err = {0};
    cr_expect_eq(wsml_loss_compute(&cfg, &in, &out, &err), WSML_ENUMERIC);
    cr_expect(strstr(err.msg, "row 1, class 0"), "%s", err.msg);
    z[2] = 0;
    cfg.kind = WSML_LOSS_FULL; // needs full labels
    cr_expect_eq(wsml_loss_compute(&cfg, &in, &out, &err), WSML_EARG);
    cfg.kind = WSML_LOSS_EPR; // needs k
    cr_expect_eq(wsml_loss_compute(&cfg, &in, &out, &err), WSML_EARG);
    cr_expect(strstr(err.msg, "--epr-k"), "%s", err.msg);
    cfg.kind = WSML_LOSS_LL_R; // 60 % per epoch: k > B·C at epoch 3
    cfg.delta_rel_percent = 60;
    in.epoch = 3;
    cr_expect_eq(wsml_loss_compute(&cfg, &in, &out, &err), WSML_EARG);
    cr_expect(strstr(err.msg, "--delta-rel"), "%s", err.msg);
}

Test(loss, label_state_checkpoint_round_trip) {
    wsml_label_state s, t;
    wsml_err err = {0};
    cr_assert_eq(wsml_label_state_init(&s, 100000, 5000, &err), 0);
    // enough flips to grow the table several times
    int64_t idx[16];
    int32_t flips[2 * 300];
    for (int round = 0; round < 40; round++) {
        for (int b = 0; b < 16; b++)
            idx[b] = (round * 7919 + b * 104729) % 100000;
        for (int f = 0; f < 300; f++) {
            flips[2 * f] = f % 16;
            flips[2 * f + 1] = (f * 37 + round * 11) % 5000;
        }
        cr_assert_eq(wsml_label_state_apply(&s, idx, 16, flips, 300, &err), 0, "%s", err.msg);
    }
    int64_t *pairs;
    size_t n;
    cr_assert_eq(wsml_label_state_pairs(&s, &pairs, &n, &err), 0);
    cr_expect_eq(n, s.count);
    for (size_t i = 1; i < n; i++)
        cr_expect(pairs[2 * i - 2] < pairs[2 * i] ||
                  (pairs[2 * i - 2] == pairs[2 * i] && pairs[2 * i - 1] < pairs[2 * i + 1]));
    wsml_tensor_view view;
    wsml_label_state_tensor_view(pairs, n, &view);
    cr_expect_str_eq(view.name, WSML_LABEL_STATE_TENSOR);
    cr_assert_eq(wsml_label_state_init(&t, 100000, 5000, &err), 0);
    cr_assert_eq(wsml_label_state_load_view(&t, &view, &err), 0, "%s", err.msg);
    cr_expect_eq(t.count, s.count);
    for (size_t i = 0; i < n; i++)
        cr_expect(wsml_label_state_contains(&t, pairs[2 * i], (int)pairs[2 * i + 1]));
    pairs[1] = 5000; // a class out of range: refused, naming the tensor
    cr_expect_eq(wsml_label_state_load_view(&t, &view, &err), WSML_ECORRUPT);
    cr_expect(strstr(err.msg, WSML_LABEL_STATE_TENSOR), "%s", err.msg);
    cr_expect_eq(t.count, s.count, "a refused checkpoint must leave the state unchanged");
    free(pairs);
    wsml_label_state_free(&s);
    wsml_label_state_free(&t);
}

// ---- the loss state interface (train/loss_state.c) -------------------------------------------

// A loss of `kind` with default settings and an empty Adam for its state.
static void state_setup(wsml_loss_kind kind, wsml_loss_config *cfg, wsml_optim *optim) {
    wsml_loss_config_default(cfg);
    cfg->kind = kind;
    wsml_optim_config oc;
    wsml_optim_config_default(&oc, WSML_OPTIM_ADAM);
    wsml_err err;
    cr_assert_eq(wsml_optim_init(optim, &oc, &err), 0);
}

static int fill_observed(void *ctx, int8_t *observed, wsml_err *err) {
    (void)err;
    const int8_t *src = ctx; // (N, C)
    memcpy(observed, src, 4 * 3);
    return 0;
}

// LL-Cp: a batch's flips become observed positives of those images in later batches, count
// as corrected, survive a checkpoint round trip; the reference's LL-Cp and AN keep no state.
Test(loss, state_llcp_flips_overlay_and_checkpoint) {
    wsml_loss_config cfg;
    wsml_optim optim;
    wsml_err err;
    state_setup(WSML_LOSS_LL_CP, &cfg, &optim);
    wsml_loss_state_env env = {.num_images = 6, .num_classes = 3, .max_batch = 2, .optim = &optim};
    wsml_loss_state *s = NULL;
    cr_assert_eq(wsml_loss_state_create(&cfg, &env, &s, &err), 0, "%s", err.msg);
    cr_assert(s);
    cr_assert_eq(wsml_loss_state_num_corrected(s), 0);

    // batch 1 = images 5 and 3; the loss flipped (row 0, class 2) and (row 1, class 1)
    int64_t index[2] = {5, 3};
    int8_t observed[6] = {0};
    wsml_loss_input in = {0};
    wsml_loss_output out = {0};
    wsml_loss_state_begin_batch(s, index, 2, observed, &in, &out);
    cr_assert(out.flips && !in.estimator_logits && !out.destimator_logits);
    out.flips[0] = 0, out.flips[1] = 2, out.flips[2] = 1, out.flips[3] = 1;
    out.stats.num_flips = 2;
    const int8_t full[6] = {0, 0, 1, 0, 0, 0}; // (5, 2) is a true positive, (3, 1) is not
    int64_t true_pos = -1;
    cr_assert_eq(wsml_loss_state_end_batch(s, NULL, index, 2, full, &out, &true_pos, &err), 0);
    cr_assert_eq(true_pos, 1);
    cr_assert_eq(wsml_loss_state_num_corrected(s), 2);

    // batch 2 = images 3 and 0: image 3's class 1 is now observed positive
    int64_t index2[2] = {3, 0};
    int8_t observed2[6] = {0, 0, -1, 0, 0, 0};
    wsml_loss_state_begin_batch(s, index2, 2, observed2, &in, &out);
    const int8_t want[6] = {0, 1, -1, 0, 0, 0};
    cr_assert_arr_eq(observed2, want, 6);

    wsml_tensor_view views[2];
    size_t n = 0;
    cr_assert_eq(wsml_loss_state_save(s, views, 2, &n, &err), 0);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(views[0].name, WSML_LABEL_STATE_TENSOR);
    const int64_t pairs[4] = {3, 1, 5, 2}; // sorted (image, class)
    cr_assert_eq(views[0].nbytes, sizeof pairs);
    cr_assert_arr_eq(views[0].data, pairs, sizeof pairs);
    wsml_safetensors st = {.tensors = views, .n = 1};
    wsml_loss_state *t = NULL;
    cr_assert_eq(wsml_loss_state_create(&cfg, &env, &t, &err), 0);
    cr_assert_eq(wsml_loss_state_load(t, &st, &err), 0, "%s", err.msg);
    cr_assert_eq(wsml_loss_state_num_corrected(t), 2);
    st.n = 0; // a checkpoint without the tensor
    cr_assert_eq(wsml_loss_state_load(t, &st, &err), WSML_ECORRUPT);
    cr_assert(strstr(err.msg, WSML_LABEL_STATE_TENSOR), "%s", err.msg);
    wsml_loss_state_free(t);
    wsml_loss_state_free(s);

    cfg.reference_quirks = 1;
    cr_assert_eq(wsml_loss_state_create(&cfg, &env, &s, &err), 0);
    cr_assert_null(s);
    cfg.kind = WSML_LOSS_AN;
    cr_assert_eq(wsml_loss_state_create(&cfg, &env, &s, &err), 0);
    cr_assert_null(s);
    cr_assert_eq(wsml_loss_state_num_corrected(s), -1);
    wsml_optim_free(&optim);
}

// ROLE: the estimator starts from the observed labels (as wsml_role_init_estimator), hands
// the batch's rows to the loss, and one end_batch is one Adam step of its own group over
// the whole (N, C) matrix with the batch's gradient scattered to its rows (first Adam step:
// p -= lr · g / (|g| + eps), i.e. lr·sign(g) where g != 0, nothing where g = 0).
Test(loss, state_role_rows_and_optimizer_step) {
    wsml_loss_config cfg;
    wsml_optim optim;
    wsml_err err;
    state_setup(WSML_LOSS_ROLE, &cfg, &optim);
    const int8_t observed_all[12] = {1, 0, -1, 0, 0, 0, 0, 1, 0, -1, 0, 0}; // (4, 3)
    wsml_loss_state_env env = {.num_images = 4,
                               .num_classes = 3,
                               .max_batch = 2,
                               .seed = 7,
                               .optim = &optim,
                               .lr = 0.5,
                               .read_observed = fill_observed,
                               .ctx = (void *)observed_all};
    wsml_loss_state *s = NULL;
    cr_assert_eq(wsml_loss_state_create(&cfg, &env, &s, &err), 0, "%s", err.msg);
    cr_assert_eq(optim.num_groups, 1);
    cr_assert_str_eq(optim.group[0].name, "estimator");
    cr_assert_eq(optim.group[0].count, 12);
    float G0[12];
    wsml_role_init_estimator(G0, observed_all, 4, 3, 7);
    wsml_tensor_view views[2];
    size_t n = 0;
    cr_assert_eq(wsml_loss_state_save(s, views, 2, &n, &err), 0);
    cr_assert_eq(n, 1);
    cr_assert_str_eq(views[0].name, WSML_ROLE_ESTIMATOR_TENSOR);
    cr_assert_arr_eq(views[0].data, G0, sizeof G0);

    int64_t index[2] = {2, 0};
    int8_t observed[6] = {0};
    wsml_loss_input in = {0};
    wsml_loss_output out = {0};
    wsml_loss_state_begin_batch(s, index, 2, observed, &in, &out);
    cr_assert_arr_eq(in.estimator_logits, G0 + 6, 3 * sizeof(float));
    cr_assert_arr_eq(in.estimator_logits + 3, G0, 3 * sizeof(float));
    const float grad[6] = {1, -2, 0, 0, 3, 0}; // rows of images 2 and 0
    memcpy(out.destimator_logits, grad, sizeof grad);
    int64_t true_pos = -1;
    cr_assert_eq(wsml_loss_state_end_batch(s, NULL, index, 2, NULL, &out, &true_pos, &err), 0);
    cr_assert_eq(true_pos, 0);
    cr_assert_eq(optim.group[0].step, 1);
    cr_assert_eq(wsml_loss_state_save(s, views, 2, &n, &err), 0);
    const float *G = views[0].data;
    const float delta[12] = {0, -0.5f, 0, 0, 0, 0, -0.5f, 0.5f, 0, 0, 0, 0}; // -lr·sign(g)
    for (int i = 0; i < 12; i++)
        cr_assert_float_eq(G[i], G0[i] + delta[i], 1e-6, "entry %d: %g, expected %g", i, G[i],
                           G0[i] + delta[i]);
    cr_assert_eq(wsml_loss_state_num_corrected(s), -1);
    wsml_loss_state_free(s);
    wsml_optim_free(&optim);
}

// R(t) of the absolute variants is R0 − (t−1)·Δabs with no clamp at 0 (docs/methods.md §2,
// "Choices the paper leaves open"): once it is negative every unobserved entry is modified,
// even one whose loss is exactly 0 (BCE of logit −30 with target 0 in float32), since
// the rule is U > R(t). A clamp at 0 would modify none of them.
Test(loss, absolute_threshold_not_clamped) {
    wsml_loss_config cfg;
    wsml_loss_config_default(&cfg);
    cfg.kind = WSML_LOSS_LL_R;
    cfg.threshold = WSML_THRESHOLD_ABSOLUTE;
    cfg.r0 = 0.3;
    cfg.delta_abs = 0.2;
    cr_expect_float_eq(wsml_ll_abs_threshold(&cfg, 2), 0.1, 1e-12);
    cr_expect_float_eq(wsml_ll_abs_threshold(&cfg, 3), -0.1, 1e-12);
    cr_expect_float_eq(wsml_ll_abs_threshold(&cfg, 10), -1.5, 1e-12);
    float z[6] = {-30, -30, 4, 4, -30, -30}, dz[6];
    int8_t obs[6] = {0, 0, 1, 1, 0, 0}; // 2 images x 3 classes: 4 unobserved, all loss 0
    uint8_t mod[6];
    wsml_err err = {0};
    for (int epoch = 2; epoch <= 3; epoch++) {
        wsml_loss_input in = {
            .batch_size = 2, .num_classes = 3, .epoch = epoch, .logits = z, .observed = obs};
        wsml_loss_output out = {.dlogits = dz, .modified = mod};
        cr_assert_eq(wsml_loss_compute(&cfg, &in, &out, &err), 0, "%s", err.msg);
        cr_expect_eq(out.stats.num_modified, epoch == 2 ? 0 : 4, "epoch %d: %lld modified", epoch,
                     (long long)out.stats.num_modified);
    }
}
