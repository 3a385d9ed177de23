// Decode + resize + encode in a pool of threads, records written in index order.
//
// Memory stays bounded whatever the split size: workers take item k only while
// k < next_write + window, so at most `window` images are in flight (decoded, resized,
// maybe encoded) at any time. The calling thread is the only writer: it waits for slot
// next_write % window, puts the record (or records a skip), frees the slot and wakes
// the workers. Records of a split get indices 0, 1, 2, ... in list order; a skipped
// image takes no index, so later records move up by one.
//
// The workers also encode the whole record (header, labels, image, CRC) into their
// slot's buffer, so the writer thread only hands that buffer to the store
// (wsml_store_put_encoded: no copy, the buffer comes back as a spare of an earlier
// batch) and LMDB copies it once into its page. A record the worker could not encode
// goes through wsml_store_put in the writer, which reports it as it always did.
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/log.h"
#include "ingest/ingest.h"

// wsml_image_free, then forget the pointer (the header does not promise to clear it).
static void img_release(wsml_image *img) {
    if (img->pixels)
        wsml_image_free(img);
    memset(img, 0, sizeof *img);
}

enum { SLOT_FREE = 0, SLOT_TAKEN = 1, SLOT_DONE = 2 };

typedef struct {
    int state;
    int failed;
    char reason[1024];
    wsml_image img; // at the output size, raw HWC RGB
    void *jpeg;     // encoded payload when encoding = jpeg
    size_t jpeg_len;
    wsml_record_buf rec; // the encoded record when encoded (the buffer is reused)
    int encoded;
    uint32_t n_pos, n_obs; // full positives and observed positives of the record
} slot;

typedef struct {
    const ingest_dataset *ds;
    const ingest_opts *o;
    const ingest_list *src;
    const uint32_t *order;
    size_t n;
    slot *slots;
    size_t window;
    size_t next_take, next_write;
    int stop;
    pthread_mutex_t mu;
    pthread_cond_t ready, space;
} pool;

// Loads item k of the pool's order into s (no lock held); full and obs are the
// worker's label buffers (num_classes entries each; NULL: the writer encodes).
// The record of a decoded slot: the item's labels (into full and obs, C each) and the
// slot's image (its JPEG bytes or its raw pixels).
static wsml_record_in slot_record(const ingest_dataset *ds, const ingest_item *it,
                                  const ingest_opts *o, const slot *s, int8_t *full, int8_t *obs) {
    ingest_item_full(ds, it, full);
    ingest_item_observed(ds, it, obs);
    wsml_record_in rec = {
        .id = ingest_str_at(ds, it->id),
        .full = full,
        .observed = obs,
        .num_classes = ds->num_classes,
        .encoding = o->encoding,
        .height = o->size,
        .width = o->size,
        .channels = 3,
    };
    if (o->encoding == WSML_ENC_JPEG) {
        rec.image = s->jpeg;
        rec.image_len = s->jpeg_len;
    } else {
        rec.image = s->img.pixels;
        rec.image_len = (size_t)o->size * (size_t)o->size * 3;
    }
    return rec;
}

static void process(pool *p, size_t k, slot *s, int8_t *full, int8_t *obs) {
    const ingest_dataset *ds = p->ds;
    const ingest_item *it = &p->src->items[p->order[k]];
    wsml_err e;
    wsml_err_clear(&e);
    wsml_image src = {0};
    int rc;
    if (ds->load) {
        rc = ds->load(ds, it, &src, &e);
    } else {
        char *path = ingest_join(ds->image_root, ingest_str_at(ds, it->path));
        rc = path ? wsml_image_decode_file(path, &src, &e)
                  : wsml_errf(&e, WSML_ENOMEM, "out of memory");
        free(path);
    }
    if (rc == 0 && (src.height != p->o->size || src.width != p->o->size)) {
        wsml_image resized = {0};
        rc = wsml_image_resize(&src, p->o->size, p->o->size, &resized, &e);
        img_release(&src);
        src = resized;
    }
    if (rc == 0 && src.channels != 3)
        rc = wsml_errf(&e, WSML_EFORMAT, "decoder returned %d channels, expected 3", src.channels);
    if (rc == 0 && p->o->encoding == WSML_ENC_JPEG) {
        rc = wsml_image_encode_jpeg(&src, p->o->quality, &s->jpeg, &s->jpeg_len, &e);
        img_release(&src);
    }
    if (rc) {
        img_release(&src);
        s->failed = 1;
        snprintf(s->reason, sizeof s->reason, "%s", e.msg[0] ? e.msg : "unreadable image");
        // one line: decoder messages may carry newlines
        size_t len = strlen(s->reason);
        while (len && (s->reason[len - 1] == '\n' || s->reason[len - 1] == ' '))
            len--;
        s->reason[len] = '\0';
        for (char *c = s->reason; *c; c++)
            if (*c == '\n' || *c == '\r')
                *c = ' ';
        return;
    }
    s->failed = 0;
    s->img = src; // empty (pixels NULL) after JPEG encoding
    s->encoded = 0;
    if (!full || !obs)
        return;
    int C = ds->num_classes;
    wsml_record_in rec = slot_record(ds, it, p->o, s, full, obs);
    wsml_err_clear(&e);
    if (wsml_record_encode_into(&rec, ds->full_label_default, &s->rec, &e) < 0)
        return; // the writer puts it with wsml_store_put, which reports the error
    uint32_t np = 0, no = 0;
    for (int c = 0; c < C; c++) {
        np += full[c] == 1;
        no += obs[c] == 1;
    }
    s->n_pos = np;
    s->n_obs = no;
    s->encoded = 1;
    img_release(&s->img); // the record holds the pixels now
    free(s->jpeg);
    s->jpeg = NULL;
    s->jpeg_len = 0;
}

static void *worker(void *arg) {
    pool *p = arg;
    size_t C = p->ds->num_classes > 0 ? (size_t)p->ds->num_classes : 1;
    int8_t *full = malloc(C), *obs = malloc(C); // NULL: records are encoded by the writer
    if (!full || !obs) {
        free(full);
        free(obs);
        full = obs = NULL;
    }
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->stop && p->next_take < p->n && p->next_take >= p->next_write + p->window)
            pthread_cond_wait(&p->space, &p->mu);
        if (p->stop || p->next_take >= p->n)
            break;
        size_t k = p->next_take++;
        slot *s = &p->slots[k % p->window];
        s->state = SLOT_TAKEN;
        pthread_mutex_unlock(&p->mu);
        process(p, k, s, full, obs);
        pthread_mutex_lock(&p->mu);
        s->state = SLOT_DONE;
        pthread_cond_broadcast(&p->ready);
    }
    pthread_mutex_unlock(&p->mu);
    free(full);
    free(obs);
    return NULL;
}

static void slot_clear(slot *s) {
    img_release(&s->img);
    free(s->jpeg);
    s->jpeg = NULL;
    s->jpeg_len = 0;
    s->failed = 0;
    s->encoded = 0;
    s->reason[0] = '\0';
    s->state = SLOT_FREE;
    // s->rec keeps its buffer for the slot's next record
}

static int add_skip(ingest_skips *skips, wsml_split split, const char *path, const char *reason) {
    if (skips->n == skips->cap) {
        size_t cap = skips->cap ? skips->cap * 2 : 16;
        ingest_skip *q = realloc(skips->items, cap * sizeof *q);
        if (!q)
            return WSML_ENOMEM;
        skips->items = q;
        skips->cap = cap;
    }
    ingest_skip *k = &skips->items[skips->n];
    k->split = split;
    k->path = strdup(path);
    k->reason = strdup(reason);
    if (!k->path || !k->reason) {
        free(k->path);
        free(k->reason);
        return WSML_ENOMEM;
    }
    skips->n++;
    return 0;
}

int ingest_write_split(const ingest_dataset *ds, const ingest_opts *o, wsml_store_writer *w,
                       wsml_split split, const ingest_list *src, const uint32_t *order, size_t n,
                       ingest_skips *skips, uint32_t *written, double *pos_sum, double *obs_sum,
                       wsml_err *err) {
    *written = 0;
    *pos_sum = *obs_sum = 0;
    if (n == 0)
        return 0;
    int C = ds->num_classes;
    int jobs = o->jobs > 0 ? o->jobs : 1;
    if ((size_t)jobs > n)
        jobs = (int)n;
    pool p = {.ds = ds, .o = o, .src = src, .order = order, .n = n};
    p.window = (size_t)jobs * 4 + 4;
    p.slots = calloc(p.window, sizeof(slot));
    int8_t *full = malloc((size_t)C), *obs = malloc((size_t)C);
    pthread_t *threads = calloc((size_t)jobs, sizeof(pthread_t));
    int started = 0, rc = 0;
    if (!p.slots || !full || !obs || !threads) {
        rc = wsml_errf(err, WSML_ENOMEM, "out of memory starting %d decode threads", jobs);
        goto done;
    }
    pthread_mutex_init(&p.mu, NULL);
    pthread_cond_init(&p.ready, NULL);
    pthread_cond_init(&p.space, NULL);
    for (; started < jobs; started++)
        if (pthread_create(&threads[started], NULL, worker, &p) != 0) {
            rc = wsml_errf(err, WSML_ENOMEM, "cannot start decode thread %d", started);
            break;
        }
    if (started == 0)
        goto destroy;

    wsml_progress *bar = wsml_progress_start(wsml_split_name(split), n, "img");
    for (size_t k = 0; k < n && rc == 0; k++) {
        slot *s = &p.slots[k % p.window];
        pthread_mutex_lock(&p.mu);
        while (s->state != SLOT_DONE && !ingest_interrupted) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_nsec += 100 * 1000 * 1000; // wake up to notice a signal
            if (ts.tv_nsec >= 1000000000L) {
                ts.tv_sec++;
                ts.tv_nsec -= 1000000000L;
            }
            pthread_cond_timedwait(&p.ready, &p.mu, &ts);
        }
        pthread_mutex_unlock(&p.mu);
        if (ingest_interrupted) {
            rc = wsml_errf(err, WSML_ESTATE, "interrupted by signal");
            break;
        }
        const ingest_item *it = &src->items[order[k]];
        const char *path =
            it->path != UINT64_MAX ? ingest_str_at(ds, it->path) : ingest_str_at(ds, it->id);
        if (s->failed) {
            if (o->strict)
                rc = wsml_errf(err, WSML_EFORMAT, "%s image %s: %s (--strict)",
                               wsml_split_name(split), path, s->reason);
            else if (add_skip(skips, split, path, s->reason))
                rc = wsml_errf(err, WSML_ENOMEM, "out of memory");
        } else if (s->encoded) {
            rc =
                wsml_store_put_encoded(w, split, *written, C, ds->full_label_default, &s->rec, err);
            if (rc == 0) {
                (*written)++;
                *pos_sum += s->n_pos; // integers: the same sums as adding 1 per label
                *obs_sum += s->n_obs;
            }
        } else {
            wsml_record_in rec = slot_record(ds, it, o, s, full, obs);
            rc = wsml_store_put(w, split, *written, &rec, ds->full_label_default, err);
            if (rc == 0) {
                (*written)++;
                for (int c = 0; c < C; c++) {
                    *pos_sum += full[c] == 1;
                    *obs_sum += obs[c] == 1;
                }
            }
        }
        pthread_mutex_lock(&p.mu);
        slot_clear(s);
        p.next_write++;
        pthread_cond_broadcast(&p.space);
        pthread_mutex_unlock(&p.mu);
        wsml_progress_add(bar, 1);
    }
    wsml_progress_end(bar);

    pthread_mutex_lock(&p.mu);
    p.stop = 1;
    pthread_cond_broadcast(&p.space);
    pthread_mutex_unlock(&p.mu);
destroy:
    for (int t = 0; t < started; t++)
        pthread_join(threads[t], NULL);
    for (size_t k = 0; k < p.window; k++) {
        slot_clear(&p.slots[k]);
        wsml_record_buf_free(&p.slots[k].rec);
    }
    pthread_mutex_destroy(&p.mu);
    pthread_cond_destroy(&p.ready);
    pthread_cond_destroy(&p.space);
done:
    free(p.slots);
    free(full);
    free(obs);
    free(threads);
    return rc;
}
