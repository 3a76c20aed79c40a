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
        guard input.count > 64 else { return nil }
        let bound = ZSTD_compressBound(input.count)
        let context = pool.withLock { $0.popLast() } ?? Context(pointer: ZSTD_createCCtx()!)
        defer { pool.withLock { $0.append(context) } }
        let ctx = context.pointer
        // Only worth keeping if it saves at least 1/64 of the input.
        let limit = min(bound, input.count - input.count / 64)
        var out = [UInt8](unsafeUninitializedCapacity: bound) { buf, initialized in
            let n = ZSTD_compressCCtx(ctx, buf.baseAddress, bound, input.baseAddress, input.count, level)
            initialized = ZSTD_isError(n) != 0 ? 0 : n
        }
        guard !out.isEmpty, out.count < limit else { return nil }
        if out.capacity > out.count * 2 { out = Array(out) }
        return out
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
