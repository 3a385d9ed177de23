// CRC32 of buffers of any size: zlib's crc32 (same polynomial and values), whose length
// argument is a uInt, taken in chunks. Used by store records and checkpoints.
#ifndef WSML_CHECKSUM_H
#define WSML_CHECKSUM_H

#include <stddef.h>
#include <stdint.h>

// crc continued over len bytes of buf; start with crc = 0 (zlib's crc32(0, Z_NULL, 0)).
uint32_t wsml_crc32(uint32_t crc, const void *buf, size_t len);

#endif
