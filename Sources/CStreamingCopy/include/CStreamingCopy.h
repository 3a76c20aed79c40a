#ifndef COFFER_STREAMING_COPY_H
#define COFFER_STREAMING_COPY_H

#include <stddef.h>

/// Copies `n` bytes with non-temporal stores where the CPU has them (x86-64): for memory the
/// CPU will not read again, such as a buffer a direct write hands to the device. The
/// destination's cache lines are neither read first nor left in the cache. Elsewhere, and
/// for short copies, memcpy. The areas must not overlap.
void coffer_copy_streaming(void *destination, const void *source, size_t n);

#endif
