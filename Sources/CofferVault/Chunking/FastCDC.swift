/// Chunk size bounds for content-defined chunking; a vault parameter.
public struct ChunkerParameters: Codable, Sendable, Equatable {
    public var min: Int
    public var avg: Int
    public var max: Int

    /// 256 KiB / 1 MiB / 4 MiB: 1 TiB of data is about a million index entries.
    public static let standard = ChunkerParameters(min: 256 << 10, avg: 1 << 20, max: 4 << 20)

    public init(min: Int, avg: Int, max: Int) {
        self.min = min
        self.avg = avg
        self.max = max
    }

    public func validate() throws {
        guard min >= 64, min < avg, avg < max, avg & (avg - 1) == 0, max <= ChunkerSpec.wholeLimit else {
            throw VaultError.invalidArgument(
                "chunk sizes must satisfy 64 <= min < avg < max <= 64M with avg a power of two (got \(min)/\(avg)/\(max))")
        }
    }
}

/// FastCDC (Xia et al., 2016/2020) with normalized chunking, level 2: a stricter mask
/// before the average size and a looser one after it, which narrows the size spread.
/// The gear table is derived from the vault's chunker seed, so cut points do not reveal
/// content to someone who knows the algorithm but not the key.
public struct FastCDC: Sendable {
    public let parameters: ChunkerParameters
    private let gear: [UInt64]
    private let maskS: UInt64
    private let maskL: UInt64

    public init(parameters: ChunkerParameters, seed: [UInt8]) {
        self.parameters = parameters
        let mac = HMACSHA256(key: seed)
        var table = [UInt64]()
        table.reserveCapacity(256)
        for i in 0..<256 {
            let d = mac.mac(Array("coffer-gear".utf8) + [UInt8(i)])
            var v: UInt64 = 0
            for b in d[0..<8] { v = v << 8 | UInt64(b) }
            table.append(v)
        }
        gear = table
        let bits = parameters.avg.trailingZeroBitCount
        // The rolling value's high bits depend on the last 64 bytes; the low ones on fewer.
        // Masks therefore take the top bits.
        maskS = ~UInt64(0) << UInt64(64 - Swift.min(bits + 2, 63))
        maskL = ~UInt64(0) << UInt64(64 - Swift.max(bits - 2, 1))
    }

    /// Length of the first chunk of `data`; `data` must hold at least `max` bytes unless it is
    /// the end of the stream.
    public func cut(_ data: UnsafeBufferPointer<UInt8>) -> Int {
        let n = data.count
        if n <= parameters.min { return n }
        let end = Swift.min(n, parameters.max)
        let normal = Swift.min(end, parameters.avg)
        let p = data.baseAddress!
        return gear.withUnsafeBufferPointer { g -> Int in
            let gp = g.baseAddress!
            var h: UInt64 = 0
            var i = parameters.min
            while i < normal {
                h = (h << 1) &+ gp[Int(p[i])]
                if h & maskS == 0 { return i + 1 }
                i += 1
            }
            while i < end {
                h = (h << 1) &+ gp[Int(p[i])]
                if h & maskL == 0 { return i + 1 }
                i += 1
            }
            return end
        }
    }
}
