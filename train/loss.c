// Losses of docs/methods.md §2 (see loss.h for exactly what each computes).
//
// Per-entry arithmetic is float32 in the order PyTorch evaluates the reference code,
// so that the selected entries and the values match it to float rounding; batch sums
// are accumulated in double.
#include "train/loss.h"

#include "common/rng.h"

#include <ctype.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

// The per-entry float32 formulas mirror PyTorch's separate roundings; keep the compiler
// from fusing multiply-adds on FMA targets (-march=native).
#if defined(__clang__)
#pragma clang fp contract(off)
#elif defined(__GNUC__)
#pragma GCC optimize("fp-contract=off")
#endif

static const char *const loss_names[WSML_LOSS_NUM_KINDS] = {
    "full", "an", "an-ls", "wan", "epr", "role", "ll-r", "ll-ct", "ll-cp",
};

void wsml_loss_config_default(wsml_loss_config *cfg) {
    memset(cfg, 0, sizeof(*cfg));
    cfg->kind = WSML_LOSS_AN;
    cfg->threshold = WSML_THRESHOLD_RELATIVE;
    cfg->delta_rel_percent = 0.2;
    cfg->r0 = 2.0;
    cfg->delta_abs = 0.1;
    cfg->ls_coef = 0.1;
    cfg->expected_num_pos = 0.0;
    cfg->reference_quirks = 0;
}

int wsml_loss_kind_parse(const char *name) {
    for (int i = 0; i < WSML_LOSS_NUM_KINDS; i++)
        if (strcmp(name, loss_names[i]) == 0)
            return i;
    return -1;
}

const char *wsml_loss_kind_name(wsml_loss_kind kind) {
    return (unsigned)kind < WSML_LOSS_NUM_KINDS ? loss_names[kind] : "?";
}

int wsml_threshold_kind_parse(const char *name) {
    if (strcmp(name, "relative") == 0)
        return WSML_THRESHOLD_RELATIVE;
    if (strcmp(name, "absolute") == 0)
        return WSML_THRESHOLD_ABSOLUTE;
    return -1;
}

const char *wsml_threshold_kind_name(wsml_threshold_kind kind) {
    return kind == WSML_THRESHOLD_ABSOLUTE ? "absolute" : "relative";
}

int wsml_loss_is_large_loss(wsml_loss_kind kind) {
    return kind == WSML_LOSS_LL_R || kind == WSML_LOSS_LL_CT || kind == WSML_LOSS_LL_CP;
}

int wsml_loss_uses_expected_num_pos(wsml_loss_kind kind) {
    return kind == WSML_LOSS_EPR || kind == WSML_LOSS_ROLE;
}

int wsml_loss_config_check(const wsml_loss_config *cfg, int num_classes, wsml_err *err) {
    if ((unsigned)cfg->kind >= WSML_LOSS_NUM_KINDS)
        return wsml_errf(err, WSML_EARG, "--loss: unknown loss kind %d", (int)cfg->kind);
    if (num_classes < 1)
        return wsml_errf(err, WSML_EARG, "loss: number of classes %d must be >= 1", num_classes);
    if (wsml_loss_is_large_loss(cfg->kind)) {
        if (cfg->threshold == WSML_THRESHOLD_RELATIVE) {
            if (!(cfg->delta_rel_percent >= 0.0 && cfg->delta_rel_percent <= 100.0))
                return wsml_errf(err, WSML_EARG, "--delta-rel: %g is not a percentage in [0, 100]",
                                 cfg->delta_rel_percent);
        } else if (cfg->threshold == WSML_THRESHOLD_ABSOLUTE) {
            if (!isfinite(cfg->r0))
                return wsml_errf(err, WSML_EARG, "--r0: %g is not finite", cfg->r0);
            if (!(cfg->delta_abs >= 0.0 && isfinite(cfg->delta_abs)))
                return wsml_errf(err, WSML_EARG, "--delta-abs: %g must be >= 0", cfg->delta_abs);
        } else {
            return wsml_errf(err, WSML_EARG, "--threshold: unknown kind %d", (int)cfg->threshold);
        }
    }
    if (cfg->kind == WSML_LOSS_AN_LS && !(cfg->ls_coef >= 0.0 && cfg->ls_coef <= 1.0))
        return wsml_errf(err, WSML_EARG, "--ls: %g is not in [0, 1]", cfg->ls_coef);
    if (cfg->kind == WSML_LOSS_WAN && num_classes < 2)
        return wsml_errf(err, WSML_EARG, "--loss wan: needs at least 2 classes, got %d",
                         num_classes);
    if (wsml_loss_uses_expected_num_pos(cfg->kind) &&
        !(cfg->expected_num_pos > 0.0 && isfinite(cfg->expected_num_pos)))
        return wsml_errf(err, WSML_EARG,
                         "--epr-k: expected positives per image %g must be > 0 for --loss %s",
                         cfg->expected_num_pos, wsml_loss_kind_name(cfg->kind));
    return 0;
}

// Cole et al.'s train.py lookup table ('expected_num_pos').
static const struct {
    const char *name;
    double k;
} EXPECTED_POS[] = {{"voc", 1.5},     {"pascal", 1.5},   {"coco", 2.9},
                    {"nuswide", 1.9}, {"nus-wide", 1.9}, {"cub", 31.4}};

static double expected_num_pos_table(const char *dataset_name) {
    if (dataset_name)
        for (size_t i = 0; i < sizeof(EXPECTED_POS) / sizeof(EXPECTED_POS[0]); i++)
            if (strcmp(dataset_name, EXPECTED_POS[i].name) == 0)
                return EXPECTED_POS[i].k;
    return 0.0;
}

double wsml_expected_num_pos(const char *dataset_name, const int8_t *full, int64_t num_images,
                             int num_classes) {
    double k = expected_num_pos_table(dataset_name);
    if (k > 0)
        return k;
    if (!full || num_images <= 0 || num_classes <= 0)
        return 0.0;
    int64_t positives = 0;
    for (int64_t i = 0; i < num_images * (int64_t)num_classes; i++)
        positives += full[i] == 1;
    return (double)positives / (double)num_images;
}

double wsml_expected_num_pos_for_store(const char *format, const char *name) {
    if (format && (!strcmp(format, "voc") || !strcmp(format, "coco") || !strcmp(format, "cub")))
        return expected_num_pos_table(format);
    // a generic format (npy, csv, ...): the name given at ingest, e.g. "NUS-WIDE" or "nus_wide"
    char key[64];
    size_t n = 0;
    for (const char *c = name ? name : ""; *c && n + 1 < sizeof key; c++)
        if (*c != '-' && *c != '_' && *c != ' ')
            key[n++] = (char)tolower((unsigned char)*c);
    key[n] = 0;
    return expected_num_pos_table(key);
}

// ---- large-loss schedule --------------------------------------------------------------

double wsml_ll_clean_rate(double delta_rel_percent, int epoch) {
    // train.py: P['delta_rel'] /= 100 once; P['clean_rate'] = 1; after every epoch
    // P['clean_rate'] -= P['delta_rel']. Repeating the subtractions (not 1 - t·δ)
    // reproduces its rounding.
    double delta = delta_rel_percent != 0.0 ? delta_rel_percent / 100.0 : 0.0;
    double clean = 1.0;
    for (int t = 1; t < epoch; t++)
        clean -= delta;
    return clean;
}

int64_t wsml_ll_k(const wsml_loss_config *cfg, int batch_size, int num_classes, int epoch) {
    double clean = wsml_ll_clean_rate(cfg->delta_rel_percent, epoch);
    if (clean == 1.0)
        return 0; // losses.py: "if epoch is 1, do not modify losses"
    double entries = (double)((int64_t)batch_size * num_classes);
    if (cfg->kind == WSML_LOSS_LL_CP && !cfg->reference_quirks)
        return (int64_t)ceil(entries * (cfg->delta_rel_percent / 100.0));
    return (int64_t)ceil(entries * (1.0 - clean));
}

double wsml_ll_abs_threshold(const wsml_loss_config *cfg, int epoch) {
    return cfg->r0 - (double)(epoch - 1) * cfg->delta_abs; // supp. §B
}

// ---- float32 primitives as PyTorch evaluates them -------------------------------------

// binary_cross_entropy_with_logits(z, t), reduction 'none' (ATen's max_val form; it
// is exactly 0 for z <= -17 with t = 0, a fact the top-k ties depend on).
static inline float bce_logits(float z, float t) {
    float max_val = -z > 0.0f ? -z : 0.0f;
    return (1.0f - t) * z + max_val + logf(expf(-max_val) + expf(-z - max_val));
}

static inline float sigmoidf(float z) {
    return 1.0f / (1.0f + expf(-z));
}

// Cole et al.'s neg_log: −log(x + 1e-5).
#define LOG_EPSILON 1e-5f
static inline float neg_log(float x) {
    return -logf(x + LOG_EPSILON);
}

// k-th largest (1-based) of v[0..n) by quickselect; v is reordered.
static float kth_largest(float *v, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1, want = k - 1; // index in descending order
    while (lo < hi) {
        float a = v[lo], b = v[lo + (hi - lo) / 2], c = v[hi];
        float pivot = (a > b) ? ((b > c) ? b : (a > c ? c : a)) : ((a > c) ? a : (b > c ? c : b));
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] > pivot)
                i++;
            while (v[j] < pivot)
                j--;
            if (i <= j) {
                float tmp = v[i];
                v[i] = v[j];
                v[j] = tmp;
                i++;
                j--;
            }
        }
        if (want <= j)
            hi = j;
        else if (want >= i)
            lo = i;
        else
            return v[want]; // between j and i: equals the pivot
    }
    return v[want];
}

// ---- loss families ----------------------------------------------------------------------

// AN / full / LL-R / LL-Ct / LL-Cp: stable bce from logits (LargeLossMatters losses.py).
static int loss_large_family(const wsml_loss_config *cfg, const wsml_loss_input *in,
                             wsml_loss_output *out, wsml_err *err) {
    const int B = in->batch_size, C = in->num_classes;
    const int64_t N = (int64_t)B * C;
    const float grad_scale = 1.0f / (float)N; // MeanBackward: grad / numel
    wsml_loss_stats *st = &out->stats;
    const int modify = wsml_loss_is_large_loss(cfg->kind);
    const int permanent = cfg->kind == WSML_LOSS_LL_CP && !cfg->reference_quirks;
    const int reject = cfg->kind == WSML_LOSS_LL_R;

    float *unobserved_loss = malloc((size_t)N * 2 * sizeof(float));
    if (!unobserved_loss)
        return wsml_errf(err, WSML_ENOMEM, "loss: out of memory (%lld entries)", (long long)N);
    float *scratch = unobserved_loss + N;
    for (int64_t i = 0; i < N; i++) {
        float target = cfg->kind == WSML_LOSS_FULL ? (in->full[i] == 1) : (in->observed[i] == 1);
        float loss = bce_logits(in->logits[i], target);
        unobserved_loss[i] = in->observed[i] == 0 ? loss : 0.0f;
    }

    // Which entries are modified in this batch (docs/methods.md §2 "Large-loss modification").
    int have_threshold = 0, strict = 0;
    float thr = NAN;
    if (modify && cfg->threshold == WSML_THRESHOLD_RELATIVE) {
        int64_t k = wsml_ll_k(cfg, B, C, in->epoch);
        st->k = k;
        if (k > N) {
            free(unobserved_loss);
            return wsml_errf(err, WSML_EARG,
                             "--delta-rel: %g%% at epoch %d asks to modify %lld of %lld losses",
                             cfg->delta_rel_percent, in->epoch, (long long)k, (long long)N);
        }
        if (k > 0) {
            memcpy(scratch, unobserved_loss, (size_t)N * sizeof(float));
            thr = kth_largest(scratch, N, k); // torch.topk(U.flatten(), k).values[-1]
            have_threshold = 1;
        }
    } else if (modify) {
        thr = (float)wsml_ll_abs_threshold(cfg, in->epoch); // tensor > python float
        have_threshold = 1;
        strict = 1;
    }
    st->threshold = thr;

    double sum = 0.0;
    int64_t modified = 0, modified_hidden = 0, hidden = 0, flips = 0;
    for (int b = 0; b < B; b++) {
        for (int c = 0; c < C; c++) {
            int64_t i = (int64_t)b * C + c;
            float z = in->logits[i];
            int8_t y = in->observed[i];
            float target = cfg->kind == WSML_LOSS_FULL ? (in->full[i] == 1) : (y == 1);
            float u = unobserved_loss[i];
            int mod = 0;
            if (have_threshold) {
                if (strict)
                    mod = y == 0 && u > thr;
                else if (cfg->reference_quirks)
                    mod = !(u < thr); // torch.where(U < thr, L, corrected): every entry
                else
                    mod = y == 0 && u >= thr;
            }
            float loss, dz;
            if (!mod) {
                loss = bce_logits(z, target);
                dz = (sigmoidf(z) - target) * grad_scale;
            } else if (reject) {
                loss = 0.0f;
                dz = 0.0f;
            } else {
                // corrected target: logical_not(y_obs.clip(0)) — 1 except observed positives
                float corrected = y == 1 ? 0.0f : 1.0f;
                loss = bce_logits(z, corrected);
                dz = (sigmoidf(z) - corrected) * grad_scale;
            }
            sum += loss;
            out->dlogits[i] = dz;
            if (out->modified)
                out->modified[i] = (uint8_t)mod;
            modified += mod;
            if (in->full) {
                int hidden_pos = y == 0 && in->full[i] == 1;
                hidden += hidden_pos;
                modified_hidden += mod && hidden_pos;
            }
            // train.py: correction_idx = where(U > thr) become observed positives.
            if (permanent && have_threshold && u > thr && y == 0) {
                if (out->flips) {
                    out->flips[2 * flips] = b;
                    out->flips[2 * flips + 1] = c;
                }
                flips++;
            }
        }
    }
    free(unobserved_loss);
    st->loss = sum / (double)N;
    st->reg = 0.0;
    st->num_modified = modified;
    st->num_modified_hidden_pos = in->full ? modified_hidden : -1;
    st->num_hidden_pos = in->full ? hidden : -1;
    st->num_flips = flips;
    return 0;
}

// EPR's regulariser (mean_b Σ_c p − k)² / C² and its gradient w.r.t. each p (the same
// for every entry). `weight` is the factor the regulariser enters the loss with (1 for
// EPR, 0.5 for ROLE). The gradient follows autograd's float32 chain: weight / C²
// (DivBackward), · 2·(m − k) (PowBackward), / B (MeanBackward); m is rounded to float
// as torch's preds.sum(1).mean(0) is.
static void epr_regularizer(const float *p, int B, int C, double k, float weight, double *reg,
                            float *dreg) {
    double mean = 0.0;
    for (int b = 0; b < B; b++) {
        double row = 0.0;
        for (int c = 0; c < C; c++)
            row += p[(int64_t)b * C + c];
        mean += (float)row;
    }
    float m = (float)(mean / B);
    float m_minus_k = m - (float)k;
    *reg = (double)weight * ((double)m_minus_k * m_minus_k / ((double)C * C));
    *dreg = ((weight / (float)((int64_t)C * C)) * (2.0f * m_minus_k)) / (float)B;
}

// Cole et al.'s AN-LS, WAN, EPR, ROLE on p = sigmoid(z) with neg_log
// (single-positive-multi-label losses.py): batch loss = Σ (loss_mtx / N) + reg.
static int loss_cole_family(const wsml_loss_config *cfg, const wsml_loss_input *in,
                            wsml_loss_output *out, wsml_err *err) {
    const int B = in->batch_size, C = in->num_classes;
    const int64_t N = (int64_t)B * C;
    const float denom = (float)N;
    const float g = 1.0f / denom; // DivBackward of loss_mtx / loss_denom_mtx
    wsml_loss_stats *st = &out->stats;
    const int role = cfg->kind == WSML_LOSS_ROLE;

    float *p = malloc((size_t)N * (role ? 2 : 1) * sizeof(float));
    if (!p)
        return wsml_errf(err, WSML_ENOMEM, "loss: out of memory (%lld entries)", (long long)N);
    float *q = role ? p + N : NULL;
    for (int64_t i = 0; i < N; i++)
        p[i] = sigmoidf(in->logits[i]);
    if (role)
        for (int64_t i = 0; i < N; i++)
            q[i] = sigmoidf(in->estimator_logits[i]);

    double reg = 0.0, reg_q = 0.0;
    float dreg_p = 0.0f, dreg_q = 0.0f;
    if (cfg->kind == WSML_LOSS_EPR)
        epr_regularizer(p, B, C, cfg->expected_num_pos, 1.0f, &reg, &dreg_p);
    if (role) { // reg = 0.5·(reg(p) + reg(q))
        epr_regularizer(p, B, C, cfg->expected_num_pos, 0.5f, &reg, &dreg_p);
        epr_regularizer(q, B, C, cfg->expected_num_pos, 0.5f, &reg_q, &dreg_q);
        reg += reg_q;
    }

    const float ls_hi = (float)(1.0 - cfg->ls_coef), ls_lo = (float)cfg->ls_coef;
    const float wan_weight = (float)(C - 1);
    double sum = 0.0;
    int64_t hidden = 0;
    for (int64_t i = 0; i < N; i++) {
        const int pos = in->observed[i] == 1;
        const float pi = p[i], one_minus_p = 1.0f - pi;
        float l = 0.0f, dp = 0.0f; // loss_mtx entry and dloss/dp
        switch (cfg->kind) {
        case WSML_LOSS_AN_LS:
            if (pos) {
                l = ls_hi * neg_log(pi) + ls_lo * neg_log(one_minus_p);
                dp = -(g * ls_hi) / (pi + LOG_EPSILON) + (g * ls_lo) / (one_minus_p + LOG_EPSILON);
            } else {
                l = ls_hi * neg_log(one_minus_p) + ls_lo * neg_log(pi);
                dp = (g * ls_hi) / (one_minus_p + LOG_EPSILON) - (g * ls_lo) / (pi + LOG_EPSILON);
            }
            break;
        case WSML_LOSS_WAN:
            if (pos) {
                l = neg_log(pi);
                dp = -g / (pi + LOG_EPSILON);
            } else {
                l = neg_log(one_minus_p) / wan_weight;
                dp = (g / wan_weight) / (one_minus_p + LOG_EPSILON);
            }
            break;
        case WSML_LOSS_EPR:
            if (pos) {
                l = neg_log(pi);
                dp = -g / (pi + LOG_EPSILON);
            }
            dp += dreg_p;
            break;
        case WSML_LOSS_ROLE: {
            // loss_mtx = 0.5·(A_f + A_g) + 0.5·(X_f + X_g); bars are detached copies.
            const float qi = q[i], one_minus_q = 1.0f - qi;
            const float h = 0.5f * g;
            float a_f = pos ? neg_log(pi) : 0.0f, a_g = pos ? neg_log(qi) : 0.0f;
            float x_f = qi * neg_log(pi) + one_minus_q * neg_log(one_minus_p);
            float x_g = pi * neg_log(qi) + one_minus_p * neg_log(one_minus_q);
            l = 0.5f * (a_f + a_g) + 0.5f * (x_f + x_g);
            // Autograd adds the contributions to dL/dp in reverse creation order:
            // reg (preds.sum), 1 − p (cross), neg_log(p) (cross), then preds[obs == 1].
            float dp_cross_neg = (h * one_minus_q) / (one_minus_p + LOG_EPSILON);
            float dp_cross_log = -(h * qi) / (pi + LOG_EPSILON);
            dp = (dreg_p + dp_cross_neg) + dp_cross_log;
            if (pos)
                dp += -h / (pi + LOG_EPSILON);
            float dq_cross_neg = (h * one_minus_p) / (one_minus_q + LOG_EPSILON);
            float dq_cross_log = -(h * pi) / (qi + LOG_EPSILON);
            float dq = (dreg_q + dq_cross_neg) + dq_cross_log;
            if (pos)
                dq += -h / (qi + LOG_EPSILON);
            out->destimator_logits[i] = dq * (1.0f - qi) * qi; // sigmoid backward
            break;
        }
        default:
            free(p);
            return wsml_errf(err, WSML_EARG, "loss: %s is not a Cole et al. loss",
                             wsml_loss_kind_name(cfg->kind));
        }
        sum += l / denom;
        out->dlogits[i] = dp * one_minus_p * pi; // sigmoid backward: g·(1 − p)·p
        if (in->full)
            hidden += in->observed[i] == 0 && in->full[i] == 1;
        if (out->modified)
            out->modified[i] = 0;
    }
    free(p);
    st->loss = sum + reg;
    st->reg = reg;
    st->k = 0;
    st->threshold = NAN;
    st->num_modified = 0;
    st->num_modified_hidden_pos = in->full ? 0 : -1;
    st->num_hidden_pos = in->full ? hidden : -1;
    st->num_flips = 0;
    return 0;
}

int wsml_loss_compute(const wsml_loss_config *cfg, const wsml_loss_input *in, wsml_loss_output *out,
                      wsml_err *err) {
    const int B = in->batch_size, C = in->num_classes;
    if (B < 1 || C < 1)
        return wsml_errf(err, WSML_EARG, "loss: batch %d x %d classes is empty", B, C);
    if (in->epoch < 1)
        return wsml_errf(err, WSML_EARG, "loss: epoch %d must be >= 1", in->epoch);
    if (!in->logits || !in->observed || !out->dlogits)
        return wsml_errf(err, WSML_EARG, "loss: logits, observed labels and dlogits are required");
    if (cfg->kind == WSML_LOSS_FULL && !in->full)
        return wsml_errf(err, WSML_EARG, "--loss full: needs full labels and the batch has none");
    if (cfg->kind == WSML_LOSS_ROLE && (!in->estimator_logits || !out->destimator_logits))
        return wsml_errf(err, WSML_EARG, "--loss role: needs the label estimator's rows");
    int rc = wsml_loss_config_check(cfg, C, err);
    if (rc)
        return rc;
    memset(&out->stats, 0, sizeof(out->stats));
    for (int64_t i = 0; i < (int64_t)B * C; i++) {
        if (!isfinite(in->logits[i]))
            return wsml_errf(err, WSML_ENUMERIC, "loss: logit of batch row %lld, class %lld is %g",
                             (long long)(i / C), (long long)(i % C), (double)in->logits[i]);
        if (cfg->kind == WSML_LOSS_ROLE && !isfinite(in->estimator_logits[i]))
            return wsml_errf(err, WSML_ENUMERIC,
                             "loss: label estimator logit of batch row %lld, class %lld is %g",
                             (long long)(i / C), (long long)(i % C),
                             (double)in->estimator_logits[i]);
    }
    switch (cfg->kind) {
    case WSML_LOSS_FULL:
    case WSML_LOSS_AN:
    case WSML_LOSS_LL_R:
    case WSML_LOSS_LL_CT:
    case WSML_LOSS_LL_CP:
        return loss_large_family(cfg, in, out, err);
    default:
        return loss_cole_family(cfg, in, out, err);
    }
}

// ---- ROLE's label estimator ---------------------------------------------------------------

// models.py inverse_sigmoid: clip to [1e-5, 1 − 1e-5], then log(p / (1 − p)), in double.
static double inverse_sigmoid(double p) {
    const double epsilon = 1e-5;
    if (p > 1 - epsilon)
        p = 1 - epsilon;
    if (p < epsilon)
        p = epsilon;
    return log(p / (1 - p));
}

void wsml_role_init_estimator(float *estimator_logits, const int8_t *observed, int64_t num_images,
                              int num_classes, uint32_t seed) {
    wsml_rng rng;
    wsml_rng_seed(&rng, seed);
    const double w = inverse_sigmoid(0.5 + 0.1);
    const float init_pos = (float)inverse_sigmoid(0.995);
    const float init_neg = (float)inverse_sigmoid(0.005);
    for (int64_t i = 0; i < num_images * (int64_t)num_classes; i++) {
        float g = (float)(w * (2.0 * wsml_rng_double(&rng) - 1.0));
        if (observed[i] == 1)
            g = init_pos;
        if (observed[i] == -1)
            g = init_neg;
        estimator_logits[i] = g;
    }
}

// ---- LL-Cp's label state --------------------------------------------------------------------

#define EMPTY_SLOT UINT64_MAX

static uint64_t mix64(uint64_t x) { // splitmix64 finaliser
    x ^= x >> 30;
    x *= 0xbf58476d1ce4e5b9ULL;
    x ^= x >> 27;
    x *= 0x94d049bb133111ebULL;
    x ^= x >> 31;
    return x;
}

int wsml_label_state_init(wsml_label_state *s, int64_t num_images, int num_classes, wsml_err *err) {
    memset(s, 0, sizeof(*s));
    if (num_images < 0 || num_classes < 1)
        return wsml_errf(err, WSML_EARG, "label state: bad size %lld x %d", (long long)num_images,
                         num_classes);
    s->num_images = num_images;
    s->num_classes = num_classes;
    s->capacity = 1024;
    s->slots = malloc(s->capacity * sizeof(uint64_t));
    s->per_image = calloc(num_images > 0 ? (size_t)num_images : 1, sizeof(uint32_t));
    if (!s->slots || !s->per_image) {
        wsml_label_state_free(s);
        return wsml_errf(err, WSML_ENOMEM, "label state: out of memory for %lld images",
                         (long long)num_images);
    }
    memset(s->slots, 0xff, s->capacity * sizeof(uint64_t));
    return 0;
}

void wsml_label_state_free(wsml_label_state *s) {
    free(s->slots);
    free(s->per_image);
    memset(s, 0, sizeof(*s));
}

// Slot of key, or of the empty slot where it would go.
static size_t find_slot(const uint64_t *slots, size_t capacity, uint64_t key) {
    size_t mask = capacity - 1, i = (size_t)mix64(key) & mask;
    while (slots[i] != EMPTY_SLOT && slots[i] != key)
        i = (i + 1) & mask;
    return i;
}

static int grow(wsml_label_state *s, wsml_err *err) {
    size_t capacity = s->capacity * 2;
    uint64_t *slots = malloc(capacity * sizeof(uint64_t));
    if (!slots)
        return wsml_errf(err, WSML_ENOMEM, "label state: out of memory for %zu flips", s->count);
    memset(slots, 0xff, capacity * sizeof(uint64_t));
    for (size_t i = 0; i < s->capacity; i++)
        if (s->slots[i] != EMPTY_SLOT)
            slots[find_slot(slots, capacity, s->slots[i])] = s->slots[i];
    free(s->slots);
    s->slots = slots;
    s->capacity = capacity;
    return 0;
}

static int insert_pair(wsml_label_state *s, int64_t image, int cls, wsml_err *err) {
    if ((s->count + 1) * 2 > s->capacity) { // load factor <= 1/2
        int rc = grow(s, err);
        if (rc)
            return rc;
    }
    uint64_t key = (uint64_t)image * (uint64_t)s->num_classes + (uint64_t)cls;
    size_t i = find_slot(s->slots, s->capacity, key);
    if (s->slots[i] == EMPTY_SLOT) {
        s->slots[i] = key;
        s->count++;
        s->per_image[image]++;
    }
    return 0;
}

int wsml_label_state_apply(wsml_label_state *s, const int64_t *image_index, int batch_size,
                           const int32_t *flips, int64_t num_flips, wsml_err *err) {
    for (int64_t f = 0; f < num_flips; f++) {
        int32_t row = flips[2 * f], cls = flips[2 * f + 1];
        if (row < 0 || row >= batch_size || cls < 0 || cls >= s->num_classes)
            return wsml_errf(err, WSML_EARG, "label state: flip (%d, %d) outside batch %d x %d",
                             row, cls, batch_size, s->num_classes);
        int64_t image = image_index[row];
        if (image < 0 || image >= s->num_images)
            return wsml_errf(err, WSML_EARG, "label state: image index %lld outside 0..%lld",
                             (long long)image, (long long)s->num_images - 1);
        int rc = insert_pair(s, image, cls, err);
        if (rc)
            return rc;
    }
    return 0;
}

int wsml_label_state_contains(const wsml_label_state *s, int64_t image, int cls) {
    if (s->count == 0 || image < 0 || image >= s->num_images || s->per_image[image] == 0)
        return 0;
    uint64_t key = (uint64_t)image * (uint64_t)s->num_classes + (uint64_t)cls;
    return s->slots[find_slot(s->slots, s->capacity, key)] == key;
}

void wsml_label_state_overlay(const wsml_label_state *s, const int64_t *image_index, int batch_size,
                              int8_t *observed) {
    if (s->count == 0)
        return;
    for (int b = 0; b < batch_size; b++) {
        int64_t image = image_index[b];
        if (image < 0 || image >= s->num_images || s->per_image[image] == 0)
            continue;
        for (int c = 0; c < s->num_classes; c++)
            if (wsml_label_state_contains(s, image, c))
                observed[(int64_t)b * s->num_classes + c] = 1;
    }
}

static int compare_u64(const void *a, const void *b) {
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return (x > y) - (x < y);
}

int wsml_label_state_pairs(const wsml_label_state *s, int64_t **pairs, size_t *n, wsml_err *err) {
    *pairs = NULL;
    *n = 0;
    if (s->count == 0)
        return 0;
    uint64_t *keys = malloc(s->count * sizeof(uint64_t));
    int64_t *out = malloc(s->count * 2 * sizeof(int64_t));
    if (!keys || !out) {
        free(keys);
        free(out);
        return wsml_errf(err, WSML_ENOMEM, "label state: out of memory for %zu flips", s->count);
    }
    size_t m = 0;
    for (size_t i = 0; i < s->capacity; i++)
        if (s->slots[i] != EMPTY_SLOT)
            keys[m++] = s->slots[i];
    qsort(keys, m, sizeof(uint64_t), compare_u64);
    for (size_t i = 0; i < m; i++) {
        out[2 * i] = (int64_t)(keys[i] / (uint64_t)s->num_classes);
        out[2 * i + 1] = (int64_t)(keys[i] % (uint64_t)s->num_classes);
    }
    free(keys);
    *pairs = out;
    *n = m;
    return 0;
}

void wsml_label_state_tensor_view(const int64_t *pairs, size_t n, wsml_tensor_view *view) {
    memset(view, 0, sizeof(*view));
    view->name = (char *)WSML_LABEL_STATE_TENSOR;
    view->dtype = WSML_DT_I64;
    view->ndim = 2;
    view->shape[0] = (int64_t)n;
    view->shape[1] = 2;
    view->count = n * 2;
    view->data = pairs;
    view->nbytes = n * 2 * sizeof(int64_t);
}

int wsml_label_state_load_view(wsml_label_state *s, const wsml_tensor_view *view, wsml_err *err) {
    if (view->dtype != WSML_DT_I64 || view->ndim != 2 || view->shape[1] != 2 ||
        view->nbytes != (size_t)view->shape[0] * 2 * sizeof(int64_t))
        return wsml_errf(err, WSML_ECORRUPT, "%s: expected an I64 tensor of shape (n, 2)",
                         WSML_LABEL_STATE_TENSOR);
    // Validate every pair first, so that a bad checkpoint leaves the state unchanged.
    for (int64_t i = 0; i < view->shape[0]; i++) {
        int64_t pair[2];
        memcpy(pair, (const char *)view->data + (size_t)i * sizeof(pair), sizeof(pair));
        if (pair[0] < 0 || pair[0] >= s->num_images || pair[1] < 0 || pair[1] >= s->num_classes)
            return wsml_errf(err, WSML_ECORRUPT,
                             "%s: row %lld (%lld, %lld) is outside %lld images x %d classes",
                             WSML_LABEL_STATE_TENSOR, (long long)i, (long long)pair[0],
                             (long long)pair[1], (long long)s->num_images, s->num_classes);
    }
    memset(s->slots, 0xff, s->capacity * sizeof(uint64_t));
    memset(s->per_image, 0, (size_t)(s->num_images > 0 ? s->num_images : 1) * sizeof(uint32_t));
    s->count = 0;
    for (int64_t i = 0; i < view->shape[0]; i++) {
        int64_t pair[2];
        memcpy(pair, (const char *)view->data + (size_t)i * sizeof(pair), sizeof(pair));
        int rc = insert_pair(s, pair[0], (int)pair[1], err);
        if (rc)
            return rc;
    }
    return 0;
}
