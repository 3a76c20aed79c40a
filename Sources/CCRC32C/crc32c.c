// CRC-32C with the SSE4.2 crc32 instruction: PostgreSQL checksums every WAL record with it,
// and checking a 16 MiB segment through tables took most of the plugin's work on each
// `coffer wal-push`. Compiled for SSE4.2 function by function, so the binary still runs on
// any x86-64; callers check coffer_crc32c_hardware() first and use tables otherwise.
#include "CCRC32C.h"

#include <string.h>

#if defined(__x86_64__)
#include <cpuid.h>
#include <pthread.h>

int coffer_crc32c_hardware(void) {
    unsigned int eax, ebx, ecx, edx;
    if (!__get_cpuid(1, &eax, &ebx, &ecx, &edx)) return 0;
    return (ecx & bit_SSE4_2) != 0;
}

// The crc32 instruction takes 3 cycles but can start every cycle: one chain of it runs at a
// third of the speed the CPU can give. Long inputs are cut into rounds of three lanes of
// LANE bytes, each lane a chain of its own (the second and third from 0), and the lanes are
// joined as CRC algebra allows: crc(s, A.B) = shift(crc(s, A), |B|) ^ crc(0, B), where
// shift appends |B| zero bytes, a linear map kept as four tables of 256 entries. The base
// backup checksums every data file for its manifest; at 3 GB one chain cost 0.36 CPU-s.
#define LANE 8192

static uint32_t lane_shift[4][256];
static pthread_once_t lane_shift_once = PTHREAD_ONCE_INIT;

__attribute__((target("sse4.2")))
static uint32_t append_zeros(uint32_t crc, size_t count) {
    uint64_t c = crc;
    for (size_t i = 0; i < count; i += 8) c = __builtin_ia32_crc32di(c, 0);
    return (uint32_t)c;
}

// The map is linear, so each table entry is the XOR of the images of its bits.
static void build_lane_shift(void) {
    uint32_t bit_image[32];
    for (int i = 0; i < 32; i++) bit_image[i] = append_zeros(1u << i, LANE);
    for (int k = 0; k < 4; k++) {
        for (int b = 0; b < 256; b++) {
            uint32_t v = 0;
            for (int j = 0; j < 8; j++) {
                if (b & (1 << j)) v ^= bit_image[8 * k + j];
            }
            lane_shift[k][b] = v;
        }
    }
}

static inline uint32_t shift_lane(uint32_t crc) {
    return lane_shift[0][crc & 0xff] ^ lane_shift[1][(crc >> 8) & 0xff] ^ lane_shift[2][(crc >> 16) & 0xff] ^
           lane_shift[3][crc >> 24];
}

__attribute__((target("sse4.2")))
uint32_t coffer_crc32c_update_hardware(uint32_t crc, const void *bytes, size_t count) {
    const unsigned char *p = bytes;
    uint64_t c = crc;
    if (count >= 3 * LANE) {
        pthread_once(&lane_shift_once, build_lane_shift);
        do {
            uint64_t c1 = 0, c2 = 0;
            for (size_t i = 0; i < LANE; i += 8) {
                uint64_t w0, w1, w2;
                memcpy(&w0, p + i, 8);
                memcpy(&w1, p + LANE + i, 8);
                memcpy(&w2, p + 2 * LANE + i, 8);
                c = __builtin_ia32_crc32di(c, w0);
                c1 = __builtin_ia32_crc32di(c1, w1);
                c2 = __builtin_ia32_crc32di(c2, w2);
            }
            c = shift_lane(shift_lane((uint32_t)c) ^ (uint32_t)c1) ^ (uint32_t)c2;
            p += 3 * LANE;
            count -= 3 * LANE;
        } while (count >= 3 * LANE);
    }
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
