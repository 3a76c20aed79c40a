/// Little-endian writer/reader for the binary parts of the format (pack headers, index files).
struct ByteWriter {
    var bytes: [UInt8] = []

    mutating func u8(_ v: UInt8) { bytes.append(v) }
    mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes.append(contentsOf: $0) } }
    mutating func raw(_ v: [UInt8]) { bytes.append(contentsOf: v) }
}

struct ByteReader {
    let bytes: [UInt8]
    var offset = 0

    init(_ bytes: [UInt8]) { self.bytes = bytes }

    var remaining: Int { bytes.count - offset }

    mutating func u8() throws -> UInt8 {
        guard remaining >= 1 else { throw ByteReaderError.truncated }
        defer { offset += 1 }
        return bytes[offset]
    }

    mutating func u32() throws -> UInt32 {
        guard remaining >= 4 else { throw ByteReaderError.truncated }
        defer { offset += 4 }
        return bytes.withUnsafeBytes { UInt32(littleEndian: $0.loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }
    }

    mutating func raw(_ n: Int) throws -> [UInt8] {
        guard remaining >= n else { throw ByteReaderError.truncated }
        defer { offset += n }
        return Array(bytes[offset..<(offset + n)])
    }

    mutating func id() throws -> BlobID {
        guard remaining >= 32 else { throw ByteReaderError.truncated }
        defer { offset += 32 }
        return bytes.withUnsafeBytes { BlobID(bytes: UnsafeRawBufferPointer(rebasing: $0[offset..<(offset + 32)])) }
    }
}

enum ByteReaderError: Error { case truncated }
