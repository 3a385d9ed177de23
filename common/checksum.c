// CRC32 in uInt-sized chunks (common/checksum.h).
#include "common/checksum.h"

#include <zlib.h>

uint32_t wsml_crc32(uint32_t crc, const void *buf, size_t len) {
    uLong c = crc;
    const Bytef *p = buf;
    while (len > 0) { // zlib's length is uInt
        uInt n = len > (1u << 30) ? (1u << 30) : (uInt)len;
        c = crc32(c, p, n);
        p += n;
        len -= n;
    }
    return (uint32_t)c;
}
