// Element types shared by .npy and safetensors I/O.
#ifndef WSML_TENSORIO_H
#define WSML_TENSORIO_H

#include <stddef.h>
#include <stdint.h>

typedef enum {
    WSML_DT_F32,
    WSML_DT_F64,
    WSML_DT_F16,
    WSML_DT_BF16,
    WSML_DT_I8,
    WSML_DT_U8,
    WSML_DT_I32,
    WSML_DT_I64,
    WSML_DT_BOOL,
    WSML_DT_STR, // numpy '<U{n}': fixed-width UTF-32LE strings, itemsize = 4*n
} wsml_dtype;

#define WSML_MAX_DIMS 8

// Size in bytes of one element (for WSML_DT_STR pass the width in characters).
size_t wsml_dtype_size(wsml_dtype dt, size_t str_chars);
const char *wsml_dtype_name(wsml_dtype dt);

// float16/bfloat16 <-> float32 (round to nearest even).
float wsml_f16_to_f32(uint16_t h);
uint16_t wsml_f32_to_f16(float f);
float wsml_bf16_to_f32(uint16_t h);
uint16_t wsml_f32_to_bf16(float f);

#endif
