// metrics.json and per_class.csv (formats in eval/metrics.h).
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "common/fileio.h"
#include "eval/csv.h"
#include "eval/metrics.h"

static json_t *json_number_or_null(double v) {
    return isfinite(v) ? json_real(v) : json_null();
}

char *wsml_metrics_json(const wsml_metrics *m, const char *source_json) {
    json_t *root = json_object();
    json_t *ap = json_array(), *num_pos = json_array(), *num_known = json_array();
    json_t *source = source_json ? json_loads(source_json, 0, NULL) : json_object();
    char *text = NULL;
    if (!root || !ap || !num_pos || !num_known || !source)
        goto done;
    json_object_set_new(root, "map", json_number_or_null(m->map));
    json_object_set_new(root, "num_images", json_integer(m->num_images));
    json_object_set_new(root, "num_classes", json_integer(m->num_classes));
    json_object_set_new(root, "num_included", json_integer(m->num_included));
    if (m->num_groups > 0) {
        json_t *groups = json_object(), *included = json_array();
        for (int g = 0; g < m->num_groups; g++) {
            char key[16];
            snprintf(key, sizeof(key), "G%d", g + 1);
            json_object_set_new(groups, key, json_number_or_null(m->group_map[g]));
            json_array_append_new(included, json_integer(m->group_included[g]));
        }
        json_object_set_new(root, "groups", groups);
        json_object_set_new(root, "group_included", included);
    }
    for (int c = 0; c < m->num_classes; c++) {
        json_array_append_new(ap, m->included[c] ? json_number_or_null(m->ap[c]) : json_null());
        json_array_append_new(num_pos, json_integer(m->num_pos[c]));
        json_array_append_new(num_known, json_integer(m->num_known[c]));
    }
    json_object_set(root, "ap", ap);
    json_object_set(root, "num_pos", num_pos);
    json_object_set(root, "num_known", num_known);
    json_object_set(root, "source", source);
    text = json_dumps(root, JSON_INDENT(1) | JSON_REAL_PRECISION(17));
done:
    json_decref(root);
    json_decref(ap);
    json_decref(num_pos);
    json_decref(num_known);
    json_decref(source);
    return text;
}

int wsml_metrics_write(const char *dir, const wsml_metrics *m, const char *const *class_names,
                       const char *source_json, wsml_err *err) {
    int rc = wsml_mkdirs(dir, err);
    if (rc)
        return rc;
    char path[4096];
    // An old metrics.json goes first and the new one appears last, so a directory with
    // metrics.json always holds one complete, consistent result. Both files are written
    // to temporaries and renamed only when both are on disk: on a failure (a full disk)
    // neither is left behind.
    snprintf(path, sizeof(path), "%s/metrics.json", dir);
    if (unlink(path) && errno != ENOENT)
        return wsml_errf(err, WSML_EIO, "%s: %s", path, strerror(errno));
    char *json = wsml_metrics_json(m, source_json);
    if (!json)
        return wsml_errf(err, WSML_ENOMEM, "%s/metrics.json: cannot serialise", dir);
    size_t len = strlen(json);
    json[len] = '\n'; // replaces the NUL: the file ends with a newline

    wsml_atomic_file csv, js;
    memset(&csv, 0, sizeof csv);
    memset(&js, 0, sizeof js);
    snprintf(path, sizeof(path), "%s/per_class.csv", dir);
    rc = wsml_atomic_open(&csv, path, err);
    if (rc)
        goto done;
    fprintf(csv.f, "class,name,num_pos,num_known,ap\n");
    for (int c = 0; c < m->num_classes; c++) {
        fprintf(csv.f, "%d,", c);
        wsml_csv_field(csv.f, class_names && class_names[c] ? class_names[c] : "");
        fprintf(csv.f, ",%lld,%lld,", (long long)m->num_pos[c], (long long)m->num_known[c]);
        if (m->included[c])
            fprintf(csv.f, "%.17g", m->ap[c]);
        fputc('\n', csv.f);
    }
    rc = wsml_atomic_close(&csv, err);
    if (rc)
        goto done;
    snprintf(path, sizeof(path), "%s/metrics.json", dir);
    rc = wsml_atomic_open(&js, path, err);
    if (!rc && fwrite(json, 1, len + 1, js.f) != len + 1)
        rc = wsml_errf(err, WSML_EIO, "%s: write failed: %s", path, strerror(errno ? errno : EIO));
    if (!rc)
        rc = wsml_atomic_close(&js, err);
    if (!rc)
        rc = wsml_atomic_rename(&csv, err);
    if (!rc) {
        rc = wsml_atomic_rename(&js, err);
        if (rc)
            unlink(csv.path); // no metrics.json: remove the new per_class.csv too
    }
done:
    if (rc) {
        wsml_atomic_abort(&csv);
        wsml_atomic_abort(&js);
    }
    free(json);
    return rc;
}
