// Record codec. A record value, all integers little-endian:
//
//   off  size  field
//   0    4     magic "WSR1"
//   4    1     encoding (0 raw HWC uint8, 1 JPEG)
//   5    1     channels
//   6    2     height
//   8    2     width
//   10   1     full_label_default (0 or 0xff = -1)
//   11   1     reserved (0)
//   12   4     id_len
//   16   4     n_full_pos     class indices whose full label is 1
//   20   4     n_full_other   class indices whose full label is the other non-default value:
//                             default 0 -> entries that are -1 (unknown);
//                             default -1 -> entries that are 0 (negative)
//   24   4     n_obs_pos      observed positives (observed label 1)
//   28   4     n_obs_neg      observed negatives (observed label -1)
//   32   4     image_len
//   36   ...   id bytes, then the four index lists as u32, then the image payload
//   end-4 4    CRC32 (zlib) of every byte before it
//
// So a record costs 40 bytes + id + 4 bytes per listed label + the image: an
// OpenImages image with ~9 verified labels of 5,000 classes costs ~36 bytes of labels.
#include <stdlib.h>
#include <string.h>

#include "common/checksum.h"
#include "store/record.h"

#define HDR 36

static uint32_t rd32(const uint8_t *p) {
    return (uint32_t)p[0] | ((uint32_t)p[1] << 8) | ((uint32_t)p[2] << 16) | ((uint32_t)p[3] << 24);
}
static void wr32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8), p[2] = (uint8_t)(v >> 16),
    p[3] = (uint8_t)(v >> 24);
}
static void wr16(uint8_t *p, uint16_t v) {
    p[0] = (uint8_t)v, p[1] = (uint8_t)(v >> 8);
}

uint32_t wsml_record_crc(const void *buf, size_t len) {
    return wsml_crc32(0, buf, len);
}

// Encodes into *buf (capacity *cap bytes): reused as it is when large enough, else
// grown (realloc). On failure *buf and *cap stay valid (maybe grown) and *out_len is 0.
static int encode(const wsml_record_in *rec, int full_label_default, uint8_t **buf, size_t *cap,
                  size_t *out_len, wsml_err *err) {
    *out_len = 0;
    int C = rec->num_classes;
    if (!rec->id || !rec->full || C <= 0 || (rec->image_len && !rec->image))
        return wsml_errf(err, WSML_EARG, "record %s: missing id, labels or image",
                         rec->id ? rec->id : "?");
    if (full_label_default != 0 && full_label_default != -1)
        return wsml_errf(err, WSML_EARG, "record %s: full_label_default must be 0 or -1", rec->id);
    if (rec->encoding != WSML_ENC_RAW && rec->encoding != WSML_ENC_JPEG)
        return wsml_errf(err, WSML_EARG, "record %s: unknown encoding %d", rec->id,
                         (int)rec->encoding);
    if (rec->height <= 0 || rec->height > 65535 || rec->width <= 0 || rec->width > 65535 ||
        rec->channels <= 0 || rec->channels > 255)
        return wsml_errf(err, WSML_EARG, "record %s: bad image shape %dx%dx%d", rec->id,
                         rec->height, rec->width, rec->channels);
    if (rec->encoding == WSML_ENC_RAW &&
        rec->image_len != (size_t)rec->height * rec->width * rec->channels)
        return wsml_errf(err, WSML_EARG, "record %s: raw image has %zu bytes, expected %dx%dx%d",
                         rec->id, rec->image_len, rec->height, rec->width, rec->channels);
    uint32_t nfp = 0, nfo = 0, nop = 0, non = 0;
    int other = full_label_default == 0 ? -1 : 0;
    for (int c = 0; c < C; c++) {
        int8_t f = rec->full[c];
        if (f != 1 && f != 0 && f != -1)
            return wsml_errf(err, WSML_EARG, "record %s: full label %d of class %d is not 1/0/-1",
                             rec->id, f, c);
        nfp += f == 1;
        nfo += f == other;
        if (rec->observed) {
            int8_t o = rec->observed[c];
            if (o != 1 && o != 0 && o != -1)
                return wsml_errf(err, WSML_EARG,
                                 "record %s: observed label %d of class %d is not 1/0/-1", rec->id,
                                 o, c);
            nop += o == 1;
            non += o == -1;
        }
    }
    size_t id_len = strlen(rec->id);
    size_t n = HDR + id_len + 4 * ((size_t)nfp + nfo + nop + non) + rec->image_len + 4;
    if (id_len > (1u << 20) || rec->image_len > 0xffffffffu)
        return wsml_errf(err, WSML_EARG, "record %s: id or image too large", rec->id);
    if (*cap < n || !*buf) {
        uint8_t *g = realloc(*buf, n);
        if (!g)
            return wsml_errf(err, WSML_ENOMEM, "record %s: out of memory", rec->id);
        *buf = g;
        *cap = n;
    }
    uint8_t *b = *buf;
    memcpy(b, "WSR1", 4);
    b[4] = (uint8_t)rec->encoding;
    b[5] = (uint8_t)rec->channels;
    wr16(b + 6, (uint16_t)rec->height);
    wr16(b + 8, (uint16_t)rec->width);
    b[10] = full_label_default ? 0xff : 0;
    b[11] = 0;
    wr32(b + 12, (uint32_t)id_len);
    wr32(b + 16, nfp);
    wr32(b + 20, nfo);
    wr32(b + 24, nop);
    wr32(b + 28, non);
    wr32(b + 32, (uint32_t)rec->image_len);
    uint8_t *p = b + HDR;
    memcpy(p, rec->id, id_len);
    p += id_len;
    for (int c = 0; c < C; c++)
        if (rec->full[c] == 1)
            wr32(p, (uint32_t)c), p += 4;
    for (int c = 0; c < C; c++)
        if (rec->full[c] == other)
            wr32(p, (uint32_t)c), p += 4;
    for (int c = 0; rec->observed && c < C; c++)
        if (rec->observed[c] == 1)
            wr32(p, (uint32_t)c), p += 4;
    for (int c = 0; rec->observed && c < C; c++)
        if (rec->observed[c] == -1)
            wr32(p, (uint32_t)c), p += 4;
    if (rec->image_len)
        memcpy(p, rec->image, rec->image_len);
    p += rec->image_len;
    wr32(p, wsml_record_crc(b, (size_t)(p - b)));
    *out_len = n;
    return 0;
}

int wsml_record_encode(const wsml_record_in *rec, int full_label_default, uint8_t **out,
                       size_t *out_len, wsml_err *err) {
    uint8_t *b = NULL;
    size_t cap = 0;
    int rc = encode(rec, full_label_default, &b, &cap, out_len, err);
    if (rc < 0) {
        free(b);
        b = NULL;
    }
    *out = b;
    return rc;
}

int wsml_record_encode_into(const wsml_record_in *rec, int full_label_default, wsml_record_buf *buf,
                            wsml_err *err) {
    return encode(rec, full_label_default, &buf->data, &buf->cap, &buf->len, err);
}

void wsml_record_buf_free(wsml_record_buf *buf) {
    free(buf->data);
    memset(buf, 0, sizeof *buf);
}

int wsml_record_parse(const void *val, size_t len, int check_crc, wsml_record *rec, wsml_err *err) {
    const uint8_t *b = val;
    memset(rec, 0, sizeof *rec);
    if (len < HDR + 4 || memcmp(b, "WSR1", 4) != 0)
        return wsml_errf(err, WSML_ECORRUPT,
                         "not a wsml record (%zu bytes, bad magic or too short)", len);
    uint32_t id_len = rd32(b + 12), nfp = rd32(b + 16), nfo = rd32(b + 20), nop = rd32(b + 24),
             non = rd32(b + 28), img = rd32(b + 32);
    uint64_t need = (uint64_t)HDR + id_len + 4ull * ((uint64_t)nfp + nfo + nop + non) + img + 4;
    if (need != len)
        return wsml_errf(err, WSML_ECORRUPT,
                         "record lengths add up to %llu bytes but the value has %zu",
                         (unsigned long long)need, len);
    if (b[4] > WSML_ENC_JPEG || b[5] == 0 || (b[10] != 0 && b[10] != 0xff) || b[11] != 0)
        return wsml_errf(err, WSML_ECORRUPT,
                         "record header has bad encoding/channels/default fields");
    if (check_crc) {
        uint32_t want = rd32(b + len - 4), got = wsml_record_crc(b, len - 4);
        if (want != got)
            return wsml_errf(err, WSML_ECORRUPT, "CRC mismatch (stored %08x, computed %08x)", want,
                             got);
    }
    rec->encoding = (wsml_encoding)b[4];
    rec->channels = b[5];
    rec->height = b[6] | (b[7] << 8);
    rec->width = b[8] | (b[9] << 8);
    rec->full_label_default = b[10] ? -1 : 0;
    rec->id = (const char *)(b + HDR);
    rec->id_len = id_len;
    rec->labels_blob = b + HDR + id_len;
    rec->n_full_pos = nfp;
    rec->n_full_neg = nfo;
    rec->n_obs_pos = nop;
    rec->n_obs_neg = non;
    rec->image = rec->labels_blob + 4ull * ((uint64_t)nfp + nfo + nop + non);
    rec->image_len = img;
    if (rec->encoding == WSML_ENC_RAW && (uint64_t)rec->height * rec->width * rec->channels != img)
        return wsml_errf(err, WSML_ECORRUPT, "raw image of %u bytes does not match %dx%dx%d", img,
                         rec->height, rec->width, rec->channels);
    return 0;
}

int wsml_record_check_labels(const wsml_record *rec, int num_classes, wsml_err *err) {
    uint32_t n = rec->n_full_pos + rec->n_full_neg + rec->n_obs_pos + rec->n_obs_neg;
    for (uint32_t i = 0; i < n; i++) {
        uint32_t c = rd32(rec->labels_blob + 4 * i);
        if (c >= (uint32_t)num_classes)
            return wsml_errf(err, WSML_ECORRUPT, "label class index %u out of range (%d classes)",
                             c, num_classes);
    }
    return 0;
}

static void fill(const uint8_t *p, uint32_t n, int num_classes, int8_t *out, int8_t value) {
    for (uint32_t i = 0; i < n; i++) {
        uint32_t c = rd32(p + 4 * i);
        if (c < (uint32_t)num_classes)
            out[c] = value;
    }
}

void wsml_record_full_labels(const wsml_record *rec, int num_classes, int8_t *full) {
    memset(full, rec->full_label_default, (size_t)num_classes);
    fill(rec->labels_blob, rec->n_full_pos, num_classes, full, 1);
    fill(rec->labels_blob + 4ull * rec->n_full_pos, rec->n_full_neg, num_classes, full,
         rec->full_label_default == 0 ? -1 : 0);
}

void wsml_record_observed_labels(const wsml_record *rec, int num_classes, int8_t *observed) {
    memset(observed, 0, (size_t)num_classes);
    const uint8_t *p = rec->labels_blob + 4ull * (rec->n_full_pos + rec->n_full_neg);
    fill(p, rec->n_obs_pos, num_classes, observed, 1);
    fill(p + 4ull * rec->n_obs_pos, rec->n_obs_neg, num_classes, observed, -1);
}
