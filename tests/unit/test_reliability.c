#define _GNU_SOURCE
// Reliability (issue 7): damaged stores. 100 random records of a 600-record store get
// one byte flipped each, in place in data.mdb (found by searching the file for each
// record's encoded value, which LMDB stores contiguously; LMDB's copy-on-write leaves
// stale copies of rewritten pages in free pages, so every copy gets the same flip);
// wsml_store_verify must
// report exactly those 100 (split, index) pairs, and the CRC-checking reader must
// refuse exactly those, naming split and index, while every other record still reads.
#include <criterion/criterion.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/rng.h"
#include "store/record.h"
#include "store/store.h"

#define C 20
#define H 8
#define W 8
static const uint32_t split_count[WSML_NUM_SPLITS] = {400, 100, 100};

static char tmp[256], dir[300];

static void make_tmp(void) {
    snprintf(tmp, sizeof tmp, "/tmp/wsml-test-rel.XXXXXX");
    cr_assert(mkdtemp(tmp));
    snprintf(dir, sizeof dir, "%s/store", tmp);
}

static void cleanup(void) {
    char cmd[600];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", tmp);
    if (system(cmd)) {
    }
}

// Record i of split s: labels and pixels drawn from a generator seeded by (s, i).
static void record_for(int s, uint32_t i, char *id, size_t id_cap, int8_t *full, int8_t *obs,
                       uint8_t *img) {
    wsml_rng r;
    wsml_rng_seed(&r, (uint32_t)(s * 1000003 + (int)i));
    snprintf(id, id_cap, "split%d/img_%05u.jpg", s, i);
    for (int c = 0; c < C; c++) {
        uint32_t u = wsml_rng_u32(&r) % 100;
        full[c] = u < 15 ? 1 : 0;
        obs[c] = u < 5 ? 1 : (u > 95 ? -1 : 0);
    }
    for (int k = 0; k < H * W * 3; k++)
        img[k] = (uint8_t)wsml_rng_u32(&r);
}

static wsml_record_in record_in(const char *id, const int8_t *full, const int8_t *obs,
                                const uint8_t *img) {
    wsml_record_in in = {.id = id,
                         .full = full,
                         .observed = obs,
                         .num_classes = C,
                         .encoding = WSML_ENC_RAW,
                         .height = H,
                         .width = W,
                         .channels = 3,
                         .image = img,
                         .image_len = H * W * 3};
    return in;
}

static void write_store(void) {
    wsml_err err = {0};
    wsml_store_writer *w = wsml_store_create(dir, 0, &err);
    cr_assert(w, "%s", err.msg);
    char id[64];
    int8_t full[C], obs[C];
    uint8_t img[H * W * 3];
    for (int s = 0; s < WSML_NUM_SPLITS; s++)
        for (uint32_t i = 0; i < split_count[s]; i++) {
            record_for(s, i, id, sizeof id, full, obs, img);
            wsml_record_in in = record_in(id, full, obs, img);
            cr_assert_eq(wsml_store_put(w, (wsml_split)s, i, &in, 0, &err), 0, "%s", err.msg);
        }
    char info[2048];
    int n = snprintf(info, sizeof info, "{\"name\":\"rel\",\"format\":\"test\",\"classes\":[");
    for (int c = 0; c < C; c++)
        n += snprintf(info + n, sizeof info - (size_t)n, "%s\"c%d\"", c ? "," : "", c);
    snprintf(info + n, sizeof info - (size_t)n,
             "],\"counts\":{\"train\":%u,\"val\":%u,\"test\":%u},\"height\":%d,\"width\":%d,"
             "\"channels\":3,\"encoding\":\"raw\",\"full_label_default\":0}",
             split_count[0], split_count[1], split_count[2], H, W);
    cr_assert_eq(wsml_store_writer_finish(w, info, &err), 0, "%s", err.msg);
}

typedef struct {
    int n;
    uint8_t hit[WSML_NUM_SPLITS][400];
    int out_of_range;
} bad_set;

static void on_bad(void *ctx, wsml_split split, uint32_t index, const char *what) {
    bad_set *b = ctx;
    (void)what;
    b->n++;
    if ((unsigned)split < WSML_NUM_SPLITS && index < split_count[split])
        b->hit[split][index]++;
    else
        b->out_of_range++;
}

Test(reliability, verify_finds_exactly_100_flipped_records, .init = make_tmp, .fini = cleanup) {
    write_store();
    char path[400];
    snprintf(path, sizeof path, "%s/data.mdb", dir);
    int fd = open(path, O_RDWR);
    cr_assert(fd >= 0);
    struct stat st;
    cr_assert_eq(fstat(fd, &st), 0);
    size_t len = (size_t)st.st_size;
    uint8_t *file = malloc(len);
    cr_assert_eq(pread(fd, file, len, 0), (ssize_t)len);

    // 100 distinct (split, index) pairs, and one flipped byte inside each value.
    static uint8_t damaged[WSML_NUM_SPLITS][400];
    memset(damaged, 0, sizeof damaged);
    wsml_rng r;
    wsml_rng_seed(&r, 4242);
    int flipped = 0;
    while (flipped < 100) {
        int s = (int)(wsml_rng_u32(&r) % WSML_NUM_SPLITS);
        uint32_t i = wsml_rng_u32(&r) % split_count[s];
        if (damaged[s][i])
            continue;
        char id[64];
        int8_t full[C], obs[C];
        uint8_t img[H * W * 3];
        record_for(s, i, id, sizeof id, full, obs, img);
        wsml_record_in in = record_in(id, full, obs, img);
        uint8_t *val;
        size_t val_len;
        wsml_err err = {0};
        cr_assert_eq(wsml_record_encode(&in, 0, &val, &val_len, &err), 0, "%s", err.msg);
        size_t pos = wsml_rng_u32(&r) % val_len;
        uint8_t mask = (uint8_t)(1u + wsml_rng_u32(&r) % 255u);
        int copies = 0;
        for (uint8_t *at = memmem(file, len, val, val_len); at;
             at = memmem(at + 1, len - (size_t)(at + 1 - file), val, val_len)) {
            uint8_t b = at[pos] ^ mask; // the in-memory copy stays intact for the search
            cr_assert_eq(pwrite(fd, &b, 1, (off_t)(at + pos - file)), 1);
            copies++;
        }
        cr_assert(copies >= 1, "record %d/%u not found in data.mdb", s, i);
        free(val);
        damaged[s][i] = 1;
        flipped++;
    }
    close(fd);
    free(file);

    bad_set b;
    memset(&b, 0, sizeof b);
    wsml_err err = {0};
    long bad = wsml_store_verify(dir, on_bad, &b, &err);
    cr_assert_eq(bad, 100, "verify found %ld bad records: %s", bad, err.msg);
    cr_assert_eq(b.n, 100);
    cr_assert_eq(b.out_of_range, 0);
    for (int s = 0; s < WSML_NUM_SPLITS; s++)
        for (uint32_t i = 0; i < split_count[s]; i++)
            cr_assert_eq(b.hit[s][i], damaged[s][i],
                         "split %d index %u: reported %d times, damaged %d", s, i, b.hit[s][i],
                         damaged[s][i]);

    // The CRC-checking reader refuses exactly the damaged records, naming them.
    wsml_store *st_ = wsml_store_open(dir, 1, &err);
    cr_assert(st_, "%s", err.msg);
    wsml_reader *rd = wsml_reader_begin(st_, &err);
    cr_assert(rd, "%s", err.msg);
    for (int s = 0; s < WSML_NUM_SPLITS; s++)
        for (uint32_t i = 0; i < split_count[s]; i++) {
            wsml_record rec;
            int rc = wsml_reader_get(rd, (wsml_split)s, i, &rec, &err);
            if (!damaged[s][i]) {
                cr_assert_eq(rc, 0, "%s", err.msg);
                continue;
            }
            cr_assert_eq(rc, WSML_ECORRUPT, "split %d index %u: rc %d (%s)", s, i, rc, err.msg);
            char want[64];
            snprintf(want, sizeof want, "%s record %u", wsml_split_name((wsml_split)s), i);
            cr_assert(strstr(err.msg, want), "message lacks '%s': %s", want, err.msg);
            cr_assert_null(strchr(err.msg, '\n'));
        }
    wsml_reader_end(rd);
    wsml_store_close(st_);
}

// A single-bit flip at every byte of a checkpoint-like safetensors file (tensors + metadata, as
// wsml-train writes them) either fails to read with one line naming the file, or reads
// back exactly the same tensors and metadata (a flip JSON cannot see, e.g. "\u00e9" ->
// "\u00E9", or one in the checksum entry's own key that only turns the check off):
// never a wrong number. The same for every truncation.
#include <jansson.h>

#include "common/safetensors.h"

// Metadata equal apart from the checksum entry (wherever a flip moved its key).
static int same_metadata(const char *a, const char *b) {
    json_t *ja = json_loads(a, 0, NULL), *jb = json_loads(b, 0, NULL);
    char crc_buf[32] = "";
    const char *crc = json_string_value(json_object_get(ja, WSML_ST_CRC_KEY));
    if (crc)
        snprintf(crc_buf, sizeof crc_buf, "%s", crc), crc = crc_buf;
    json_object_del(ja, WSML_ST_CRC_KEY);
    const char *k;
    json_t *v;
    void *tmp;
    json_object_foreach_safe(jb, tmp, k,
                             v) if (crc && json_is_string(v) && !strcmp(json_string_value(v), crc))
        json_object_del(jb, k);
    int same = ja && jb && json_equal(ja, jb);
    json_decref(ja);
    json_decref(jb);
    return same;
}

static int same_contents(const wsml_safetensors *a, const wsml_safetensors *b) {
    if (a->n != b->n)
        return 0;
    if (!a->metadata_json != !b->metadata_json)
        return 0;
    if (a->metadata_json && !same_metadata(a->metadata_json, b->metadata_json))
        return 0;
    for (size_t i = 0; i < a->n; i++) {
        const wsml_tensor_view *t = &a->tensors[i], *u = wsml_st_find(b, t->name);
        if (!u || u->dtype != t->dtype || u->ndim != t->ndim || u->nbytes != t->nbytes ||
            memcmp(u->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim) ||
            (t->nbytes && memcmp(u->data, t->data, t->nbytes)))
            return 0;
    }
    return 1;
}

Test(reliability, every_bit_flip_and_truncation_of_a_checkpoint_is_caught, .init = make_tmp,
     .fini = cleanup) {
    float w[3][4], bias[3];
    int64_t flips[2][2] = {{0, 3}, {5, 1}}, steps = 17;
    for (int i = 0; i < 12; i++)
        w[i / 4][i % 4] = (float)i * 0.37f - 1.5f;
    for (int i = 0; i < 3; i++)
        bias[i] = (float)i - 0.25f;
    wsml_tensor_view t[4] = {
        {.name = "fc.weight",
         .dtype = WSML_DT_F32,
         .ndim = 2,
         .shape = {3, 4},
         .data = w,
         .nbytes = sizeof w},
        {.name = "fc.bias",
         .dtype = WSML_DT_F32,
         .ndim = 1,
         .shape = {3},
         .data = bias,
         .nbytes = sizeof bias},
        {.name = "label_state.flips",
         .dtype = WSML_DT_I64,
         .ndim = 2,
         .shape = {2, 2},
         .data = flips,
         .nbytes = sizeof flips},
        {.name = "bn1.num_batches_tracked",
         .dtype = WSML_DT_I64,
         .ndim = 0,
         .data = &steps,
         .nbytes = 8},
    };
    char path[400], bad[400];
    snprintf(path, sizeof path, "%s/last.safetensors", tmp);
    // the damaged copies live in memory (/dev/shm) when possible: 1,000 writes and reads
    if (access("/dev/shm", W_OK) == 0)
        snprintf(bad, sizeof bad, "/dev/shm/wsml-rel-%d.safetensors", (int)getpid());
    else
        snprintf(bad, sizeof bad, "%s/bad.safetensors", tmp);
    wsml_err err = {0};
    cr_assert_eq(
        wsml_st_write(path, t, 4,
                      "{\"state.epoch\":\"3\",\"state.global_step\":\"27\",\"loss\":\"ll-cp\","
                      "\"note\":\"caf\\u00e9\"}",
                      &err),
        0, "%s", err.msg);
    wsml_safetensors ref;
    cr_assert_eq(wsml_st_read(path, &ref, &err), 0, "%s", err.msg);
    size_t len = ref.file_len;
    uint8_t *file = malloc(len);
    memcpy(file, ref.file_buf, len);
    long detected = 0, harmless = 0;
    for (size_t pos = 0; pos < len; pos++) {
        int bit = (int)((pos * 3) % 8); // every bit position occurs, over all bytes
        file[pos] ^= (uint8_t)(1u << bit);
        FILE *f = fopen(bad, "wb");
        cr_assert(f);
        cr_assert_eq(fwrite(file, 1, len, f), len);
        fclose(f);
        file[pos] ^= (uint8_t)(1u << bit);
        wsml_safetensors st;
        wsml_err_clear(&err);
        if (wsml_st_read(bad, &st, &err) != 0) {
            cr_assert(strstr(err.msg, bad) && !strchr(err.msg, '\n'), "byte %zu bit %d: %s", pos,
                      bit, err.msg);
            detected++;
            continue;
        }
        cr_assert(same_contents(&ref, &st), "byte %zu bit %d: read back different contents: %s",
                  pos, bit, st.metadata_json ? st.metadata_json : "(no metadata)");
        harmless++;
        wsml_st_free(&st);
    }
    for (size_t cut = 0; cut < len; cut++) {
        FILE *f = fopen(bad, "wb");
        cr_assert(f);
        cr_assert_eq(fwrite(file, 1, cut, f), cut);
        fclose(f);
        wsml_safetensors st;
        cr_assert_neq(wsml_st_read(bad, &st, &err), 0, "truncated to %zu of %zu bytes but read",
                      cut, len);
        cr_assert(strstr(err.msg, bad), "%s", err.msg);
    }
    unlink(bad);
    cr_log_info("%zu-byte checkpoint: %ld of %ld bit flips detected, %ld harmless; %zu truncations "
                "detected",
                len, detected, detected + harmless, harmless, len);
    cr_assert_gt(detected, (long)len * 9 / 10);
    free(file);
    wsml_st_free(&ref);
}
