// libwsml-eval's reports of the metrics of common/metrics.h (AP per class, mAP, group
// mAP; docs/methods.md §4), which this header includes for wsml-eval's callers.
#ifndef WSML_EVAL_METRICS_H
#define WSML_EVAL_METRICS_H

#include "common/err.h"
#include "common/metrics.h"

// ---- reports (eval/report.c) ----------------------------------------------------------
// metrics.json: {"map": mAP, "num_images": N, "num_classes": C, "num_included": k,
//   "groups": {"G1": mAP, ...}, "group_included": [k1, ...]   (only with groups),
//   "ap": [AP per class, null if skipped], "num_pos": [...], "num_known": [...],
//   "source": {...}}                                           (what was evaluated)
// Non-finite values are written as null. Returns malloc'd text, or NULL (out of memory
// or a source_json that does not parse).
char *wsml_metrics_json(const wsml_metrics *m, const char *source_json);
// Writes DIR/per_class.csv (columns: class, name, num_pos, num_known, ap — ap empty for
// a skipped class, %.17g otherwise) and then DIR/metrics.json, each atomically, after
// removing an old metrics.json: a DIR with metrics.json holds one complete result.
// Creates DIR. class_names: C strings or NULL (names then empty).
int wsml_metrics_write(const char *dir, const wsml_metrics *m, const char *const *class_names,
                       const char *source_json, wsml_err *err);

#endif
