// libwsml-store: the on-disk dataset store: its format, below, is what must stay stable.
//
// A store is a directory holding one LMDB environment with named sub-databases:
//   meta   : "version" (decimal text), "info" (JSON, see below), "complete" ("1",
//            written last, in its own transaction, after every record is durable)
//   train, val, test : key = record index as big-endian u32, value = one record
//
// Record value (all integers little-endian; layout in store/record.c):
//   id, full labels and observed labels as sparse class-index lists (so 5,000 classes
//   x millions of images cost a few bytes per listed label, not C bytes per image),
//   image payload (raw HWC uint8 or JPEG), and a CRC32 (zlib) over everything before it.
//
// Labels in memory are dense int8 arrays of C entries:
//   full labels     : 1 positive, 0 negative, -1 unknown
//   observed labels : 1 observed positive, -1 observed negative, 0 unobserved
//
// "info" JSON (written by the ingester, read back as wsml_store_meta + the raw object):
//   {"name": "voc", "format": "voc", "classes": ["aeroplane", ...],
//    "counts": {"train": N, "val": N, "test": N},
//    "height": 448, "width": 448, "channels": 3, "encoding": "raw"|"jpeg",
//    "full_label_default": 0 | -1,          // value of unlisted full-label entries
//    "ingest": {...flags and seeds...}, "skipped": [{"path": ..., "reason": ...}],
//    "groups": [[class indices of G1], ..., [G5]]   // OpenImages only
//   }
//
// Lifetimes: views returned by wsml_reader_get point into the LMDB mmap and stay
// valid until the next wsml_reader_reset/end on that reader. A reader is used by
// one thread at a time; open one reader per thread.
#ifndef WSML_STORE_H
#define WSML_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "common/err.h"

#define WSML_STORE_VERSION 1

typedef enum { WSML_SPLIT_TRAIN = 0, WSML_SPLIT_VAL = 1, WSML_SPLIT_TEST = 2 } wsml_split;
#define WSML_NUM_SPLITS 3
const char *wsml_split_name(wsml_split s);
// Parses "train"/"val"/"test"; returns -1 if unknown.
int wsml_split_parse(const char *name);

typedef enum { WSML_ENC_RAW = 0, WSML_ENC_JPEG = 1 } wsml_encoding;
const char *wsml_encoding_name(wsml_encoding e);

typedef struct {
    int version;
    char name[64];
    int num_classes;
    char **class_names; // num_classes NUL-terminated strings
    uint32_t count[WSML_NUM_SPLITS];
    int height, width, channels;
    wsml_encoding encoding;
    int full_label_default; // 0 or -1
    char *info_json;        // the whole "info" object, serialised
} wsml_store_meta;

// ---- reading --------------------------------------------------------------------
typedef struct wsml_store wsml_store;

// Opens read-only. Refuses (WSML_ESTATE) a store without the complete flag or with
// another version, naming the store path and what is wrong. check_crc != 0 makes
// every wsml_reader_get verify the record CRC (WSML_ECORRUPT naming split and index).
wsml_store *wsml_store_open(const char *dir, int check_crc, wsml_err *err);
void wsml_store_close(wsml_store *s);
const wsml_store_meta *wsml_store_meta_get(const wsml_store *s);

// A decoded record: scalars plus zero-copy views into the mmap.
typedef struct {
    uint32_t index;
    const char *id; // NOT NUL-terminated; id_len bytes
    uint32_t id_len;
    wsml_encoding encoding;
    int height, width, channels;
    const uint8_t *image; // raw HWC uint8 (h*w*c bytes) or JPEG bytes
    uint32_t image_len;
    // Sparse label lists (views; entries are class indices, little-endian u32 in the
    // record, decoded via the helpers below).
    const uint8_t *labels_blob;
    // n_full_neg counts the listed full labels that differ from full_label_default and
    // are not positive: unknowns (-1) when the default is 0, negatives when it is -1.
    uint32_t n_full_pos, n_full_neg, n_obs_pos, n_obs_neg;
    int full_label_default;
} wsml_record;

typedef struct wsml_reader wsml_reader;
wsml_reader *wsml_reader_begin(wsml_store *s, wsml_err *err);
// Random access by index within a split (0 <= index < count[split]).
int wsml_reader_get(wsml_reader *r, wsml_split split, uint32_t index, wsml_record *rec,
                    wsml_err *err);
// Releases the snapshot (views become invalid) but keeps the reader usable.
void wsml_reader_reset(wsml_reader *r);
void wsml_reader_end(wsml_reader *r);

// Fills dense labels (num_classes entries) from a record.
void wsml_record_full_labels(const wsml_record *rec, int num_classes, int8_t *full);
void wsml_record_observed_labels(const wsml_record *rec, int num_classes, int8_t *observed);

// ---- writing --------------------------------------------------------------------
typedef struct wsml_store_writer wsml_store_writer;

// Creates a new store at dir. An existing dir is refused (WSML_ESTATE) unless force,
// and also refused when another process holds it open. The store does not open as
// complete until wsml_store_writer_finish succeeds. Map size grows as needed.
wsml_store_writer *wsml_store_create(const char *dir, int force, wsml_err *err);

// A record to write: dense labels, num_classes entries each (observed may be NULL =
// all unobserved). image is raw HWC uint8 or JPEG bytes per encoding.
typedef struct {
    const char *id;
    const int8_t *full;
    const int8_t *observed;
    int num_classes;
    wsml_encoding encoding;
    int height, width, channels;
    const void *image;
    size_t image_len;
} wsml_record_in;

// Records of a split must be put with index 0, 1, 2, ... in order (batched into
// transactions internally). full_label_default selects the sparse encoding of the
// full labels (0: list positives [+ unknowns]; -1: list positives and negatives).
int wsml_store_put(wsml_store_writer *w, wsml_split split, uint32_t index,
                   const wsml_record_in *rec, int full_label_default, wsml_err *err);
// Encoding ahead of the put, so that decode threads do it and the writer only stores:
// a record encoded into a reusable buffer. wsml_record_encode_into validates exactly as
// wsml_store_put does (same errors, without the store/split/index prefix), writes the
// same bytes, and reuses buf->data when it is large enough (else grows it). Any thread.
typedef struct {
    uint8_t *data;
    size_t len; // bytes of the encoded record (0 after a failed encode)
    size_t cap; // bytes allocated at data
} wsml_record_buf;
int wsml_record_encode_into(const wsml_record_in *rec, int full_label_default, wsml_record_buf *buf,
                            wsml_err *err);
void wsml_record_buf_free(wsml_record_buf *buf);
// wsml_store_put for a record from wsml_record_encode_into (num_classes and
// full_label_default as encoded): the writer takes buf's memory over without copying it
// and hands buf a spare buffer back (one freed by an earlier committed batch, or none),
// so buffers circulate instead of being allocated per record. Writer thread only.
int wsml_store_put_encoded(wsml_store_writer *w, wsml_split split, uint32_t index, int num_classes,
                           int full_label_default, wsml_record_buf *buf, wsml_err *err);
// Commits all records, writes version + info (info_json must hold the keys listed
// above; counts are checked against what was put), syncs, then writes complete.
// Consumes the writer whatever the result (on failure the store is left incomplete).
int wsml_store_writer_finish(wsml_store_writer *w, const char *info_json, wsml_err *err);
// Discards: closes without the complete flag (the directory is left incomplete).
void wsml_store_writer_abort(wsml_store_writer *w);

// ---- checking -------------------------------------------------------------------
// Walks every record of every split checking key order, structure and CRC. Returns
// the number of bad records (0 = clean) and describes the first in err; calls
// on_bad (if not NULL) for each bad record.
typedef void (*wsml_bad_record_fn)(void *ctx, wsml_split split, uint32_t index, const char *what);
long wsml_store_verify(const char *dir, wsml_bad_record_fn on_bad, void *ctx, wsml_err *err);

// The same with on_progress (if not NULL) called before each record is checked (a CLI
// progress bar, and the position to name if LMDB's own page structure is damaged).
typedef void (*wsml_verify_progress_fn)(void *ctx, wsml_split split, uint32_t index);
long wsml_store_verify_progress(const char *dir, wsml_bad_record_fn on_bad,
                                wsml_verify_progress_fn on_progress, void *ctx, wsml_err *err);

// The directory the store was opened from.
const char *wsml_store_path(const wsml_store *s);

// Parses and validates an "info" JSON text (len bytes, need not be NUL-terminated) into
// meta (version is set to WSML_STORE_VERSION); exposed for tests and fuzzing. Free with
// wsml_store_meta_free (also after a failed parse).
int wsml_store_meta_parse(const char *json, size_t len, wsml_store_meta *meta, wsml_err *err);
void wsml_store_meta_free(wsml_store_meta *meta);

// Record codec, exposed for tests and fuzzing: parse a raw value (checks structure
// and, if check_crc, the CRC).
int wsml_record_parse(const void *val, size_t len, int check_crc, wsml_record *rec, wsml_err *err);

#endif
