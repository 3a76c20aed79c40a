import CofferCLI

// glibc's allocator by default maps buffers over 128 KiB afresh and gives freed memory back
// to the kernel, adjusting both thresholds as it goes; a restore's blobs and pack runs
// (64 KiB – 1 MiB, thousands a second) were then faulted in and zeroed by the kernel again
// and again. Fixed thresholds keep that memory for reuse: a cold restore of the benchmark's
// cluster measured 2.15–2.44 → 1.33–1.76 s of system time (decision 020). The memory held
// stays bounded by the pipelines' windows, plus at most 64 MiB kept free per arena.
@_silgen_name("mallopt") func mallopt(_ parameter: Int32, _ value: Int32) -> Int32
let mmapThreshold: Int32 = -3, trimThreshold: Int32 = -1   // M_MMAP_THRESHOLD, M_TRIM_THRESHOLD (malloc.h)
_ = mallopt(mmapThreshold, 4 << 20)
_ = mallopt(trimThreshold, 64 << 20)

Coffer.main()
