// common/metrics.c: AP/mAP (docs/methods.md §4). Hand-checked cases whose values come from
// scikit-learn 1.2's average_precision_score (quoted in each test), and a property test
// against an independent quadratic definition: AP = (1/P) Σ over positives i of the
// precision at threshold s_i, i.e. #(positives with s >= s_i) / #(known with s >= s_i).
// (tests/e2e/eval_sklearn.sh compares the whole tool against sklearn itself.)
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "eval/metrics.h"

static double ap_f32(const float *s, const int8_t *y, int64_t n) {
    uint64_t *work = malloc((size_t)(2 * n + 1) * sizeof(uint64_t));
    double ap = -1;
    wsml_err err = {0};
    int rc = wsml_average_precision_f32(s, y, n, 1, work, &ap, NULL, NULL, &err);
    cr_assert_eq(rc, 0, "%s", err.msg);
    free(work);
    return ap;
}

// Quadratic definition, independent of the sort (see the file comment).
static double ap_definition(const double *s, const int8_t *y, int64_t n, int64_t stride) {
    int64_t positives = 0;
    double sum = 0;
    for (int64_t i = 0; i < n; i++) {
        if (y[i * stride] != 1)
            continue;
        positives++;
        int64_t above = 0, pos_above = 0;
        for (int64_t j = 0; j < n; j++) {
            int8_t label = y[j * stride];
            if (label == -1 || s[j * stride] < s[i * stride])
                continue;
            above++;
            pos_above += label == 1;
        }
        sum += (double)pos_above / (double)above;
    }
    return positives ? sum / positives : 0.0;
}

Test(metrics, sklearn_docs_example) {
    // sklearn: average_precision_score([0,0,1,1], [0.1,0.4,0.35,0.8]) == 0.8333333333333333
    float s[] = {0.1f, 0.4f, 0.35f, 0.8f};
    int8_t y[] = {0, 0, 1, 1};
    cr_assert_float_eq(ap_f32(s, y, 4), 0.8333333333333333, 1e-15);
}

Test(metrics, ties_are_one_threshold) {
    // sklearn: ([1,0,1,0], [.5]*4) -> 0.5 ; ([1,0,0,1,1], [.9,.9,.5,.5,.1]) -> 0.5333333333333333
    float s1[] = {0.5f, 0.5f, 0.5f, 0.5f};
    int8_t y1[] = {1, 0, 1, 0};
    cr_assert_float_eq(ap_f32(s1, y1, 4), 0.5, 1e-15);
    float s2[] = {0.9f, 0.9f, 0.5f, 0.5f, 0.1f};
    int8_t y2[] = {1, 0, 0, 1, 1};
    cr_assert_float_eq(ap_f32(s2, y2, 5), 0.5333333333333333, 1e-15);
    // The same tie in another row order gives the same value (a tie is not ranked).
    float s3[] = {0.5f, 0.9f, 0.1f, 0.5f, 0.9f};
    int8_t y3[] = {0, 0, 1, 1, 1};
    cr_assert_float_eq(ap_f32(s3, y3, 5), 0.5333333333333333, 1e-15);
}

Test(metrics, no_positive_is_zero_and_masked_entries_are_skipped) {
    float s[] = {0.9f, 0.2f, 0.3f};
    int8_t none[] = {0, 0, 0};
    cr_assert_eq(ap_f32(s, none, 3), 0.0);
    // The masked negative above the positive must not count: AP 1, not 0.5.
    int8_t masked[] = {-1, 0, 1};
    cr_assert_float_eq(ap_f32(s, masked, 3), 1.0, 1e-15);
    // Negative zero ties with zero (numpy compares them equal).
    float z[] = {-0.0f, 0.0f};
    int8_t yz[] = {0, 1};
    cr_assert_float_eq(ap_f32(z, yz, 2), 0.5, 1e-15);
}

Test(metrics, matrix_map_groups_and_skipped_classes) {
    // 4 images x 4 classes. Class 0: AP 0.8333 (the docs example); class 1: no positive
    // -> 0; class 2: every label unknown -> skipped; class 3: AP 1.
    float s[] = {0.1f,  0.5f, 0.3f, 0.9f, //
                 0.4f,  0.2f, 0.3f, 0.1f, //
                 0.35f, 0.7f, 0.3f, 0.2f, //
                 0.8f,  0.1f, 0.3f, 0.05f};
    int8_t y[] = {0, 0,  -1, 1,  //
                  0, 0,  -1, -1, //
                  1, 0,  -1, 0,  //
                  1, -1, -1, 0};
    int offsets[] = {0, 2, 3, 4};
    int classes[] = {0, 1, 3, 2};
    wsml_groups groups = {3, offsets, classes};
    wsml_metrics m;
    wsml_err err = {0};
    cr_assert_eq(wsml_metrics_compute(s, y, 4, 4, &groups, &m, &err), 0, "%s", err.msg);
    cr_assert_float_eq(m.ap[0], 0.8333333333333333, 1e-15);
    cr_assert_eq(m.ap[1], 0.0);
    cr_assert(isnan(m.ap[2]));
    cr_assert_float_eq(m.ap[3], 1.0, 1e-15);
    cr_assert_eq(m.num_included, 3);
    cr_assert_eq(m.num_pos[0], 2);
    cr_assert_eq(m.num_known[1], 3);
    cr_assert_eq(m.num_known[2], 0);
    cr_assert_eq(m.included[2], 0);
    cr_assert_float_eq(m.map, 100.0 * (0.8333333333333333 + 0 + 1) / 3, 1e-12);
    cr_assert_eq(m.num_groups, 3);
    cr_assert_float_eq(m.group_map[0], 100.0 * 0.8333333333333333 / 2, 1e-12);
    cr_assert_float_eq(m.group_map[1], 100.0, 1e-12);
    cr_assert(isnan(m.group_map[2]), "a group whose classes are all skipped has no mAP");
    cr_assert_eq(m.group_included[2], 0);
    wsml_metrics_free(&m);
}

// Random matrices with heavy ties, masks and all-negative classes against the definition;
// row permutations must give bit-identical results.
Test(metrics, random_against_definition_and_permutation_invariant) {
    srand(12345);
    for (int trial = 0; trial < 20; trial++) {
        int64_t n = 1 + rand() % 300;
        int c = 1 + rand() % 12;
        int levels = trial % 3 == 0 ? 3 : (trial % 3 == 1 ? 11 : 100000);
        float *s = malloc((size_t)(n * c) * sizeof(float));
        double *sd = malloc((size_t)(n * c) * sizeof(double));
        int8_t *y = malloc((size_t)(n * c));
        for (int64_t i = 0; i < n * c; i++) {
            s[i] = (float)(rand() % levels) / (float)levels;
            sd[i] = s[i];
            int r = rand() % 10;
            y[i] = r < 3 ? 1 : (r < 8 ? 0 : -1);
        }
        for (int64_t i = 0; i < n; i++)
            y[i * c] = (i % 4 == 0) ? -1 : 0; // class 0: no positive
        wsml_metrics m, mp;
        wsml_err err = {0};
        cr_assert_eq(wsml_metrics_compute(s, y, n, c, NULL, &m, &err), 0, "%s", err.msg);
        double sum = 0;
        int used = 0;
        for (int k = 0; k < c; k++) {
            int has_known = 0;
            for (int64_t i = 0; i < n; i++)
                has_known |= y[i * c + k] != -1;
            if (!has_known) {
                cr_assert(!m.included[k]);
                continue;
            }
            double want = ap_definition(sd + k, y + k, n, c);
            cr_assert(fabs(m.ap[k] - want) < 1e-12, "trial %d class %d: %.17g vs %.17g", trial, k,
                      m.ap[k], want);
            sum += want;
            used++;
        }
        cr_assert_eq(m.ap[0], 0.0);
        cr_assert_eq(used, m.num_included);
        cr_assert(fabs(m.map - 100.0 * sum / used) < 1e-10);
        // Reverse the rows: same bits.
        float *s2 = malloc((size_t)(n * c) * sizeof(float));
        int8_t *y2 = malloc((size_t)(n * c));
        for (int64_t i = 0; i < n; i++) {
            memcpy(s2 + i * c, s + (n - 1 - i) * c, (size_t)c * sizeof(float));
            memcpy(y2 + i * c, y + (n - 1 - i) * c, (size_t)c);
        }
        cr_assert_eq(wsml_metrics_compute(s2, y2, n, c, NULL, &mp, &err), 0, "%s", err.msg);
        for (int k = 0; k < c; k++)
            cr_assert(memcmp(&m.ap[k], &mp.ap[k], sizeof(double)) == 0, "trial %d class %d", trial,
                      k);
        // float64 input with the same values: same results.
        wsml_metrics md;
        cr_assert_eq(wsml_metrics_compute_f64(sd, y, n, c, NULL, &md, &err), 0, "%s", err.msg);
        for (int k = 0; k < c; k++)
            cr_assert(m.included[k] ? md.ap[k] == m.ap[k] : isnan(md.ap[k]));
        wsml_metrics_free(&m);
        wsml_metrics_free(&mp);
        wsml_metrics_free(&md);
        free(s);
        free(sd);
        free(y);
        free(s2);
        free(y2);
    }
}

// Scores that differ in float64 but not in float32 are distinct thresholds in the f64 API.
Test(metrics, f64_keeps_its_own_ties) {
    double s[] = {0.5, 0.5 + 1e-12};
    int8_t y[] = {1, 0};
    wsml_metrics m;
    wsml_err err = {0};
    cr_assert_eq(wsml_metrics_compute_f64(s, y, 2, 1, NULL, &m, &err), 0, "%s", err.msg);
    cr_assert_float_eq(m.ap[0], 0.5, 1e-15); // the negative ranks first
    wsml_metrics_free(&m);
    float sf[] = {(float)s[0], (float)s[1]};
    cr_assert_float_eq(ap_f32(sf, y, 2), 0.5, 1e-15); // one threshold: tp 1, fp 1
}

Test(metrics, bad_input_is_an_error_naming_row_and_class) {
    float s[] = {0.1f, NAN, 0.3f, 0.4f};
    int8_t y[] = {0, 1, 0, 1};
    wsml_metrics m;
    wsml_err err = {0};
    cr_assert_eq(wsml_metrics_compute(s, y, 2, 2, NULL, &m, &err), WSML_EARG);
    cr_assert(strstr(err.msg, "row 0, class 1") && strstr(err.msg, "NaN"), "%s", err.msg);
    float ok[] = {0.1f, 0.2f, 0.3f, 0.4f};
    int8_t bad[] = {0, 1, 2, 1};
    cr_assert_eq(wsml_metrics_compute(ok, bad, 2, 2, NULL, &m, &err), WSML_EARG);
    cr_assert(strstr(err.msg, "row 1, class 0"), "%s", err.msg);
    int offsets[] = {0, 1};
    int classes[] = {5};
    wsml_groups groups = {1, offsets, classes};
    cr_assert_eq(wsml_metrics_compute(ok, y, 2, 2, &groups, &m, &err), WSML_EARG);
    cr_assert(strstr(err.msg, "class 5"), "%s", err.msg);
}

Test(metrics, groups_from_json) {
    wsml_groups g;
    wsml_err err = {0};
    cr_assert_eq(wsml_groups_parse_json("[[2, 0], [1], []]", 3, "g.json", &g, &err), 0, "%s",
                 err.msg);
    cr_assert_eq(g.num_groups, 3);
    cr_assert_eq(g.offsets[1], 2);
    cr_assert_eq(g.offsets[3], 3);
    cr_assert_eq(g.classes[0], 2);
    cr_assert_eq(g.classes[2], 1);
    wsml_groups_free(&g);
    cr_assert_eq(
        wsml_groups_parse_json("{\"name\": \"oi\", \"groups\": [[1], [0]]}", 2, "info", &g, &err),
        0, "%s", err.msg);
    cr_assert_eq(g.num_groups, 2);
    wsml_groups_free(&g);
    cr_assert_eq(wsml_groups_parse_json("{\"name\": \"voc\"}", 2, "info", &g, &err), 0);
    cr_assert_eq(g.num_groups, 0);
    cr_assert_eq(wsml_groups_parse_json("[[0, 3]]", 3, "g.json", &g, &err), WSML_EFORMAT);
    cr_assert(strstr(err.msg, "g.json") && strstr(err.msg, "group 1"), "%s", err.msg);
    cr_assert_eq(wsml_groups_parse_json("[[0, 1.5]]", 3, "g.json", &g, &err), WSML_EFORMAT);
    cr_assert_eq(wsml_groups_parse_json("[[0], ", 3, "g.json", &g, &err), WSML_EFORMAT);
    cr_assert_eq(wsml_groups_parse_json("[1, 2]", 3, "g.json", &g, &err), WSML_EFORMAT);
}

// The trainer's hook (train/trainer.h wsml_metrics_fn) with groups from a store info JSON.
Test(metrics, map_groups_hook) {
    float s[] = {0.1f, 0.9f, 0.8f, 0.2f, 0.3f, 0.4f};
    // class 0: 0.8 negative above positives 0.3, 0.1: AP (1/2 + 2/3) / 2; class 1: AP 1
    int8_t y[] = {1, 1, 0, 0, 1, -1};
    double map = 0, groups[WSML_METRICS_MAX_GROUPS];
    int num_groups = -1;
    wsml_err err = {0};
    cr_assert_eq(wsml_metrics_map_groups(s, y, 3, 2, "{\"name\": \"oi\", \"groups\": [[1], [0]]}",
                                         &map, groups, &num_groups, &err),
                 0, "%s", err.msg);
    double ap0 = (0.5 + 2.0 / 3.0) / 2;
    cr_assert_float_eq(map, 100.0 * (ap0 + 1) / 2, 1e-12);
    cr_assert_eq(num_groups, 2);
    cr_assert_float_eq(groups[0], 100.0, 1e-12);
    cr_assert_float_eq(groups[1], 100.0 * ap0, 1e-12);
    cr_assert_eq(wsml_metrics_map_groups(s, y, 3, 2, NULL, &map, groups, &num_groups, &err), 0);
    cr_assert_eq(num_groups, 0);
}

// Many rows: the matrix is gathered in blocks of classes (16 here, with a short last
// block); each class must equal the single-column path, which gathers one class alone.
Test(metrics, blocked_gather_equals_single_columns) {
    int64_t n = 20000;
    int c = 40;
    float *s = malloc((size_t)(n * c) * sizeof(float));
    int8_t *y = malloc((size_t)(n * c));
    uint64_t *work = malloc((size_t)(2 * n) * sizeof(uint64_t));
    srand(99);
    for (int64_t i = 0; i < n * c; i++) {
        s[i] = (float)(rand() % 1000) / 1000.0f;
        int r = rand() % 20;
        y[i] = r < 2 ? 1 : (r < 17 ? 0 : -1);
    }
    wsml_metrics m;
    wsml_err err = {0};
    cr_assert_eq(wsml_metrics_compute(s, y, n, c, NULL, &m, &err), 0, "%s", err.msg);
    for (int k = 0; k < c; k++) {
        double ap;
        int64_t num_pos, num_known;
        cr_assert_eq(
            wsml_average_precision_f32(s + k, y + k, n, c, work, &ap, &num_pos, &num_known, &err),
            0, "%s", err.msg);
        cr_assert_eq(ap, m.ap[k], "class %d: %.17g vs %.17g", k, ap, m.ap[k]);
        cr_assert_eq(num_pos, m.num_pos[k]);
        cr_assert_eq(num_known, m.num_known[k]);
    }
    wsml_metrics_free(&m);
    free(s);
    free(y);
    free(work);
}
