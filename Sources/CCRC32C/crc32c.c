// CRC-32C with the SSE4.2 crc32 instruction: PostgreSQL checksums every WAL record with it,
// and checking a 16 MiB segment through tables took most of the plugin's work on each
// `coffer wal-push`. Compiled for SSE4.2 function by function, so the binary still runs on
// any x86-64; callers check coffer_crc32c_hardware() first and use tables otherwise.
#include "CCRC32C.h"

#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>

int coffer_crc32c_hardware(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    return (ecx & bit_SSE4_2) != 0;
}

__attribute__((target("sse4.2")))
uint32_t coffer_crc32c_update_hardware(uint32_t crc, const void *bytes, size_t count) {
    const unsigned char *p = bytes;
    uint64_t c = crc;
    // Records are short and unaligned: plain 8-byte steps, no alignment prologue needed.
    while (count >= 8) {
        uint64_t word;
        memcpy(&word, p, 8);
        c = __builtin_ia32_crc32di(c, word);
        p += 8;
        count -= 8;
    }
    uint32_t c32 = (uint32_t)c;
    while (count > 0) {
        c32 = __builtin_ia32_crc32qi(c32, *p);
        p++;
        count--;
    }
    return c32;
}

#else

int coffer_crc32c_hardware(void) { return 0; }

uint32_t coffer_crc32c_update_hardware(uint32_t crc, const void *bytes, size_t count) {
    (void)bytes;
    (void)count;
    return crc;
}

#endif
