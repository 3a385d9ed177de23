#define _GNU_SOURCE
// Store round trips, damage detection and the wsml-store CLI (numpy as the oracle for
// exported .npy files).
#include <criterion/criterion.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "common/rng.h"
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

static void write_store(int C, int dflt, wsml_encoding enc, int finish) {
    wsml_err err = {0};
    wsml_store_writer *w = wsml_store_create(dir, 0, &err);
    cr_assert(w, "%s", err.msg);
    int8_t *full = malloc(C), *obs = malloc(C);
    uint8_t img[4 * 5 * 3];
    for (int s = 0; s < 3; s++)
        for (int i = 0; i < counts[s]; i++) {
            labels_for(s, i, C, dflt, full, obs);
            for (size_t k = 0; k < sizeof img; k++) img[k] = (uint8_t)(k * 7 + i + 31 * s);
            char id[64];
            snprintf(id, sizeof id, "img_%d_%d.jpg", s, i);
            wsml_record_in rec = {id, full, obs, C, enc, 4, 5, 3, img, enc == WSML_ENC_RAW ? sizeof img : 17};
            cr_assert_eq(wsml_store_put(w, (wsml_split)s, (uint32_t)i, &rec, dflt, &err), 0, "%s", err.msg);
        }
    free(full);
    free(obs);
    if (!finish) {
        wsml_store_writer_abort(w);
        return;
    }
    char info[1 << 16];
    int n = snprintf(info, sizeof info, "{\"name\":\"t\",\"classes\":[");
    for (int c = 0; c < C; c++) n += snprintf(info + n, sizeof info - n, "%s\"c%d\"", c ? "," : "", c);
    snprintf(info + n, sizeof info - n,
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
            cr_assert_eq(wsml_reader_get(r, (wsml_split)sp, (uint32_t)i, &rec, &err), 0, "%s", err.msg);
            labels_for(sp, i, C, dflt, full, obs);
            wsml_record_full_labels(&rec, C, f2);
            wsml_record_observed_labels(&rec, C, o2);
            cr_assert_arr_eq(full, f2, (size_t)C);
            cr_assert_arr_eq(obs, o2, (size_t)C);
            char id[64];
            snprintf(id, sizeof id, "img_%d_%d.jpg", sp, i);
            cr_assert_eq(rec.id_len, strlen(id));
            cr_assert(!memcmp(rec.id, id, rec.id_len));
            cr_assert_eq(rec.image[1], (uint8_t)(7 + i + 31 * sp));
        }
    wsml_record rec;
    cr_assert_neq(wsml_reader_get(r, WSML_SPLIT_VAL, 3, &rec, &err), 0);
    cr_assert(strstr(err.msg, "val record 3 out of range"), "%s", err.msg);
    free(full), free(obs), free(f2), free(o2);
    wsml_reader_end(r);
    wsml_store_close(s);
}

Test(store, round_trip_raw_default_negative, .init = make_tmp, .fini = cleanup) { check_round_trip(20, 0, WSML_ENC_RAW); }
Test(store, round_trip_5000_classes_unknown_default, .init = make_tmp, .fini = cleanup) {
    check_round_trip(5000, -1, WSML_ENC_RAW);
}
Test(store, round_trip_jpeg_payload, .init = make_tmp, .fini = cleanup) { check_round_trip(80, 0, WSML_ENC_JPEG); }

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
    if (pid == 0) _exit(wsml_store_create(dir, 1, &err) ? 0 : 3); // another process
    int st;
    waitpid(pid, &st, 0);
    cr_assert_eq(WEXITSTATUS(st), 3, "ingest into a store held open by a reader must be refused");
    wsml_store_close(s);
    wsml_store_writer *w = wsml_store_create(dir, 1, &err);
    cr_assert(w, "%s", err.msg);
    wsml_store_writer_abort(w);
}

// Rewrites the meta "version" key directly with LMDB.
static void set_version(const char *v) {
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi dbi;
    mdb_env_create(&env);
    mdb_env_set_maxdbs(env, 8);
    cr_assert_eq(mdb_env_open(env, dir, MDB_NOLOCK, 0644), 0);
    mdb_txn_begin(env, NULL, 0, &txn);
    mdb_dbi_open(txn, "meta", 0, &dbi);
    MDB_val k = {7, "version"}, val = {strlen(v), (void *)v};
    mdb_put(txn, dbi, &k, &val, 0);
    mdb_txn_commit(txn);
    mdb_env_close(env);
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
    for (size_t len = 0; len <= sizeof junk; len++) cr_assert_neq(wsml_record_parse(junk, len, 1, &rec, &err), 0);
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
    snprintf(cmd, sizeof cmd, "%s/wsml-store info %s --json > %s/info.json && %s -c \"import json; d=json.load(open('%s/info.json')); assert d['counts']=={'train':7,'val':3,'test':5}, d; assert len(d['classes'])==20\"",
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
        for (int c = 0; c < 20; c++) o += snprintf(expect + o, sizeof expect - o, "%d,", full[c]);
        for (int c = 0; c < 20; c++) o += snprintf(expect + o, sizeof expect - o, "%d,", obs[c]);
    }
    snprintf(cmd, sizeof cmd,
             "%s -c \"import numpy as np; from PIL import Image; l=np.load('%s/l.npy'); o=np.load('%s/o.npy'); "
             "assert l.dtype==np.int8 and l.shape==(7,20), l.shape; "
             "e=np.array([%s]).reshape(7,2,20); assert (l==e[:,0]).all() and (o==e[:,1]).all(); "
             "ids=open('%s/ids.txt').read().split(); assert ids==['img_0_%%d.jpg'%%i for i in range(7)], ids; "
             "im=np.asarray(Image.open('%s/png/2.png')); assert im.shape==(4,5,3); "
             "assert (im.reshape(-1)==(np.arange(60)*7+2+62)%%256).all()\"",
             py, d, d, expect, d, d);
    cr_assert_eq(run(cmd), 0, "%s", cmd);
    flip_record_byte();
    snprintf(cmd, sizeof cmd, "%s/wsml-store verify %s 2>%s/verify.err; test $? -eq 1 && grep -q 'val record 1' %s/verify.err", b, dir, d, d);
    cr_assert_eq(run(cmd), 0, "%s", cmd);
    snprintf(cmd, sizeof cmd, "%s/wsml-store info %s/nope 2>/dev/null", b, d);
    cr_assert_eq(run(cmd), 1);
    snprintf(cmd, sizeof cmd, "%s/wsml-store frob %s 2>/dev/null", b, dir);
    cr_assert_eq(run(cmd), 2);
}
