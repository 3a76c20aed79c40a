import CZstd
import Synchronization

/// zstd through libzstd. Compression contexts are pooled because creating one allocates
/// its match tables, which would cost more than compressing a small chunk; each keeps its
/// parameters from one blob to the next, which lets zstd reuse its tables without clearing.
public final class Zstd: Sendable {
    public let level: Int32
    /// Contexts by the hash table they were set up with; each pool is used only for its kind.
    private let pools = Mutex<[TableKind: [Context]]>([:])

    /// The hash table a context compresses with. Inputs of at most `smallInput` bytes at levels
    /// 1 and 2 (zstd's "fast" strategy) get one of two set by hand; the rest zstd's own choice.
    /// - `large`, 2^17 entries (512 KiB): keeps the repeats of text drawn from a vocabulary
    ///   (tags, codes, keys kept as text) that a table sized for 64 KiB loses; such a block
    ///   stored a third smaller than with 2^12 (decision 021).
    /// - `cached`, 2^12 entries (16 KiB): stays in the core's L1 cache, where the large one
    ///   misses on nearly every probe; data without such repeats (pgbench's pages, base64 text)
    ///   compress to the same bytes within 0.03%, with 10% less CPU for a whole backup
    ///   (decision 021). `TableChoice` picks between them for each stream (decision 024).
    enum TableKind: Hashable { case zstds, large, cached }
    static let smallInput = 64 << 10
    static let largeHashLog: Int32 = 17
    static let cachedHashLog: Int32 = 12

    /// Compressions with each table so far (the tests' view of which one a stream got).
    private let largeUses = Atomic<Int>(0), cachedUses = Atomic<Int>(0)
    var uses: (large: Int, cached: Int) { (largeUses.load(ordering: .relaxed), cachedUses.load(ordering: .relaxed)) }

    /// A ZSTD_CCtx; used by one thread at a time (taken from and returned to the pool).
    private struct Context: @unchecked Sendable { let pointer: OpaquePointer }

    public init(level: Int) {
        self.level = Int32(max(min(level, Int(ZSTD_maxCLevel())), Int(ZSTD_minCLevel())))
    }

    deinit {
        pools.withLock { pools in pools.values.joined().forEach { ZSTD_freeCCtx($0.pointer) } }
    }

    private func context(_ kind: TableKind) -> Context {
        if let pooled = pools.withLock({ $0[kind]?.popLast() }) { return pooled }
        let context = ZSTD_createCCtx()!
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level)
        switch kind {
        case .zstds: break
        case .large: ZSTD_CCtx_setParameter(context, ZSTD_c_hashLog, Zstd.largeHashLog)
        case .cached: ZSTD_CCtx_setParameter(context, ZSTD_c_hashLog, Zstd.cachedHashLog)
        }
        return Context(pointer: context)
    }

    /// Compressed bytes, or nil when compression would not shrink the input.
    public func compress(_ input: UnsafeRawBufferPointer) -> [UInt8]? {
        var out: [UInt8] = []
        return compress(input, into: &out).map { Array(out[0..<$0]) }
    }

    /// Compresses into the front of `out`, which grows when too small and never shrinks (it
    /// is a reused scratch buffer). Returns the compressed length, or nil when compression
    /// would not save at least 1/64 of the input. `tables` is the stream's choice of hash
    /// table for small inputs; without one they get the large table.
    public func compress(_ input: UnsafeRawBufferPointer, into out: inout [UInt8], tables: TableChoice? = nil) -> Int? {
        guard input.count > 64 else { return nil }
        let limit = min(ZSTD_compressBound(input.count), input.count - input.count / 64)
        let n: Int?
        if input.count > Zstd.smallInput || !(1...2).contains(level) {
            n = compress(input, into: &out, with: .zstds)
        } else {
            switch tables?.next() ?? .large {
            case .large: n = compress(input, into: &out, with: .large)
            case .cached: n = compress(input, into: &out, with: .cached)
            case .trial: n = trial(input, into: &out, learning: tables!)
            }
        }
        guard let n, n < limit else { return nil }
        return n
    }

    /// Compresses a block with both tables, keeps the smaller output in `out`, and tells the
    /// stream's choice what each came to (incompressible counting as the input's size).
    private func trial(_ input: UnsafeRawBufferPointer, into out: inout [UInt8], learning tables: TableChoice) -> Int? {
        var other: [UInt8] = []
        let cached = compress(input, into: &out, with: .cached)
        let large = compress(input, into: &other, with: .large)
        tables.learn(cached: cached ?? input.count, large: large ?? input.count)
        guard let large, large < cached ?? Int.max else { return cached }
        out.grow(to: large)
        out.withUnsafeMutableBytes { o in other.withUnsafeBytes { o.baseAddress!.copyMemory(from: $0.baseAddress!, byteCount: large) } }
        return large
    }

    /// The whole compressed frame's length, or nil if zstd failed (it does not when `out`
    /// holds the bound).
    private func compress(_ input: UnsafeRawBufferPointer, into out: inout [UInt8], with kind: TableKind) -> Int? {
        let context = context(kind)
        defer { pools.withLock { $0[kind, default: []].append(context) } }
        switch kind {
        case .zstds: break
        case .large: largeUses.add(1, ordering: .relaxed)
        case .cached: cachedUses.add(1, ordering: .relaxed)
        }
        let bound = ZSTD_compressBound(input.count)
        out.grow(to: bound)
        let n = out.withUnsafeMutableBytes { buf in
            ZSTD_compress2(context.pointer, buf.baseAddress, bound, input.baseAddress, input.count)
        }
        return ZSTD_isError(n) == 0 ? n : nil
    }

    /// Which hash table one stream's small inputs get, learnt from the stream's own blocks
    /// (decision 024): now and then a block is compressed with both, the smaller output kept,
    /// and the stream goes on with the cached table as long as it stored that block at most
    /// 1% larger than the large one did. Until its first trial a stream gets the large table.
    /// Trials grow rarer while their answer stays the same, from every 8th block after a
    /// change to every 256th (16 MiB of 64 KiB blocks), so on a stream whose data keep their
    /// kind they cost under 0.5% more compression; a stream whose data change kind (a table of
    /// codes after one of free text, in one dump) follows within 16 MiB of the change.
    /// Blocks of one stream may be compressed on several threads at once.
    public final class TableChoice: Sendable {
        enum Plan: Equatable { case cached, large, trial }
        static let firstInterval = 8
        static let longestInterval = 256

        struct State {
            var cached = false
            /// Blocks until the next trial; -1 while one is under way.
            var untilTrial = 0
            var interval = TableChoice.firstInterval
            var trials = 0
        }
        private let state = Mutex(State())

        public init() {}

        var current: State { state.withLock { $0 } }

        func next() -> Plan {
            state.withLock { s in
                if s.untilTrial == 0 {
                    s.untilTrial = -1
                    return .trial
                }
                if s.untilTrial > 0 { s.untilTrial -= 1 }
                return s.cached ? .cached : .large
            }
        }

        func learn(cached: Int, large: Int) {
            state.withLock { s in
                let keepCached = cached <= large + large / 100
                let same = s.trials > 0 && keepCached == s.cached
                s.interval = same ? min(s.interval * 2, TableChoice.longestInterval) : TableChoice.firstInterval
                s.cached = keepCached
                s.untilTrial = s.interval
                s.trials += 1
            }
        }
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
