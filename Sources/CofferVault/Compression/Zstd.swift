import CZstd
import Synchronization

/// zstd through libzstd. Compression contexts are pooled because creating one allocates
/// its match tables, which would cost more than compressing a small chunk; each keeps its
/// parameters from one blob to the next, which lets zstd reuse its tables without clearing.
public final class Zstd: Sendable {
    public let level: Int32
    private let pool = Mutex<[Context]>([])
    /// Contexts for inputs of at most `smallInput` bytes at levels 1 and 2 (zstd's "fast"
    /// strategy), whose hash table is 2^17 entries instead of the 2^13 or so zstd picks for
    /// an input that small. Measured on 64 KiB pieces of PostgreSQL pages of base64 text
    /// (`Benchmarks/postgres.sh`'s random_text): 585 MB/s against 477-497, the same bytes
    /// out to the last one in a thousand; pgbench's pages, 36x compressible, no slower. At
    /// 128 KiB and above the larger table was no faster or slower (337 against 553 MB/s at
    /// 1 MiB), so larger inputs keep zstd's own choice.
    private let smallPool = Mutex<[Context]>([])
    static let smallInput = 64 << 10
    static let smallHashLog: Int32 = 17

    /// A ZSTD_CCtx; used by one thread at a time (taken from and returned to the pool).
    private struct Context: @unchecked Sendable { let pointer: OpaquePointer }

    public init(level: Int) {
        self.level = Int32(max(min(level, Int(ZSTD_maxCLevel())), Int(ZSTD_minCLevel())))
    }

    deinit {
        pool.withLock { contexts in contexts.forEach { ZSTD_freeCCtx($0.pointer) } }
        smallPool.withLock { contexts in contexts.forEach { ZSTD_freeCCtx($0.pointer) } }
    }

    private func context(small: Bool) -> Context {
        let pooled = small ? smallPool.withLock { $0.popLast() } : pool.withLock { $0.popLast() }
        if let pooled { return pooled }
        let context = ZSTD_createCCtx()!
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level)
        if small { ZSTD_CCtx_setParameter(context, ZSTD_c_hashLog, Zstd.smallHashLog) }
        return Context(pointer: context)
    }

    /// Compressed bytes, or nil when compression would not shrink the input.
    public func compress(_ input: UnsafeRawBufferPointer) -> [UInt8]? {
        var out: [UInt8] = []
        return compress(input, into: &out).map { Array(out[0..<$0]) }
    }

    /// Compresses into the front of `out`, which grows when too small and never shrinks (it
    /// is a reused scratch buffer). Returns the compressed length, or nil when compression
    /// would not save at least 1/64 of the input.
    public func compress(_ input: UnsafeRawBufferPointer, into out: inout [UInt8]) -> Int? {
        guard input.count > 64 else { return nil }
        let bound = ZSTD_compressBound(input.count)
        let limit = min(bound, input.count - input.count / 64)
        let small = input.count <= Zstd.smallInput && (1...2).contains(level)
        let context = context(small: small)
        defer {
            if small { smallPool.withLock { $0.append(context) } } else { pool.withLock { $0.append(context) } }
        }
        out.grow(to: bound)
        let n = out.withUnsafeMutableBytes { buf in
            ZSTD_compress2(context.pointer, buf.baseAddress, bound, input.baseAddress, input.count)
        }
        guard ZSTD_isError(n) == 0, n < limit else { return nil }
        return n
    }

    /// Decompression contexts, pooled too: `ZSTD_decompress` makes one a call, some 160 KiB
    /// that the allocator maps and the kernel zeroes each time (a third of the CPU of a
    /// restore of 16 KiB blobs). At most `keptDecompressors` are kept.
    private static let decompressors = Mutex<[Context]>([])
    private static let keptDecompressors = 16

    public static func decompress(_ input: UnsafeRawBufferPointer, rawLength: Int) -> [UInt8]? {
        var ok = false
        let out = [UInt8](unsafeUninitializedCapacity: max(rawLength, 1)) { buf, initialized in
            ok = decompress(input, into: UnsafeMutableRawBufferPointer(rebasing: UnsafeMutableRawBufferPointer(buf)[0 ..< rawLength]))
            initialized = ok ? rawLength : 0
        }
        return ok ? out : nil
    }

    /// Decompresses a frame into `out`, which its content must fill exactly.
    public static func decompress(_ input: UnsafeRawBufferPointer, into out: UnsafeMutableRawBufferPointer) -> Bool {
        let context = decompressors.withLock { $0.popLast() } ?? Context(pointer: ZSTD_createDCtx()!)
        defer {
            let kept = decompressors.withLock { pool in
                guard pool.count < keptDecompressors else { return false }
                pool.append(context)
                return true
            }
            if !kept { ZSTD_freeDCtx(context.pointer) }
        }
        let n = ZSTD_decompressDCtx(context.pointer, out.baseAddress, out.count, input.baseAddress, input.count)
        return ZSTD_isError(n) == 0 && n == out.count
    }
}

enum ZstdFrame {
    static func contentSize(_ input: UnsafeRawBufferPointer) -> Int? {
        let n = ZSTD_getFrameContentSize(input.baseAddress, input.count)
        if n == ZSTD_CONTENTSIZE_ERROR || n == ZSTD_CONTENTSIZE_UNKNOWN { return nil }
        return Int(n)
    }
}
