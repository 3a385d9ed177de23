#define _GNU_SOURCE
// Store round trips, damage detection and the wsml-store CLI (numpy as the oracle for
// exported .npy files).
#include <criterion/criterion.h>
#include <fcntl.h>
#include <lmdb.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/image.h"
#include "common/rng.h"
#include "store/record.h"
#include "store/store.h"

static char dir[256];

static void make_tmp(void) {
    snprintf(dir, sizeof dir, "/tmp/wsml-test-store.XXXXXX");
    cr_assert(mkdtemp(dir));
    strcat(dir, "/s");
}

static void cleanup(void) {
    char cmd[512];
    snprintf(cmd, sizeof cmd, "rm -rf '%.*s'", (int)(strlen(dir) - 2), dir);
    if (system(cmd)) {
    }
}

// Deterministic labels for record i of split s: all three values of both kinds.
static void labels_for(int s, int i, int C, int dflt, int8_t *full, int8_t *obs) {
    wsml_rng r;
    wsml_rng_seed(&r, (uint32_t)(s * 100003 + i));
    for (int c = 0; c < C; c++) {
        uint32_t u = wsml_rng_u32(&r) % 100;
        full[c] = u < 3 ? 1 : u < 6 ? (int8_t)(dflt == 0 ? -1 : 0) : (int8_t)dflt;
        obs[c] = full[c] == 1 && u < 2 ? 1 : (u > 97 ? -1 : 0);
    }
}

static const int counts[3] = {7, 3, 5};

// Deterministic image of record i of split s (4x5x3 raw; its first 17 bytes stand for a
// JPEG payload, which the store does not decode), different in every byte and record.
enum { IMG_BYTES = 4 * 5 * 3, JPEG_BYTES = 17 };
static void image_for(int s, int i, uint8_t *img) {
    for (size_t k = 0; k < IMG_BYTES; k++)
        img[k] = (uint8_t)(k * 7 + i + 31 * s);
}

static void write_store(int C, int dflt, wsml_encoding enc, int finish) {
    wsml_err err = {0};
    wsml_store_writer *w = wsml_store_create(dir, 0, &err);
    cr_assert(w, "%s", err.msg);
    int8_t *full = malloc(C), *obs = malloc(C);
    uint8_t img[IMG_BYTES];
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < counts[s]; i++) {
            labels_for(s, i, C, dflt, full, obs);
            image_for(s, i, img);
            char id[64];
            snprintf(id, sizeof id, "img_%d_%d.jpg", s, i);
            wsml_record_in rec = {id, full, obs, C,   enc,
                                  4,  5,    3,   img, enc == WSML_ENC_RAW ? IMG_BYTES : JPEG_BYTES};
            cr_assert_eq(wsml_store_put(w, (wsml_split)s, (uint32_t)i, &rec, dflt, &err), 0, "%s",
                         err.msg);
        }
    free(full);
    free(obs);
    if (!finish) {
        wsml_store_writer_abort(w);
        return;
    }
    char info[1 << 16];
    int n = snprintf(info, sizeof info, "{\"name\":\"t\",\"classes\":[");
    for (int c = 0; c < C; c++)
        n += snprintf(info + n, sizeof info - n, "%s\"c%d\"", c ? "," : "", c);
    snprintf(
        info + n, sizeof info - n,
        "],\"counts\":{\"train\":7,\"val\":3,\"test\":5},\"height\":4,\"width\":5,\"channels\":3,"
        "\"encoding\":\"%s\",\"full_label_default\":%d}",
        enc == WSML_ENC_RAW ? "raw" : "jpeg", dflt);
    cr_assert_eq(wsml_store_writer_finish(w, info, &err), 0, "%s", err.msg);
}

static void check_round_trip(int C, int dflt, wsml_encoding enc) {
    write_store(C, dflt, enc, 1);
    wsml_err err = {0};
    wsml_store *s = wsml_store_open(dir, 1, &err);
    cr_assert(s, "%s", err.msg);
    const wsml_store_meta *m = wsml_store_meta_get(s);
    cr_assert_eq(m->num_classes, C);
    cr_assert_eq(m->count[0], 7);
    cr_assert_eq(m->full_label_default, dflt);
    wsml_reader *r = wsml_reader_begin(s, &err);
    int8_t *full = malloc(C), *obs = malloc(C), *f2 = malloc(C), *o2 = malloc(C);
    for (int sp = 2; sp >= 0; sp--) // random access, not in write order
        for (int i = counts[sp] - 1; i >= 0; i--) {
            wsml_record rec;
            cr_assert_eq(wsml_reader_get(r, (wsml_split)sp, (uint32_t)i, &rec, &err), 0, "%s",
                         err.msg);
            labels_for(sp, i, C, dflt, full, obs);
            wsml_record_full_labels(&rec, C, f2);
            wsml_record_observed_labels(&rec, C, o2);
            cr_assert_arr_eq(full, f2, (size_t)C);
            cr_assert_arr_eq(obs, o2, (size_t)C);
            char id[64];
            snprintf(id, sizeof id, "img_%d_%d.jpg", sp, i);
            cr_assert_eq(rec.id_len, strlen(id));
            cr_assert(!memcmp(rec.id, id, rec.id_len));
            uint8_t img[IMG_BYTES];
            image_for(sp, i, img);
            cr_assert_eq(rec.encoding, enc);
            cr_assert_eq(rec.height, 4);
            cr_assert_eq(rec.width, 5);
            cr_assert_eq(rec.channels, 3);
            cr_assert_eq(rec.image_len, enc == WSML_ENC_RAW ? IMG_BYTES : JPEG_BYTES);
            for (uint32_t k = 0; k < rec.image_len; k++)
                cr_assert_eq(rec.image[k], img[k],
                             "split %d record %d: image byte %u is %u, wrote %u", sp, i, k,
                             rec.image[k], img[k]);
        }
    wsml_record rec;
    cr_assert_neq(wsml_reader_get(r, WSML_SPLIT_VAL, 3, &rec, &err), 0);
    cr_assert(strstr(err.msg, "val record 3 out of range"), "%s", err.msg);
    free(full), free(obs), free(f2), free(o2);
    wsml_reader_end(r);
    wsml_store_close(s);
}

Test(store, round_trip_raw_default_negative, .init = make_tmp, .fini = cleanup) {
    check_round_trip(20, 0, WSML_ENC_RAW);
}
Test(store, round_trip_5000_classes_unknown_default, .init = make_tmp, .fini = cleanup) {
    check_round_trip(5000, -1, WSML_ENC_RAW);
}
Test(store, round_trip_jpeg_payload, .init = make_tmp, .fini = cleanup) {
    check_round_trip(80, 0, WSML_ENC_JPEG);
}

Test(store, incomplete_store_refused, .init = make_tmp, .fini = cleanup) {
    write_store(5, 0, WSML_ENC_RAW, 0);
    wsml_err err = {0};
    cr_assert_null(wsml_store_open(dir, 0, &err));
    cr_assert(strstr(err.msg, "incomplete"), "%s", err.msg);
    cr_assert(strstr(err.msg, dir), "%s", err.msg);
}

Test(store, existing_refused_without_force, .init = make_tmp, .fini = cleanup) {
    write_store(5, 0, WSML_ENC_RAW, 1);
    wsml_err err = {0};
    cr_assert_null(wsml_store_create(dir, 0, &err));
    cr_assert(strstr(err.msg, "--force"), "%s", err.msg);
    // A reader holds it open: even --force is refused.
    wsml_store *s = wsml_store_open(dir, 0, &err);
    cr_assert(s, "%s", err.msg);
    pid_t pid = fork();
    if (pid == 0)
        _exit(wsml_store_create(dir, 1, &err) ? 0 : 3); // another process
    int st;
    waitpid(pid, &st, 0);
    cr_assert_eq(WEXITSTATUS(st), 3, "ingest into a store held open by a reader must be refused");
    wsml_store_close(s);
    wsml_store_writer *w = wsml_store_create(dir, 1, &err);
    cr_assert(w, "%s", err.msg);
    wsml_store_writer_abort(w);
}

// A write transaction on sub-database db of the store in dir, straight through LMDB (to
// damage the store behind wsml_store's back); raw_commit commits it and closes env.
static MDB_txn *raw_begin(const char *db, MDB_env **env, MDB_dbi *dbi) {
    MDB_txn *txn;
    mdb_env_create(env);
    mdb_env_set_maxdbs(*env, 8);
    cr_assert_eq(mdb_env_open(*env, dir, MDB_NOLOCK, 0644), 0);
    mdb_txn_begin(*env, NULL, 0, &txn);
    mdb_dbi_open(txn, db, 0, dbi);
    return txn;
}

static void raw_commit(MDB_env *env, MDB_txn *txn) {
    mdb_txn_commit(txn);
    mdb_env_close(env);
}

// Rewrites the meta "version" key directly with LMDB.
static void set_version(const char *v) {
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn = raw_begin("meta", &env, &dbi);
    MDB_val k = {7, "version"}, val = {strlen(v), (void *)v};
    mdb_put(txn, dbi, &k, &val, 0);
    raw_commit(env, txn);
}

Test(store, other_version_refused, .init = make_tmp, .fini = cleanup) {
    write_store(5, 0, WSML_ENC_RAW, 1);
    set_version("999");
    wsml_err err = {0};
    cr_assert_null(wsml_store_open(dir, 0, &err));
    cr_assert(strstr(err.msg, "version 999"), "%s", err.msg);
}

// Flips one byte of record (split val, index 1)'s image inside data.mdb.
static void flip_record_byte(void) {
    char path[300];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    FILE *f = fopen(path, "r+b");
    cr_assert(f);
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    char *buf = malloc(n);
    fseek(f, 0, SEEK_SET);
    cr_assert_eq(fread(buf, 1, n, f), (size_t)n);
    char *hit = memmem(buf, n, "img_1_1.jpg", 11);
    cr_assert(hit);
    long off = hit - buf + 11 + 40; // inside the labels/image that follow the id
    buf[off] ^= 0x5a;
    fseek(f, off, SEEK_SET);
    fputc(buf[off], f);
    fclose(f);
    free(buf);
}

Test(store, flipped_byte_caught_by_verify_and_reader, .init = make_tmp, .fini = cleanup) {
    write_store(20, 0, WSML_ENC_RAW, 1);
    wsml_err err = {0};
    cr_assert_eq(wsml_store_verify(dir, NULL, NULL, &err), 0, "%s", err.msg);
    flip_record_byte();
    cr_assert_eq(wsml_store_verify(dir, NULL, NULL, &err), 1);
    cr_assert(strstr(err.msg, "val record 1"), "%s", err.msg);
    wsml_store *s = wsml_store_open(dir, 1, &err);
    cr_assert(s, "%s", err.msg);
    wsml_reader *r = wsml_reader_begin(s, &err);
    wsml_record rec;
    cr_assert_neq(wsml_reader_get(r, WSML_SPLIT_VAL, 1, &rec, &err), 0);
    cr_assert(strstr(err.msg, "CRC"), "%s", err.msg);
    cr_assert_eq(wsml_reader_get(r, WSML_SPLIT_VAL, 0, &rec, &err), 0, "%s", err.msg);
    wsml_reader_end(r);
    wsml_store_close(s);
}

Test(store, parse_rejects_garbage) {
    wsml_err err = {0};
    wsml_record rec;
    uint8_t junk[64] = "WSR1";
    for (size_t len = 0; len <= sizeof junk; len++)
        cr_assert_neq(wsml_record_parse(junk, len, 1, &rec, &err), 0);
    memset(junk + 4, 0xff, 60);
    cr_assert_neq(wsml_record_parse(junk, sizeof junk, 0, &rec, &err), 0);
}

static int run(const char *cmd) {
    int st = system(cmd);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

Test(store, cli_info_verify_export_against_numpy, .init = make_tmp, .fini = cleanup) {
    write_store(20, 0, WSML_ENC_RAW, 1);
    const char *b = getenv("WSML_BUILD") ? getenv("WSML_BUILD") : "build";
    const char *py = getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3";
    char cmd[16384], d[256];
    snprintf(d, sizeof d, "%.*s", (int)(strlen(dir) - 2), dir);
    snprintf(cmd, sizeof cmd,
             "%s/wsml-store info %s --json > %s/info.json && %s -c \"import json; "
             "d=json.load(open('%s/info.json')); assert d['counts']=={'train':7,'val':3,'test':5}, "
             "d; assert len(d['classes'])==20\"",
             b, dir, d, py, d);
    cr_assert_eq(run(cmd), 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "%s/wsml-store verify %s --quiet", b, dir);
    cr_assert_eq(run(cmd), 0);
    snprintf(cmd, sizeof cmd,
             "%s/wsml-store export %s --split train --what labels --out %s/l.npy --quiet && "
             "%s/wsml-store export %s --split train --what observed --out %s/o.npy --quiet && "
             "%s/wsml-store export %s --split train --what ids --out %s/ids.txt --quiet && "
             "%s/wsml-store export %s --split test --what images --range 1:3 --out %s/png --quiet",
             b, dir, d, b, dir, d, b, dir, d, b, dir, d);
    cr_assert_eq(run(cmd), 0, "%s", cmd);
    // The oracle: numpy loads what we wrote; the labels equal a transcription of labels_for().
    int8_t full[20], obs[20];
    char expect[2048] = "";
    size_t o = 0;
    for (int i = 0; i < 7; i++) {
        labels_for(0, i, 20, 0, full, obs);
        for (int c = 0; c < 20; c++)
            o += snprintf(expect + o, sizeof expect - o, "%d,", full[c]);
        for (int c = 0; c < 20; c++)
            o += snprintf(expect + o, sizeof expect - o, "%d,", obs[c]);
    }
    snprintf(cmd, sizeof cmd,
             "%s -c \"import numpy as np; from PIL import Image; l=np.load('%s/l.npy'); "
             "o=np.load('%s/o.npy'); "
             "assert l.dtype==np.int8 and l.shape==(7,20), l.shape; "
             "e=np.array([%s]).reshape(7,2,20); assert (l==e[:,0]).all() and (o==e[:,1]).all(); "
             "ids=open('%s/ids.txt').read().split(); assert ids==['img_0_%%d.jpg'%%i for i in "
             "range(7)], ids; "
             "im=np.asarray(Image.open('%s/png/2.png')); assert im.shape==(4,5,3); "
             "assert (im.reshape(-1)==(np.arange(60)*7+2+62)%%256).all()\"",
             py, d, d, expect, d, d);
    cr_assert_eq(run(cmd), 0, "%s", cmd);
    flip_record_byte();
    snprintf(cmd, sizeof cmd,
             "%s/wsml-store verify %s >/dev/null 2>%s/verify.err; test $? -eq 1 && grep -q 'val "
             "record 1' %s/verify.err",
             b, dir, d, d);
    cr_assert_eq(run(cmd), 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "%s/wsml-store info %s/nope 2>/dev/null", b, d);
    cr_assert_eq(run(cmd), 1);
    snprintf(cmd, sizeof cmd, "%s/wsml-store frob %s 2>/dev/null", b, dir);
    cr_assert_eq(run(cmd), 2);
}

// ---- record codec ---------------------------------------------------------------

// Dense labels with all three values of both kinds; observed may be left out.
static void random_labels(wsml_rng *r, int C, int8_t *full, int8_t *obs) {
    for (int c = 0; c < C; c++) {
        full[c] = (int8_t)((int)wsml_rng_interval(r, 2) - 1);
        if (obs)
            obs[c] = (int8_t)((int)wsml_rng_interval(r, 2) - 1);
    }
}

Test(store, codec_round_trip_exact_and_compact) {
    wsml_rng r;
    wsml_rng_seed(&r, 7);
    const int classes[] = {1, 7, 80, 5000};
    uint8_t img[6 * 4 * 3];
    for (size_t k = 0; k < sizeof img; k++)
        img[k] = (uint8_t)(k * 13 + 1);
    for (int ci = 0; ci < 4; ci++)
        for (int dflt = -1; dflt <= 0; dflt++)
            for (int with_obs = 0; with_obs < 2; with_obs++)
                for (int enc = 0; enc < 2; enc++) {
                    int C = classes[ci];
                    int8_t *full = malloc(C), *obs = malloc(C), *f2 = malloc(C), *o2 = malloc(C);
                    random_labels(&r, C, full, with_obs ? obs : NULL);
                    if (!with_obs)
                        memset(obs, 0, C);
                    wsml_record_in in = {"dir/ünïcode id.jpg",
                                         full,
                                         with_obs ? obs : NULL,
                                         C,
                                         (wsml_encoding)enc,
                                         6,
                                         4,
                                         3,
                                         img,
                                         enc ? 29 : sizeof img};
                    uint8_t *val;
                    size_t len;
                    wsml_err err = {0};
                    cr_assert_eq(wsml_record_encode(&in, dflt, &val, &len, &err), 0, "%s", err.msg);
                    // Compactness: 40 bytes + id + 4 per listed label + payload, where the
                    // listed labels are the full ones that differ from the default and the
                    // non-zero observed ones.
                    size_t listed = 0;
                    for (int c = 0; c < C; c++)
                        listed += (full[c] != dflt) + (obs[c] != 0);
                    cr_assert_eq(len, 40 + strlen(in.id) + 4 * listed + in.image_len);
                    wsml_record rec;
                    cr_assert_eq(wsml_record_parse(val, len, 1, &rec, &err), 0, "%s", err.msg);
                    cr_assert_eq(wsml_record_check_labels(&rec, C, &err), 0, "%s", err.msg);
                    wsml_record_full_labels(&rec, C, f2);
                    wsml_record_observed_labels(&rec, C, o2);
                    cr_assert_arr_eq(full, f2, (size_t)C, "C=%d default %d", C, dflt);
                    cr_assert_arr_eq(obs, o2, (size_t)C, "C=%d default %d", C, dflt);
                    cr_assert_eq(rec.encoding, (wsml_encoding)enc);
                    cr_assert_eq(rec.height, 6);
                    cr_assert_eq(rec.width, 4);
                    cr_assert_eq(rec.channels, 3);
                    cr_assert_eq(rec.image_len, in.image_len);
                    cr_assert_arr_eq(rec.image, img, in.image_len);
                    cr_assert_eq(rec.id_len, strlen(in.id));
                    cr_assert(!memcmp(rec.id, in.id, rec.id_len));
                    free(val), free(full), free(obs), free(f2), free(o2);
                }
}

Test(store, codec_rejects_bad_input_to_encode) {
    int8_t full[3] = {1, 2, 0};
    uint8_t img[12] = {0};
    wsml_record_in in = {"x", full, NULL, 3, WSML_ENC_RAW, 2, 2, 3, img, sizeof img};
    uint8_t *val;
    size_t len;
    wsml_err err = {0};
    cr_assert_lt(wsml_record_encode(&in, 0, &val, &len, &err), 0);
    cr_assert(strstr(err.msg, "class 1"), "%s", err.msg);
    full[1] = 1;
    in.image_len = 11; // raw payload must be h*w*c bytes
    cr_assert_lt(wsml_record_encode(&in, 0, &val, &len, &err), 0);
    in.image_len = 12;
    cr_assert_lt(wsml_record_encode(&in, 1, &val, &len, &err), 0); // default must be 0 or -1
    cr_assert_eq(wsml_record_encode(&in, -1, &val, &len, &err), 0, "%s", err.msg);
    free(val);
}

// Every truncation and every single-bit flip of a record is an error (with the CRC on).
Test(store, codec_truncated_and_flipped_records_fail) {
    int8_t full[30], obs[30];
    wsml_rng r;
    wsml_rng_seed(&r, 11);
    random_labels(&r, 30, full, obs);
    uint8_t img[2 * 3 * 3];
    for (size_t k = 0; k < sizeof img; k++)
        img[k] = (uint8_t)k;
    wsml_record_in in = {"abc", full, obs, 30, WSML_ENC_RAW, 2, 3, 3, img, sizeof img};
    uint8_t *val;
    size_t len;
    wsml_err err = {0};
    cr_assert_eq(wsml_record_encode(&in, 0, &val, &len, &err), 0, "%s", err.msg);
    wsml_record rec;
    for (size_t n = 0; n < len; n++) {
        uint8_t *copy = malloc(n ? n : 1); // exactly n bytes: ASan sees any overread
        memcpy(copy, val, n);
        cr_assert_lt(wsml_record_parse(copy, n, 0, &rec, &err), 0, "truncated to %zu parsed", n);
        free(copy);
    }
    for (size_t pos = 0; pos < len; pos++)
        for (int bit = 0; bit < 8; bit++) {
            val[pos] ^= (uint8_t)(1u << bit);
            err.msg[0] = 0;
            cr_assert_lt(wsml_record_parse(val, len, 1, &rec, &err), 0, "flip at %zu.%d parsed",
                         pos, bit);
            cr_assert(err.msg[0]);
            val[pos] ^= (uint8_t)(1u << bit);
        }
    cr_assert_eq(wsml_record_parse(val, len, 1, &rec, &err), 0, "%s", err.msg);
    free(val);
}

// Random headers with huge or inconsistent counts: never a crash or an overread (this
// runs under ASan in `make asan`); anything that parses has its views inside the value.
Test(store, codec_random_garbage_never_overreads) {
    wsml_rng r;
    wsml_rng_seed(&r, 3);
    for (int t = 0; t < 20000; t++) {
        size_t n = (size_t)wsml_rng_interval(&r, 200);
        uint8_t *b = malloc(n ? n : 1);
        for (size_t k = 0; k < n; k++)
            b[k] = (uint8_t)wsml_rng_u32(&r);
        if (n >= 36 && t % 2) {
            memcpy(b, "WSR1", 4);
            b[10] = 0, b[11] = 0, b[5] = 3;
            uint32_t rest = (uint32_t)(n - 40);
            // Lengths that almost add up, or overflow when multiplied by 4.
            uint32_t f[6] = {rest / 3, t % 7 ? 1 : 0x40000000u, 0, 0, 0, 0};
            for (int k = 0; k < 6; k++)
                memcpy(b + 12 + 4 * k, &f[k], 4);
        }
        wsml_record rec;
        wsml_err err = {0};
        if (wsml_record_parse(b, n, t % 3 == 0, &rec, &err) == 0) {
            uint64_t labels =
                4ull * ((uint64_t)rec.n_full_pos + rec.n_full_neg + rec.n_obs_pos + rec.n_obs_neg);
            cr_assert((const uint8_t *)rec.id + rec.id_len <= b + n);
            cr_assert(rec.labels_blob + labels <= b + n);
            cr_assert(rec.image + rec.image_len <= b + n);
            int8_t lab[16];
            wsml_record_full_labels(&rec, 16, lab); // indices >= 16 are skipped, not written
        }
        free(b);
    }
}

Test(store, codec_class_index_range_checked) {
    int8_t full[20] = {0};
    full[19] = 1;
    uint8_t img[3] = {1, 2, 3};
    wsml_record_in in = {"x", full, NULL, 20, WSML_ENC_RAW, 1, 1, 3, img, 3};
    uint8_t *val;
    size_t len;
    wsml_err err = {0};
    cr_assert_eq(wsml_record_encode(&in, 0, &val, &len, &err), 0, "%s", err.msg);
    wsml_record rec;
    cr_assert_eq(wsml_record_parse(val, len, 1, &rec, &err), 0, "%s", err.msg);
    cr_assert_lt(wsml_record_check_labels(&rec, 10, &err), 0);
    cr_assert(strstr(err.msg, "19"), "%s", err.msg);
    cr_assert_eq(wsml_record_check_labels(&rec, 20, &err), 0);
    free(val);
}

// ---- meta -----------------------------------------------------------------------

Test(store, meta_parse_validates) {
    const char *good =
        "{\"name\":\"n\",\"classes\":[\"a\",\"b\"],\"counts\":{\"train\":1,\"val\":0,"
        "\"test\":2},\"height\":3,\"width\":4,\"channels\":3,\"encoding\":\"jpeg\","
        "\"full_label_default\":-1}";
    wsml_store_meta m;
    wsml_err err = {0};
    cr_assert_eq(wsml_store_meta_parse(good, strlen(good), &m, &err), 0, "%s", err.msg);
    cr_assert_eq(m.num_classes, 2);
    cr_assert_str_eq(m.class_names[1], "b");
    cr_assert_eq(m.count[2], 2);
    cr_assert_eq(m.encoding, WSML_ENC_JPEG);
    cr_assert_eq(m.full_label_default, -1);
    wsml_store_meta_free(&m);
    const char *bad[] = {
        "",
        "[]",
        "{\"name\":\"n\"}",
        "{\"name\":\"n\",\"classes\":[],\"counts\":{\"train\":1,\"val\":0,\"test\":2},\"height\":3,"
        "\"width\":4,\"channels\":3,\"encoding\":\"raw\",\"full_label_default\":0}",
        "{\"name\":\"n\",\"classes\":[\"a\"],\"counts\":{\"train\":-1,\"val\":0,\"test\":2},"
        "\"height\":3,"
        "\"width\":4,\"channels\":3,\"encoding\":\"raw\",\"full_label_default\":0}",
        "{\"name\":\"n\",\"classes\":[\"a\"],\"counts\":{\"train\":1,\"val\":0,\"test\":2},"
        "\"height\":3,"
        "\"width\":4,\"channels\":3,\"encoding\":\"png\",\"full_label_default\":0}",
        "{\"name\":\"n\",\"classes\":[\"a\"],\"counts\":{\"train\":1,\"val\":0,\"test\":2},"
        "\"height\":3,"
        "\"width\":4,\"channels\":3,\"encoding\":\"raw\",\"full_label_default\":1}",
        "{\"name\":\"n\",\"classes\":[7],\"counts\":{\"train\":1,\"val\":0,\"test\":2},\"height\":"
        "3,"
        "\"width\":4,\"channels\":3,\"encoding\":\"raw\",\"full_label_default\":0}",
    };
    for (size_t k = 0; k < sizeof bad / sizeof *bad; k++) {
        err.msg[0] = 0;
        cr_assert_lt(wsml_store_meta_parse(bad[k], strlen(bad[k]), &m, &err), 0, "parsed: %s",
                     bad[k]);
        cr_assert(err.msg[0] && !strchr(err.msg, '\n'));
        wsml_store_meta_free(&m);
    }
}

// ---- store ----------------------------------------------------------------------

typedef struct {
    wsml_store *s;
    int C;
    int failures;
} thread_arg;

static void *reader_thread(void *p) {
    thread_arg *a = p;
    wsml_err err = {0};
    wsml_reader *r = wsml_reader_begin(a->s, &err);
    if (!r) {
        a->failures++;
        return NULL;
    }
    wsml_rng rng;
    wsml_rng_seed(&rng, (uint32_t)(uintptr_t)pthread_self());
    int8_t full[50], obs[50], f2[50], o2[50];
    for (int t = 0; t < 3000; t++) {
        int sp = (int)wsml_rng_interval(&rng, 2);
        int i = (int)wsml_rng_interval(&rng, (uint64_t)counts[sp] - 1);
        wsml_record rec;
        if (wsml_reader_get(r, (wsml_split)sp, (uint32_t)i, &rec, &err)) {
            a->failures++;
            continue;
        }
        labels_for(sp, i, a->C, 0, full, obs);
        wsml_record_full_labels(&rec, a->C, f2);
        wsml_record_observed_labels(&rec, a->C, o2);
        if (memcmp(full, f2, a->C) || memcmp(obs, o2, a->C) ||
            rec.image[1] != (uint8_t)(7 + i + 31 * sp))
            a->failures++;
        if (t % 100 == 99)
            wsml_reader_reset(r); // views released; the reader goes on
    }
    wsml_reader_end(r);
    return NULL;
}

Test(store, several_readers_in_threads_and_stores, .init = make_tmp, .fini = cleanup) {
    write_store(50, 0, WSML_ENC_RAW, 1);
    wsml_err err = {0};
    wsml_store *s = wsml_store_open(dir, 1, &err);
    cr_assert(s, "%s", err.msg);
    wsml_store *s2 = wsml_store_open(dir, 1, &err); // a second reader of the same store
    cr_assert(s2, "%s", err.msg);
    pthread_t th[6];
    thread_arg args[6];
    for (int k = 0; k < 6; k++) {
        args[k] = (thread_arg){k % 2 ? s2 : s, 50, 0};
        cr_assert_eq(pthread_create(&th[k], NULL, reader_thread, &args[k]), 0);
    }
    for (int k = 0; k < 6; k++) {
        pthread_join(th[k], NULL);
        cr_assert_eq(args[k].failures, 0, "thread %d: %d failures", k, args[k].failures);
    }
    wsml_store_close(s2);
    wsml_store_close(s);
}

Test(store, reader_refused_while_writing, .init = make_tmp, .fini = cleanup) {
    wsml_err err = {0};
    wsml_store_writer *w = wsml_store_create(dir, 0, &err);
    cr_assert(w, "%s", err.msg);
    cr_assert_null(wsml_store_open(dir, 0, &err));
    cr_assert(strstr(err.msg, "being written"), "%s", err.msg);
    cr_assert(strstr(err.msg, dir), "%s", err.msg);
    wsml_store_writer_abort(w);
    cr_assert_null(wsml_store_open(dir, 0, &err));
    cr_assert(strstr(err.msg, "incomplete"), "%s", err.msg);
    // A second writer into a store that is being written is refused too.
    w = wsml_store_create(dir, 1, &err);
    cr_assert(w, "%s", err.msg);
    cr_assert_null(wsml_store_create(dir, 1, &err));
    cr_assert(strstr(err.msg, "open in another process"), "%s", err.msg);
    wsml_store_writer_abort(w);
}

Test(store, writer_checks_order_and_counts, .init = make_tmp, .fini = cleanup) {
    wsml_err err = {0};
    wsml_store_writer *w = wsml_store_create(dir, 0, &err);
    cr_assert(w, "%s", err.msg);
    int8_t full[2] = {1, 0};
    uint8_t img[3] = {0};
    wsml_record_in rec = {"a", full, NULL, 2, WSML_ENC_RAW, 1, 1, 3, img, 3};
    cr_assert_lt(wsml_store_put(w, WSML_SPLIT_TRAIN, 1, &rec, 0, &err), 0);
    cr_assert(strstr(err.msg, "out of order"), "%s", err.msg);
    cr_assert_eq(wsml_store_put(w, WSML_SPLIT_TRAIN, 0, &rec, 0, &err), 0, "%s", err.msg);
    rec.num_classes = 1;
    cr_assert_lt(wsml_store_put(w, WSML_SPLIT_TRAIN, 1, &rec, 0, &err), 0);
    const char *info =
        "{\"name\":\"n\",\"classes\":[\"a\",\"b\"],\"counts\":{\"train\":2,\"val\":0,"
        "\"test\":0},\"height\":1,\"width\":1,\"channels\":3,\"encoding\":\"raw\","
        "\"full_label_default\":0}";
    cr_assert_lt(wsml_store_writer_finish(w, info, &err), 0); // 1 record put, info says 2
    cr_assert(strstr(err.msg, "train = 2 but 1"), "%s", err.msg);
    cr_assert_null(wsml_store_open(dir, 0, &err));
    cr_assert(strstr(err.msg, "incomplete"), "%s", err.msg);
}

Test(store, force_never_replaces_a_foreign_directory, .init = make_tmp, .fini = cleanup) {
    wsml_err err = {0};
    cr_assert_eq(mkdir(dir, 0755), 0);
    char path[300];
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    FILE *f = fopen(path, "w");
    fputs("keep me\n", f);
    fclose(f);
    cr_assert_null(wsml_store_create(dir, 1, &err));
    cr_assert(strstr(err.msg, "not a wsml store"), "%s", err.msg);
    cr_assert_eq(access(path, F_OK), 0);
    cr_assert_null(wsml_store_create(path, 1, &err)); // a file, not a directory
    cr_assert(strstr(err.msg, "not a directory"), "%s", err.msg);
}

// More than the initial 64 MiB map: the writer grows the map and replays the batch.
Test(store, map_grows_past_initial_size, .init = make_tmp, .fini = cleanup) {
    enum { H = 512, W = 683, N = 80 };
    wsml_err err = {0};
    wsml_store_writer *w = wsml_store_create(dir, 0, &err);
    cr_assert(w, "%s", err.msg);
    uint8_t *img = malloc((size_t)H * W * 3);
    int8_t full[3] = {1, -1, 0};
    for (int i = 0; i < N; i++) {
        memset(img, i, (size_t)H * W * 3);
        img[i] = 0xee;
        char id[16];
        snprintf(id, sizeof id, "big%d", i);
        wsml_record_in rec = {id, full, NULL, 3, WSML_ENC_RAW, H, W, 3, img, (size_t)H * W * 3};
        cr_assert_eq(wsml_store_put(w, WSML_SPLIT_TRAIN, (uint32_t)i, &rec, 0, &err), 0, "%s",
                     err.msg);
    }
    char info[512];
    snprintf(info, sizeof info,
             "{\"name\":\"big\",\"classes\":[\"a\",\"b\",\"c\"],\"counts\":{\"train\":%d,\"val\":0,"
             "\"test\":0},\"height\":%d,\"width\":%d,\"channels\":3,\"encoding\":\"raw\","
             "\"full_label_default\":0}",
             N, H, W);
    cr_assert_eq(wsml_store_writer_finish(w, info, &err), 0, "%s", err.msg);
    struct stat st;
    char path[300];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_gt(st.st_size, (off_t)N * H * W * 3);
    cr_assert_eq(wsml_store_verify(dir, NULL, NULL, &err), 0, "%s", err.msg);
    wsml_store *s = wsml_store_open(dir, 1, &err);
    cr_assert(s, "%s", err.msg);
    wsml_reader *r = wsml_reader_begin(s, &err);
    for (int i = 0; i < N; i += 13) {
        wsml_record rec;
        cr_assert_eq(wsml_reader_get(r, WSML_SPLIT_TRAIN, (uint32_t)i, &rec, &err), 0, "%s",
                     err.msg);
        cr_assert_eq(rec.image_len, (uint32_t)H * W * 3);
        cr_assert_eq(rec.image[i], 0xee);
        cr_assert_eq(rec.image[H * W * 3 - 1], (uint8_t)i);
    }
    wsml_reader_end(r);
    wsml_store_close(s);
    free(img);
}

Test(store, truncated_data_file_is_an_error_not_a_crash, .init = make_tmp, .fini = cleanup) {
    write_store(20, 0, WSML_ENC_RAW, 1);
    char path[300];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    const off_t sizes[] = {st.st_size - 4096, st.st_size / 2, 5000, 100, 0};
    for (size_t k = 0; k < sizeof sizes / sizeof *sizes; k++) {
        cr_assert_eq(truncate(path, sizes[k]), 0);
        wsml_err err = {0};
        cr_assert_null(wsml_store_open(dir, 1, &err), "opened with %lld bytes",
                       (long long)sizes[k]);
        cr_assert(strstr(err.msg, dir), "%s", err.msg);
        cr_assert_lt(wsml_store_verify(dir, NULL, NULL, &err), 0);
    }
}

typedef struct {
    int n;
    int split[64];
    uint32_t index[64];
} bad_list;

static void collect_bad(void *ctx, wsml_split split, uint32_t index, const char *what) {
    bad_list *b = ctx;
    (void)what;
    if (b->n < 64)
        b->split[b->n] = split, b->index[b->n] = index;
    b->n++;
}

// Flips one byte of the image of every copy of the record whose id is `id` in data.mdb
// (LMDB's copy-on-write leaves stale copies in free pages; flipping those is harmless).
static int damage_record(const char *id, size_t bytes_after_id) {
    char path[300];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    FILE *f = fopen(path, "r+b");
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    char *buf = malloc(n);
    fseek(f, 0, SEEK_SET);
    if (fread(buf, 1, n, f) != (size_t)n)
        n = 0;
    int hits = 0;
    size_t idl = strlen(id);
    for (char *p = buf; n && (p = memmem(p, n - (p - buf), id, idl)); p += idl) {
        long off = p - buf + (long)(idl + bytes_after_id);
        fseek(f, off, SEEK_SET);
        fputc(buf[off] ^ 0x10, f);
        hits++;
    }
    fclose(f);
    free(buf);
    return hits;
}

Test(store, verify_finds_every_damaged_record, .init = make_tmp, .fini = cleanup) {
    enum { N = 300, C = 10 };
    wsml_err err = {0};
    wsml_store_writer *w = wsml_store_create(dir, 0, &err);
    cr_assert(w, "%s", err.msg);
    int8_t full[C] = {1, 0, 0, -1, 0, 0, 0, 0, 0, 0}; // 2 listed labels: 8 bytes after the id
    uint8_t img[8 * 8 * 3];
    for (int i = 0; i < N; i++) {
        for (size_t k = 0; k < sizeof img; k++)
            img[k] = (uint8_t)(k + i);
        char id[32];
        snprintf(id, sizeof id, "<rec-%05d>", i);
        wsml_record_in rec = {id, full, NULL, C, WSML_ENC_RAW, 8, 8, 3, img, sizeof img};
        cr_assert_eq(wsml_store_put(w, WSML_SPLIT_TRAIN, (uint32_t)i, &rec, 0, &err), 0, "%s",
                     err.msg);
    }
    char info[512];
    snprintf(
        info, sizeof info,
        "{\"name\":\"d\",\"classes\":[\"0\",\"1\",\"2\",\"3\",\"4\",\"5\",\"6\",\"7\",\"8\",\"9\"],"
        "\"counts\":{\"train\":%d,\"val\":0,\"test\":0},\"height\":8,\"width\":8,\"channels\":3,"
        "\"encoding\":\"raw\",\"full_label_default\":0}",
        N);
    cr_assert_eq(wsml_store_writer_finish(w, info, &err), 0, "%s", err.msg);
    // Damage 40 distinct random records (ascending, as verify reports them).
    wsml_rng r;
    wsml_rng_seed(&r, 2024);
    int64_t perm[N];
    wsml_rng_permutation(&r, perm, N);
    int chosen[N] = {0};
    for (int k = 0; k < 40; k++)
        chosen[perm[k]] = 1;
    for (int i = 0; i < N; i++) {
        if (!chosen[i])
            continue;
        char id[32];
        snprintf(id, sizeof id, "<rec-%05d>", i);
        cr_assert_geq(damage_record(id, 8 + (size_t)(i % 192)), 1, "record %d not found", i);
    }
    bad_list bad = {0};
    long nbad = wsml_store_verify(dir, collect_bad, &bad, &err);
    cr_assert_eq(nbad, 40, "%ld bad: %s", nbad, err.msg);
    int k = 0;
    for (int i = 0; i < N; i++)
        if (chosen[i]) {
            cr_assert_eq(bad.split[k], WSML_SPLIT_TRAIN);
            cr_assert_eq(bad.index[k], (uint32_t)i);
            k++;
        }
    char first[64];
    snprintf(first, sizeof first, "train record %u: CRC mismatch", bad.index[0]);
    cr_assert(strstr(err.msg, first), "%s", err.msg);
}

Test(store, verify_finds_missing_records, .init = make_tmp, .fini = cleanup) {
    write_store(20, 0, WSML_ENC_RAW, 1);
    MDB_env *env;
    MDB_dbi dbi;
    MDB_txn *txn = raw_begin("val", &env, &dbi);
    uint8_t key[4] = {0, 0, 0, 1};
    MDB_val k = {4, key};
    cr_assert_eq(mdb_del(txn, dbi, &k, NULL), 0);
    raw_commit(env, txn);
    wsml_err err = {0};
    cr_assert_null(wsml_store_open(dir, 0, &err));
    cr_assert(strstr(err.msg, "val holds 2 records but meta says 3"), "%s", err.msg);
    bad_list bad = {0};
    cr_assert_eq(wsml_store_verify(dir, collect_bad, &bad, &err), 1, "%s", err.msg);
    cr_assert_eq(bad.split[0], WSML_SPLIT_VAL);
    cr_assert_eq(bad.index[0], 1);
    cr_assert(strstr(err.msg, "val record 1 is missing"), "%s", err.msg);
}

// ---- CLI on a JPEG store: images against PIL, names in index order, usage errors ----

Test(store, cli_jpeg_images_and_errors, .init = make_tmp, .fini = cleanup) {
    enum { N = 12, H = 16, W = 24 };
    wsml_err err = {0};
    cr_assert_eq(wsml_image_init(&err), 0, "%s", err.msg);
    char d[256];
    snprintf(d, sizeof d, "%.*s", (int)(strlen(dir) - 2), dir);
    wsml_store_writer *w = wsml_store_create(dir, 0, &err);
    cr_assert(w, "%s", err.msg);
    int8_t full[2] = {1, -1};
    for (int i = 0; i < N; i++) {
        uint8_t px[H * W * 3];
        for (int k = 0; k < H * W * 3; k++)
            px[k] = (uint8_t)((k % 3) * 80 + (k / 3 % W) * 5 + i * 9);
        wsml_image img = {H, W, 3, px};
        void *jpg;
        size_t len;
        cr_assert_eq(wsml_image_encode_jpeg(&img, 90, &jpg, &len, &err), 0, "%s", err.msg);
        char path[300], id[32];
        snprintf(path, sizeof path, "%s/src%d.jpg", d, i);
        FILE *f = fopen(path, "wb");
        fwrite(jpg, 1, len, f);
        fclose(f);
        snprintf(id, sizeof id, "src%d.jpg", i);
        wsml_record_in rec = {id, full, NULL, 2, WSML_ENC_JPEG, H, W, 3, jpg, len};
        cr_assert_eq(wsml_store_put(w, WSML_SPLIT_TEST, (uint32_t)i, &rec, 0, &err), 0, "%s",
                     err.msg);
        free(jpg);
    }
    char info[512];
    snprintf(
        info, sizeof info,
        "{\"name\":\"j\",\"format\":\"test\",\"classes\":[\"a\",\"b\"],\"counts\":{\"train\":0,"
        "\"val\":0,\"test\":%d},\"height\":%d,\"width\":%d,\"channels\":3,\"encoding\":\"jpeg\","
        "\"full_label_default\":0,\"skipped\":[{\"path\":\"x.jpg\",\"reason\":\"truncated\"}]}",
        N, H, W);
    cr_assert_eq(wsml_store_writer_finish(w, info, &err), 0, "%s", err.msg);
    const char *b = getenv("WSML_BUILD") ? getenv("WSML_BUILD") : "build";
    const char *py = getenv("PYTHON") ? getenv("PYTHON") : "/usr/bin/python3";
    char cmd[8192];
    snprintf(
        cmd, sizeof cmd,
        "%s/wsml-store export %s --split test --what images --out %s/all --quiet && "
        "%s/wsml-store export %s --split test --what images --range 3:5 --out %s/part --quiet && "
        "%s/wsml-store info %s > %s/info.txt && grep -q 'skipped   1 image (first: x.jpg: "
        "truncated)' %s/info.txt && "
        "%s -c \"import glob, numpy as np; from PIL import Image\n"
        "fs = sorted(glob.glob('%s/all/*.png')); assert [f.split('/')[-1] for f in fs] == "
        "['%%02d.png' %% i for i in range(%d)], fs\n"
        "for i, f in enumerate(fs):\n"
        "    a = np.asarray(Image.open(f)).astype(float); e = "
        "np.asarray(Image.open('%s/src%%d.jpg' %% i).convert('RGB')).astype(float)\n"
        "    assert a.shape == (%d, %d, 3) and np.abs(a - e).mean() < 1.0, (f, np.abs(a - "
        "e).mean())\n"
        "assert sorted(p.split('/')[-1] for p in glob.glob('%s/part/*.png')) == ['3.png', "
        "'4.png']\"",
        b, dir, d, b, dir, d, b, dir, d, d, py, d, N, d, H, W, d);
    cr_assert_eq(run(cmd), 0, "%s", cmd);
    const char *usage_errors[] = {"export %s --split test --what images --range 5:3 --out %s/x",
                                  "export %s --split test --what images --range 0:13 --out %s/x",
                                  "export %s --split test --what images --range 0-3 --out %s/x",
                                  "export %s --split nope --what labels --out %s/x",
                                  "export %s --split test --what pixels --out %s/x",
                                  "export %s --split test --what labels",
                                  "verify %s --json",
                                  "info %s --bogus",
                                  "info"};
    for (size_t k = 0; k < sizeof usage_errors / sizeof *usage_errors; k++) {
        char args[1024];
        snprintf(args, sizeof args, usage_errors[k], dir, d);
        snprintf(cmd, sizeof cmd, "%s/wsml-store %s 2>%s/err.txt", b, args, d);
        cr_assert_eq(run(cmd), 2, "%s", cmd);
        snprintf(cmd, sizeof cmd,
                 "test $(wc -l < %s/err.txt) -eq 1 && grep -q '^wsml-store: error: ' %s/err.txt", d,
                 d);
        cr_assert_eq(run(cmd), 0, "one error line expected for: %s", args);
    }
    snprintf(cmd, sizeof cmd, "%s/wsml-store --help | grep -q examples", b);
    cr_assert_eq(run(cmd), 0);
    // Runtime errors exit 1 with one line naming the store: incomplete, being written.
    wsml_store_writer *w2 = wsml_store_create(dir, 1, &err);
    cr_assert(w2, "%s", err.msg);
    snprintf(cmd, sizeof cmd, "%s/wsml-store info %s 2>%s/err.txt", b, dir, d);
    cr_assert_eq(run(cmd), 1);
    snprintf(cmd, sizeof cmd, "grep -q 'being written' %s/err.txt", d);
    cr_assert_eq(run(cmd), 0);
    wsml_store_writer_abort(w2);
    snprintf(cmd, sizeof cmd, "%s/wsml-store verify %s 2>%s/err.txt", b, dir, d);
    cr_assert_eq(run(cmd), 1);
    snprintf(cmd, sizeof cmd,
             "test $(wc -l < %s/err.txt) -eq 1 && grep -q '%s: store is incomplete' %s/err.txt", d,
             dir, d);
    cr_assert_eq(run(cmd), 0);
}

// wsml_store_put_encoded (the ingest pipeline's path: records encoded by the decode
// threads) stores exactly what wsml_store_put stores, while buffers circulate between
// batches (600 records > 256 a batch; payload sizes vary, so a recycled buffer is
// sometimes too small and grows).
Test(store, put_encoded_stores_what_put_stores, .init = make_tmp, .fini = cleanup) {
    enum { N = 600, C = 30 };
    char dir2[300];
    snprintf(dir2, sizeof dir2, "%s2", dir);
    uint8_t *img = malloc(6000);
    int8_t full[C], obs[C];
    for (int pass = 0; pass < 2; pass++) {
        const char *d = pass ? dir2 : dir;
        wsml_err err = {0};
        wsml_store_writer *w = wsml_store_create(d, 0, &err);
        cr_assert(w, "%s", err.msg);
        wsml_record_buf buf = {0};
        for (int i = 0; i < N; i++) {
            labels_for(0, i, C, 0, full, obs);
            size_t len = 100 + (size_t)(i * 37) % 5900;
            for (size_t k = 0; k < len; k++)
                img[k] = (uint8_t)(k * 13 + i);
            char id[32];
            snprintf(id, sizeof id, "r%d", i);
            wsml_record_in rec = {id, full, obs, C, WSML_ENC_JPEG, 4, 5, 3, img, len};
            if (pass == 0) {
                cr_assert_eq(wsml_store_put(w, WSML_SPLIT_TRAIN, (uint32_t)i, &rec, 0, &err), 0,
                             "%s", err.msg);
            } else {
                cr_assert_eq(wsml_record_encode_into(&rec, 0, &buf, &err), 0, "%s", err.msg);
                cr_assert_eq(
                    wsml_store_put_encoded(w, WSML_SPLIT_TRAIN, (uint32_t)i, C, 0, &buf, &err), 0,
                    "%s", err.msg);
            }
        }
        wsml_record_buf_free(&buf);
        char info[1024];
        int n = snprintf(info, sizeof info, "{\"name\":\"t\",\"classes\":[");
        for (int c = 0; c < C; c++)
            n += snprintf(info + n, sizeof info - n, "%s\"c%d\"", c ? "," : "", c);
        snprintf(info + n, sizeof info - n,
                 "],\"counts\":{\"train\":%d,\"val\":0,\"test\":0},\"height\":4,\"width\":5,"
                 "\"channels\":3,\"encoding\":\"jpeg\",\"full_label_default\":0}",
                 N);
        cr_assert_eq(wsml_store_writer_finish(w, info, &err), 0, "%s", err.msg);
        cr_assert_eq(wsml_store_verify(d, NULL, NULL, &err), 0, "%s", err.msg);
    }
    wsml_err err = {0};
    wsml_store *a = wsml_store_open(dir, 1, &err), *b = wsml_store_open(dir2, 1, &err);
    cr_assert(a && b, "%s", err.msg);
    wsml_reader *ra = wsml_reader_begin(a, &err), *rb = wsml_reader_begin(b, &err);
    cr_assert(ra && rb, "%s", err.msg);
    int8_t f2[C], o2[C];
    for (int i = 0; i < N; i++) {
        wsml_record x, y;
        cr_assert_eq(wsml_reader_get(ra, WSML_SPLIT_TRAIN, (uint32_t)i, &x, &err), 0, "%s",
                     err.msg);
        cr_assert_eq(wsml_reader_get(rb, WSML_SPLIT_TRAIN, (uint32_t)i, &y, &err), 0, "%s",
                     err.msg);
        cr_assert_eq(x.id_len, y.id_len);
        cr_assert(!memcmp(x.id, y.id, x.id_len));
        cr_assert_eq(x.image_len, y.image_len);
        cr_assert(!memcmp(x.image, y.image, x.image_len), "record %d: image differs", i);
        wsml_record_full_labels(&x, C, full);
        wsml_record_full_labels(&y, C, f2);
        cr_assert_arr_eq(full, f2, (size_t)C);
        wsml_record_observed_labels(&x, C, obs);
        wsml_record_observed_labels(&y, C, o2);
        cr_assert_arr_eq(obs, o2, (size_t)C);
    }
    wsml_reader_end(ra);
    wsml_reader_end(rb);
    wsml_store_close(a);
    wsml_store_close(b);
    free(img);
}
