// Metrics: average precision per class, mAP, and mAP per class-frequency group (docs/methods.md
// §4). In common/ because both wsml-train (val/test mAP each epoch) and wsml-eval use them and
// train/ must not depend on eval/; wsml-eval's reports are in eval/metrics.h.
//
// Definitions (docs/methods.md §4, identical to scikit-learn's average_precision_score):
//   For one class, take the entries whose label is known (1 or 0; -1 = unknown is
//   masked out), sort them by score descending and group equal scores (each distinct
//   score is one threshold). With P positives, tp_n / fp_n the cumulative counts at
//   threshold n, R_n = tp_n / P and P_n = tp_n / (tp_n + fp_n):
//       AP = Σ_n (R_n − R_{n−1}) · P_n          (R_0 = 0)
//   The order of entries inside a tie does not matter (a tie is one threshold), so
//   the result is deterministic for any input order.
// Conventions where scikit-learn would warn or fail:
//   - a class with known entries but no positive gets AP 0 and counts in the mean
//     (the reference convention of Cole et al.'s metrics.py, which LargeLossMatters
//     uses; sklearn 1.2 also returns 0 there, with a warning);
//   - a class with no known entry at all is skipped from every mean (the reference's
//     compute_metrics_openimages: "only verified entries count; classes with no
//     verified entry are skipped"). With clean labels (no -1) no class is skipped,
//     so one rule serves the simulated datasets and OpenImages alike;
//   - a NaN or infinite score is an error (sklearn refuses them too).
// mAP = 100 × mean AP over the classes not skipped. A group's mAP is the same mean over
// the group's classes that are not skipped (NaN if none is left).
//
// Accumulation is in double. Scores are compared exactly as given (a float32 score is
// widened to double without loss, so ties are the ties of the input).
#ifndef WSML_COMMON_METRICS_H
#define WSML_COMMON_METRICS_H

#include <stdint.h>

#include "common/err.h"

// Class-frequency groups G1..Gk (docs/methods.md §4) in compressed form: group g holds
// classes[offsets[g] .. offsets[g+1]-1]. A class may be in no group.
typedef struct {
    int num_groups;
    int *offsets; // num_groups + 1 entries
    int *classes; // offsets[num_groups] class indices
} wsml_groups;

// Parses groups from JSON text: either a bare array of arrays of class indices
// ([[3, 7], [1], ...]) or an object with a "groups" key holding one (a store's "info"
// JSON). An object without "groups" gives num_groups = 0 (not an error). Every index
// must be an integer in [0, num_classes). `what` names the source in error messages.
// On success out owns malloc'd arrays (free with wsml_groups_free).
int wsml_groups_parse_json(const char *json_text, int num_classes, const char *what,
                           wsml_groups *out, wsml_err *err);
void wsml_groups_free(wsml_groups *g);

// Results of wsml_metrics_compute. All arrays malloc'd, owned by the struct.
typedef struct {
    int64_t num_images;
    int num_classes;
    double *ap;          // [C] AP in [0, 1]; NaN for a skipped class
    int64_t *num_pos;    // [C] positives among the known entries
    int64_t *num_known;  // [C] entries with label 0 or 1
    uint8_t *included;   // [C] 1 if the class counts in the means
    int num_included;    // classes counted in mAP
    double map;          // 100 × mean AP over included classes; NaN if none
    int num_groups;      // 0 when no groups were given
    double *group_map;   // [num_groups] 100 × mean AP of the group's included classes
    int *group_included; // [num_groups] included classes per group
} wsml_metrics;

// scores: (N, C) row-major float32; labels: (N, C) row-major int8 with values 1 (positive),
// 0 (negative), -1 (unknown). groups may be NULL. Any other label value, a non-finite
// score or an out-of-range group index is WSML_EARG naming row and class.
// On success *out is filled (free with wsml_metrics_free); on error it is left empty.
int wsml_metrics_compute(const float *scores, const int8_t *labels, int64_t n, int c,
                         const wsml_groups *groups, wsml_metrics *out, wsml_err *err);
// The same for float64 scores (ties judged in double precision).
int wsml_metrics_compute_f64(const double *scores, const int8_t *labels, int64_t n, int c,
                             const wsml_groups *groups, wsml_metrics *out, wsml_err *err);
void wsml_metrics_free(wsml_metrics *m);

// Convenience for training loops (val mAP each epoch): mAP in points, or a negative
// wsml_code with err set. Same rules as wsml_metrics_compute.
int wsml_mean_average_precision(const float *scores, const int8_t *labels, int64_t n, int c,
                                double *map, wsml_err *err);

// The same with a store's frequency groups (wsml-train's val and test mAP):
// store_info_json is the store's "info" JSON (or NULL); group_maps receives up to
// WSML_METRICS_MAX_GROUPS group mAPs (NaN for a group with no included class),
// *num_groups their number (0 when the info has no "groups"). More groups than that is
// WSML_EARG.
#define WSML_METRICS_MAX_GROUPS 16
int wsml_metrics_map_groups(const float *scores, const int8_t *labels, int64_t n, int c,
                            const char *store_info_json, double *map, double *group_maps,
                            int *num_groups, wsml_err *err);

// AP of one class over n entries with a stride (e.g. one column of an (N, C) matrix:
// stride = C). Entries with label -1 are skipped. Returns AP in [0, 1] (0 if there is no
// positive); *num_pos and *num_known receive the counts (may be NULL). work must hold
// 2*n uint64 (scratch for the sort). Returns a negative wsml_code on a bad label or a
// non-finite score, with err naming the entry (row index).
int wsml_average_precision_f32(const float *scores, const int8_t *labels, int64_t n, int64_t stride,
                               uint64_t *work, double *ap, int64_t *num_pos, int64_t *num_known,
                               wsml_err *err);

#endif
