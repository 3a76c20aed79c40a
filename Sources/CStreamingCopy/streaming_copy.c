#include "CStreamingCopy.h"
#include <stdint.h>
#include <string.h>
#if defined(__x86_64__)
#include <emmintrin.h>
#endif

void coffer_copy_streaming(void *destination, const void *source, size_t n) {
#if defined(__x86_64__)
    unsigned char *d = destination;
    const unsigned char *s = source;
    size_t head = (64 - ((uintptr_t)d & 63)) & 63;
    if (n < head + 4096) {
        memcpy(d, s, n);
        return;
    }
    memcpy(d, s, head);
    d += head;
    s += head;
    n -= head;
    // One cache line a turn, SSE2 (every x86-64 has it): unaligned loads, streaming stores.
    while (n >= 64) {
        __m128i a = _mm_loadu_si128((const __m128i *)s);
        __m128i b = _mm_loadu_si128((const __m128i *)(s + 16));
        __m128i c = _mm_loadu_si128((const __m128i *)(s + 32));
        __m128i e = _mm_loadu_si128((const __m128i *)(s + 48));
        _mm_stream_si128((__m128i *)d, a);
        _mm_stream_si128((__m128i *)(d + 16), b);
        _mm_stream_si128((__m128i *)(d + 32), c);
        _mm_stream_si128((__m128i *)(d + 48), e);
        d += 64;
        s += 64;
        n -= 64;
    }
    // Streaming stores are weakly ordered: fence them before anyone else (the thread that
    // writes the buffer out) can be told the bytes are there.
    _mm_sfence();
    memcpy(d, s, n);
#else
    memcpy(destination, source, n);
#endif
}
