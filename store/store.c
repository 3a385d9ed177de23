// The dataset store: one LMDB environment per directory (store.h).
//
// Files in a store directory:
//   data.mdb   the LMDB environment (sub-databases meta, train, val, test)
//   wsml.lock  an flock(2) lock file: readers hold it shared for as long as the store
//              is open, the writer holds it exclusive from create to finish/abort. So an
//              ingest into a store that some trainer still reads is refused instead of
//              pulling the pages from under it, and a store that is being written is
//              refused by readers (it would be refused as incomplete anyway).
//
// Both sides open LMDB with MDB_NOLOCK (no lock.mdb, no reader table): the flock above
// already guarantees that nobody writes while anyone reads, and a read-only store then
// opens from read-only media too.
//
// Writer durability: records go in with MDB_NOSYNC in batches (a killed ingest loses
// only unsynced batches, and is never complete anyway); finish commits version+info,
// syncs everything, then commits "complete" with sync on. No MDB_WRITEMAP: with it a
// full disk shows up as SIGBUS on a mapped page instead of ENOSPC from a write.
#define _GNU_SOURCE // sync_file_range
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <libgen.h>
#include <limits.h>
#include <lmdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include "common/cli.h"
#include "common/fileio.h"
#include "store/record.h"
#include "store/store.h"

#define LOCK_NAME "wsml.lock"
#define DATA_NAME "data.mdb"
#define BATCH_RECORDS 256
#define BATCH_BYTES (64u << 20)
#define INITIAL_MAPSIZE ((size_t)64 << 20)
#define MAX_CLASSES (1 << 20)

static const char *split_names[WSML_NUM_SPLITS] = {"train", "val", "test"};

const char *wsml_split_name(wsml_split s) {
    return (unsigned)s < WSML_NUM_SPLITS ? split_names[s] : "?";
}

int wsml_split_parse(const char *name) {
    for (int s = 0; s < WSML_NUM_SPLITS; s++)
        if (name && !strcmp(name, split_names[s]))
            return s;
    return -1;
}

const char *wsml_encoding_name(wsml_encoding e) {
    return e == WSML_ENC_RAW ? "raw" : e == WSML_ENC_JPEG ? "jpeg" : "?";
}

static void key_of(uint32_t index, uint8_t key[4]) { // big-endian: LMDB order = index order
    key[0] = (uint8_t)(index >> 24), key[1] = (uint8_t)(index >> 16);
    key[2] = (uint8_t)(index >> 8), key[3] = (uint8_t)index;
}

static uint32_t index_of(const uint8_t key[4]) {
    return ((uint32_t)key[0] << 24) | ((uint32_t)key[1] << 16) | ((uint32_t)key[2] << 8) | key[3];
}

static void join(char *out, size_t cap, const char *dir, const char *name) {
    snprintf(out, cap, "%s/%s", dir, name);
}

// ---- meta -----------------------------------------------------------------------

static void meta_free(wsml_store_meta *m) {
    if (!m)
        return;
    if (m->class_names)
        for (int c = 0; c < m->num_classes; c++)
            free(m->class_names[c]);
    free(m->class_names);
    free(m->info_json);
    memset(m, 0, sizeof *m);
}

static int get_int(json_t *o, const char *key, long long lo, long long hi, long long *out,
                   wsml_err *err) {
    json_t *v = json_object_get(o, key);
    if (!v)
        return wsml_errf(err, WSML_EFORMAT, "info: missing \"%s\"", key);
    if (!json_is_integer(v))
        return wsml_errf(err, WSML_EFORMAT, "info: \"%s\" is not an integer", key);
    long long x = json_integer_value(v);
    if (x < lo || x > hi)
        return wsml_errf(err, WSML_EFORMAT, "info: \"%s\" = %lld is outside [%lld, %lld]", key, x,
                         lo, hi);
    *out = x;
    return 0;
}

void wsml_store_meta_free(wsml_store_meta *m) {
    meta_free(m);
}

// Parses "info" (json: len bytes straight from the map, not NUL-terminated); errors are
// prefixed with dir (the store being opened) when it is not NULL.
static int parse_info(const char *dir, const char *json, size_t len, wsml_store_meta *m,
                      wsml_err *err) {
    int rc = wsml_store_meta_parse(json, len, m, err);
    if (rc < 0 && dir)
        wsml_err_prefix(err, "%s", dir);
    return rc;
}

int wsml_store_meta_parse(const char *json, size_t len, wsml_store_meta *m, wsml_err *err) {
    memset(m, 0, sizeof *m);
    m->version = WSML_STORE_VERSION;
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return wsml_errf(err, WSML_EFORMAT, "info: bad JSON at line %d: %s", je.line, je.text);
    int rc = 0;
    long long x;
    if (!json_is_object(root)) {
        rc = wsml_errf(err, WSML_EFORMAT, "info: not a JSON object");
        goto done;
    }
    json_t *name = json_object_get(root, "name");
    if (!json_is_string(name)) {
        rc = wsml_errf(err, WSML_EFORMAT, "info: missing string \"name\"");
        goto done;
    }
    snprintf(m->name, sizeof m->name, "%s", json_string_value(name));
    json_t *classes = json_object_get(root, "classes");
    if (!json_is_array(classes) || json_array_size(classes) == 0 ||
        json_array_size(classes) > MAX_CLASSES) {
        rc = wsml_errf(err, WSML_EFORMAT, "info: \"classes\" must be an array of 1..%d names",
                       MAX_CLASSES);
        goto done;
    }
    int C = (int)json_array_size(classes);
    m->class_names = calloc((size_t)C, sizeof *m->class_names);
    if (!m->class_names) {
        rc = wsml_errf(err, WSML_ENOMEM, "info: out of memory for %d class names", C);
        goto done;
    }
    m->num_classes = C;
    for (int c = 0; c < C; c++) {
        json_t *v = json_array_get(classes, (size_t)c);
        if (!json_is_string(v)) {
            rc = wsml_errf(err, WSML_EFORMAT, "info: class %d is not a string", c);
            goto done;
        }
        if (!(m->class_names[c] = strdup(json_string_value(v)))) {
            rc = wsml_errf(err, WSML_ENOMEM, "info: out of memory");
            goto done;
        }
    }
    json_t *counts = json_object_get(root, "counts");
    if (!json_is_object(counts)) {
        rc = wsml_errf(err, WSML_EFORMAT, "info: missing object \"counts\"");
        goto done;
    }
    for (int s = 0; s < WSML_NUM_SPLITS; s++) {
        if ((rc = get_int(counts, split_names[s], 0, UINT32_MAX, &x, err)) < 0) {
            wsml_err_prefix(err, "info: counts");
            goto done;
        }
        m->count[s] = (uint32_t)x;
    }
    if ((rc = get_int(root, "height", 1, 65535, &x, err)) < 0)
        goto done;
    m->height = (int)x;
    if ((rc = get_int(root, "width", 1, 65535, &x, err)) < 0)
        goto done;
    m->width = (int)x;
    if ((rc = get_int(root, "channels", 1, 255, &x, err)) < 0)
        goto done;
    m->channels = (int)x;
    json_t *enc = json_object_get(root, "encoding");
    const char *es = json_is_string(enc) ? json_string_value(enc) : "";
    if (!strcmp(es, "raw"))
        m->encoding = WSML_ENC_RAW;
    else if (!strcmp(es, "jpeg"))
        m->encoding = WSML_ENC_JPEG;
    else {
        rc = wsml_errf(err, WSML_EFORMAT, "info: \"encoding\" must be \"raw\" or \"jpeg\"");
        goto done;
    }
    if ((rc = get_int(root, "full_label_default", -1, 0, &x, err)) < 0)
        goto done;
    m->full_label_default = (int)x;
    m->info_json = malloc(len + 1);
    if (!m->info_json) {
        rc = wsml_errf(err, WSML_ENOMEM, "info: out of memory");
        goto done;
    }
    memcpy(m->info_json, json, len);
    m->info_json[len] = '\0';
done:
    json_decref(root);
    return rc;
}

// ---- locking --------------------------------------------------------------------

// Opens (creating if create) the lock file and takes the lock without waiting.
// Returns the fd, -1 with err set when someone else holds a conflicting lock or the
// file cannot be opened, or -2 (err untouched) when there is no lock file to take.
static int take_lock(const char *dir, int exclusive, int create, wsml_err *err) {
    char path[4200];
    join(path, sizeof path, dir, LOCK_NAME);
    int fd = open(path, (create ? O_RDWR | O_CREAT : O_RDONLY) | O_CLOEXEC, 0644);
    if (fd < 0) {
        if (!create && errno == ENOENT)
            return -2;
        wsml_errf(err, WSML_EIO, "%s: cannot open lock file: %s", path, strerror(errno));
        return -1;
    }
    if (flock(fd, (exclusive ? LOCK_EX : LOCK_SH) | LOCK_NB) != 0) {
        int e = errno;
        close(fd);
        if (e == EWOULDBLOCK)
            wsml_errf(err, WSML_ESTATE,
                      exclusive ? "%s: the store is open in another process (a reader or "
                                  "another ingest); close it first"
                                : "%s: the store is being written by another process",
                      dir);
        else
            wsml_errf(err, WSML_EIO, "%s: cannot lock: %s", path, strerror(e));
        return -1;
    }
    return fd;
}

// ---- reading --------------------------------------------------------------------

struct wsml_store {
    char *dir;
    MDB_env *env;
    MDB_dbi meta_dbi, split_dbi[WSML_NUM_SPLITS];
    size_t entries[WSML_NUM_SPLITS]; // what LMDB holds (may differ from meta when damaged)
    int lock_fd;
    int check_crc;
    wsml_store_meta meta;
};

struct wsml_reader {
    wsml_store *s;
    MDB_txn *txn;
    int active;
};

const wsml_store_meta *wsml_store_meta_get(const wsml_store *s) {
    return &s->meta;
}
const char *wsml_store_path(const wsml_store *s) {
    return s->dir;
}

void wsml_store_close(wsml_store *s) {
    if (!s)
        return;
    if (s->env)
        mdb_env_close(s->env);
    if (s->lock_fd >= 0)
        close(s->lock_fd); // releases the shared lock
    wsml_store_meta_free(&s->meta);
    free(s->dir);
    free(s);
}

static int meta_get(MDB_txn *txn, MDB_dbi dbi, const char *key, MDB_val *val) {
    MDB_val k = {strlen(key), (void *)key};
    return mdb_get(txn, dbi, &k, val);
}

// strict: the split entry counts must equal meta's (verify checks them itself).
static wsml_store *open_store(const char *dir, int check_crc, int strict, wsml_err *err) {
    wsml_store *s = calloc(1, sizeof *s);
    if (!s || !(s->dir = strdup(dir))) {
        free(s);
        wsml_errf(err, WSML_ENOMEM, "%s: out of memory", dir);
        return NULL;
    }
    s->lock_fd = -1;
    s->check_crc = check_crc;
    MDB_txn *txn = NULL;
    int rc;
    struct stat st;
    char data_path[4200];
    join(data_path, sizeof data_path, dir, DATA_NAME);
    if (stat(dir, &st) != 0) {
        wsml_errf(err, WSML_EIO, "%s: cannot open store: %s", dir, strerror(errno));
        goto fail;
    }
    if (!S_ISDIR(st.st_mode)) {
        wsml_errf(err, WSML_ESTATE, "%s: not a store (a store is a directory)", dir);
        goto fail;
    }
    if (stat(data_path, &st) != 0) {
        wsml_errf(err, WSML_ESTATE, "%s: not a wsml store (no %s)", dir, DATA_NAME);
        goto fail;
    }
    int fd = take_lock(dir, 0, 0, err);
    if (fd == -1)
        goto fail;
    s->lock_fd = fd >= 0 ? fd : -1;
    if ((rc = mdb_env_create(&s->env)) || (rc = mdb_env_set_maxdbs(s->env, 8)) ||
        (rc = mdb_env_open(s->env, dir, MDB_RDONLY | MDB_NOTLS | MDB_NOLOCK, 0644))) {
        wsml_errf(err, rc == MDB_INVALID || rc == MDB_VERSION_MISMATCH ? WSML_ECORRUPT : WSML_EIO,
                  "%s: cannot open LMDB environment: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    // A data.mdb shorter than LMDB's last page would SIGBUS on access: refuse it here.
    MDB_envinfo info;
    MDB_stat est;
    mdb_env_info(s->env, &info);
    mdb_env_stat(s->env, &est);
    if (stat(data_path, &st) != 0 ||
        (unsigned long long)st.st_size <
            ((unsigned long long)info.me_last_pgno + 1) * est.ms_psize) {
        wsml_errf(err, WSML_ECORRUPT, "%s: %s is truncated (%lld bytes, LMDB needs %llu)", dir,
                  DATA_NAME, (long long)st.st_size,
                  ((unsigned long long)info.me_last_pgno + 1) * est.ms_psize);
        goto fail;
    }
    if ((rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn))) {
        wsml_errf(err, WSML_EIO, "%s: cannot begin read transaction: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    if ((rc = mdb_dbi_open(txn, "meta", 0, &s->meta_dbi))) {
        wsml_errf(err, WSML_ESTATE, "%s: not a wsml store (no meta database: %s)", dir,
                  mdb_strerror(rc));
        goto fail;
    }
    MDB_val v;
    rc = meta_get(txn, s->meta_dbi, "version", &v);
    int version = -1;
    if (rc == 0) {
        char buf[16] = {0};
        memcpy(buf, v.mv_data, v.mv_size < 15 ? v.mv_size : 15);
        int lv;
        if (wsml_parse_int(buf, INT_MIN, INT_MAX, &lv) == 0 && v.mv_size < 15)
            version = lv;
    }
    if (rc == 0 && version != WSML_STORE_VERSION) {
        wsml_errf(err, WSML_ESTATE,
                  "%s: store format version %d, but this wsml reads version %d (re-ingest it)", dir,
                  version, WSML_STORE_VERSION);
        goto fail;
    }
    rc = meta_get(txn, s->meta_dbi, "complete", &v);
    if (rc != 0 || v.mv_size != 1 || *(const char *)v.mv_data != '1') {
        wsml_errf(err, WSML_ESTATE,
                  "%s: store is incomplete (its ingest did not finish: it failed, was killed or "
                  "is still running); re-run the ingest with --force",
                  dir);
        goto fail;
    }
    if ((rc = meta_get(txn, s->meta_dbi, "info", &v))) {
        wsml_errf(err, WSML_ECORRUPT, "%s: meta has no \"info\" record", dir);
        goto fail;
    }
    if ((rc = parse_info(dir, v.mv_data, v.mv_size, &s->meta, err)) < 0) {
        if (err)
            err->code = WSML_ECORRUPT;
        goto fail;
    }
    s->meta.version = version;
    for (int sp = 0; sp < WSML_NUM_SPLITS; sp++) {
        MDB_stat ss;
        if ((rc = mdb_dbi_open(txn, split_names[sp], 0, &s->split_dbi[sp])) ||
            (rc = mdb_stat(txn, s->split_dbi[sp], &ss))) {
            wsml_errf(err, WSML_ECORRUPT, "%s: cannot open the %s database: %s", dir,
                      split_names[sp], mdb_strerror(rc));
            goto fail;
        }
        s->entries[sp] = ss.ms_entries;
        if (strict && ss.ms_entries != s->meta.count[sp]) {
            wsml_errf(err, WSML_ECORRUPT,
                      "%s: split %s holds %zu records but meta says %u (damaged store; run "
                      "wsml-store verify)",
                      dir, split_names[sp], ss.ms_entries, s->meta.count[sp]);
            goto fail;
        }
    }
    // A read-only txn must commit (not abort) for its dbi handles to stay valid.
    rc = mdb_txn_commit(txn);
    txn = NULL;
    if (rc) {
        wsml_errf(err, WSML_EIO, "%s: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    return s;
fail:
    if (txn)
        mdb_txn_abort(txn);
    wsml_store_close(s);
    return NULL;
}

wsml_store *wsml_store_open(const char *dir, int check_crc, wsml_err *err) {
    return open_store(dir, check_crc, 1, err);
}

wsml_reader *wsml_reader_begin(wsml_store *s, wsml_err *err) {
    wsml_reader *r = calloc(1, sizeof *r);
    if (!r) {
        wsml_errf(err, WSML_ENOMEM, "%s: out of memory", s->dir);
        return NULL;
    }
    r->s = s;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &r->txn);
    if (rc) {
        free(r);
        wsml_errf(err, WSML_EIO, "%s: cannot begin read transaction: %s", s->dir, mdb_strerror(rc));
        return NULL;
    }
    r->active = 1;
    return r;
}

void wsml_reader_reset(wsml_reader *r) {
    if (r && r->active) {
        mdb_txn_reset(r->txn);
        r->active = 0;
    }
}

void wsml_reader_end(wsml_reader *r) {
    if (!r)
        return;
    mdb_txn_abort(r->txn);
    free(r);
}

// Fetches and parses one record; check_crc as asked, labels checked against C.
static int get_record(MDB_txn *txn, wsml_store *s, wsml_split split, uint32_t index, int check_crc,
                      wsml_record *rec, wsml_err *err) {
    uint8_t key[4];
    key_of(index, key);
    MDB_val k = {4, key}, v;
    int rc = mdb_get(txn, s->split_dbi[split], &k, &v);
    if (rc == MDB_NOTFOUND)
        return wsml_errf(err, WSML_ECORRUPT, "%s: %s record %u is missing", s->dir,
                         split_names[split], index);
    if (rc)
        return wsml_errf(
            err, rc == MDB_CORRUPTED || rc == MDB_PAGE_NOTFOUND ? WSML_ECORRUPT : WSML_EIO,
            "%s: %s record %u: %s", s->dir, split_names[split], index, mdb_strerror(rc));
    if ((rc = wsml_record_parse(v.mv_data, v.mv_size, check_crc, rec, err)) < 0 ||
        (rc = wsml_record_check_labels(rec, s->meta.num_classes, err)) < 0)
        return wsml_err_prefix(err, "%s: %s record %u", s->dir, split_names[split], index);
    rec->index = index;
    return 0;
}

int wsml_reader_get(wsml_reader *r, wsml_split split, uint32_t index, wsml_record *rec,
                    wsml_err *err) {
    wsml_store *s = r->s;
    if ((unsigned)split >= WSML_NUM_SPLITS)
        return wsml_errf(err, WSML_EARG, "%s: no split number %d", s->dir, (int)split);
    if (index >= s->meta.count[split])
        return wsml_errf(err, WSML_EARG, "%s: %s record %u out of range (the split has %u)", s->dir,
                         split_names[split], index, s->meta.count[split]);
    if (!r->active) {
        int rc = mdb_txn_renew(r->txn);
        if (rc)
            return wsml_errf(err, WSML_EIO, "%s: cannot renew read transaction: %s", s->dir,
                             mdb_strerror(rc));
        r->active = 1;
    }
    return get_record(r->txn, s, split, index, s->check_crc, rec, err);
}

// ---- writing --------------------------------------------------------------------

typedef struct {
    MDB_dbi dbi;
    uint8_t key[4];
    uint8_t *val;
    size_t len;
    size_t cap; // bytes allocated at val (recycled after the commit)
} pending_record;

typedef struct {
    uint8_t *data;
    size_t cap;
} spare_buffer;

struct wsml_store_writer {
    char *dir;
    MDB_env *env;
    MDB_dbi meta_dbi, split_dbi[WSML_NUM_SPLITS];
    int lock_fd;
    size_t mapsize;
    uint32_t next[WSML_NUM_SPLITS]; // records put per split
    int num_classes;                // of the first record put (-1 before)
    int full_label_default;
    pending_record batch[BATCH_RECORDS];
    int batch_n;
    size_t batch_bytes;
    // Value buffers of committed batches, handed back by wsml_store_put_encoded so that
    // record buffers are reused instead of allocated (and page-faulted in) per record.
    spare_buffer spare[BATCH_RECORDS];
    int spare_n;
    size_t spare_bytes; // at most 2 * BATCH_BYTES kept
    int failed;         // a put or commit failed: the writer only aborts from here on
};

// Empties the batch; its value buffers become spares (up to BATCH_RECORDS of them
// holding 2 * BATCH_BYTES; the rest are freed).
static void batch_clear(wsml_store_writer *w) {
    for (int i = 0; i < w->batch_n; i++) {
        pending_record *p = &w->batch[i];
        if (w->spare_n < BATCH_RECORDS && p->val &&
            w->spare_bytes + p->cap <= 2 * (size_t)BATCH_BYTES) {
            w->spare[w->spare_n++] = (spare_buffer){p->val, p->cap};
            w->spare_bytes += p->cap;
        } else
            free(p->val);
        p->val = NULL;
    }
    w->batch_n = 0;
    w->batch_bytes = 0;
}

static int grow_map(wsml_store_writer *w, wsml_err *err) {
    size_t next = w->mapsize * 2;
    int rc = mdb_env_set_mapsize(w->env, next);
    if (rc)
        return wsml_errf(err, WSML_EIO, "%s: cannot grow the LMDB map to %zu bytes: %s", w->dir,
                         next, mdb_strerror(rc));
    w->mapsize = next;
    return 0;
}

static int mdb_code(int rc) {
    return rc == ENOMEM ? WSML_ENOMEM : WSML_EIO;
}

// The cause of a failed LMDB write: LMDB reports a short write (the disk filled up in
// the middle of it) as EIO, so a full disk is named as such (issue 7: "a clear error").
static const char *write_strerror(const char *dir, int rc) {
    struct statvfs fs;
    if ((rc == EIO || rc == ENOSPC) && statvfs(dir, &fs) == 0 &&
        (unsigned long long)fs.f_bavail * fs.f_frsize < (1ull << 20))
        return "No space left on device";
    return mdb_strerror(rc);
}

// Writes the pending batch in one transaction; when the map is full, grows it and
// replays the whole batch (a failed LMDB txn must be aborted as a whole).
static int batch_commit(wsml_store_writer *w, wsml_err *err) {
    if (w->batch_n == 0)
        return 0;
    for (;;) {
        MDB_txn *txn;
        int rc = mdb_txn_begin(w->env, NULL, 0, &txn);
        for (int i = 0; rc == 0 && i < w->batch_n; i++) {
            pending_record *p = &w->batch[i];
            MDB_val k = {4, p->key}, v = {p->len, p->val};
            rc = mdb_put(txn, p->dbi, &k, &v, MDB_APPEND);
            if (rc)
                mdb_txn_abort(txn);
        }
        if (rc == 0)
            rc = mdb_txn_commit(txn); // frees txn whatever the result
        if (rc == MDB_MAP_FULL) {
            if ((rc = grow_map(w, err)) < 0)
                return rc;
            continue;
        }
        if (rc)
            return wsml_errf(err, mdb_code(rc), "%s: writing records failed: %s", w->dir,
                             write_strerror(w->dir, rc));
        batch_clear(w);
        // Start writing the committed pages to disk now, without waiting (MDB_NOSYNC left
        // them dirty in the page cache): otherwise the kernel starts only at its dirty
        // limits, and finish's sync waits for the whole store at once (a 1.2 GB store: ~40%
        // of the ingest's wall time). Durability is unchanged: finish still syncs before
        // "complete"; a failure here shows up there, so the result is not checked.
        int fd;
        if (mdb_env_get_fd(w->env, &fd) == 0)
            (void)sync_file_range(fd, 0, 0, SYNC_FILE_RANGE_WRITE);
        return 0;
    }
}

// Puts key/value pairs into meta in one transaction (growing the map if needed).
static int meta_put(wsml_store_writer *w, int n, const char **keys, const char **vals,
                    wsml_err *err) {
    for (;;) {
        MDB_txn *txn;
        int rc = mdb_txn_begin(w->env, NULL, 0, &txn);
        for (int i = 0; rc == 0 && i < n; i++) {
            MDB_val k = {strlen(keys[i]), (void *)keys[i]}, v = {strlen(vals[i]), (void *)vals[i]};
            rc = mdb_put(txn, w->meta_dbi, &k, &v, 0);
            if (rc)
                mdb_txn_abort(txn);
        }
        if (rc == 0)
            rc = mdb_txn_commit(txn);
        if (rc == MDB_MAP_FULL) {
            if ((rc = grow_map(w, err)) < 0)
                return rc;
            continue;
        }
        if (rc)
            return wsml_errf(err, mdb_code(rc), "%s: writing meta failed: %s", w->dir,
                             write_strerror(w->dir, rc));
        return 0;
    }
}

static void writer_free(wsml_store_writer *w) {
    if (!w)
        return;
    batch_clear(w);
    for (int i = 0; i < w->spare_n; i++)
        free(w->spare[i].data);
    w->spare_n = 0;
    w->spare_bytes = 0;
    if (w->env)
        mdb_env_close(w->env);
    if (w->lock_fd >= 0)
        close(w->lock_fd); // releases the exclusive lock
    free(w->dir);
    free(w);
}

// An existing directory may be replaced only when it holds nothing but store files:
// --force must never wipe a directory that was something else.
static int check_replaceable(const char *dir, wsml_err *err) {
    DIR *d = opendir(dir);
    if (!d)
        return wsml_errf(err, WSML_EIO, "%s: cannot list: %s", dir, strerror(errno));
    struct dirent *e;
    int rc = 0;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (!strcmp(n, ".") || !strcmp(n, "..") || !strcmp(n, DATA_NAME) ||
            !strcmp(n, "lock.mdb") || !strcmp(n, LOCK_NAME))
            continue;
        rc = wsml_errf(err, WSML_ESTATE,
                       "%s: exists and is not a wsml store (it holds %s); refusing to replace it",
                       dir, n);
        break;
    }
    closedir(d);
    return rc;
}

wsml_store_writer *wsml_store_create(const char *dir, int force, wsml_err *err) {
    wsml_store_writer *w = calloc(1, sizeof *w);
    if (!w || !(w->dir = strdup(dir))) {
        free(w);
        wsml_errf(err, WSML_ENOMEM, "%s: out of memory", dir);
        return NULL;
    }
    w->lock_fd = -1;
    w->num_classes = -1;
    w->mapsize = INITIAL_MAPSIZE;
    char path[4200];
    struct stat st;
    int rc;
    if (stat(dir, &st) == 0) {
        if (!S_ISDIR(st.st_mode)) {
            wsml_errf(err, WSML_ESTATE, "%s: exists and is not a directory", dir);
            goto fail;
        }
        if (!force) {
            wsml_errf(err, WSML_ESTATE, "%s: exists (pass --force to replace it)", dir);
            goto fail;
        }
        if (check_replaceable(dir, err) < 0)
            goto fail;
    } else {
        char parent[4200];
        snprintf(parent, sizeof parent, "%s", dir);
        if (wsml_mkdirs(dirname(parent), err) < 0)
            goto fail;
        if (mkdir(dir, 0755) != 0) {
            wsml_errf(err, errno == EEXIST ? WSML_ESTATE : WSML_EIO, "%s: cannot create: %s", dir,
                      strerror(errno));
            goto fail;
        }
    }
    if ((w->lock_fd = take_lock(dir, 1, 1, err)) < 0)
        goto fail;
    // Under the exclusive lock: nobody reads the old store any more, replace it.
    const char *old[] = {DATA_NAME, "lock.mdb"};
    for (int i = 0; i < 2; i++) {
        join(path, sizeof path, dir, old[i]);
        if (unlink(path) != 0 && errno != ENOENT) {
            wsml_errf(err, WSML_EIO, "%s: cannot remove: %s", path, strerror(errno));
            goto fail;
        }
    }
    if ((rc = mdb_env_create(&w->env)) || (rc = mdb_env_set_maxdbs(w->env, 8)) ||
        (rc = mdb_env_set_mapsize(w->env, w->mapsize)) ||
        (rc = mdb_env_open(w->env, dir, MDB_NOSYNC | MDB_NOLOCK, 0644))) {
        wsml_errf(err, WSML_EIO, "%s: cannot create LMDB environment: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    MDB_txn *txn;
    if ((rc = mdb_txn_begin(w->env, NULL, 0, &txn))) {
        wsml_errf(err, WSML_EIO, "%s: %s", dir, mdb_strerror(rc));
        goto fail;
    }
    rc = mdb_dbi_open(txn, "meta", MDB_CREATE, &w->meta_dbi);
    for (int s = 0; rc == 0 && s < WSML_NUM_SPLITS; s++)
        rc = mdb_dbi_open(txn, split_names[s], MDB_CREATE, &w->split_dbi[s]);
    if (rc == 0) {
        // The version goes in first so that even a dead ingest's store says what it is.
        char vbuf[16];
        snprintf(vbuf, sizeof vbuf, "%d", WSML_STORE_VERSION);
        MDB_val k = {7, "version"}, v = {strlen(vbuf), vbuf};
        rc = mdb_put(txn, w->meta_dbi, &k, &v, 0);
    }
    if (rc)
        mdb_txn_abort(txn);
    else
        rc = mdb_txn_commit(txn);
    if (rc) {
        wsml_errf(err, mdb_code(rc), "%s: cannot initialise the store: %s", dir,
                  write_strerror(dir, rc));
        goto fail;
    }
    return w;
fail:
    writer_free(w);
    return NULL;
}

// The checks before a put: writer state, split, order, classes and default.
static int put_check(wsml_store_writer *w, wsml_split split, uint32_t index, int num_classes,
                     int full_label_default, wsml_err *err) {
    if (w->failed)
        return wsml_errf(err, WSML_ESTATE, "%s: the writer failed earlier; abort it", w->dir);
    if ((unsigned)split >= WSML_NUM_SPLITS)
        return wsml_errf(err, WSML_EARG, "%s: no split number %d", w->dir, (int)split);
    const char *sn = split_names[split];
    if (index != w->next[split])
        return wsml_errf(err, WSML_EARG, "%s: %s record %u put out of order (expected %u)", w->dir,
                         sn, index, w->next[split]);
    if (w->num_classes < 0) {
        w->num_classes = num_classes;
        w->full_label_default = full_label_default;
    } else if (num_classes != w->num_classes || full_label_default != w->full_label_default) {
        return wsml_errf(
            err, WSML_EARG,
            "%s: %s record %u has %d classes and default %d, earlier records %d and %d", w->dir, sn,
            index, num_classes, full_label_default, w->num_classes, w->full_label_default);
    }
    return 0;
}

// Gives b (empty) a spare buffer, if there is one.
static void take_spare(wsml_store_writer *w, wsml_record_buf *b) {
    if (w->spare_n == 0)
        return;
    spare_buffer *sp = &w->spare[--w->spare_n];
    b->data = sp->data;
    b->cap = sp->cap;
    b->len = 0;
    w->spare_bytes -= sp->cap;
}

// Queues batch[batch_n] (its val, len and cap set) and commits a full batch.
static int put_queued(wsml_store_writer *w, wsml_split split, uint32_t index, wsml_err *err) {
    pending_record *p = &w->batch[w->batch_n];
    p->dbi = w->split_dbi[split];
    key_of(index, p->key);
    w->batch_n++;
    w->batch_bytes += p->len;
    w->next[split]++;
    if (w->batch_n == BATCH_RECORDS || w->batch_bytes >= BATCH_BYTES) {
        int rc = batch_commit(w, err);
        if (rc < 0) {
            w->failed = 1;
            return rc;
        }
    }
    return 0;
}

int wsml_store_put(wsml_store_writer *w, wsml_split split, uint32_t index,
                   const wsml_record_in *rec, int full_label_default, wsml_err *err) {
    int rc = put_check(w, split, index, rec->num_classes, full_label_default, err);
    if (rc < 0)
        return rc;
    pending_record *p = &w->batch[w->batch_n];
    wsml_record_buf b = {0};
    take_spare(w, &b); // reuse a committed batch's buffer
    if ((rc = wsml_record_encode_into(rec, full_label_default, &b, err)) < 0) {
        wsml_record_buf_free(&b);
        return wsml_err_prefix(err, "%s: %s record %u", w->dir, split_names[split], index);
    }
    p->val = b.data;
    p->len = b.len;
    p->cap = b.cap;
    return put_queued(w, split, index, err);
}

int wsml_store_put_encoded(wsml_store_writer *w, wsml_split split, uint32_t index, int num_classes,
                           int full_label_default, wsml_record_buf *buf, wsml_err *err) {
    int rc = put_check(w, split, index, num_classes, full_label_default, err);
    if (rc < 0)
        return rc;
    if (!buf->data || buf->len < 40 || buf->len > buf->cap)
        return wsml_errf(err, WSML_EARG, "%s: %s record %u: no encoded record to put", w->dir,
                         split_names[split], index);
    pending_record *p = &w->batch[w->batch_n];
    p->val = buf->data;
    p->len = buf->len;
    p->cap = buf->cap;
    // buf gets a spare buffer (or none) for its next record
    memset(buf, 0, sizeof *buf);
    take_spare(w, buf);
    return put_queued(w, split, index, err);
}

static int fsync_path(const char *path, wsml_err *err) {
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return wsml_errf(err, WSML_EIO, "%s: cannot open: %s", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0)
        return wsml_errf(err, WSML_EIO, "%s: fsync failed: %s", path, strerror(e));
    return 0;
}

int wsml_store_writer_finish(wsml_store_writer *w, const char *info_json, wsml_err *err) {
    int rc = 0;
    wsml_store_meta m;
    memset(&m, 0, sizeof m);
    if (w->failed) {
        rc = wsml_errf(err, WSML_ESTATE, "%s: the writer failed earlier", w->dir);
        goto done;
    }
    if (!info_json) {
        rc = wsml_errf(err, WSML_EARG, "%s: no info JSON", w->dir);
        goto done;
    }
    if ((rc = parse_info(w->dir, info_json, strlen(info_json), &m, err)) < 0)
        goto done;
    for (int s = 0; s < WSML_NUM_SPLITS; s++)
        if (m.count[s] != w->next[s]) {
            rc = wsml_errf(err, WSML_EARG, "%s: info counts %s = %u but %u records were put",
                           w->dir, split_names[s], m.count[s], w->next[s]);
            goto done;
        }
    if (w->num_classes >= 0 &&
        (w->num_classes != m.num_classes || w->full_label_default != m.full_label_default)) {
        rc = wsml_errf(err, WSML_EARG,
                       "%s: info lists %d classes with full_label_default %d, but the records have "
                       "%d and %d",
                       w->dir, m.num_classes, m.full_label_default, w->num_classes,
                       w->full_label_default);
        goto done;
    }
    if ((rc = batch_commit(w, err)) < 0)
        goto done;
    char vbuf[16];
    snprintf(vbuf, sizeof vbuf, "%d", WSML_STORE_VERSION);
    const char *keys[] = {"version", "info"}, *vals[] = {vbuf, info_json};
    if ((rc = meta_put(w, 2, keys, vals, err)) < 0)
        goto done;
    // Everything before "complete" is durable before "complete" exists.
    if ((rc = mdb_env_sync(w->env, 1))) {
        rc = wsml_errf(err, WSML_EIO, "%s: sync failed: %s", w->dir, write_strerror(w->dir, rc));
        goto done;
    }
    if ((rc = mdb_env_set_flags(w->env, MDB_NOSYNC, 0))) {
        rc = wsml_errf(err, WSML_EIO, "%s: %s", w->dir, mdb_strerror(rc));
        goto done;
    }
    const char *ckey[] = {"complete"}, *cval[] = {"1"};
    if ((rc = meta_put(w, 1, ckey, cval, err)) < 0)
        goto done; // synced commit
    if ((rc = mdb_env_sync(w->env, 1))) {
        rc = wsml_errf(err, WSML_EIO, "%s: sync failed: %s", w->dir, write_strerror(w->dir, rc));
        goto done;
    }
    rc = fsync_path(w->dir, err); // the directory entries of data.mdb and wsml.lock
done:
    wsml_store_meta_free(&m);
    writer_free(w);
    return rc;
}

void wsml_store_writer_abort(wsml_store_writer *w) {
    writer_free(w);
}

// ---- checking -------------------------------------------------------------------

typedef struct {
    wsml_bad_record_fn on_bad;
    void *ctx;
    long bad;
    wsml_err *err;
    const char *dir;
} verify_state;

static void report(verify_state *v, wsml_split split, uint32_t index, const char *what) {
    if (v->bad == 0)
        wsml_errf(v->err, WSML_ECORRUPT, "%s: %s record %u: %s", v->dir, split_names[split], index,
                  what);
    v->bad++;
    if (v->on_bad)
        v->on_bad(v->ctx, split, index, what);
}

// The message of a record error without its "<dir>: <split> record <i>: " prefix.
static const char *tail_of(const char *msg, const char *dir, wsml_split split, uint32_t index) {
    char prefix[4300];
    int n = snprintf(prefix, sizeof prefix, "%s: %s record %u: ", dir, split_names[split], index);
    if (n > 0 && !strncmp(msg, prefix, (size_t)n))
        return msg + n;
    return msg;
}

long wsml_store_verify_progress(const char *dir, wsml_bad_record_fn on_bad,
                                wsml_verify_progress_fn on_progress, void *ctx, wsml_err *err) {
    wsml_store *s = open_store(dir, 1, 0, err);
    if (!s)
        return err && err->code ? err->code : WSML_EIO;
    const wsml_store_meta *m = &s->meta;
    verify_state v = {on_bad, ctx, 0, err, dir};
    wsml_err rerr;
    MDB_txn *txn;
    int rc = mdb_txn_begin(s->env, NULL, MDB_RDONLY, &txn);
    if (rc) {
        wsml_store_close(s);
        return wsml_errf(err, WSML_EIO, "%s: cannot begin read transaction: %s", dir,
                         mdb_strerror(rc));
    }
    char what[1200];
    for (int sp = 0; sp < WSML_NUM_SPLITS; sp++) {
        wsml_split split = (wsml_split)sp;
        // By index, not by cursor: a damaged page then costs only the records under it.
        for (uint32_t i = 0; i < m->count[sp]; i++) {
            if (on_progress)
                on_progress(ctx, split, i);
            wsml_record rec;
            if (get_record(txn, s, split, i, 1, &rec, &rerr) < 0) {
                report(&v, split, i, tail_of(rerr.msg, dir, split, i));
                continue;
            }
            what[0] = '\0';
            if (rec.encoding != m->encoding)
                snprintf(what, sizeof what, "encoding %s, the store's is %s",
                         wsml_encoding_name(rec.encoding), wsml_encoding_name(m->encoding));
            else if (rec.height != m->height || rec.width != m->width ||
                     rec.channels != m->channels)
                snprintf(what, sizeof what, "image is %dx%dx%d, the store's are %dx%dx%d",
                         rec.height, rec.width, rec.channels, m->height, m->width, m->channels);
            else if (rec.full_label_default != m->full_label_default)
                snprintf(what, sizeof what, "full label default %d, the store's is %d",
                         rec.full_label_default, m->full_label_default);
            else if (rec.id_len == 0)
                snprintf(what, sizeof what, "empty id");
            if (what[0])
                report(&v, split, i, what);
        }
        // Entries beyond the count (or with malformed keys) are damage too.
        if (s->entries[sp] != m->count[sp]) {
            MDB_cursor *cur;
            if ((rc = mdb_cursor_open(txn, s->split_dbi[sp], &cur)) == 0) {
                MDB_val k, val;
                int op = MDB_FIRST;
                while ((rc = mdb_cursor_get(cur, &k, &val, (MDB_cursor_op)op)) == 0) {
                    op = MDB_NEXT;
                    uint32_t idx = k.mv_size == 4 ? index_of(k.mv_data) : UINT32_MAX;
                    if (k.mv_size == 4 && idx < m->count[sp])
                        continue;
                    snprintf(what, sizeof what, "unexpected %s key (%zu bytes) beyond the count %u",
                             k.mv_size == 4 ? "record" : "malformed", k.mv_size, m->count[sp]);
                    report(&v, split, idx, what);
                }
                mdb_cursor_close(cur);
            }
            if (rc && rc != MDB_NOTFOUND) {
                snprintf(what, sizeof what, "walking the split failed: %s", mdb_strerror(rc));
                report(&v, split, UINT32_MAX, what);
            }
        }
    }
    mdb_txn_abort(txn);
    wsml_store_close(s);
    return v.bad;
}

long wsml_store_verify(const char *dir, wsml_bad_record_fn on_bad, void *ctx, wsml_err *err) {
    return wsml_store_verify_progress(dir, on_bad, NULL, ctx, err);
}
