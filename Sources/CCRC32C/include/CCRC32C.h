#ifndef COFFER_CCRC32C_H
#define COFFER_CCRC32C_H

#include <stddef.h>
#include <stdint.h>

/// 1 when this CPU has a CRC-32C instruction the functions below use (x86-64 SSE4.2), else 0.
int coffer_crc32c_hardware(void);

/// Continues a CRC-32C (reflected, polynomial 0x82F63B78; start from 0xFFFFFFFF, finish by
/// inverting) over `count` bytes with the CPU's instruction. Call only when
/// coffer_crc32c_hardware() is 1.
uint32_t coffer_crc32c_update_hardware(uint32_t crc, const void *bytes, size_t count);

#endif
