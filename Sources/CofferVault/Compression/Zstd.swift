import CZstd
import Synchronization

/// zstd through libzstd. Compression contexts are pooled because creating one allocates
/// its match tables, which would cost more than compressing a small chunk; each keeps its
/// parameters from one blob to the next, which lets zstd reuse its tables without clearing.
public final class Zstd: Sendable {
    public let level: Int32
    /// Pooled contexts, one list per `Tier` (by its raw value): a context keeps the hash table
    /// size it was made with.
    private let pools = Mutex<[[Context]]>(Tier.allCases.map { _ in [] })

    /// Contexts by the size of the table that finds matches (decision 021).
    enum Tier: Int, CaseIterable {
        /// At most 256 KiB (a physical file's blocks, small files) at levels 1-3: 2^12
        /// entries, 16 KiB, which stay in a core's 32 KiB L1 cache among the hashing and
        /// encryption of the same blocks. zstd picks 2^14 at level 1 for 128-256 KiB, 2^16 at
        /// level 3. PostgreSQL's 64 KiB blocks of base64 text through `coffer put`: 3.64 →
        /// 3.51 CPU s a GiB against the 2^17 entries used before; 256 KiB blocks, 3.69 → 3.35.
        case block
        /// Anything else: zstd's own parameters for the input's size.
        case other

        static let blockInput = 256 << 10
        static let blockHashLog: Int32 = 12

        init(inputSize: Int, level: Int32) {
            self = inputSize <= Tier.blockInput && (1...3).contains(level) ? .block : .other
        }

        var hashLog: Int32? { self == .block ? Tier.blockHashLog : nil }
    }

    /// A ZSTD_CCtx; used by one thread at a time (taken from and returned to the pool).
    private struct Context: @unchecked Sendable { let pointer: OpaquePointer }

    public init(level: Int) {
        self.level = Int32(max(min(level, Int(ZSTD_maxCLevel())), Int(ZSTD_minCLevel())))
    }

    deinit {
        pools.withLock { $0.joined().forEach { ZSTD_freeCCtx($0.pointer) } }
    }

    private func context(_ tier: Tier) -> Context {
        if let pooled = pools.withLock({ $0[tier.rawValue].popLast() }) { return pooled }
        let context = ZSTD_createCCtx()!
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level)
        if let hashLog = tier.hashLog { ZSTD_CCtx_setParameter(context, ZSTD_c_hashLog, hashLog) }
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
        let tier = Tier(inputSize: input.count, level: level)
        let context = context(tier)
        defer { pools.withLock { $0[tier.rawValue].append(context) } }
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
        let context = decompressors.withLock { $0.popLast() } ?? Context(pointer: ZSTD_createDCtx()!)
        defer {
            let kept = decompressors.withLock { pool in
                guard pool.count < keptDecompressors else { return false }
                pool.append(context)
                return true
            }
            if !kept { ZSTD_freeDCtx(context.pointer) }
        }
        var ok = false
        let out = [UInt8](unsafeUninitializedCapacity: max(rawLength, 1)) { buf, initialized in
            let n = ZSTD_decompressDCtx(context.pointer, buf.baseAddress, rawLength, input.baseAddress, input.count)
            ok = ZSTD_isError(n) == 0 && n == rawLength
            initialized = ok ? n : 0
        }
        return ok ? out : nil
    }
}

enum ZstdFrame {
    static func contentSize(_ input: UnsafeRawBufferPointer) -> Int? {
        let n = ZSTD_getFrameContentSize(input.baseAddress, input.count)
        if n == ZSTD_CONTENTSIZE_ERROR || n == ZSTD_CONTENTSIZE_UNKNOWN { return nil }
        return Int(n)
    }
}
