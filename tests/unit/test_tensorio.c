// common/tensorio: dtype sizes and names, float16 against numpy (every half, ~1.4M
// float32 patterns including every rounding tie) and bfloat16 rounding.
#define _GNU_SOURCE
#include <criterion/criterion.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common/tensorio.h"
#include "tests/unit/common_testutil.h"

Test(tensorio, sizes_and_names) {
    cr_assert_eq(wsml_dtype_size(WSML_DT_F32, 0), 4);
    cr_assert_eq(wsml_dtype_size(WSML_DT_F64, 0), 8);
    cr_assert_eq(wsml_dtype_size(WSML_DT_F16, 0), 2);
    cr_assert_eq(wsml_dtype_size(WSML_DT_BF16, 0), 2);
    cr_assert_eq(wsml_dtype_size(WSML_DT_I8, 0), 1);
    cr_assert_eq(wsml_dtype_size(WSML_DT_U8, 0), 1);
    cr_assert_eq(wsml_dtype_size(WSML_DT_I32, 0), 4);
    cr_assert_eq(wsml_dtype_size(WSML_DT_I64, 0), 8);
    cr_assert_eq(wsml_dtype_size(WSML_DT_BOOL, 0), 1);
    cr_assert_eq(wsml_dtype_size(WSML_DT_STR, 7), 28);
    cr_assert_str_eq(wsml_dtype_name(WSML_DT_BF16), "BF16");
    cr_assert_str_eq(wsml_dtype_name(WSML_DT_I64), "I64");
    cr_assert_str_eq(wsml_dtype_name((wsml_dtype)99), "?");
}

static uint32_t bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}

// float32 bit patterns: a stride over all 2^32 (every exponent, NaNs and subnormals),
// every float16 rounding tie and its neighbours (both signs), every bfloat16 tie.
#define PATTERNS                                                                                   \
    "import sys, numpy as np, warnings\n"                                                          \
    "warnings.simplefilter('ignore')\n"                                                            \
    "u = [np.arange(0, 2**32, 4099, dtype=np.uint64).astype(np.uint32)]\n"                         \
    "h = np.arange(0, 0x7c00, "                                                                    \
    "dtype=np.uint32).astype(np.uint16).view(np.float16).astype(np.float64)\n"                     \
    "mid = ((h[:-1] + h[1:]) / 2).astype(np.float32).view(np.uint32)\n"                            \
    "mid = np.concatenate([mid, [np.float32(65520).view(np.uint32)]]).astype(np.uint32)\n"         \
    "for d in (-1, 0, 1):\n"                                                                       \
    "    m = (mid.astype(np.int64) + d * (mid > 0)).astype(np.uint32)\n"                           \
    "    u += [m, m | np.uint32(1 << 31)]\n"                                                       \
    "hi = np.arange(65536, dtype=np.uint32) << 16\n"                                               \
    "u += [hi | 0x8000, hi | 0x7fff, hi | 0x8001, hi]\n"                                           \
    "u = np.concatenate(u).astype('<u4')\n"

// One Python run (numpy's import dominates the cost) gives: every half as float32, and
// for the float32 patterns numpy's astype(float16) and the bfloat16 rounding. bfloat16 is
// float32 rounded to 8 significant bits, nearest even (what PyTorch's .to(torch.bfloat16)
// does); the oracle derives it arithmetically in float64 (frexp and rint, which rounds
// half to even), independently of our bit manipulation -- importing torch would cost
// ~5 s of test time for the same answer.
Test(tensorio, conversions_equal_numpy) {
    size_t len;
    char *out = ct_python(
        PATTERNS
        "f = u.view(np.float32).astype(np.float16).view('<u2')\n"
        "x = u.view(np.float32).astype(np.float64)\n"
        "fin = np.isfinite(x)\n"
        "m, e = np.frexp(np.where(fin, x, 0))\n"
        "q = np.ldexp(1.0, np.maximum(e - 8, -133))  # quantum; bf16 subnormals below 2**-126\n"
        "r = np.rint(np.where(fin, x, 0) / q) * q\n"
        "r = np.where(fin, r, x).astype(np.float32)  # overflow past 2**128 becomes inf here\n"
        "b = (r.view('<u4') >> 16).astype('<u2')\n"
        "back = (b.astype('<u4') << 16)\n"
        "halves = np.arange(65536, dtype=np.uint32).astype('<u2').view(np.float16).astype('<f4')\n"
        "sys.stdout.buffer.write(halves.tobytes() + np.uint64(len(u)).tobytes() + u.tobytes()\n"
        "                        + f.tobytes() + b.tobytes() + back.tobytes())\n",
        NULL, &len);
    // every half -> float32, NaN payloads included
    for (uint32_t h = 0; h < 65536; h++) {
        uint32_t w, got = bits(wsml_f16_to_f32((uint16_t)h));
        memcpy(&w, out + 4 * h, 4);
        if (got != w)
            cr_assert_fail("half 0x%04x: ours 0x%08x, numpy 0x%08x", h, got, w);
    }
    const char *p = out + 65536 * 4;
    uint64_t n;
    memcpy(&n, p, 8);
    cr_assert_gt(n, 1000000);
    cr_assert_eq(len, 65536 * 4 + 8 + n * 12);
    const char *pu = p + 8, *ph = pu + n * 4, *pb = ph + n * 2, *pf = pb + n * 2;
    size_t ties16 = 0, ties_bf = 0;
    for (uint64_t i = 0; i < n; i++) {
        uint32_t u, back;
        uint16_t want16, want_bf;
        memcpy(&u, pu + 4 * i, 4);
        memcpy(&want16, ph + 2 * i, 2);
        memcpy(&want_bf, pb + 2 * i, 2);
        memcpy(&back, pf + 4 * i, 4);
        float f;
        memcpy(&f, &u, 4);
        uint16_t got = wsml_f32_to_f16(f);
        if (got != want16)
            cr_assert_fail("float32 0x%08x (%g) to float16: ours 0x%04x, numpy 0x%04x", u,
                           (double)f, got, want16);
        if ((u & 0x1fff) == 0x1000)
            ties16++;
        got = wsml_f32_to_bf16(f);
        if (isnan(f)) { // NaN payloads are not specified for bfloat16; NaN must stay NaN
            if (!isnan(wsml_bf16_to_f32(got)))
                cr_assert_fail("0x%08x: NaN became bfloat16 0x%04x", u, got);
            continue;
        }
        if (got != want_bf)
            cr_assert_fail("float32 0x%08x (%g) to bfloat16: ours 0x%04x, oracle 0x%04x", u,
                           (double)f, got, want_bf);
        if (bits(wsml_bf16_to_f32(got)) != back)
            cr_assert_fail("bf16 0x%04x back to float32", got);
        if ((u & 0xffff) == 0x8000)
            ties_bf++;
    }
    cr_assert_gt(ties16, 10000, "the patterns must include float16 rounding ties");
    cr_assert_gt(ties_bf, 10000, "the patterns must include bfloat16 rounding ties");
    free(out);
}

Test(tensorio, half_round_trips_and_specials) {
    for (uint32_t h = 0; h < 65536; h++) {
        float f = wsml_f16_to_f32((uint16_t)h);
        if (isnan(f))
            cr_assert(isnan(wsml_f16_to_f32(wsml_f32_to_f16(f))));
        else
            cr_assert_eq(wsml_f32_to_f16(f), h, "half 0x%04x does not round-trip", h);
        cr_assert_eq(wsml_f32_to_bf16(wsml_bf16_to_f32((uint16_t)h)),
                     isnan(wsml_bf16_to_f32((uint16_t)h)) ? (h | 0x40) : h);
    }
    cr_assert_eq(wsml_f32_to_f16(65504.0f), 0x7bff);
    cr_assert_eq(wsml_f32_to_f16(65520.0f), 0x7c00); // the tie above the largest half goes to inf
    cr_assert_eq(wsml_f32_to_f16(-1e9f), 0xfc00);
    cr_assert_eq(wsml_f32_to_f16(5.9604645e-08f), 0x0001); // smallest subnormal
    cr_assert_eq(wsml_f32_to_f16(2.9802322e-08f), 0x0000); // half of it: tie to even (0)
    cr_assert_eq(wsml_f32_to_bf16(3.0e38f * 10.0f), 0x7f80);
    cr_assert_eq(wsml_f32_to_bf16(1.0f), 0x3f80);
    cr_assert_eq(wsml_bf16_to_f32(0xc000), -2.0f);
}
