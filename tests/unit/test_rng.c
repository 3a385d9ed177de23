// common/rng: numpy's legacy RandomState, compared bit for bit with Debian's numpy
// (the oracle) for seeds 0, 999, 1200, 2**31-1, 2**32-1 and sizes 1..100000.
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/rng.h"
#include "tests/unit/common_testutil.h"

static const uint32_t seeds[] = {0, 999, 1200, 2147483647u, 4294967295u};
#define NSEEDS (sizeof seeds / sizeof *seeds)
static const size_t sizes[] = {1, 2, 10, 1000, 100000};
#define NSIZES (sizeof sizes / sizeof *sizes)

#define SEED_LIST "(0, 999, 1200, 2**31 - 1, 2**32 - 1)"
#define SIZE_LIST "(1, 2, 10, 1000, 100000)"

// Elements over all of sizes (one seed's share of a per-size section).
static size_t sizes_total(void) {
    size_t total = 0;
    for (size_t k = 0; k < NSIZES; k++)
        total += sizes[k];
    return total;
}

// All oracle scripts of a test run in ONE Python process (numpy's import costs ~0.5 s):
// a first pass over the checks collects their scripts (section() records the script and
// jumps back out), Python runs them all, each section's output framed by its length,
// then a second pass runs the checks on their sections.
struct oracle {
    int collect;
    jmp_buf jb;
    char code[32768];
    size_t code_len;
    char *out;
    size_t out_len, pos;
};

static char *section(struct oracle *o, const char *code, size_t *len) {
    if (o->collect) {
        int n = snprintf(o->code + o->code_len, sizeof o->code - o->code_len,
                         "buf = []\nW = buf.append\n%send()\n", code);
        cr_assert_lt((size_t)n, sizeof o->code - o->code_len, "oracle script too long");
        o->code_len += (size_t)n;
        longjmp(o->jb, 1);
    }
    uint64_t n;
    cr_assert_leq(o->pos + 8, o->out_len, "oracle output ended early");
    memcpy(&n, o->out + o->pos, 8);
    cr_assert_leq(o->pos + 8 + n, o->out_len);
    char *p = o->out + o->pos + 8;
    o->pos += 8 + n;
    *len = n;
    return p;
}

typedef void (*check_fn)(struct oracle *);

static void run_checks(const check_fn *checks, size_t n) {
    struct oracle *o = calloc(1, sizeof *o);
    o->collect = 1;
    o->code_len = (size_t)snprintf(
        o->code, sizeof o->code,
        "import sys\n"
        "def end():\n"
        "    b = b''.join(buf); sys.stdout.buffer.write(len(b).to_bytes(8, 'little') + b)\n");
    for (size_t i = 0; i < n; i++)
        if (!setjmp(o->jb))
            checks[i](o);
    o->out = ct_python(o->code, NULL, &o->out_len);
    o->collect = 0;
    for (size_t i = 0; i < n; i++)
        checks[i](o);
    cr_assert_eq(o->pos, o->out_len, "every section consumed");
    free(o->out);
    free(o);
}

// Compares n values of `size` bytes and names the first difference.
static void expect_same(const void *ours, const void *numpy, size_t n, size_t size,
                        const char *what, uint32_t seed, size_t count) {
    const unsigned char *a = ours, *b = numpy;
    for (size_t i = 0; i < n; i++)
        if (memcmp(a + i * size, b + i * size, size) != 0) {
            long long x = 0, y = 0;
            memcpy(&x, a + i * size, size < 8 ? size : 8);
            memcpy(&y, b + i * size, size < 8 ? size : 8);
            cr_assert_fail("%s, seed %u, size %zu: element %zu differs (ours 0x%llx, numpy 0x%llx)",
                           what, seed, count, i, x, y);
        }
}

static void seeding_equals_numpy_state(struct oracle *orc) {
    size_t len;
    char *want = section(orc,
                         "import sys, numpy as np\n"
                         "for s in " SEED_LIST ":\n"
                         "    k = np.random.RandomState(s).get_state()[1]\n"
                         "    W(k.astype('<u4').tobytes())\n",
                         &len);
    cr_assert_eq(len, NSEEDS * 624 * 4);
    for (size_t s = 0; s < NSEEDS; s++) {
        wsml_rng r;
        wsml_rng_seed(&r, seeds[s]);
        expect_same(r.mt, want + s * 624 * 4, 624, 4, "MT19937 key after seeding", seeds[s], 624);
        cr_assert_eq(r.pos, 624);
        cr_assert_eq(r.has_gauss, 0);
    }
}

static void u32_stream_equals_numpy(struct oracle *orc) {
    // randint(0, 2**32, dtype=uint32) is the raw 32-bit output (no masking needed).
    enum { N = 2000 }; // crosses three state regenerations
    size_t len;
    char *want =
        section(orc,
                "import sys, numpy as np\n"
                "for s in " SEED_LIST ":\n"
                "    v = np.random.RandomState(s).randint(0, 2**32, size=2000, dtype=np.uint32)\n"
                "    W(v.astype('<u4').tobytes())\n",
                &len);
    cr_assert_eq(len, NSEEDS * N * 4);
    for (size_t s = 0; s < NSEEDS; s++) {
        wsml_rng r;
        wsml_rng_seed(&r, seeds[s]);
        uint32_t v[N];
        for (int i = 0; i < N; i++)
            v[i] = wsml_rng_u32(&r);
        expect_same(v, want + s * N * 4, N, 4, "u32", seeds[s], N);
    }
}

static void random_sample_equals_numpy(struct oracle *orc) {
    size_t len;
    char *want = section(orc,
                         "import sys, numpy as np\n"
                         "for s in " SEED_LIST ":\n"
                         "    for n in " SIZE_LIST ":\n"
                         "        v = np.random.RandomState(s).random_sample(n)\n"
                         "        W(v.astype('<f8').tobytes())\n",
                         &len);
    cr_assert_eq(len, NSEEDS * sizes_total() * 8);
    const char *p = want;
    double *v = malloc(100000 * sizeof *v);
    for (size_t s = 0; s < NSEEDS; s++)
        for (size_t k = 0; k < NSIZES; k++) {
            wsml_rng r;
            wsml_rng_seed(&r, seeds[s]);
            for (size_t i = 0; i < sizes[k]; i++) {
                v[i] = wsml_rng_double(&r);
                cr_assert(v[i] >= 0.0 && v[i] < 1.0);
            }
            expect_same(v, p, sizes[k], 8, "random_sample", seeds[s], sizes[k]);
            p += sizes[k] * 8;
        }
    free(v);
}

static void permutation_equals_numpy(struct oracle *orc) {
    size_t len;
    char *want = section(orc,
                         "import sys, numpy as np\n"
                         "for s in " SEED_LIST ":\n"
                         "    for n in " SIZE_LIST ":\n"
                         "        v = np.random.RandomState(s).permutation(n)\n"
                         "        W(v.astype('<i8').tobytes())\n",
                         &len);
    const char *p = want;
    int64_t *v = malloc(100000 * sizeof *v);
    cr_assert_eq(len, NSEEDS * sizes_total() * 8);
    for (size_t s = 0; s < NSEEDS; s++)
        for (size_t k = 0; k < NSIZES; k++) {
            wsml_rng r;
            wsml_rng_seed(&r, seeds[s]);
            wsml_rng_permutation(&r, v, sizes[k]);
            expect_same(v, p, sizes[k], 8, "permutation", seeds[s], sizes[k]);
            p += sizes[k] * 8;
        }
    free(v);
}

// shuffle draws the same numbers whatever the element size: int32 elements and
// 100-byte records (structured dtype in numpy) must land where numpy puts them.
static void shuffle_any_element_size_equals_numpy(struct oracle *orc) {
    enum { N = 1000, REC = 100 };
    size_t len;
    char *want = section(orc,
                         "import sys, numpy as np\n"
                         "for s in " SEED_LIST ":\n"
                         "    a = np.arange(1000, dtype='<i4') * 3\n"
                         "    np.random.RandomState(s).shuffle(a)\n"
                         "    rec = np.zeros(1000, dtype=[('i', '<i8'), ('pad', 'V92')]); rec['i'] "
                         "= np.arange(1000)\n"
                         "    np.random.RandomState(s).shuffle(rec)\n"
                         "    W(a.tobytes() + rec['i'].astype('<i8').tobytes())\n",
                         &len);
    cr_assert_eq(len, NSEEDS * N * 12);
    for (size_t s = 0; s < NSEEDS; s++) {
        const char *w = want + s * N * 12;
        int32_t a[N];
        for (int i = 0; i < N; i++)
            a[i] = 3 * i;
        wsml_rng r;
        wsml_rng_seed(&r, seeds[s]);
        wsml_rng_shuffle(&r, a, N, sizeof *a);
        expect_same(a, w, N, 4, "shuffle int32", seeds[s], N);
        unsigned char *rec = calloc(N, REC);
        for (int i = 0; i < N; i++) {
            int64_t id = i;
            memcpy(rec + (size_t)i * REC, &id, 8);
            memset(rec + (size_t)i * REC + 8, i & 0xff, REC - 8); // payload travels with the id
        }
        wsml_rng_seed(&r, seeds[s]);
        wsml_rng_shuffle(&r, rec, N, REC);
        for (int i = 0; i < N; i++) {
            int64_t id, expect;
            memcpy(&id, rec + (size_t)i * REC, 8);
            memcpy(&expect, w + N * 4 + (size_t)i * 8, 8);
            cr_assert_eq(id, expect,
                         "shuffle of 100-byte records, seed %u: position %d holds %lld, numpy %lld",
                         seeds[s], i, (long long)id, (long long)expect);
            for (int b = 8; b < REC; b++)
                cr_assert_eq(rec[(size_t)i * REC + b], (unsigned char)(id & 0xff));
        }
        free(rec);
    }
}

// randint(low, high) with the default int64 dtype: ranges on both sides of the 32-bit
// path (rng <= 0xffffffff uses 32-bit draws, rng == 0xffffffff no masking at all), the
// 64-bit masked path, and rng == 0 (no draw). Draws come one after another from one state.
static const int64_t ranges[][2] = {
    {0, 1},
    {0, 2},
    {0, 10},
    {-5, 5},
    {0, 80},
    {7, 1000003},
    {0, 2147483648LL},
    {-2147483648LL, 2147483648LL},
    {0, 4294967296LL},
    {0, 4294967297LL},
    {-4611686018427387904LL, 4611686018427387904LL},
    {INT64_MIN, INT64_MAX},
    {5, 6},
};
#define NRANGES (sizeof ranges / sizeof *ranges)

static void randint_equals_numpy(struct oracle *orc) {
    enum { N = 300 };
    char code[2048] = "import sys, numpy as np\n"
                      "R = [";
    for (size_t k = 0; k < NRANGES; k++) {
        size_t o = strlen(code);
        snprintf(code + o, sizeof code - o, "(%lld, %lld), ", (long long)ranges[k][0],
                 (long long)ranges[k][1]);
    }
    strcat(code, "]\n"
                 "for s in " SEED_LIST ":\n"
                 "    r = np.random.RandomState(s)\n"
                 "    for lo, hi in R:\n"
                 "        v = r.randint(lo, hi, size=300)\n"
                 "        assert v.dtype == np.int64\n"
                 "        W(v.astype('<i8').tobytes())\n"
                 "        W(np.int64(r.randint(lo, hi)).tobytes())\n");
    size_t len;
    char *want = section(orc, code, &len);
    cr_assert_eq(len, NSEEDS * NRANGES * (N + 1) * 8);
    const char *p = want;
    for (size_t s = 0; s < NSEEDS; s++) {
        wsml_rng r;
        wsml_rng_seed(&r, seeds[s]);
        for (size_t k = 0; k < NRANGES; k++) {
            int64_t v[N + 1];
            for (int i = 0; i <= N; i++) {
                v[i] = wsml_rng_randint(&r, ranges[k][0], ranges[k][1]);
                cr_assert(v[i] >= ranges[k][0] && v[i] < ranges[k][1]);
            }
            char what[96];
            snprintf(what, sizeof what, "randint(%lld, %lld)", (long long)ranges[k][0],
                     (long long)ranges[k][1]);
            expect_same(v, p, N + 1, 8, what, seeds[s], N + 1);
            p += (N + 1) * 8;
        }
    }
}

static void interval_equals_numpy_randint_closed(struct oracle *orc) {
    // random_interval(max) is what randint(0, max + 1) draws, masked rejection included.
    static const uint64_t maxes[] = {0,
                                     1,
                                     2,
                                     3,
                                     6,
                                     7,
                                     8,
                                     1000,
                                     65535,
                                     4294967294ull,
                                     4294967295ull,
                                     4294967296ull,
                                     (1ull << 40) + 12345,
                                     9223372036854775806ull};
    enum { N = 200 };
    char code[2048] = "import sys, numpy as np\nM = [";
    for (size_t k = 0; k < sizeof maxes / sizeof *maxes; k++) {
        size_t o = strlen(code);
        snprintf(code + o, sizeof code - o, "%llu, ", (unsigned long long)maxes[k]);
    }
    strcat(code, "]\n"
                 "for s in " SEED_LIST ":\n"
                 "    r = np.random.RandomState(s)\n"
                 "    for m in M:\n"
                 "        W(r.randint(0, m + 1, size=200).astype('<i8').tobytes())\n");
    size_t len;
    char *want = section(orc, code, &len);
    const char *p = want;
    for (size_t s = 0; s < NSEEDS; s++) {
        wsml_rng r;
        wsml_rng_seed(&r, seeds[s]);
        for (size_t k = 0; k < sizeof maxes / sizeof *maxes; k++) {
            uint64_t v[N];
            for (int i = 0; i < N; i++) {
                v[i] = wsml_rng_interval(&r, maxes[k]);
                cr_assert_leq(v[i], maxes[k]);
            }
            expect_same(v, p, N, 8, "random_interval", seeds[s], N);
            p += N * 8;
        }
    }
    cr_assert_eq((size_t)(p - want), len);
}

static void uniform_and_normal_equal_numpy(struct oracle *orc) {
    enum { N = 1001 }; // odd: the cached second Gaussian is carried across calls
    size_t len;
    char *want = section(orc,
                         "import sys, numpy as np\n"
                         "for s in " SEED_LIST ":\n"
                         "    r = np.random.RandomState(s)\n"
                         "    u = r.uniform(-3.5, 2.25, size=1001)\n"
                         "    g = r.standard_normal(1001)\n"
                         "    g2 = np.array([r.standard_normal() for _ in range(1001)])\n"
                         "    W(np.concatenate([u, g, g2]).astype('<f8').tobytes())\n",
                         &len);
    cr_assert_eq(len, NSEEDS * 3 * N * 8);
    for (size_t s = 0; s < NSEEDS; s++) {
        wsml_rng r;
        wsml_rng_seed(&r, seeds[s]);
        double v[3 * N];
        for (int i = 0; i < N; i++)
            v[i] = wsml_rng_uniform(&r, -3.5, 2.25);
        for (int i = N; i < 3 * N; i++)
            v[i] = wsml_rng_normal(&r);
        expect_same(v, want + s * 3 * N * 8, N, 8, "uniform(-3.5, 2.25)", seeds[s], N);
        expect_same(v + N, want + s * 3 * N * 8 + N * 8, 2 * N, 8, "standard_normal", seeds[s],
                    2 * N);
    }
}

// Every call interleaved on one state, the way the label simulation and splits use it.
static void interleaved_calls_equal_numpy(struct oracle *orc) {
    size_t len;
    char *want =
        section(orc,
                "import sys, numpy as np\n"
                "out = []\n"
                "for s in " SEED_LIST ":\n"
                "    r = np.random.RandomState(s)\n"
                "    for it in range(50):\n"
                "        out += [float(r.randint(0, 10)), r.random_sample(), r.standard_normal()]\n"
                "        out += [float(x) for x in r.permutation(7)]\n"
                "        a = np.arange(5, dtype=np.float64); r.shuffle(a); out += a.tolist()\n"
                "        out += [r.uniform(1, 2), float(r.randint(-3, 3))]\n"
                "W(np.array(out, '<f8').tobytes())\n",
                &len);
    size_t per = 50 * (3 + 7 + 5 + 2);
    cr_assert_eq(len, NSEEDS * per * 8);
    double *got = malloc(NSEEDS * per * sizeof *got);
    size_t o = 0;
    for (size_t s = 0; s < NSEEDS; s++) {
        wsml_rng r;
        wsml_rng_seed(&r, seeds[s]);
        for (int it = 0; it < 50; it++) {
            got[o++] = (double)wsml_rng_randint(&r, 0, 10);
            got[o++] = wsml_rng_double(&r);
            got[o++] = wsml_rng_normal(&r);
            int64_t p[7];
            wsml_rng_permutation(&r, p, 7);
            for (int i = 0; i < 7; i++)
                got[o++] = (double)p[i];
            double a[5] = {0, 1, 2, 3, 4};
            wsml_rng_shuffle(&r, a, 5, sizeof *a);
            for (int i = 0; i < 5; i++)
                got[o++] = a[i];
            got[o++] = wsml_rng_uniform(&r, 1, 2);
            got[o++] = (double)wsml_rng_randint(&r, -3, 3);
        }
    }
    expect_same(got, want, NSEEDS * per, 8, "interleaved sequence", 0, NSEEDS * per);
    free(got);
}

// Seeding, raw 32-bit output, random_sample, permutation and shuffle.
Test(rng, streams_equal_numpy) {
    static const check_fn checks[] = {seeding_equals_numpy_state, u32_stream_equals_numpy,
                                      random_sample_equals_numpy, permutation_equals_numpy,
                                      shuffle_any_element_size_equals_numpy};
    run_checks(checks, sizeof checks / sizeof *checks);
}

// randint, random_interval, uniform, standard_normal, and all of them interleaved.
Test(rng, draws_equal_numpy) {
    static const check_fn checks[] = {randint_equals_numpy, interval_equals_numpy_randint_closed,
                                      uniform_and_normal_equal_numpy,
                                      interleaved_calls_equal_numpy};
    run_checks(checks, sizeof checks / sizeof *checks);
}

// The state bytes a checkpoint would keep, taken mid-stream with a Gaussian cached, are
// numpy's get_state() at that point, and loaded into another generator (seeded
// differently, mid-stream too) they continue numpy's uninterrupted stream.
static void state_bytes_equal_numpy_and_resume(struct oracle *orc) {
    enum { NORMALS = 1001, U32S = 777, MORE = 5000 };
    size_t len;
    char *want =
        section(orc,
                "import numpy as np\n"
                "r = np.random.RandomState(1200)\n"
                "r.standard_normal(1001)\n" // odd: the pair's second value is cached
                "r.randint(0, 2**32, size=777, dtype=np.uint32)\n"
                "_, key, pos, has_gauss, gauss = r.get_state()\n"
                "W(key.astype('<u4').tobytes())\n"
                "W(np.array([pos, has_gauss], '<i4').tobytes() + np.float64(gauss).tobytes())\n"
                "for _ in range(5000):\n"
                "    W(np.float64(r.standard_normal()).tobytes())\n"
                "    W(np.uint32(r.randint(0, 2**32, dtype=np.uint32)).tobytes())\n",
                &len);
    cr_assert_eq(len, 624 * 4 + 16 + MORE * 12);
    wsml_rng a;
    wsml_rng_seed(&a, 1200);
    for (int i = 0; i < NORMALS; i++)
        wsml_rng_normal(&a);
    for (int i = 0; i < U32S; i++)
        wsml_rng_u32(&a);
    unsigned char saved[WSML_RNG_STATE_BYTES];
    memcpy(saved, &a, sizeof saved);
    memset(&a, 0xff, sizeof a); // the saved bytes are all that is left

    wsml_rng b;
    wsml_rng_seed(&b, 7);
    for (int i = 0; i < 333; i++)
        wsml_rng_normal(&b);
    memcpy(&b, saved, sizeof b);
    expect_same(b.mt, want, 624, 4, "MT19937 key in the state bytes", 1200, 624);
    int32_t pos, has_gauss;
    double gauss;
    memcpy(&pos, want + 624 * 4, 4);
    memcpy(&has_gauss, want + 624 * 4 + 4, 4);
    memcpy(&gauss, want + 624 * 4 + 8, 8);
    cr_assert_eq(b.pos, pos, "position: ours %d, numpy %d", b.pos, pos);
    cr_assert_eq(b.has_gauss, 1, "a Gaussian is cached after an odd count");
    cr_assert_eq(has_gauss, 1);
    cr_assert_eq(b.gauss, gauss, "cached Gaussian: ours %.17g, numpy %.17g", b.gauss, gauss);
    const char *p = want + 624 * 4 + 16;
    for (int i = 0; i < MORE; i++, p += 12) {
        double g = wsml_rng_normal(&b);
        uint32_t u = wsml_rng_u32(&b);
        expect_same(&g, p, 1, 8, "standard_normal after loading the state", 1200, (size_t)i);
        expect_same(&u, p + 8, 1, 4, "u32 after loading the state", 1200, (size_t)i);
    }
}

Test(rng, state_bytes_resume_the_stream) {
    static const check_fn checks[] = {state_bytes_equal_numpy_and_resume};
    run_checks(checks, 1);
}

Test(rng, degenerate_arguments) {
    wsml_rng r;
    wsml_rng_seed(&r, 0);
    wsml_rng before = r;
    int64_t one = 42;
    wsml_rng_shuffle(&r, &one, 1, sizeof one); // nothing to do, no draw
    wsml_rng_shuffle(&r, NULL, 0, 8);
    cr_assert_eq(one, 42);
    cr_assert_eq(wsml_rng_interval(&r, 0), 0u);
    cr_assert_eq(wsml_rng_randint(&r, 9, 10), 9); // a one-value range draws nothing (as numpy)
    cr_assert_eq(memcmp(&before, &r, sizeof r), 0, "no random numbers may be consumed");
    cr_assert_eq(wsml_rng_randint(&r, 5, 5), 5, "empty range returns low");
}
