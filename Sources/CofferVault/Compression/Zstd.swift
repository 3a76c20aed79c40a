import CZstd
import Synchronization

/// zstd through libzstd. Compression contexts are pooled because creating one allocates
/// its match tables, which would cost more than compressing a small chunk.
public final class Zstd: Sendable {
    public let level: Int32
    private let pool = Mutex<[Context]>([])

    /// A ZSTD_CCtx; used by one thread at a time (taken from and returned to the pool).
    private struct Context: @unchecked Sendable { let pointer: OpaquePointer }

    public init(level: Int) {
        self.level = Int32(max(min(level, Int(ZSTD_maxCLevel())), Int(ZSTD_minCLevel())))
    }

    deinit {
        pool.withLock { contexts in contexts.forEach { ZSTD_freeCCtx($0.pointer) } }
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
        let context = pool.withLock { $0.popLast() } ?? Context(pointer: ZSTD_createCCtx()!)
        defer { pool.withLock { $0.append(context) } }
        out.grow(to: bound)
        let n = out.withUnsafeMutableBytes { buf in
            ZSTD_compressCCtx(context.pointer, buf.baseAddress, bound, input.baseAddress, input.count, level)
        }
        guard ZSTD_isError(n) == 0, n < limit else { return nil }
        return n
    }

    public static func decompress(_ input: UnsafeRawBufferPointer, rawLength: Int) -> [UInt8]? {
        var ok = false
        let out = [UInt8](unsafeUninitializedCapacity: max(rawLength, 1)) { buf, initialized in
            let n = ZSTD_decompress(buf.baseAddress, rawLength, input.baseAddress, input.count)
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
