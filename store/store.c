// The LMDB store: one environment per directory, sub-databases meta/train/val/test.
// Concurrency: DIR/wsml.lock is flock'ed shared by readers and exclusively by the
// writer, so an ingest into a store that someone reads is refused, and a reader never
// sees a store being written. LMDB's own lock file is not used (MDB_NOLOCK): a store
// is written once by one process, then only read.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/fileio.h"
#include "store/record.h"

static const char *split_names[WSML_NUM_SPLITS] = {"train", "val", "test"};

const char *wsml_split_name(wsml_split s) { return (unsigned)s < WSML_NUM_SPLITS ? split_names[s] : "?"; }
int wsml_split_parse(const char *name) {
    for (int i = 0; i < WSML_NUM_SPLITS; i++)
        if (name && !strcmp(name, split_names[i])) return i;
    return -1;
}
const char *wsml_encoding_name(wsml_encoding e) { return e == WSML_ENC_JPEG ? "jpeg" : "raw"; }

static void key_of(uint32_t index, uint8_t kb[4], MDB_val *k) {
    kb[0] = (uint8_t)(index >> 24), kb[1] = (uint8_t)(index >> 16), kb[2] = (uint8_t)(index >> 8);
    kb[3] = (uint8_t)index;
    k->mv_data = kb;
    k->mv_size = 4;
}

static int take_lock(const char *dir, int exclusive, int create, int *fd_out, wsml_err *err) {
    char path[4200];
    snprintf(path, sizeof path, "%s/wsml.lock", dir);
    int fd = open(path, create ? O_RDWR | O_CREAT : O_RDONLY, 0666);
    *fd_out = -1;
    if (fd < 0) {
        if (!create && errno == ENOENT) return 0; // a store copied without its lock file
        return wsml_errf(err, WSML_EIO, "%s: cannot open lock file: %s", path, strerror(errno));
    }
    if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
        close(fd);
        return wsml_errf(err, WSML_ESTATE,
                         exclusive ? "%s: store is open in another process (a reader or writer); refusing to write it"
                                   : "%s: store is being written by another process",
                         dir);
    }
    *fd_out = fd;
    return 0;
}

// ---- reading --------------------------------------------------------------------------

struct wsml_store {
    char dir[4096];
    MDB_env *env;
    MDB_dbi meta_dbi, split_dbi[WSML_NUM_SPLITS];
    int check_crc;
    int lock_fd;
    wsml_store_meta meta;
};

struct wsml_reader {
    wsml_store *s;
    MDB_txn *txn;
    int live; // txn holds a snapshot
};

static void meta_free(wsml_store_meta *m) {
    for (int i = 0; m->class_names && i < m->num_classes; i++) free(m->class_names[i]);
    free(m->class_names);
    free(m->info_json);
    memset(m, 0, sizeof *m);
}

static int parse_info(const char *dir, const char *json, size_t len, wsml_store_meta *m, wsml_err *err) {
    json_error_t je;
    json_t *root = json_loadb(json, len, 0, &je);
    if (!json_is_object(root)) {
        json_decref(root);
        return wsml_errf(err, WSML_ECORRUPT, "%s: store meta 'info' is not valid JSON (%s)", dir, je.text);
    }
    int rc = 0;
    json_t *classes = json_object_get(root, "classes"), *counts = json_object_get(root, "counts");
    const char *name = json_string_value(json_object_get(root, "name"));
    const char *enc = json_string_value(json_object_get(root, "encoding"));
    json_t *h = json_object_get(root, "height"), *w = json_object_get(root, "width"),
           *c = json_object_get(root, "channels"), *d = json_object_get(root, "full_label_default");
    if (!json_is_array(classes) || json_array_size(classes) == 0 || !json_is_object(counts) || !name || !enc ||
        !json_is_integer(h) || !json_is_integer(w) || !json_is_integer(c)) {
        rc = wsml_errf(err, WSML_ECORRUPT,
                       "%s: store meta 'info' lacks name/classes/counts/height/width/channels/encoding", dir);
        goto out;
    }
    snprintf(m->name, sizeof m->name, "%s", name);
    m->num_classes = (int)json_array_size(classes);
    m->class_names = calloc((size_t)m->num_classes, sizeof *m->class_names);
    for (int i = 0; i < m->num_classes; i++) {
        const char *cn = json_string_value(json_array_get(classes, (size_t)i));
        if (!cn) {
            rc = wsml_errf(err, WSML_ECORRUPT, "%s: class %d has no name in store meta", dir, i);
            goto out;
        }
        m->class_names[i] = strdup(cn);
    }
    for (int s = 0; s < WSML_NUM_SPLITS; s++) {
        json_t *n = json_object_get(counts, split_names[s]);
        m->count[s] = json_is_integer(n) ? (uint32_t)json_integer_value(n) : 0;
    }
    m->height = (int)json_integer_value(h);
    m->width = (int)json_integer_value(w);
    m->channels = (int)json_integer_value(c);
    m->encoding = !strcmp(enc, "jpeg") ? WSML_ENC_JPEG : WSML_ENC_RAW;
    m->full_label_default = json_is_integer(d) ? (int)json_integer_value(d) : 0;
    m->info_json = strndup(json, len);
out:
    json_decref(root);
    return rc;
}

static int get_meta(MDB_txn *txn, MDB_dbi dbi, const char *key, MDB_val *v) {
    MDB_val k = {strlen(key), (void *)key};
    return mdb_get(txn, dbi, &k, v);
}

wsml_store *wsml_store_open(const char *dir, int check_crc, wsml_err *err) {
    struct stat st;
    char data_path[4200];
    snprintf(data_path, sizeof data_path, "%s/data.mdb", dir);
    if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
        wsml_errf(err, WSML_EIO, "%s: no such store (not a directory)", dir);
        return NULL;
    }
    if (stat(data_path, &st) != 0) {
        wsml_errf(err, WSML_EIO, "%s: not a store (no data.mdb)", dir);
        return NULL;
    }
    wsml_store *s = calloc(1, sizeof *s);
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    s->check_crc = check_crc;
    s->lock_fd = -1;
    if (take_lock(dir, 0, 0, &s->lock_fd, err)) {
        free(s);
        return NULL;
    }
    int rc;
    MDB_txn *txn = NULL;
    if ((rc = mdb_env_create(&s->env)) || (rc = mdb_env_set_maxdbs(s->env, 8)) ||
        (rc = mdb_env_set_mapsize(s->env, (size_t)st.st_size)) ||
        (rc = mdb_env_open(s->env, dir, MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS | MDB_NORDAHEAD, 0444))) {
        wsml_errf(err, WSML_ECORRUPT, "%s: cannot open store: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn)) || (rc = mdb_dbi_open(txn, "meta", 0, &s->meta_dbi))) {
        wsml_errf(err, WSML_ECORRUPT, "%s: store has no meta database: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    MDB_val v;
    if (get_meta(txn, s->meta_dbi, "complete", &v) != 0 || v.mv_size != 1 || *(char *)v.mv_data != '1') {
        wsml_errf(err, WSML_ESTATE,
                  "%s: store is incomplete (its writer did not finish); run wsml-ingest again with --force", dir);
        goto fail;
    }
    char vbuf[16] = "";
    if (get_meta(txn, s->meta_dbi, "version", &v) == 0 && v.mv_size < sizeof vbuf) memcpy(vbuf, v.mv_data, v.mv_size);
    if (atoi(vbuf) != WSML_STORE_VERSION) {
        wsml_errf(err, WSML_ESTATE, "%s: store format version %s, this wsml reads version %d; re-ingest it", dir,
                  vbuf[0] ? vbuf : "(none)", WSML_STORE_VERSION);
        goto fail;
    }
    s->meta.version = WSML_STORE_VERSION;
    if (get_meta(txn, s->meta_dbi, "info", &v) != 0) {
        wsml_errf(err, WSML_ECORRUPT, "%s: store meta has no 'info'", dir);
        goto fail;
    }
    if (parse_info(dir, v.mv_data, v.mv_size, &s->meta, err)) goto fail;
    for (int i = 0; i < WSML_NUM_SPLITS; i++) {
        MDB_stat ms;
        if ((rc = mdb_dbi_open(txn, split_names[i], 0, &s->split_dbi[i])) ||
            (rc = mdb_stat(txn, s->split_dbi[i], &ms))) {
            wsml_errf(err, WSML_ECORRUPT, "%s: split '%s' missing: %s", dir, split_names[i], mdb_strerror(rc));
            goto fail;
        }
        if (ms.ms_entries != s->meta.count[i]) {
            wsml_errf(err, WSML_ECORRUPT, "%s: split '%s' holds %zu records, meta says %u", dir, split_names[i],
                      (size_t)ms.ms_entries, s->meta.count[i]);
            goto fail;
        }
    }
    // Committing (not aborting) keeps the DBI handles valid for later transactions.
    if ((rc = mdb_txn_commit(txn))) {
        txn = NULL;
        wsml_errf(err, WSML_EIO, "%s: cannot open store: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    return s;
fail:
    if (txn) mdb_txn_abort(txn);
    wsml_store_close(s);
    return NULL;
}

void wsml_store_close(wsml_store *s) {
    if (!s) return;
    if (s->env) mdb_env_close(s->env);
    if (s->lock_fd >= 0) close(s->lock_fd);
    meta_free(&s->meta);
    free(s);
}

const wsml_store_meta *wsml_store_meta_get(const wsml_store *s) { return &s->meta; }

wsml_reader *wsml_reader_begin(wsml_store *s, wsml_err *err) {
    wsml_reader *r = calloc(1, sizeof *r);
    if (!r) {
        wsml_errf(err, WSML_ENOMEM, "out of memory");
        return NULL;
    }
    r->s = s;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &r->txn);
    if (rc) {
        free(r);
        wsml_errf(err, WSML_EIO, "%s: cannot begin read: %s", s->dir, mdb_strerror(rc));
        return NULL;
    }
    r->live = 1;
    return r;
}

int wsml_reader_get(wsml_reader *r, wsml_split split, uint32_t index, wsml_record *rec, wsml_err *err) {
    wsml_store *s = r->s;
    if ((unsigned)split >= WSML_NUM_SPLITS)
        return wsml_errf(err, WSML_EARG, "%s: bad split %d", s->dir, (int)split);
    if (index >= s->meta.count[split])
        return wsml_errf(err, WSML_EARG, "%s: %s record %u out of range (%u records)", s->dir, split_names[split],
                         index, s->meta.count[split]);
    if (!r->live) {
        int rc = mdb_txn_renew(r->txn);
        if (rc) return wsml_errf(err, WSML_EIO, "%s: cannot renew read: %s", s->dir, mdb_strerror(rc));
        r->live = 1;
    }
    uint8_t kb[4];
    MDB_val k, v;
    key_of(index, kb, &k);
    int rc = mdb_get(r->txn, s->split_dbi[split], &k, &v);
    if (rc) return wsml_errf(err, WSML_ECORRUPT, "%s: %s record %u: %s", s->dir, split_names[split], index, mdb_strerror(rc));
    if (wsml_record_parse(v.mv_data, v.mv_size, s->check_crc, rec, err) ||
        wsml_record_check_labels(rec, s->meta.num_classes, err))
        return wsml_err_prefix(err, "%s: %s record %u", s->dir, split_names[split], index);
    rec->index = index;
    return 0;
}

void wsml_reader_reset(wsml_reader *r) {
    if (r && r->live) {
        mdb_txn_reset(r->txn);
        r->live = 0;
    }
}

void wsml_reader_end(wsml_reader *r) {
    if (!r) return;
    mdb_txn_abort(r->txn);
    free(r);
}

// ---- writing --------------------------------------------------------------------------

typedef struct {
    wsml_split split;
    uint32_t index;
    uint8_t *val;
    size_t len;
} pending_rec;

struct wsml_store_writer {
    char dir[4096];
    MDB_env *env;
    MDB_dbi meta_dbi, split_dbi[WSML_NUM_SPLITS];
    size_t map_size;
    int lock_fd;
    uint32_t next[WSML_NUM_SPLITS];
    pending_rec *pending;
    size_t n_pending, cap_pending, pending_bytes;
};

static int remove_store_files(const char *dir, wsml_err *err) {
    // Only the files a store consists of; anything else in the directory is refused.
    static const char *ours[] = {"data.mdb", "lock.mdb", "wsml.lock", "data.mdb-lock"};
    DIR *d = opendir(dir);
    if (!d) return wsml_errf(err, WSML_EIO, "%s: cannot read directory: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d)) && !rc) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        int known = 0;
        for (size_t i = 0; i < sizeof ours / sizeof *ours; i++) known |= !strcmp(e->d_name, ours[i]);
        if (!known)
            rc = wsml_errf(err, WSML_ESTATE, "%s: --force refused: the directory holds '%s', which is not part of a store",
                           dir, e->d_name);
    }
    closedir(d);
    if (rc) return rc;
    char p[4200];
    snprintf(p, sizeof p, "%s/data.mdb", dir);
    if (unlink(p) != 0 && errno != ENOENT) return wsml_errf(err, WSML_EIO, "%s: cannot remove: %s", p, strerror(errno));
    snprintf(p, sizeof p, "%s/lock.mdb", dir);
    unlink(p);
    return 0;
}

static int writer_open_dbs(wsml_store_writer *w, wsml_err *err) {
    MDB_txn *txn;
    int rc = mdb_txn_begin(w->env, NULL, 0, &txn);
    if (!rc) rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &w->meta_dbi);
    for (int i = 0; !rc && i < WSML_NUM_SPLITS; i++) rc = mdb_dbi_open(txn, split_names[i], MDB_CREATE, &w->split_dbi[i]);
    if (!rc) rc = mdb_txn_commit(txn);
    else mdb_txn_abort(txn);
    if (rc) return wsml_errf(err, WSML_EIO, "%s: cannot create store databases: %s", w->dir, mdb_strerror(rc));
    return 0;
}

wsml_store_writer *wsml_store_create(const char *dir, int force, wsml_err *err) {
    struct stat st;
    int exists = stat(dir, &st) == 0;
    if (exists && !S_ISDIR(st.st_mode)) {
        wsml_errf(err, WSML_ESTATE, "%s: exists and is not a directory", dir);
        return NULL;
    }
    if (exists && !force) {
        DIR *d = opendir(dir);
        int empty = 1;
        struct dirent *e;
        while (d && (e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) empty = 0;
        if (d) closedir(d);
        if (!empty) {
            wsml_errf(err, WSML_ESTATE, "%s: already exists; pass --force to replace it", dir);
            return NULL;
        }
    }
    if (wsml_mkdirs(dir, err)) return NULL;
    wsml_store_writer *w = calloc(1, sizeof *w);
    snprintf(w->dir, sizeof w->dir, "%s", dir);
    w->lock_fd = -1;
    if (take_lock(dir, 1, 1, &w->lock_fd, err)) goto fail;
    if (remove_store_files(dir, err)) goto fail;
    w->map_size = (size_t)1 << 30;
    int rc;
    if ((rc = mdb_env_create(&w->env)) || (rc = mdb_env_set_maxdbs(w->env, 8)) ||
        (rc = mdb_env_set_mapsize(w->env, w->map_size)) ||
        (rc = mdb_env_open(w->env, dir, MDB_NOLOCK | MDB_NOSYNC | MDB_NOMETASYNC, 0644))) {
        wsml_errf(err, WSML_EIO, "%s: cannot create store: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    if (writer_open_dbs(w, err)) goto fail;
    return w;
fail:
    wsml_store_writer_abort(w);
    return NULL;
}

// Writes every pending record in one transaction, growing the map when it is full.
static int flush_pending(wsml_store_writer *w, wsml_err *err) {
    for (;;) {
        MDB_txn *txn;
        int rc = mdb_txn_begin(w->env, NULL, 0, &txn);
        for (size_t i = 0; !rc && i < w->n_pending; i++) {
            uint8_t kb[4];
            MDB_val k, v = {w->pending[i].len, w->pending[i].val};
            key_of(w->pending[i].index, kb, &k);
            rc = mdb_put(txn, w->split_dbi[w->pending[i].split], &k, &v, MDB_APPEND);
        }
        if (!rc) rc = mdb_txn_commit(txn);
        else mdb_txn_abort(txn);
        if (rc == MDB_MAP_FULL) {
            w->map_size *= 2;
            if ((rc = mdb_env_set_mapsize(w->env, w->map_size)))
                return wsml_errf(err, WSML_EIO, "%s: cannot grow map to %zu bytes: %s", w->dir, w->map_size,
                                 mdb_strerror(rc));
            continue;
        }
        if (rc)
            return wsml_errf(err, WSML_EIO, "%s: write failed: %s", w->dir,
                             rc == ENOSPC ? "no space left on device" : mdb_strerror(rc));
        break;
    }
    for (size_t i = 0; i < w->n_pending; i++) free(w->pending[i].val);
    w->n_pending = 0;
    w->pending_bytes = 0;
    return 0;
}

int wsml_store_put(wsml_store_writer *w, wsml_split split, uint32_t index, const wsml_record_in *rec,
                   int full_label_default, wsml_err *err) {
    if ((unsigned)split >= WSML_NUM_SPLITS) return wsml_errf(err, WSML_EARG, "%s: bad split %d", w->dir, (int)split);
    if (index != w->next[split])
        return wsml_errf(err, WSML_EARG, "%s: %s record %u put out of order (expected %u)", w->dir,
                         split_names[split], index, w->next[split]);
    uint8_t *val;
    size_t len;
    int rc = wsml_record_encode(rec, full_label_default, &val, &len, err);
    if (rc) return rc;
    if (w->n_pending == w->cap_pending) {
        size_t cap = w->cap_pending ? 2 * w->cap_pending : 256;
        pending_rec *p = realloc(w->pending, cap * sizeof *p);
        if (!p) {
            free(val);
            return wsml_errf(err, WSML_ENOMEM, "%s: out of memory", w->dir);
        }
        w->pending = p;
        w->cap_pending = cap;
    }
    w->pending[w->n_pending++] = (pending_rec){split, index, val, len};
    w->pending_bytes += len;
    w->next[split]++;
    if (w->n_pending >= 512 || w->pending_bytes >= (64u << 20)) return flush_pending(w, err);
    return 0;
}

static int put_meta(wsml_store_writer *w, const char *key, const void *val, size_t len, wsml_err *err) {
    for (;;) {
        MDB_txn *txn;
        MDB_val k = {strlen(key), (void *)key}, v = {len, (void *)val};
        int rc = mdb_txn_begin(w->env, NULL, 0, &txn);
        if (!rc) rc = mdb_put(txn, w->meta_dbi, &k, &v, 0);
        if (!rc) rc = mdb_txn_commit(txn);
        else mdb_txn_abort(txn);
        if (rc == MDB_MAP_FULL) {
            w->map_size *= 2;
            mdb_env_set_mapsize(w->env, w->map_size);
            continue;
        }
        if (rc) return wsml_errf(err, WSML_EIO, "%s: writing meta '%s' failed: %s", w->dir, key, mdb_strerror(rc));
        return 0;
    }
}

int wsml_store_writer_finish(wsml_store_writer *w, const char *info_json, wsml_err *err) {
    int rc = flush_pending(w, err);
    if (rc) return rc;
    // Check the info against what was written before it becomes the store's meta.
    wsml_store_meta m = {0};
    rc = parse_info(w->dir, info_json, strlen(info_json), &m, err);
    if (!rc)
        for (int s = 0; s < WSML_NUM_SPLITS && !rc; s++)
            if (m.count[s] != w->next[s])
                rc = wsml_errf(err, WSML_EARG, "%s: info says %u %s records, %u were written", w->dir, m.count[s],
                               split_names[s], w->next[s]);
    meta_free(&m);
    if (rc) return rc;
    char ver[16];
    snprintf(ver, sizeof ver, "%d", WSML_STORE_VERSION);
    if ((rc = put_meta(w, "version", ver, strlen(ver), err)) ||
        (rc = put_meta(w, "info", info_json, strlen(info_json), err)))
        return rc;
    // Everything durable first; only then the flag, in its own transaction.
    if ((rc = mdb_env_sync(w->env, 1)))
        return wsml_errf(err, WSML_EIO, "%s: sync failed: %s", w->dir, mdb_strerror(rc));
    if ((rc = put_meta(w, "complete", "1", 1, err))) return rc;
    if ((rc = mdb_env_sync(w->env, 1)))
        return wsml_errf(err, WSML_EIO, "%s: sync failed: %s", w->dir, mdb_strerror(rc));
    mdb_env_close(w->env);
    w->env = NULL;
    wsml_store_writer_abort(w); // frees; the store is complete
    return 0;
}

void wsml_store_writer_abort(wsml_store_writer *w) {
    if (!w) return;
    if (w->env) mdb_env_close(w->env);
    for (size_t i = 0; i < w->n_pending; i++) free(w->pending[i].val);
    free(w->pending);
    if (w->lock_fd >= 0) close(w->lock_fd);
    free(w);
}

// ---- checking -------------------------------------------------------------------------

long wsml_store_verify(const char *dir, wsml_bad_record_fn on_bad, void *ctx, wsml_err *err) {
    wsml_store *s = wsml_store_open(dir, 1, err);
    if (!s) return -1;
    const wsml_store_meta *m = &s->meta;
    long bad = 0;
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc) {
        wsml_errf(err, WSML_EIO, "%s: cannot read: %s", dir, mdb_strerror(rc));
        wsml_store_close(s);
        return -1;
    }
    wsml_err first = {0};
    for (int sp = 0; sp < WSML_NUM_SPLITS; sp++) {
        MDB_cursor *cur;
        if (mdb_cursor_open(txn, s->split_dbi[sp], &cur)) continue;
        MDB_val k, v;
        uint32_t expect = 0;
        int cur_rc;
        for (int op = MDB_FIRST; (cur_rc = mdb_cursor_get(cur, &k, &v, (MDB_cursor_op)op)) == 0;
             op = MDB_NEXT, expect++) {
            char what[sizeof first.msg];
            wsml_err e = {0};
            uint32_t idx = expect;
            if (k.mv_size != 4) snprintf(what, sizeof what, "bad key size %zu", k.mv_size);
            else {
                const uint8_t *kb = k.mv_data;
                idx = ((uint32_t)kb[0] << 24) | ((uint32_t)kb[1] << 16) | ((uint32_t)kb[2] << 8) | kb[3];
                wsml_record r;
                if (idx != expect) snprintf(what, sizeof what, "key %u where %u was expected", idx, expect);
                else if (wsml_record_parse(v.mv_data, v.mv_size, 1, &r, &e) ||
                         wsml_record_check_labels(&r, m->num_classes, &e))
                    snprintf(what, sizeof what, "%s", e.msg);
                else if (r.height != m->height || r.width != m->width || r.channels != m->channels ||
                         r.encoding != m->encoding)
                    snprintf(what, sizeof what, "image %dx%dx%d %s differs from the store's %dx%dx%d %s", r.height,
                             r.width, r.channels, wsml_encoding_name(r.encoding), m->height, m->width, m->channels,
                             wsml_encoding_name(m->encoding));
                else continue;
            }
            if (bad++ == 0) wsml_errf(&first, WSML_ECORRUPT, "%s: %s record %u: %s", dir, split_names[sp], idx, what);
            if (on_bad) on_bad(ctx, (wsml_split)sp, idx, what);
            if (idx > expect) expect = idx;
        }
        if (cur_rc != MDB_NOTFOUND) { // LMDB itself found a damaged page
            if (bad++ == 0)
                wsml_errf(&first, WSML_ECORRUPT, "%s: %s near record %u: %s", dir, split_names[sp], expect,
                          mdb_strerror(cur_rc));
            if (on_bad) on_bad(ctx, (wsml_split)sp, expect, mdb_strerror(cur_rc));
        } else if (expect != m->count[sp]) {
            if (bad++ == 0)
                wsml_errf(&first, WSML_ECORRUPT, "%s: %s holds %u records, meta says %u", dir, split_names[sp],
                          expect, m->count[sp]);
            if (on_bad) on_bad(ctx, (wsml_split)sp, expect, "record count differs from meta");
        }
        mdb_cursor_close(cur);
    }
    mdb_txn_abort(txn);
    wsml_store_close(s);
    if (bad && err) *err = first;
    return bad;
}
