#if canImport(Glibc)
import Glibc
#endif
import CStreamingCopy
import Dispatch
import Synchronization

/// Writes a file front to back with O_DIRECT where the file system allows it, through an
/// aligned staging buffer, so that large writes skip the page cache.
///
/// Why: on this project's machines a buffered write of 1.2 GB cost 2.7 s of kernel CPU
/// (page-cache allocation and copying) and its fsync 0.4 s more, against 0.3–0.6 s for the
/// same bytes with O_DIRECT. Packs and restored data files are written once and fsynced, so
/// the page cache only delays them; what reads them next (a restore, a starting server) is
/// not helped by their pages either.
///
/// O_DIRECT needs the buffer, the file offset and the length aligned. Whole aligned blocks
/// go direct; the last partial block is written through the page cache (O_DIRECT cleared on
/// the descriptor). A file system that refuses O_DIRECT (tmpfs, some network and FUSE file
/// systems) gets ordinary writes throughout. Either way the caller still fsyncs: O_DIRECT
/// does not make data or metadata durable.
///
/// Full buffers are written on a shared I/O queue, up to `depth` at once, while the caller
/// fills the next: a direct write waits for the device, and one at a time left the device
/// idle while the caller copied.
///
/// Used by one thread at a time.
public final class DirectWriter: @unchecked Sendable {
    /// Alignment for buffer, offsets and lengths: the largest logical block size in common use.
    public static let alignment = 4096

    public let fd: Int32
    /// Whether blocks still go direct (false once the file system refused it).
    public private(set) var direct: Bool
    private var buffer: UnsafeMutableRawBufferPointer
    private var filled = 0
    /// File offset of the buffer's first byte.
    private var offset: Int64
    private let describe: () -> String
    private let slots: DispatchSemaphore
    private let inFlight = DispatchGroup()
    /// What the background writes found: an error, or that O_DIRECT was refused.
    private let outcome = Mutex<(errno: Int32?, refused: Bool)>((nil, false))

    /// - Parameters:
    ///   - fd: a descriptor open for writing, positioned anywhere (writes use pwrite);
    ///   - offset: where the first byte goes; direct only when it is aligned;
    ///   - depth: full buffers being written at once;
    ///   - describe: names the file in errors.
    public init(fd: Int32, offset: Int64 = 0, depth: Int = 2, describe: @escaping () -> String) {
        self.fd = fd
        self.offset = offset
        self.describe = describe
        slots = DispatchSemaphore(value: max(1, depth))
        buffer = StagingBuffers.shared.take()
        direct = offset % Int64(Self.alignment) == 0 && Self.setDirect(fd, true)
    }

    deinit {
        // Background writes use the descriptor, which the owner closes after this.
        inFlight.wait()
        StagingBuffers.shared.give(buffer)
    }

    /// Writes all of `bytes` from `offset` on; the caller fsyncs and closes.
    public static func write(fd: Int32, offset: Int64 = 0, _ bytes: UnsafeRawBufferPointer,
                             describe: @escaping () -> String) throws {
        let writer = DirectWriter(fd: fd, offset: offset, describe: describe)
        try writer.write(bytes)
        try writer.finish()
    }

    /// Appends `bytes`; full buffers are written as they fill.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        var done = 0
        while done < bytes.count {
            let n = min(buffer.count - filled, bytes.count - done)
            // Streaming stores: the device reads the buffer, the CPU never does again, so its
            // lines need not be fetched first nor fill the cache (decision 022).
            coffer_copy_streaming(buffer.baseAddress! + filled, bytes.baseAddress! + done, n)
            filled += n
            done += n
            if filled == buffer.count { try submit() }
        }
    }

    /// Writes what is buffered and waits for every write; the descriptor is left open for the
    /// caller to fsync and close.
    public func finish() throws {
        inFlight.wait()
        try collect()
        try drain()
    }

    /// Hands the full buffer to the I/O queue and takes a fresh one; buffered mode writes it
    /// here instead.
    private func submit() throws {
        try collect()
        guard direct else { return try drain() }
        slots.wait()
        inFlight.enter()
        let full = UInt(bitPattern: buffer.baseAddress), count = filled, at = offset
        BlockingThreads.shared.run { [self] in
            let start = UnsafeRawPointer(bitPattern: full)!
            note(Self.pwriteAll(fd, start, count, at, direct: true))
            StagingBuffers.shared.give(UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(mutating: start), count: StagingBuffers.size))
            slots.signal()
            inFlight.leave()
        }
        buffer = StagingBuffers.shared.take()
        offset += Int64(count)
        filled = 0
    }

    /// Keeps what a background write found for `collect`.
    private func note(_ result: (errno: Int32?, refused: Bool)) {
        guard result.refused || result.errno != nil else { return }
        outcome.withLock {
            $0.refused = $0.refused || result.refused
            if $0.errno == nil { $0.errno = result.errno }
        }
    }

    /// Throws what a background write failed with; notes a refusal of O_DIRECT.
    private func collect() throws {
        let (errno, refused) = outcome.withLock { ($0.errno, $0.refused) }
        if refused { direct = false }
        if let errno { throw DirectWriterError(file: describe(), errno: errno) }
    }

    /// Writes the buffer here: its whole blocks direct, a partial last block through the page
    /// cache.
    private func drain() throws {
        var start = 0
        if direct {
            start = filled / Self.alignment * Self.alignment
            let result = Self.pwriteAll(fd, buffer.baseAddress!, start, offset, direct: true)
            if let errno = result.errno { throw DirectWriterError(file: describe(), errno: errno) }
            if result.refused { direct = false }
        }
        if start < filled {
            if direct {
                // Not a whole block: O_DIRECT would refuse it.
                direct = false
                Self.setDirect(fd, false)
            }
            let result = Self.pwriteAll(fd, buffer.baseAddress! + start, filled - start, offset + Int64(start), direct: false)
            if let errno = result.errno { throw DirectWriterError(file: describe(), errno: errno) }
        }
        offset += Int64(filled)
        filled = 0
    }

    /// pwrite of all `count` bytes at `offset`. A direct write the kernel refuses (EINVAL:
    /// it wants a larger alignment) clears O_DIRECT on the descriptor and is done buffered.
    private static func pwriteAll(_ fd: Int32, _ start: UnsafeRawPointer, _ count: Int, _ offset: Int64,
                                  direct: Bool) -> (errno: Int32?, refused: Bool) {
        var at = 0
        var refused = false
        while at < count {
            let n = pwrite(fd, start + at, count - at, off_t(offset + Int64(at)))
            if n < 0 {
                if errno == EINTR { continue }
                if direct, !refused, errno == EINVAL {
                    refused = true
                    setDirect(fd, false)
                    continue
                }
                return (errno, refused)
            }
            if n == 0 { return (EIO, refused) }
            at += n
        }
        return (nil, refused)
    }

    /// Sets or clears O_DIRECT on an open descriptor; false when the file system refuses.
    @discardableResult
    public static func setDirect(_ fd: Int32, _ on: Bool) -> Bool {
        let flags = fcntl(fd, F_GETFL)
        guard flags >= 0 else { return false }
        let wanted = on ? flags | oDirect : flags & ~oDirect
        return wanted == flags || fcntl(fd, F_SETFL, wanted) == 0
    }

    /// O_DIRECT, which Glibc's Swift module leaves out (it needs _GNU_SOURCE).
    #if arch(arm64) || arch(arm)
    static let oDirect: Int32 = 0o200000
    #else
    static let oDirect: Int32 = 0o40000
    #endif
}

/// Aligned staging buffers, kept for reuse: a fresh 4 MiB buffer per file would cost a
/// thousand page faults, once per pack.
///
/// Each is two transparent huge pages where the kernel has them (2 MiB-aligned, and
/// `MADV_HUGEPAGE` asks for them when THP is in `madvise` mode). A direct write goes to
/// the device in one request only if its memory is few enough physically contiguous
/// pieces: the virtio disk here takes 254 segments a request, so a 4 MiB write from
/// scattered 4 KiB pages can go out as five requests, the last of them 32 KiB; from two
/// huge pages, as one. A cold restore of the benchmark's cluster measured 4.0 → 3.1–3.5 s,
/// its writes ~1,700 requests of 1.8 MB on average instead of 3,900–6,900 of 0.45–0.8 MB
/// (decision 020). Without huge pages the buffers work as before.
final class StagingBuffers: Sendable {
    static let shared = StagingBuffers()
    static let size = 4 << 20
    /// Kept beyond this many, buffers are freed.
    private static let keep = 8
    static let hugePage = 2 << 20
    /// MADV_HUGEPAGE, which Glibc's Swift module leaves out.
    static let adviseHugePage: Int32 = 14
    /// Base addresses of free buffers, as integers: a pointer is not Sendable.
    private let kept = Mutex<[UInt]>([])

    func take() -> UnsafeMutableRawBufferPointer {
        if let address = kept.withLock({ $0.popLast() }) {
            return UnsafeMutableRawBufferPointer(start: UnsafeMutableRawPointer(bitPattern: address), count: Self.size)
        }
        // Mapped here, not from malloc: malloc may hand out heap memory whose pages are
        // already there (4 KiB ones), and the advice only shapes pages faulted in after it.
        // Mapped one huge page larger, then trimmed to a huge-page boundary at both ends.
        let span = Self.size + Self.hugePage
        guard let mapped = mmap(nil, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0),
              mapped != MAP_FAILED else { preconditionFailure("out of memory") }
        let lead = (Self.hugePage - Int(bitPattern: mapped) % Self.hugePage) % Self.hugePage
        if lead > 0 { munmap(mapped, lead) }
        if span - lead - Self.size > 0 { munmap(mapped + lead + Self.size, span - lead - Self.size) }
        let start = mapped + lead
        _ = madvise(start, Self.size, Self.adviseHugePage)   // a hint: refused or ignored, nothing changes
        return UnsafeMutableRawBufferPointer(start: start, count: Self.size)
    }

    func give(_ buffer: UnsafeMutableRawBufferPointer) {
        let address = UInt(bitPattern: buffer.baseAddress)
        let stored = kept.withLock { list -> Bool in
            guard list.count < Self.keep else { return false }
            list.append(address)
            return true
        }
        if !stored { munmap(buffer.baseAddress, Self.size) }
    }
}

public struct DirectWriterError: Error, CustomStringConvertible {
    public let file: String
    public let errno: Int32
    public var description: String { "cannot write \(file): \(String(cString: strerror(errno)))" }
}
