/// An index file lists packs and the blobs inside them, so that a writer can dedupe and a
/// reader can find a blob without opening every pack header.
public struct IndexFile: Sendable {
    public var packs: [(id: PackID, entries: [PackEntry])] = []

    static let magic = Array("CFIX".utf8)
    static let version: UInt8 = 1

    public init(packs: [(id: PackID, entries: [PackEntry])] = []) { self.packs = packs }

    func encode() -> [UInt8] {
        var w = ByteWriter()
        w.raw(IndexFile.magic)
        w.u8(IndexFile.version)
        w.u32(UInt32(packs.count))
        for pack in packs {
            w.raw(pack.id.bytes)
            w.u32(UInt32(pack.entries.count))
            for e in pack.entries { e.encode(into: &w) }
        }
        return w.bytes
    }

    static func decode(_ plain: [UInt8]) throws -> IndexFile {
        var r = ByteReader(plain)
        guard try r.raw(4) == magic else { throw PackFormatError.badEntry("bad index magic") }
        let v = try r.u8()
        guard v == version else { throw PackFormatError.badEntry("unknown index version \(v)") }
        let packCount = Int(try r.u32())
        var file = IndexFile()
        for _ in 0..<packCount {
            let id = try r.id()
            let n = Int(try r.u32())
            guard n * PackEntry.encodedSize <= r.remaining else { throw ByteReaderError.truncated }
            file.packs.append((id, try (0..<n).map { _ in try PackEntry.decode(from: &r) }))
        }
        guard r.remaining == 0 else { throw PackFormatError.badEntry("trailing bytes in index") }
        return file
    }
}
