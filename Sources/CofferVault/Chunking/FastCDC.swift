/// Chunk size bounds for content-defined chunking; a vault parameter.
public struct ChunkerParameters: Codable, Sendable, Equatable {
    public var min: Int
    public var avg: Int
    public var max: Int

    /// 512 KiB / 1 MiB / 4 MiB: 1 TiB of data is about a million index entries.
    public static let standard = ChunkerParameters(average: 1 << 20)

    /// min = avg/2 (bytes below it are skipped, not hashed: the chunker's speed), max = 4·avg.
    public init(average: Int) {
        self.init(min: average / 2, avg: average, max: average * 4)
    }

    public init(min: Int, avg: Int, max: Int) {
        self.min = min
        self.avg = avg
        self.max = max
    }

    public func validate() throws {
        guard min >= 64, min < avg, avg < max, avg & (avg - 1) == 0, max <= ChunkerSpec.wholeLimit else {
            throw VaultError.invalidArgument(
                "chunk sizes must satisfy 64 <= min < avg < max <= 16M with avg a power of two (got \(min)/\(avg)/\(max))")
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
            // Two bytes a step: h advances by (h << 2) + (2·g[a] + g[b]), so the loop-carried
            // dependency is one shift and one add per two bytes, while the value after the
            // first byte, (h << 1) + g[a], is computed beside it for its own test. The cut
            // points are exactly those of the one-byte loop.
            while i + 1 < normal {
                let a = gp[Int(p[i])]
                let b = gp[Int(p[i + 1])]
                let first = (h << 1) &+ a
                if first & maskS == 0 { return i + 1 }
                h = (h << 2) &+ ((a << 1) &+ b)
                if h & maskS == 0 { return i + 2 }
                i += 2
            }
            while i < normal {
                h = (h << 1) &+ gp[Int(p[i])]
                if h & maskS == 0 { return i + 1 }
                i += 1
            }
            while i + 1 < end {
                let a = gp[Int(p[i])]
                let b = gp[Int(p[i + 1])]
                let first = (h << 1) &+ a
                if first & maskL == 0 { return i + 1 }
                h = (h << 2) &+ ((a << 1) &+ b)
                if h & maskL == 0 { return i + 2 }
                i += 2
            }
            while i < end {
                h = (h << 1) &+ gp[Int(p[i])]
                if h & maskL == 0 { return i + 1 }
                i += 1
            }
            return end
        }
    }

    /// The plain one-byte-a-step loop; the specification `cut` must agree with (tested).
    func referenceCut(_ data: UnsafeBufferPointer<UInt8>) -> Int {
        let n = data.count
        if n <= parameters.min { return n }
        let end = Swift.min(n, parameters.max)
        let normal = Swift.min(end, parameters.avg)
        var h: UInt64 = 0
        for i in parameters.min..<end {
            h = (h << 1) &+ gear[Int(data[i])]
            if h & (i < normal ? maskS : maskL) == 0 { return i + 1 }
        }
        return end
    }
}
