import CofferCLI

// glibc's allocator by default maps buffers over 128 KiB afresh and gives freed memory back
// to the kernel, adjusting both thresholds as it goes; a backup's batches and a restore's
// blobs and pack runs (64 KiB – 16 MiB, thousands a second) were then faulted in and zeroed
// by the kernel again and again. Fixed thresholds keep that memory for reuse (decision 020):
// a full backup of the benchmark's cluster 9.3 → 8.4 CPU s, a cold restore's system time
// 2.07–2.15 → 1.64–1.73 s. What is held stays bounded by the pipelines'
// windows, plus at most 64 MiB kept free per arena.
@_silgen_name("mallopt") func mallopt(_ parameter: Int32, _ value: Int32) -> Int32
let mmapThreshold: Int32 = -3, trimThreshold: Int32 = -1   // M_MMAP_THRESHOLD, M_TRIM_THRESHOLD (malloc.h)
_ = mallopt(mmapThreshold, 32 << 20)   // glibc's own ceiling for its moving threshold
_ = mallopt(trimThreshold, 64 << 20)

Coffer.main()
