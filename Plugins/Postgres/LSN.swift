/// A PostgreSQL log sequence number ("16/B374D848") and the WAL segment names around it.
struct LSN: Comparable, CustomStringConvertible {
    let value: UInt64

    init(_ value: UInt64) { self.value = value }

    init?(_ text: String) {
        let parts = text.split(separator: "/")
        guard parts.count == 2, let hi = UInt64(parts[0], radix: 16), let lo = UInt64(parts[1], radix: 16) else { return nil }
        value = hi << 32 | lo
    }

    var description: String { String(value >> 32, radix: 16, uppercase: true) + "/" + String(value & 0xffff_ffff, radix: 16, uppercase: true) }

    static func < (a: LSN, b: LSN) -> Bool { a.value < b.value }

    /// The name of the WAL segment holding this position.
    func segmentName(timeline: UInt32, segmentSize: UInt64) -> String {
        let segno = value / segmentSize
        let perXLogId = 0x1_0000_0000 / segmentSize
        return hex8(UInt64(timeline)) + hex8(segno / perXLogId) + hex8(segno % perXLogId)
    }

    private func hex8(_ v: UInt64) -> String {
        let s = String(v, radix: 16, uppercase: true)
        return String(repeating: "0", count: max(0, 8 - s.count)) + s
    }
}
