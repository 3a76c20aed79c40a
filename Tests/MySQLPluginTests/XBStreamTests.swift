import XCTest
@testable import coffer_mysql

/// The xbstream reader on streams built here byte by byte (the layout of MariaDB's
/// xbstream.h), and the artifact names of the per-file layout.
final class XBStreamTests: XCTestCase {
    /// A payload chunk: magic, flags, 'P', path, length, offset, CRC-32, payload.
    static func payload(_ path: String, offset: UInt64, _ data: [UInt8], flags: UInt8 = 0, type: UInt8 = UInt8(ascii: "P")) -> [UInt8] {
        var out = Array("XBSTCK01".utf8) + [flags, type]
        out += le(UInt32(path.utf8.count)) + Array(path.utf8)
        out += le(UInt64(data.count)) + le(offset) + le(crc32(data)) + data
        return out
    }

    static func end(_ path: String) -> [UInt8] {
        Array("XBSTCK01".utf8) + [0, UInt8(ascii: "E")] + le(UInt32(path.utf8.count)) + Array(path.utf8)
    }

    static func le<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian) { Array($0) } }

    /// CRC-32 (ISO 3309), bit by bit: slow and obviously right.
    static func crc32(_ data: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for b in data {
            crc ^= UInt32(b)
            for _ in 0..<8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0xEDB8_8320 : crc >> 1 }
        }
        return ~crc
    }

    /// Reads `stream` in pieces of `step` bytes (as a pipe would hand it over).
    static func reader(_ stream: [UInt8], step: Int = 7, buffer: Int = 64) -> XBStreamReader {
        var at = 0
        return XBStreamReader(bufferSize: buffer) { out in
            let n = min(step, out.count, stream.count - at)
            out.copyBytes(from: stream[at..<at + n])
            at += n
            return n
        }
    }

    func testReadsInterleavedFilesWithTheirOffsets() throws {
        let a1 = (0..<300).map { UInt8($0 % 251) }, a2 = [UInt8](repeating: 7, count: 100), log = Array("redo".utf8)
        let stream = Self.payload("db/a.ibd", offset: 0, a1) + Self.payload("ib_logfile0", offset: 0, log)
            + Self.payload("db/a.ibd", offset: 300, a2) + Self.end("db/a.ibd") + Self.end("empty")
            + Self.payload("x", offset: 0, [], flags: 1, type: UInt8(ascii: "S")) + Self.end("ib_logfile0")
        let r = Self.reader(stream)
        var seen: [(XBStreamChunk.Kind, String, UInt64, [UInt8])] = []
        while let chunk = try r.next() {
            var bytes: [UInt8] = []
            if chunk.kind != .endOfFile { try r.payload(of: chunk) { bytes += $0 } }
            seen.append((chunk.kind, chunk.path, chunk.offset, bytes))
        }
        XCTAssertEqual(seen.map(\.1), ["db/a.ibd", "ib_logfile0", "db/a.ibd", "db/a.ibd", "empty", "x", "ib_logfile0"])
        XCTAssertEqual(seen.map(\.0), [.payload, .payload, .payload, .endOfFile, .endOfFile, .skipped, .endOfFile])
        XCTAssertEqual(seen[0].3, a1)
        XCTAssertEqual(seen[2].2, 300)
        XCTAssertEqual(seen[2].3, a2)
        XCTAssertEqual(seen[1].3, log)
    }

    func testABadChecksumFails() throws {
        var stream = Self.payload("db/a.ibd", offset: 0, [UInt8](repeating: 1, count: 200))
        stream[stream.count - 50] ^= 0x10
        let r = Self.reader(stream)
        let chunk = try XCTUnwrap(try r.next())
        XCTAssertThrowsError(try r.payload(of: chunk) { _ in }) { XCTAssertTrue("\($0)".contains("CRC-32"), "\($0)") }
    }

    func testATruncatedStreamFails() throws {
        let stream = Self.payload("db/a.ibd", offset: 0, [UInt8](repeating: 1, count: 200))
        let r = Self.reader(Array(stream.dropLast(10)))
        let chunk = try XCTUnwrap(try r.next())
        XCTAssertThrowsError(try r.payload(of: chunk) { _ in })
        XCTAssertThrowsError(try Self.reader(Array(stream.prefix(20))).next())
    }

    func testUnknownTypesThatMayNotBeSkippedFail() {
        let stream = Self.payload("x", offset: 0, [1], flags: 0, type: UInt8(ascii: "S"))
        XCTAssertThrowsError(try Self.reader(stream).next())
        XCTAssertThrowsError(try Self.reader(Array("XBSTCK02".utf8) + [0, 69, 0, 0, 0, 0]).next())
    }

    func testArtifactNamesRoundTripAndPathsAreChecked() throws {
        for (path, offset, run) in [("db/t@002d1.ibd", UInt64(0), 0), ("ib_logfile0", 36 << 20, 3), ("a/#sql-x/more/1/2", 16384, 9)] {
            let name = PhysicalLayout.artifactName(path: path, offset: offset, run: run)
            let parsed = try XCTUnwrap(PhysicalLayout.parse(name))
            XCTAssertEqual(parsed.path, path)
            XCTAssertEqual(parsed.offset, offset)
        }
        XCTAssertNil(PhysicalLayout.parse("schema.json"))
        for bad in ["../etc/passwd", "/etc/passwd", "a/../../b", "a//b", ""] {
            XCTAssertThrowsError(try PhysicalLayout.check(bad), bad)
        }
        XCTAssertTrue(PhysicalLayout.isPaged("shop/big.ibd"))
        XCTAssertTrue(PhysicalLayout.isPaged("ibdata1"))
        XCTAssertTrue(PhysicalLayout.isPaged("undo001"))
        XCTAssertFalse(PhysicalLayout.isPaged("ib_logfile0"))
        XCTAssertFalse(PhysicalLayout.isPaged("shop/t.frm"))
    }
}
