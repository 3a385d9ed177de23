// numpy legacy RandomState, transcribed from its documented algorithms: MT19937 with
// init_genrand seeding (RandomState(int)), random_sample's 53-bit double, the masked
// rejection sampler random_interval, and the legacy shuffle/permutation/randint/gauss.
#include "common/rng.h"

#include <math.h>
#include <string.h>

#define MT_N 624
#define MT_M 397

void wsml_rng_seed(wsml_rng *r, uint32_t seed) {
    memset(r, 0, sizeof *r);
    for (int i = 0; i < MT_N; i++) {
        r->mt[i] = seed;
        seed = 1812433253u * (seed ^ (seed >> 30)) + (uint32_t)i + 1u;
    }
    r->pos = MT_N;
}

static void mt_generate(wsml_rng *r) {
    static const uint32_t mag01[2] = {0u, 0x9908b0dfu};
    int i;
    for (i = 0; i < MT_N - MT_M; i++) {
        uint32_t y = (r->mt[i] & 0x80000000u) | (r->mt[i + 1] & 0x7fffffffu);
        r->mt[i] = r->mt[i + MT_M] ^ (y >> 1) ^ mag01[y & 1u];
    }
    for (; i < MT_N - 1; i++) {
        uint32_t y = (r->mt[i] & 0x80000000u) | (r->mt[i + 1] & 0x7fffffffu);
        r->mt[i] = r->mt[i + (MT_M - MT_N)] ^ (y >> 1) ^ mag01[y & 1u];
    }
    uint32_t y = (r->mt[MT_N - 1] & 0x80000000u) | (r->mt[0] & 0x7fffffffu);
    r->mt[MT_N - 1] = r->mt[MT_M - 1] ^ (y >> 1) ^ mag01[y & 1u];
    r->pos = 0;
}

uint32_t wsml_rng_u32(wsml_rng *r) {
    if (r->pos >= MT_N)
        mt_generate(r);
    uint32_t y = r->mt[r->pos++];
    y ^= (y >> 11);
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= (y >> 18);
    return y;
}

static uint64_t rng_u64(wsml_rng *r) {
    uint64_t hi = wsml_rng_u32(r);
    return (hi << 32) | wsml_rng_u32(r);
}

double wsml_rng_double(wsml_rng *r) {
    int32_t a = (int32_t)(wsml_rng_u32(r) >> 5), b = (int32_t)(wsml_rng_u32(r) >> 6);
    return (a * 67108864.0 + b) / 9007199254740992.0;
}

uint64_t wsml_rng_interval(wsml_rng *r, uint64_t max) {
    if (max == 0)
        return 0;
    uint64_t mask = max, value;
    mask |= mask >> 1;
    mask |= mask >> 2;
    mask |= mask >> 4;
    mask |= mask >> 8;
    mask |= mask >> 16;
    mask |= mask >> 32;
    if (max <= 0xffffffffu) {
        while ((value = (wsml_rng_u32(r) & mask)) > max) {
        }
    } else {
        while ((value = (rng_u64(r) & mask)) > max) {
        }
    }
    return value;
}

// Legacy RandomState.shuffle of a 1-D array (numpy's _shuffle_raw): for i from n-1 down
// to 1, j = random_interval(i), swap a[i] and a[j]. Elements of any size.
void wsml_rng_shuffle(wsml_rng *r, void *a, size_t n, size_t size) {
    unsigned char *base = a;
    if (n < 2 || size == 0)
        return;
    for (size_t i = n - 1; i > 0; i--) {
        size_t j = (size_t)wsml_rng_interval(r, i);
        if (j == i)
            continue;
        unsigned char *x = base + i * size, *y = base + j * size;
        for (size_t o = 0; o < size; o += 64) { // swap through a small buffer
            unsigned char tmp[64];
            size_t m = size - o < sizeof tmp ? size - o : sizeof tmp;
            memcpy(tmp, x + o, m);
            memcpy(x + o, y + o, m);
            memcpy(y + o, tmp, m);
        }
    }
}

void wsml_rng_permutation(wsml_rng *r, int64_t *out, size_t n) {
    for (size_t i = 0; i < n; i++)
        out[i] = (int64_t)i;
    wsml_rng_shuffle(r, out, n, sizeof *out);
}

int64_t wsml_rng_randint(wsml_rng *r, int64_t low, int64_t high) {
    // Legacy randint (int64): off + a masked-rejection draw over [0, high-1-low]; a range
    // of exactly 2^32 values takes one raw 32-bit draw and no rejection (numpy's
    // random_bounded_uint64_fill). Sums are done in uint64 (wrapping), as numpy does.
    if (high <= low)
        return low; // numpy raises ValueError("low >= high")
    uint64_t range = (uint64_t)high - 1u - (uint64_t)low, v;
    if (range == 0xffffffffu)
        v = wsml_rng_u32(r);
    else if (range == UINT64_MAX)
        v = rng_u64(r);
    else
        v = wsml_rng_interval(r, range);
    return (int64_t)((uint64_t)low + v);
}

double wsml_rng_uniform(wsml_rng *r, double low, double high) {
    return low + (high - low) * wsml_rng_double(r);
}

double wsml_rng_normal(wsml_rng *r) {
    if (r->has_gauss) {
        r->has_gauss = 0;
        double g = r->gauss;
        r->gauss = 0;
        return g;
    }
    double x1, x2, r2;
    do {
        x1 = 2.0 * wsml_rng_double(r) - 1.0;
        x2 = 2.0 * wsml_rng_double(r) - 1.0;
        r2 = x1 * x1 + x2 * x2;
    } while (r2 >= 1.0 || r2 == 0.0);
    double f = sqrt(-2.0 * log(r2) / r2);
    r->gauss = f * x1;
    r->has_gauss = 1;
    return f * x2;
}
