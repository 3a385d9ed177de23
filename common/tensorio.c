// Element types and the half-precision conversions. Both conversions round to nearest
// even; the float16 path reproduces numpy's astype(float16) bit for bit (NaN payloads
// included), the bfloat16 path PyTorch's .to(torch.bfloat16) for every non-NaN value.
#include "common/tensorio.h"

#include <string.h>

size_t wsml_dtype_size(wsml_dtype dt, size_t str_chars) {
    switch (dt) {
    case WSML_DT_F64:
    case WSML_DT_I64:
        return 8;
    case WSML_DT_F32:
    case WSML_DT_I32:
        return 4;
    case WSML_DT_F16:
    case WSML_DT_BF16:
        return 2;
    case WSML_DT_I8:
    case WSML_DT_U8:
    case WSML_DT_BOOL:
        return 1;
    case WSML_DT_STR:
        return 4 * str_chars;
    }
    return 0;
}

const char *wsml_dtype_name(wsml_dtype dt) {
    static const char *names[] = {"F32", "F64", "F16", "BF16", "I8",
                                  "U8",  "I32", "I64", "BOOL", "STR"};
    return (unsigned)dt < sizeof names / sizeof *names ? names[dt] : "?";
}

static uint32_t f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static float bits_f32(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

float wsml_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, exp = (h >> 10) & 0x1f, mant = h & 0x3ffu;
    if (exp == 0x1f)
        return bits_f32(sign | 0x7f800000u | (mant << 13)); // inf/nan
    if (exp == 0) {
        if (mant == 0)
            return bits_f32(sign);
        // subnormal: value = mant * 2^-24
        float v = (float)mant * (1.0f / 16777216.0f);
        return sign ? -v : v;
    }
    return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

uint16_t wsml_f32_to_f16(float f) {
    uint32_t u = f32_bits(f), sign = (u >> 16) & 0x8000u;
    uint32_t abs = u & 0x7fffffffu;
    if (abs > 0x7f800000u) { // nan: keep the top payload bits, never turn into inf (as numpy)
        uint32_t payload = (abs & 0x7fffffu) >> 13;
        return (uint16_t)(sign | 0x7c00u | (payload ? payload : 1u));
    }
    if (abs == 0x7f800000u)
        return (uint16_t)(sign | 0x7c00u);
    if (abs >= 0x477ff000u)
        return (uint16_t)(sign | 0x7c00u); // rounds to >= 65520: inf
    if (abs < 0x38800000u) {               // below the smallest normal
        // subnormal or zero: round(abs_value / 2^-24) to nearest even
        float v = bits_f32(abs) * 16777216.0f; // exact scaling by 2^24
        uint32_t m = (uint32_t)v;
        float rem = v - (float)m;
        if (rem > 0.5f || (rem == 0.5f && (m & 1u)))
            m++;
        return (uint16_t)(sign | m);
    }
    uint32_t mant = abs & 0x7fffffu, exp = (abs >> 23) - 112;
    uint32_t h = (exp << 10) | (mant >> 13), rest = mant & 0x1fffu;
    if (rest > 0x1000u || (rest == 0x1000u && (h & 1u)))
        h++; // may carry into exponent: fine
    return (uint16_t)(sign | h);
}

float wsml_bf16_to_f32(uint16_t h) {
    return bits_f32((uint32_t)h << 16);
}

uint16_t wsml_f32_to_bf16(float f) {
    uint32_t u = f32_bits(f);
    if ((u & 0x7fffffffu) > 0x7f800000u)
        return (uint16_t)((u >> 16) | 0x40u); // quiet nan
    u += 0x7fffu + ((u >> 16) & 1u);
    return (uint16_t)(u >> 16);
}
