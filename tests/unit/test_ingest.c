// Ingest internals: the streaming COCO JSON reader (values, escapes, every truncation
// point, byte offsets in errors), the CSV line splitter, the whitespace splitter, the
// string map, the validation carve's size rule (numpy's round half to even) and the
// sparse label entries. End-to-end behaviour against numpy lives in tests/e2e/ingest_*.sh.
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ingest/ingest.h"

typedef struct {
    int n_cat, n_img, n_ann;
    int64_t cat_id[16], img_id[16], ann[16][2];
    char cat_name[16][64], file_name[16][64];
    int fail_at_ann; // handler error injection (-1 = never)
} collected;

static int on_cat(void *ctx, int64_t id, const char *name, wsml_err *err) {
    (void)err;
    collected *c = ctx;
    if (c->n_cat < 16) {
        c->cat_id[c->n_cat] = id;
        snprintf(c->cat_name[c->n_cat], 64, "%s", name);
    }
    c->n_cat++;
    return 0;
}

static int on_img(void *ctx, int64_t id, const char *file_name, wsml_err *err) {
    (void)err;
    collected *c = ctx;
    if (c->n_img < 16) {
        c->img_id[c->n_img] = id;
        snprintf(c->file_name[c->n_img], 64, "%s", file_name ? file_name : "(null)");
    }
    c->n_img++;
    return 0;
}

static int on_ann(void *ctx, int64_t image_id, int64_t category_id, wsml_err *err) {
    collected *c = ctx;
    if (c->n_ann == c->fail_at_ann)
        return wsml_errf(err, WSML_EFORMAT, "injected");
    if (c->n_ann < 16) {
        c->ann[c->n_ann][0] = image_id;
        c->ann[c->n_ann][1] = category_id;
    }
    c->n_ann++;
    return 0;
}

static int parse_chunked(const char *doc, size_t len, size_t chunk, collected *c, wsml_err *err) {
    memset(c, 0, sizeof *c);
    c->fail_at_ann = -1;
    coco_json_handlers h = {.ctx = c, .category = on_cat, .image = on_img, .annotation = on_ann};
    wsml_err_clear(err);
    return coco_json_parse_buffer("t.json", doc, len, chunk, &h, err);
}

static int parse(const char *doc, size_t len, collected *c, wsml_err *err) {
    return parse_chunked(doc, len, 0, c, err);
}

static const char *doc_ok =
    "{\"info\": {\"description\": \"x \\\"y\\\" \\u2014\", \"n\": [1, -2.5e+3, 0, 0.25, true, "
    "false, null, {}, [[]]]},\n"
    " \"images\": [{\"id\": 9, \"file_name\": \"COCO_train2014_000000000009.jpg\", "
    "\"width\": 640},\n"
    "   {\"file_name\": \"b\\/c.jpg\", \"id\": 12345678901}],\n"
    " \"licenses\": [],\n"
    " \"annotations\": [{\"segmentation\": [[1.5, 2, 3e-2]], \"image_id\": 9, \"bbox\": [1,2,3,4], "
    "\"category_id\": 90, \"id\": 1},\n"
    "   {\"segmentation\": {\"counts\": [1,2], \"size\": [3,4]}, \"category_id\": 1, "
    "\"image_id\": 12345678901}],\n"
    " \"categories\": [{\"supercategory\": \"p\", \"id\": 1, \"name\": \"person\"}, "
    "{\"id\": 90, \"name\": \"caf\\u00e9 \\ud83d\\ude00\"}]}\n";

Test(ingest, coco_json_values) {
    collected c;
    wsml_err err;
    cr_assert_eq(parse(doc_ok, strlen(doc_ok), &c, &err), 0, "%s", err.msg);
    cr_assert_eq(c.n_cat, 2);
    cr_assert_eq(c.cat_id[0], 1);
    cr_assert_str_eq(c.cat_name[0], "person");
    cr_assert_eq(c.cat_id[1], 90);
    cr_assert_str_eq(c.cat_name[1], "caf\xc3\xa9 \xf0\x9f\x98\x80"); // é and U+1F600
    cr_assert_eq(c.n_img, 2);
    cr_assert_eq(c.img_id[1], 12345678901LL);
    cr_assert_str_eq(c.file_name[1], "b/c.jpg");
    cr_assert_eq(c.n_ann, 2);
    cr_assert_eq(c.ann[0][0], 9);
    cr_assert_eq(c.ann[0][1], 90);
    cr_assert_eq(c.ann[1][0], 12345678901LL);
    cr_assert_eq(c.ann[1][1], 1);
}

// The reader sees files in 1 MiB reads: every token must survive any buffer boundary.
Test(ingest, coco_json_chunk_boundaries) {
    collected whole, c;
    wsml_err err;
    cr_assert_eq(parse(doc_ok, strlen(doc_ok), &whole, &err), 0, "%s", err.msg);
    for (size_t chunk = 1; chunk <= 64; chunk++) {
        cr_assert_eq(parse_chunked(doc_ok, strlen(doc_ok), chunk, &c, &err), 0, "chunk %zu: %s",
                     chunk, err.msg);
        cr_assert_eq(memcmp(&c, &whole, sizeof c), 0, "chunk %zu: different values", chunk);
    }
    // error offsets are file offsets, whatever the chunking
    const char *bad = "{\"images\": [{\"id\": 1, \"file_name\": \"abc\\q\"}]}";
    for (size_t chunk = 1; chunk <= 8; chunk++) {
        cr_assert_neq(parse_chunked(bad, strlen(bad), chunk, &c, &err), 0);
        cr_assert(strstr(err.msg, "t.json: byte 40: invalid escape"), "chunk %zu: %s", chunk,
                  err.msg);
    }
}

// Every proper prefix of a valid document is an error (never a crash, never success),
// and truncation inside the document reports end of file at the prefix length.
Test(ingest, coco_json_every_truncation) {
    size_t len = strlen(doc_ok);
    size_t body = len - 1; // without the final newline, the object is still complete
    for (size_t k = 0; k < body; k++) {
        collected c;
        wsml_err err;
        char *p = malloc(k + 1);
        memcpy(p, doc_ok, k);
        int rc = parse(p, k, &c, &err);
        free(p);
        cr_assert_neq(rc, 0, "prefix of %zu bytes parsed", k);
        char want[64];
        snprintf(want, sizeof want, "t.json: byte %zu: unexpected end of file", k);
        cr_assert(strstr(err.msg, want) != NULL, "prefix %zu: %s", k, err.msg);
    }
}

static void expect_error(const char *doc, const char *want) {
    collected c;
    wsml_err err;
    int rc = parse(doc, strlen(doc), &c, &err);
    cr_assert_neq(rc, 0, "accepted: %s", doc);
    cr_assert(strstr(err.msg, want) != NULL, "doc %s: message \"%s\" lacks \"%s\"", doc, err.msg,
              want);
}

Test(ingest, coco_json_errors) {
    expect_error("[]", "byte 0: expected '{'");
    expect_error("{\"images\": [{\"id\": 01}]}", "byte 20: leading zero");
    expect_error("{\"images\": [{\"id\": 1.5}]}", "byte 19: \"id\" must be an integer");
    expect_error("{\"annotations\": [{\"image_id\": 1}]}", "annotations[0] has no \"category_id\"");
    expect_error("{\"categories\": [{\"id\": 3}]}", "categories[0] has no \"name\"");
    expect_error("{\"categories\": [{\"id\": 3, \"name\": 7}]}", "\"name\" must be a string");
    expect_error("{\"a\": tru}", "invalid literal");
    expect_error("{\"a\": \"\\x\"}", "invalid escape");
    expect_error("{\"a\": \"\\ud800\"}", "unpaired surrogate");
    expect_error("{\"a\": \"x\ny\"}", "control character");
    expect_error("{\"a\": 1} x", "byte 9: unexpected data after the top-level object");
    expect_error("{\"a\": [1 2]}", "byte 9: expected ',' or ']'");
    expect_error("{\"a\" 1}", "byte 5: expected ':'");
    expect_error("{\"a\": -}", "expected a digit");
    expect_error("{\"a\": 1.}", "expected a digit after '.'");
    char deep[1200] = "{\"a\": ";
    for (int i = 0; i < 300; i++)
        strcat(deep, "[");
    expect_error(deep, "nesting too deep");
}

Test(ingest, coco_json_handler_error_is_prefixed) {
    collected c;
    wsml_err err;
    memset(&c, 0, sizeof c);
    c.fail_at_ann = 1;
    coco_json_handlers h = {.ctx = &c, .category = on_cat, .image = on_img, .annotation = on_ann};
    int rc = coco_json_parse_buffer("t.json", doc_ok, strlen(doc_ok), 0, &h, &err);
    cr_assert_neq(rc, 0);
    cr_assert_str_eq(err.msg, "t.json: annotations[1]: injected");
}

Test(ingest, csv_split) {
    char line[] = "a,\"b, \"\"c\"\"\",,\"\",d e";
    char *f[8];
    wsml_err err;
    int n = ingest_csv_split(line, "x.csv", 3, f, 8, &err);
    cr_assert_eq(n, 5, "%s", err.msg);
    cr_assert_str_eq(f[0], "a");
    cr_assert_str_eq(f[1], "b, \"c\"");
    cr_assert_str_eq(f[2], "");
    cr_assert_str_eq(f[3], "");
    cr_assert_str_eq(f[4], "d e");
    char bad1[] = "a,\"b";
    cr_assert_lt(ingest_csv_split(bad1, "x.csv", 3, f, 8, &err), 0);
    cr_assert_str_eq(err.msg, "x.csv: line 3: unterminated quote");
    char bad2[] = "a,\"b\"c";
    cr_assert_lt(ingest_csv_split(bad2, "x.csv", 4, f, 8, &err), 0);
    cr_assert(strstr(err.msg, "line 4: unexpected character after a quoted field"));
    char bad3[] = "a,b,c";
    cr_assert_lt(ingest_csv_split(bad3, "x.csv", 5, f, 2, &err), 0);
    cr_assert(strstr(err.msg, "more than 2 fields"));
    char empty[] = "";
    cr_assert_eq(ingest_csv_split(empty, "x.csv", 1, f, 8, &err), 1);
    cr_assert_str_eq(f[0], "");
}

Test(ingest, split_ws) {
    char line[] = "  2008_000015  1\t";
    char *f[4];
    cr_assert_eq(ingest_split_ws(line, f, 4), 2);
    cr_assert_str_eq(f[0], "2008_000015");
    cr_assert_str_eq(f[1], "1");
    char many[] = "a b c d e";
    cr_assert_eq(ingest_split_ws(many, f, 2), 5); // counts all, fills at most max
}

Test(ingest, strmap) {
    ingest_strmap m;
    ingest_strmap_init(&m);
    char key[32];
    for (int i = 0; i < 5000; i++) {
        int len = snprintf(key, sizeof key, "k%d", i * 7919);
        cr_assert_eq(ingest_strmap_put(&m, key, (size_t)len, i), 0);
    }
    cr_assert_eq(ingest_strmap_put(&m, "k0", 2, 99), 1); // exists: value unchanged
    for (int i = 0; i < 5000; i++) {
        int len = snprintf(key, sizeof key, "k%d", i * 7919);
        cr_assert_eq(ingest_strmap_get(&m, key, (size_t)len), i);
    }
    cr_assert_eq(ingest_strmap_get(&m, "k1", 2), -1);
    cr_assert_eq(ingest_strmap_get(&m, "k79190", 3), -1); // prefix "k79" of a key
    ingest_strmap_free(&m);
}

// n_val = round(frac * N) with numpy's half-to-even rounding; train and val are sorted
// and together hold every index once.
Test(ingest, carve_sizes) {
    struct {
        size_t n;
        double frac;
        size_t want_val;
    } cases[] = {{10, 0.25, 2}, {14, 0.25, 4}, {5717, 0.2, 1143}, {82081, 0.2, 16416},
                 {5, 0.5, 2},   {7, 0.5, 4},   {3, 0.0, 0},       {4, 1.0, 4}};
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        uint32_t *tr, *va;
        size_t nt, nv;
        wsml_err err;
        cr_assert_eq(ingest_carve_val(cases[k].n, cases[k].frac, 1200, &tr, &nt, &va, &nv, &err),
                     0);
        cr_assert_eq(nv, cases[k].want_val, "n=%zu frac=%g: %zu", cases[k].n, cases[k].frac, nv);
        cr_assert_eq(nt + nv, cases[k].n);
        uint8_t *seen = calloc(cases[k].n, 1);
        for (size_t i = 0; i < nt; i++) {
            if (i)
                cr_assert_lt(tr[i - 1], tr[i]);
            seen[tr[i]]++;
        }
        for (size_t i = 0; i < nv; i++) {
            if (i)
                cr_assert_lt(va[i - 1], va[i]);
            seen[va[i]]++;
        }
        for (size_t i = 0; i < cases[k].n; i++)
            cr_assert_eq(seen[i], 1);
        free(seen);
        free(tr);
        free(va);
    }
}

Test(ingest, sparse_entries) {
    ingest_dataset ds;
    ingest_dataset_init(&ds, "t");
    char *names[5] = {"a", "b", "c", "d", "e"};
    wsml_err err;
    cr_assert_eq(ingest_set_classes(&ds, names, 5, &err), 0);
    ds.full_label_default = -1;
    int8_t full[5] = {1, -1, 0, -1, 1}, obs[5] = {1, 0, -1, 0, 0}, f2[5], o2[5];
    cr_assert_eq(ingest_add_item(&ds, &ds.official[0], "id", "p/x.jpg", full, obs, 7, &err), 0);
    const ingest_item *it = &ds.official[0].items[0];
    cr_assert_eq(it->n_full, 3);
    cr_assert_eq(it->n_obs, 2);
    ingest_item_full(&ds, it, f2);
    ingest_item_observed(&ds, it, o2);
    cr_assert_arr_eq(f2, full, 5);
    cr_assert_arr_eq(o2, obs, 5);
    cr_assert_str_eq(ingest_str_at(&ds, it->path), "p/x.jpg");
    ingest_dataset_free(&ds);
}
