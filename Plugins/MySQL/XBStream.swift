import CMariaDB
import Foundation

/// One chunk of mariabackup's xbstream (the layout of MariaDB's extra/mariabackup/xbstream.h):
/// the magic "XBSTCK01", flags (1 byte; bit 0: a reader may skip the chunk if it does not know
/// its type), type (1 byte: 'P' payload, 'E' end of a file), path length (4, little-endian)
/// and path; a chunk other than 'E' then has the payload length (8), the payload's offset in
/// its file (8), the CRC-32 of the payload (4; ISO 3309, zlib's) and the payload.
struct XBStreamChunk {
    enum Kind: Equatable { case payload, endOfFile, skipped }
    var kind: Kind
    var path: String
    var offset: UInt64 = 0
    var length: UInt64 = 0
    var checksum: UInt32 = 0
    /// Where the chunk starts in the stream, for errors.
    var streamOffset: UInt64
}

/// Reads an xbstream as it arrives: `next()` gives each chunk's header, then the caller must
/// take its payload with `payload(of:to:)` (which checks the CRC) before asking for the next.
final class XBStreamReader {
    static let magic = Array("XBSTCK01".utf8)
    /// MariaDB's FN_REFLEN: mbstream refuses longer paths.
    static let maxPath = 512
    private let source: (UnsafeMutableRawBufferPointer) throws -> Int
    private let buffer: UnsafeMutableRawBufferPointer
    private var start = 0
    private var end = 0
    private var consumed: UInt64 = 0
    private var payloadOwed: UInt64 = 0

    /// `read` fills the buffer it is given and returns the count, 0 at the end of the stream.
    init(bufferSize: Int = 1 << 20, read: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) {
        source = read
        buffer = .allocate(byteCount: bufferSize, alignment: 64)
    }

    deinit { buffer.deallocate() }

    /// The next chunk's header; nil where the stream ends cleanly (between chunks).
    func next() throws -> XBStreamChunk? {
        precondition(payloadOwed == 0, "the previous chunk's payload was not read")
        let at = consumed
        guard try fill(14, atStart: true) else { return nil }
        let head = UnsafeRawBufferPointer(rebasing: buffer[start..<start + 14])
        guard head.prefix(8).elementsEqual(XBStreamReader.magic) else {
            throw MySQLError("mariabackup's stream is not xbstream: no chunk magic at byte \(at)")
        }
        let flags = head[8]
        let type = head[9]
        let pathLength = Int(head.loadUnaligned(fromByteOffset: 10, as: UInt32.self).littleEndian)
        guard pathLength < XBStreamReader.maxPath else {
            throw MySQLError("xbstream chunk at byte \(at): path length \(pathLength) is too long")
        }
        take(14)
        try fill(pathLength)
        let path = String(decoding: UnsafeRawBufferPointer(rebasing: buffer[start..<start + pathLength]), as: UTF8.self)
        take(pathLength)
        let kind: XBStreamChunk.Kind
        switch type {
        case UInt8(ascii: "E"): return XBStreamChunk(kind: .endOfFile, path: path, streamOffset: at)
        case UInt8(ascii: "P"): kind = .payload
        default:
            guard flags & 1 != 0 else {
                throw MySQLError("xbstream chunk at byte \(at) (\(path)) has the unknown type \(type) and may not be skipped")
            }
            kind = .skipped
        }
        try fill(20)
        let fields = UnsafeRawBufferPointer(rebasing: buffer[start..<start + 20])
        let chunk = XBStreamChunk(kind: kind, path: path,
                                  offset: fields.loadUnaligned(fromByteOffset: 8, as: UInt64.self).littleEndian,
                                  length: fields.loadUnaligned(fromByteOffset: 0, as: UInt64.self).littleEndian,
                                  checksum: fields.loadUnaligned(fromByteOffset: 16, as: UInt32.self).littleEndian,
                                  streamOffset: at)
        take(20)
        guard chunk.length <= 1 << 40, chunk.offset <= 1 << 50 else {
            throw MySQLError("xbstream chunk at byte \(at) (\(path)): length \(chunk.length) or offset \(chunk.offset) is absurd")
        }
        payloadOwed = chunk.length
        return chunk
    }

    /// Hands the chunk's payload on in pieces of at most the buffer's size, then checks its
    /// CRC-32 (a mismatch throws, after the pieces went out: the caller fails the job).
    func payload(of chunk: XBStreamChunk, to sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        var crc: UInt = 0
        while payloadOwed > 0 {
            if start == end {
                start = 0
                end = 0
                let n = try readSome(into: 0)
                guard n > 0 else { throw MySQLError("mariabackup's stream ended inside \(chunk.path)'s chunk at byte \(chunk.streamOffset)") }
                end = n
            }
            let n = Int(min(UInt64(end - start), payloadOwed))
            let piece = UnsafeRawBufferPointer(rebasing: buffer[start..<start + n])
            crc = crc32(crc, piece.baseAddress!.assumingMemoryBound(to: UInt8.self), UInt32(n))
            try sink(piece)
            take(n)
            payloadOwed -= UInt64(n)
        }
        guard UInt32(truncatingIfNeeded: crc) == chunk.checksum else {
            throw MySQLError("xbstream chunk of \(chunk.path) at byte \(chunk.streamOffset) fails its CRC-32 "
                             + "(\(String(UInt32(truncatingIfNeeded: crc), radix: 16)), the stream says \(String(chunk.checksum, radix: 16)))")
        }
    }

    private func take(_ n: Int) {
        start += n
        consumed += UInt64(n)
    }

    /// Makes `n` bytes available at `start`; false only when `atStart` and the stream ended
    /// before any of them.
    @discardableResult
    private func fill(_ n: Int, atStart: Bool = false) throws -> Bool {
        if end - start >= n { return true }
        if start > 0 {
            let kept = end - start
            if kept > 0 { buffer.baseAddress!.copyMemory(from: buffer.baseAddress! + start, byteCount: kept) }
            start = 0
            end = kept
        }
        while end < n {
            let got = try readSome(into: end)
            if got == 0 {
                if atStart && end == 0 { return false }
                throw MySQLError("mariabackup's stream ended inside a chunk header at byte \(consumed)")
            }
            end += got
        }
        return true
    }

    private func readSome(into offset: Int) throws -> Int {
        try source(UnsafeMutableRawBufferPointer(rebasing: buffer[offset...]))
    }
}
