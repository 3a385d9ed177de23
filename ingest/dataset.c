// Dataset building blocks shared by the readers: string arena, sparse label pools,
// item lists, a line reader that knows its line numbers, a string hash map.
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "ingest/ingest.h"

volatile sig_atomic_t ingest_interrupted = 0;

void ingest_dataset_init(ingest_dataset *ds, const char *format) {
    memset(ds, 0, sizeof *ds);
    snprintf(ds->format, sizeof ds->format, "%s", format);
}

void ingest_free_names(char **names, int n) {
    if (!names)
        return;
    for (int i = 0; i < n; i++)
        free(names[i]);
    free(names);
}

void ingest_dataset_free(ingest_dataset *ds) {
    ingest_free_names(ds->class_names, ds->num_classes);
    for (int s = 0; s < WSML_NUM_SPLITS; s++)
        free(ds->official[s].items);
    free(ds->strings);
    free(ds->full_pool);
    free(ds->obs_pool);
    free(ds->image_root);
    if (ds->reader_free)
        ds->reader_free(ds->reader_ctx);
    if (ds->groups)
        for (int g = 0; g < 5; g++)
            free(ds->groups[g]);
    free(ds->groups);
    free(ds->extra_info_json);
    memset(ds, 0, sizeof *ds);
}

// Grows *buf (elements of size sz) to hold at least need elements.
static int grow(void **buf, size_t *cap, size_t need, size_t sz) {
    if (need <= *cap)
        return 0;
    size_t c = *cap ? *cap : 64;
    while (c < need)
        c *= 2;
    void *p = realloc(*buf, c * sz);
    if (!p)
        return WSML_ENOMEM;
    *buf = p;
    *cap = c;
    return 0;
}

uint64_t ingest_str(ingest_dataset *ds, const char *s, size_t len) {
    if (grow((void **)&ds->strings, &ds->strings_cap, ds->strings_len + len + 1, 1))
        return UINT64_MAX;
    uint64_t off = ds->strings_len;
    memcpy(ds->strings + off, s, len);
    ds->strings[off + len] = '\0';
    ds->strings_len += len + 1;
    return off;
}

static int push_entries(uint32_t **pool, size_t *len, size_t *cap, const uint32_t *e, size_t n,
                        uint64_t *off) {
    if (grow((void **)pool, cap, *len + n, sizeof(uint32_t)))
        return WSML_ENOMEM;
    *off = *len;
    if (n)
        memcpy(*pool + *len, e, n * sizeof(uint32_t));
    *len += n;
    return 0;
}

int ingest_add_item_sparse(ingest_dataset *ds, ingest_list *list, const char *id, const char *path,
                           const uint32_t *full, uint32_t n_full, const uint32_t *obs,
                           uint32_t n_obs, uint64_t gen, wsml_err *err) {
    if (grow((void **)&list->items, &list->cap, list->n + 1, sizeof(ingest_item)))
        return wsml_errf(err, WSML_ENOMEM, "out of memory adding image %zu", list->n);
    ingest_item *it = &list->items[list->n];
    memset(it, 0, sizeof *it);
    it->id = ingest_str(ds, id, strlen(id));
    it->path = path ? ingest_str(ds, path, strlen(path)) : UINT64_MAX;
    if (it->id == UINT64_MAX || (path && it->path == UINT64_MAX) ||
        push_entries(&ds->full_pool, &ds->full_len, &ds->full_cap, full, n_full, &it->full_off) ||
        push_entries(&ds->obs_pool, &ds->obs_len, &ds->obs_cap, obs, n_obs, &it->obs_off))
        return wsml_errf(err, WSML_ENOMEM, "out of memory adding image %zu", list->n);
    it->n_full = n_full;
    it->n_obs = n_obs;
    it->gen = gen;
    list->n++;
    return 0;
}

int ingest_add_item(ingest_dataset *ds, ingest_list *list, const char *id, const char *path,
                    const int8_t *full_dense, const int8_t *obs_dense, uint64_t gen,
                    wsml_err *err) {
    int C = ds->num_classes;
    uint32_t *full = malloc(sizeof(uint32_t) * (size_t)(C > 0 ? C : 1));
    uint32_t *obs = malloc(sizeof(uint32_t) * (size_t)(C > 0 ? C : 1));
    uint32_t nf = 0, no = 0;
    int rc;
    if (!full || !obs) {
        rc = wsml_errf(err, WSML_ENOMEM, "out of memory adding image %zu", list->n);
        goto done;
    }
    for (int c = 0; c < C; c++) {
        if (full_dense && full_dense[c] != ds->full_label_default)
            full[nf++] = INGEST_ENTRY(c, full_dense[c]);
        if (obs_dense && obs_dense[c] != 0)
            obs[no++] = INGEST_ENTRY(c, obs_dense[c]);
    }
    rc = ingest_add_item_sparse(ds, list, id, path, full, nf, obs, no, gen, err);
done:
    free(full);
    free(obs);
    return rc;
}

void ingest_item_full(const ingest_dataset *ds, const ingest_item *it, int8_t *full) {
    memset(full, ds->full_label_default, (size_t)ds->num_classes);
    for (uint32_t k = 0; k < it->n_full; k++) {
        uint32_t e = ds->full_pool[it->full_off + k];
        full[INGEST_ENTRY_CLASS(e)] = (int8_t)INGEST_ENTRY_VALUE(e);
    }
}

void ingest_item_observed(const ingest_dataset *ds, const ingest_item *it, int8_t *obs) {
    memset(obs, 0, (size_t)ds->num_classes);
    for (uint32_t k = 0; k < it->n_obs; k++) {
        uint32_t e = ds->obs_pool[it->obs_off + k];
        obs[INGEST_ENTRY_CLASS(e)] = (int8_t)INGEST_ENTRY_VALUE(e);
    }
}

int ingest_set_classes(ingest_dataset *ds, char **names, int n, wsml_err *err) {
    ingest_free_names(ds->class_names, ds->num_classes);
    ds->class_names = calloc((size_t)(n > 0 ? n : 1), sizeof(char *));
    ds->num_classes = 0;
    if (!ds->class_names)
        return wsml_errf(err, WSML_ENOMEM, "out of memory (class names)");
    for (int i = 0; i < n; i++) {
        ds->class_names[i] = strdup(names[i]);
        if (!ds->class_names[i])
            return wsml_errf(err, WSML_ENOMEM, "out of memory (class names)");
        ds->num_classes = i + 1;
    }
    return 0;
}

int ingest_read_class_file(const char *path, char ***names_out, int *n_out, wsml_err *err) {
    ingest_lines lr;
    int rc = ingest_lines_open(&lr, path, err);
    if (rc)
        return rc;
    char **names = NULL;
    size_t n = 0, cap = 0;
    while ((rc = ingest_lines_next(&lr, err)) == 1) {
        char *s = lr.line;
        size_t len = lr.len;
        while (len && (s[len - 1] == ' ' || s[len - 1] == '\t'))
            s[--len] = '\0';
        while (*s == ' ' || *s == '\t')
            s++;
        if (!*s)
            continue;
        if (grow((void **)&names, &cap, n + 1, sizeof(char *)) || !(names[n] = strdup(s))) {
            rc = wsml_errf(err, WSML_ENOMEM, "out of memory reading %s", path);
            break;
        }
        n++;
    }
    ingest_lines_close(&lr);
    if (rc < 0) {
        ingest_free_names(names, (int)n);
        return rc;
    }
    if (n == 0) {
        free(names);
        return wsml_errf(err, WSML_EFORMAT, "%s: no class names", path);
    }
    *names_out = names;
    *n_out = (int)n;
    return 0;
}

char *ingest_join(const char *a, const char *b) {
    size_t la = strlen(a), lb = strlen(b);
    char *p = malloc(la + lb + 2);
    if (!p)
        return NULL;
    memcpy(p, a, la);
    size_t k = la;
    if (la && a[la - 1] != '/')
        p[k++] = '/';
    memcpy(p + k, b, lb + 1);
    return p;
}

int ingest_require_file(const char *path, wsml_err *err) {
    struct stat st;
    if (stat(path, &st) != 0)
        return wsml_errf(err, WSML_EIO, "%s: %s (expected file)", path, strerror(errno));
    if (!S_ISREG(st.st_mode))
        return wsml_errf(err, WSML_EIO, "%s: not a regular file", path);
    return 0;
}

int ingest_require_dir(const char *path, const char *what, wsml_err *err) {
    struct stat st;
    if (stat(path, &st) != 0)
        return wsml_errf(err, WSML_EIO, "%s: %s (expected %s)", path, strerror(errno), what);
    if (!S_ISDIR(st.st_mode))
        return wsml_errf(err, WSML_EIO, "%s: not a directory (expected %s)", path, what);
    return 0;
}

// ---- line reader ----------------------------------------------------------------------
int ingest_lines_open(ingest_lines *lr, const char *path, wsml_err *err) {
    memset(lr, 0, sizeof *lr);
    lr->path = path;
    FILE *f = fopen(path, "rb");
    if (!f)
        return wsml_errf(err, WSML_EIO, "%s: %s", path, strerror(errno));
    setvbuf(f, NULL, _IOFBF, 1 << 20);
    lr->f = f;
    return 0;
}

int ingest_lines_next(ingest_lines *lr, wsml_err *err) {
    ssize_t got = getline(&lr->line, &lr->cap, (FILE *)lr->f);
    if (got < 0) {
        if (ferror((FILE *)lr->f))
            return wsml_errf(err, WSML_EIO, "%s: line %ld: read error: %s", lr->path,
                             lr->lineno + 1, strerror(errno));
        return 0;
    }
    lr->lineno++;
    size_t len = (size_t)got;
    while (len && (lr->line[len - 1] == '\n' || lr->line[len - 1] == '\r'))
        len--;
    lr->line[len] = '\0';
    if (memchr(lr->line, '\0', len))
        return wsml_errf(err, WSML_EFORMAT, "%s: line %ld: NUL byte in a text file", lr->path,
                         lr->lineno);
    lr->len = len;
    return 1;
}

void ingest_lines_close(ingest_lines *lr) {
    if (lr->f)
        fclose((FILE *)lr->f);
    free(lr->line);
    memset(lr, 0, sizeof *lr);
}

int ingest_split_ws(char *line, char **fields, int max) {
    int n = 0;
    char *p = line;
    while (*p) {
        while (*p == ' ' || *p == '\t')
            *p++ = '\0';
        if (!*p)
            break;
        if (n < max)
            fields[n] = p;
        n++;
        while (*p && *p != ' ' && *p != '\t')
            p++;
    }
    return n;
}

int ingest_csv_split(char *line, const char *file, long lineno, char **fields, int max,
                     wsml_err *err) {
    int n = 0;
    char *p = line;
    for (;;) {
        char *start = p, *w = p; // fields are unquoted in place (w never passes p)
        if (*p == '"') {
            p++;
            for (;;) {
                if (!*p)
                    return wsml_errf(err, WSML_EFORMAT, "%s: line %ld: unterminated quote", file,
                                     lineno);
                if (*p == '"') {
                    if (p[1] == '"') {
                        *w++ = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                *w++ = *p++;
            }
            if (*p && *p != ',')
                return wsml_errf(err, WSML_EFORMAT,
                                 "%s: line %ld: unexpected character after a quoted field", file,
                                 lineno);
        } else {
            while (*p && *p != ',') {
                if (*p == '"')
                    return wsml_errf(err, WSML_EFORMAT,
                                     "%s: line %ld: quote inside an unquoted field", file, lineno);
                *w++ = *p++;
            }
        }
        int more = *p == ',';
        *w = '\0';
        if (n >= max)
            return wsml_errf(err, WSML_EFORMAT, "%s: line %ld: more than %d fields", file, lineno,
                             max);
        fields[n++] = start;
        if (!more)
            return n;
        p++;
    }
}

// ---- string map (FNV-1a, linear probing) ------------------------------------------------
static uint64_t hash_bytes(const char *s, size_t len) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)s[i]) * 1099511628211ull;
    return h;
}

void ingest_strmap_init(ingest_strmap *m) {
    memset(m, 0, sizeof *m);
}

void ingest_strmap_free(ingest_strmap *m) {
    if (m->owned)
        for (size_t i = 0; i < m->cap; i++)
            free(m->owned[i]);
    free(m->owned);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static int64_t find_slot(const ingest_strmap *m, const char *key, size_t len, int *found) {
    size_t mask = m->cap - 1, i = (size_t)hash_bytes(key, len) & mask;
    for (;;) {
        const char *k = m->owned[i];
        if (!k) {
            *found = 0;
            return (int64_t)i;
        }
        if (strncmp(k, key, len) == 0 && k[len] == '\0') {
            *found = 1;
            return (int64_t)i;
        }
        i = (i + 1) & mask;
    }
}

int64_t ingest_strmap_get(const ingest_strmap *m, const char *key, size_t len) {
    if (!m->cap)
        return -1;
    int found;
    int64_t i = find_slot(m, key, len, &found);
    return found ? m->vals[i] : -1;
}

static int rehash(ingest_strmap *m, size_t cap) {
    char **ok = calloc(cap, sizeof(char *));
    int64_t *ov = calloc(cap, sizeof(int64_t));
    if (!ok || !ov) {
        free(ok);
        free(ov);
        return WSML_ENOMEM;
    }
    ingest_strmap n = {.owned = ok, .vals = ov, .cap = cap, .n = m->n};
    for (size_t i = 0; i < m->cap; i++) {
        if (!m->owned[i])
            continue;
        int found;
        int64_t j = find_slot(&n, m->owned[i], strlen(m->owned[i]), &found);
        n.owned[j] = m->owned[i];
        n.vals[j] = m->vals[i];
    }
    free(m->owned);
    free(m->vals);
    *m = n;
    return 0;
}

int ingest_strmap_put(ingest_strmap *m, const char *key, size_t len, int64_t val) {
    if ((m->n + 1) * 2 > m->cap && rehash(m, m->cap ? m->cap * 2 : 1024))
        return WSML_ENOMEM;
    int found;
    int64_t i = find_slot(m, key, len, &found);
    if (found)
        return 1;
    char *k = malloc(len + 1);
    if (!k)
        return WSML_ENOMEM;
    memcpy(k, key, len);
    k[len] = '\0';
    m->owned[i] = k;
    m->vals[i] = val;
    m->n++;
    return 0;
}

void ingest_skips_free(ingest_skips *s) {
    for (size_t i = 0; i < s->n; i++) {
        free(s->items[i].path);
        free(s->items[i].reason);
    }
    free(s->items);
    memset(s, 0, sizeof *s);
}
