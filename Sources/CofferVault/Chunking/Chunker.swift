/// How a stream is cut into blobs; chosen per stream by whoever knows the data
/// (a plugin's hint, or `--chunker` on the command line).
public enum ChunkerSpec: Sendable, Equatable, CustomStringConvertible {
    /// Content-defined (FastCDC) with the vault's min/avg/max: for dumps and unknown streams.
    case contentDefined
    /// Fixed blocks of this many bytes: for page-structured files that change in place.
    case fixed(Int)
    /// The whole stream as one blob (up to `wholeLimit`, 16 MiB, a PostgreSQL WAL segment; a
    /// longer stream continues in blocks of that size): for log segments, written once.
    case whole

    public static let wholeLimit = 16 << 20

    public init(parsing text: String) throws {
        switch text {
        case "cdc": self = .contentDefined
        case "whole": self = .whole
        default:
            guard text.hasPrefix("fixed:"), let size = ByteSize.parse(String(text.dropFirst(6))),
                  size >= 512, size <= ChunkerSpec.wholeLimit
            else {
                throw VaultError.invalidArgument(
                    "unknown chunker '\(text)': use cdc, whole, or fixed:SIZE with SIZE from 512 to 16M (e.g. fixed:8K)")
            }
            self = .fixed(size)
        }
    }

    public var description: String {
        switch self {
        case .contentDefined: return "cdc"
        case .fixed(let size): return "fixed:\(size)"
        case .whole: return "whole"
        }
    }

    /// The largest chunk this spec can produce; sizes the read buffer.
    func maxChunk(_ params: ChunkerParameters) -> Int {
        switch self {
        case .contentDefined: return params.max
        case .fixed(let size): return size
        case .whole: return ChunkerSpec.wholeLimit
        }
    }
}

public enum ByteSize {
    /// "4096", "8K", "1M", "2G" (binary units).
    public static func parse(_ text: String) -> Int? {
        guard let last = text.last else { return nil }
        let units: [Character: Int] = ["K": 1 << 10, "k": 1 << 10, "M": 1 << 20, "m": 1 << 20, "G": 1 << 30, "g": 1 << 30]
        if let unit = units[last] {
            guard let n = Int(text.dropLast()) else { return nil }
            let (product, overflow) = n.multipliedReportingOverflow(by: unit)
            return overflow || n < 0 ? nil : product
        }
        return Int(text).flatMap { $0 < 0 ? nil : $0 }
    }
}

/// Reads a stream through a file descriptor-like source and yields chunks in order.
/// The buffer holds at least one maximal chunk so every cut sees the same bytes
/// whatever the read sizes were: that is what makes cuts deterministic.
public struct StreamChunker {
    let spec: ChunkerSpec
    private let cdc: FastCDC
    private let maxChunk: Int
    private var buffer: [UInt8]
    private var start = 0
    private var end = 0
    private var eof = false
    private let read: (UnsafeMutableRawBufferPointer) throws -> Int

    public init(spec: ChunkerSpec, cdc: FastCDC, read: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) {
        self.spec = spec
        self.cdc = cdc
        self.maxChunk = spec.maxChunk(cdc.parameters)
        // Fixed-size cuts tile the buffer exactly, so refills never move a remainder; for
        // content-defined cuts the remainder moved is under `max` per buffer's worth.
        let blocks = max(2, (16 << 20) / maxChunk)
        // Uninitialized: only bytes a read has filled are ever looked at, and a small file
        // touches (and so maps) only the pages it fills, not 16 MiB of zeroes per artifact.
        let size = blocks * self.maxChunk
        self.buffer = [UInt8](unsafeUninitializedCapacity: size) { _, count in count = size }
        self.read = read
    }

    /// The next chunk, or nil at the end of the stream.
    public mutating func next() throws -> [UInt8]? {
        var chunk: [UInt8] = []
        return try next(into: &chunk) ? chunk : nil
    }

    /// Replaces `chunk`'s content with the next chunk (reusing its capacity); false at the end.
    public mutating func next(into chunk: inout [UInt8]) throws -> Bool {
        chunk.removeAll(keepingCapacity: true)
        let cut = try nextCut()
        if cut == 0 { return false }
        chunk.append(contentsOf: buffer[start..<(start + cut)])
        start += cut
        return true
    }

    /// Copies the next chunk to `destination`, which has room for a maximal chunk; returns
    /// its length, 0 at the end.
    public mutating func next(copyingTo destination: UnsafeMutableRawPointer) throws -> Int {
        let cut = try nextCut()
        buffer.withUnsafeBytes { destination.copyMemory(from: $0.baseAddress! + start, byteCount: cut) }
        start += cut
        return cut
    }

    /// The length of the chunk at `start`, 0 at the end.
    private mutating func nextCut() throws -> Int {
        if end - start < maxChunk && !eof { try fill() }
        let available = end - start
        if available == 0 { return 0 }
        switch spec {
        case .contentDefined:
            return buffer.withUnsafeBufferPointer { cdc.cut(UnsafeBufferPointer(rebasing: $0[start..<end])) }
        case .fixed(let size):
            return min(size, available)
        case .whole:
            return min(ChunkerSpec.wholeLimit, available)
        }
    }

    private mutating func fill() throws {
        // Move the remainder to the front only when the tail cannot hold a maximal chunk.
        if start > 0 && buffer.count - start < maxChunk {
            let remaining = end - start
            if remaining > 0 {
                buffer.withUnsafeMutableBytes { b in
                    b.baseAddress!.copyMemory(from: b.baseAddress! + start, byteCount: remaining)
                }
            }
            start = 0
            end = remaining
        }
        while end < buffer.count && !eof {
            let n = try buffer.withUnsafeMutableBytes { b in
                try read(UnsafeMutableRawBufferPointer(rebasing: b[end...]))
            }
            if n == 0 { eof = true } else { end += n }
        }
    }
}
