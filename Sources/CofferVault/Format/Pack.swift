/// A 32-byte SHA-256 of a pack file's bytes; also its file name.
public typealias PackID = BlobID

/// One blob's place inside a pack, as the pack header and the index record it.
public struct PackEntry: Sendable, Equatable {
    public var type: BlobType
    public var id: BlobID
    public var offset: UInt32
    /// Stored (sealed) length.
    public var length: UInt32
    /// Plaintext length before compression.
    public var rawLength: UInt32

    static let encodedSize = 1 + 32 + 4 + 4 + 4

    func encode(into w: inout ByteWriter) {
        w.u8(type.rawValue)
        w.raw(id.bytes)
        w.u32(offset)
        w.u32(length)
        w.u32(rawLength)
    }

    static func decode(from r: inout ByteReader) throws -> PackEntry {
        let t = try r.u8()
        guard let type = BlobType(rawValue: t) else { throw PackFormatError.badEntry("unknown blob type \(t)") }
        return PackEntry(type: type, id: try r.id(), offset: try r.u32(), length: try r.u32(), rawLength: try r.u32())
    }
}

enum PackFormatError: Error { case badEntry(String) }

/// Pack layout: the sealed blobs back to back, then the sealed header listing them, then the
/// header's sealed length as a little-endian u32. A reader that has only the pack (no index)
/// can find every blob from the tail.
public enum PackFormat {
    static let headerMagic = Array("CFPK".utf8)
    static let headerVersion: UInt8 = 1
    /// Sealed blob payloads start with this byte: how the rest is encoded.
    static let encodingRaw: UInt8 = 0
    static let encodingZstd: UInt8 = 1

    static func encodeHeader(_ entries: [PackEntry]) -> [UInt8] {
        var w = ByteWriter()
        w.raw(headerMagic)
        w.u8(headerVersion)
        w.u32(UInt32(entries.count))
        for e in entries { e.encode(into: &w) }
        return w.bytes
    }

    static func decodeHeader(_ plain: [UInt8]) throws -> [PackEntry] {
        var r = ByteReader(plain)
        guard try r.raw(4) == headerMagic else { throw PackFormatError.badEntry("bad header magic") }
        let version = try r.u8()
        guard version == headerVersion else { throw PackFormatError.badEntry("unknown header version \(version)") }
        let count = Int(try r.u32())
        guard count * PackEntry.encodedSize == r.remaining else { throw PackFormatError.badEntry("header length mismatch") }
        return try (0..<count).map { _ in try PackEntry.decode(from: &r) }
    }

    /// Seals one blob's plaintext into the front of `out`: compressed (through `scratch`) when
    /// that helps, then AES-GCM with id and type as associated data. Returns the sealed length.
    static func sealBlob(_ plain: UnsafeRawBufferPointer, id: BlobID, type: BlobType, key: [UInt8],
                         zstd: Zstd?, tables: Zstd.TableChoice? = nil, scratch: inout [UInt8], into out: inout [UInt8]) -> Int {
        let aad = AssociatedData.blob(id, type)
        if let zstd, let n = zstd.compress(plain, into: &scratch, tables: tables) {
            return withUnsafeBytes(of: encodingZstd) { flag in
                scratch.withUnsafeBytes {
                    AESGCM.seal(key: key, aad: aad, parts: [flag, UnsafeRawBufferPointer(rebasing: $0[0..<n])], into: &out, at: 0)
                }
            }
        }
        return withUnsafeBytes(of: encodingRaw) { flag in
            AESGCM.seal(key: key, aad: aad, parts: [flag, plain], into: &out, at: 0)
        }
    }

    /// Opens a sealed blob, returning its plaintext; nil when authentication or decoding fails.
    static func openBlob(_ sealed: UnsafeRawBufferPointer, id: BlobID, type: BlobType, rawLength: Int, key: [UInt8]) -> [UInt8]? {
        var body: [UInt8] = []
        guard let (encoding, n) = AESGCM.open(key: key, aad: AssociatedData.blob(id, type), sealed, splittingFirstByteInto: &body)
        else { return nil }
        switch encoding {
        case encodingRaw:
            return n == rawLength ? body : nil
        case encodingZstd:
            return body.withUnsafeBytes { Zstd.decompress(UnsafeRawBufferPointer(rebasing: $0[0..<n]), rawLength: rawLength) }
        default:
            return nil
        }
    }

    /// Opens a sealed blob into `out`, which holds exactly its `rawLength` bytes: a stored
    /// blob is decrypted straight into it, a compressed one decompressed into it. False when
    /// authentication or decoding fails, `out` then holding nothing to trust.
    static func openBlob(_ sealed: UnsafeRawBufferPointer, id: BlobID, type: BlobType, into out: UnsafeMutableRawBufferPointer,
                         key: [UInt8]) -> Bool {
        var compressed: UnsafeMutableRawBufferPointer?
        defer { compressed?.deallocate() }
        guard let (encoding, n) = AESGCM.open(key: key, aad: AssociatedData.blob(id, type), sealed, placingBody: { first, n in
            switch first {
            case encodingRaw:
                return n == out.count ? out.baseAddress : nil
            case encodingZstd:
                compressed = .allocate(byteCount: max(n, 1), alignment: 16)
                return compressed!.baseAddress
            default:
                return nil
            }
        }) else { return false }
        guard encoding == encodingZstd, let compressed else { return true }
        return Zstd.decompress(UnsafeRawBufferPointer(rebasing: compressed[0 ..< n]), into: out)
    }
}

/// Collects sealed blobs for one pack.
struct PackBuilder {
    private(set) var bytes: [UInt8]
    private(set) var entries: [PackEntry] = []

    init(buffer: [UInt8]) { bytes = buffer }

    var isEmpty: Bool { entries.isEmpty }
    var size: Int { bytes.count }

    mutating func add(id: BlobID, type: BlobType, sealed: UnsafeRawBufferPointer, rawLength: Int) {
        entries.append(PackEntry(type: type, id: id, offset: UInt32(bytes.count), length: UInt32(sealed.count),
                                 rawLength: UInt32(rawLength)))
        bytes.append(contentsOf: sealed)
    }

    /// Appends the sealed header and its length, and returns the pack's id: the SHA-256 of
    /// that tail. The header names every blob with its id, offset and length under a GCM
    /// tag, and each blob carries its own tag, so hashing the tail names the whole pack
    /// without hashing every byte a second time (the blob ids already did).
    mutating func finish(key: [UInt8]) -> PackID {
        let headerStart = bytes.count
        let header = PackFormat.encodeHeader(entries)
        let sealed = header.withUnsafeBytes { AESGCM.seal(key: key, aad: AssociatedData.packHeader, parts: [$0]) }
        bytes.append(contentsOf: sealed)
        withUnsafeBytes(of: UInt32(bytes.count - headerStart).littleEndian) { bytes.append(contentsOf: $0) }
        return bytes.withUnsafeBytes { PackID(bytes: SHA256.hash(UnsafeRawBufferPointer(rebasing: $0[headerStart...]))) }
    }

    /// Hands the buffer back for reuse.
    consuming func takeBuffer() -> [UInt8] { bytes }
}
