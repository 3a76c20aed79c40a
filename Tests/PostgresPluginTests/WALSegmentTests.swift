import CofferFixtures
import Foundation
import XCTest
@testable import coffer_postgres

/// WALSegment against WAL written by a real PostgreSQL 15, with pg_waldump as the oracle.
final class WALSegmentTests: XCTestCase {
    static let segmentSize = 16 * 1024 * 1024
    static let pageSize = 8192

    // MARK: Pure pieces

    func testCRC32CMatchesKnownValueAndBytewiseDefinition() {
        XCTAssertEqual(Array("123456789".utf8).withUnsafeBytes { CRC32C.checksum($0) }, 0xE306_9283)
        XCTAssertEqual([UInt8]().withUnsafeBytes { CRC32C.checksum($0) }, 0)
        // Every length and misalignment, against the one-bit-at-a-time definition.
        var generator = SystemRandomNumberGenerator()
        let bytes = (0 ..< 200).map { _ in UInt8.random(in: 0 ... 255, using: &generator) }
        for start in 0 ..< 9 {
            for end in start ... bytes.count {
                let slice = Array(bytes[start ..< end])
                XCTAssertEqual(slice.withUnsafeBytes { CRC32C.checksum($0) }, bitwiseCRC32C(slice), "bytes \(start)..<\(end)")
            }
        }
        // Long inputs go three lanes at a time (rounds of 24 KiB): lengths around whole
        // rounds, continued from any state, against the tables.
        let long = (0 ..< 100_000).map { _ in UInt8.random(in: 0 ... 255, using: &generator) }
        CRC32C.tables.withUnsafeBufferPointer { tables in
            long.withUnsafeBytes { all in
                for (start, count) in [(0, 24576), (3, 24575), (1, 24577), (5, 49152 + 13), (0, 100_000), (7, 73_727)] {
                    let state = UInt32.random(in: 0 ... .max, using: &generator)
                    XCTAssertEqual(CRC32C.update(state, all.baseAddress! + start, count: count, tables: tables),
                                   CRC32C.updateWithTables(state, all.baseAddress! + start, count: count, tables: tables),
                                   "\(count) bytes from \(start)")
                }
            }
        }
    }

    func testParseName() {
        XCTAssertEqual(WALSegment.parseName("000000010000001600000003").map { "\($0.timeline) \($0.start)" }, "1 16/3000000")
        XCTAssertEqual(WALSegment.parseName("0000000A00000001000000FF").map { "\($0.timeline) \($0.start)" }, "10 1/FF000000")
        XCTAssertEqual(WALSegment.parseName("000000010000000100000001", segmentSize: 1 << 30).map { "\($0.timeline) \($0.start)" }, "1 1/40000000")
        XCTAssertNil(WALSegment.parseName("000000010000000100000004", segmentSize: 1 << 30), "only 4 segments of 1 GiB per xlogid")
        XCTAssertNil(WALSegment.parseName("000000010000000000000100"), "only 256 segments of 16 MiB per xlogid")
        XCTAssertNil(WALSegment.parseName("000000000000000100000001"), "timeline 0 does not exist")
        XCTAssertNil(WALSegment.parseName("00000001000000000000000a"), "PostgreSQL writes upper case")
        XCTAssertNil(WALSegment.parseName("00000001000000000000000A.partial"))
        XCTAssertNil(WALSegment.parseName("00000002.history"))
    }

    // MARK: Against PostgreSQL

    /// Every segment of a workload (full ones that start and end inside records, two ended by
    /// pg_switch_wal) summarizes exactly as pg_waldump lists it.
    func testSummariesMatchPgWaldump() throws {
        let wal = try GeneratedWAL.shared.get()
        XCTAssertGreaterThanOrEqual(wal.segments.count, 3, "the workload spans several segments")
        var continuedRecords = 0, switchedSegments = 0
        for segment in wal.segments {
            let summary = try WALSegment.summarize(segment.bytes, name: segment.name)
            let start = try XCTUnwrap(WALSegment.parseName(segment.name)).start
            let oracle = WALOracle(wal.records, segmentStart: start.value, boundary: start.value + UInt64(Self.segmentSize))
            assertSummary(summary, matches: oracle, in: wal, segment.name)
            XCTAssertEqual(summary.timeline, 1)
            XCTAssertEqual(summary.start, start)
            XCTAssertEqual(summary.systemIdentifier, wal.systemIdentifier, segment.name)
            if oracle.complete.last?.kind == "SWITCH" {
                switchedSegments += 1
                XCTAssertTrue(summary.switched, segment.name)
                XCTAssertEqual(summary.end, .switchRecord, segment.name)
            } else {
                XCTAssertFalse(summary.switched)
                XCTAssertEqual(summary.end, .segmentFull(continuedRecord: oracle.continuedRecord.map { LSN($0.lsn) }), segment.name)
                if oracle.continuedRecord != nil { continuedRecords += 1 }
            }
        }
        XCTAssertGreaterThan(continuedRecords, 0, "some record crosses a segment boundary")
        XCTAssertEqual(switchedSegments, 2, "after the bulk load and at the end")

        // The last segment: the single transactions, the restore point, the switch.
        let last = try WALSegment.summarize(wal.segments.last!.bytes, name: wal.segments.last!.name)
        XCTAssertEqual(last.endOfRecords, wal.switchEnd, "the switch record ends where pg_switch_wal() says")
        XCTAssertEqual(last.restorePoints.map(\.name), ["coffer-test"])
        XCTAssertGreaterThanOrEqual(last.commits, 4, "three single commits and COMMIT PREPARED")
        XCTAssertGreaterThanOrEqual(last.aborts, 2, "ROLLBACK and ROLLBACK PREPARED")
        XCTAssertTrue(WALOracle(wal.records, segmentStart: last.start.value, boundary: last.start.value + UInt64(Self.segmentSize))
            .commitXids.contains(wal.preparedXid), "pg_waldump names the prepared xid for COMMIT PREPARED")
        XCTAssertGreaterThanOrEqual(last.maxXid ?? 0, wal.preparedXid, "COMMIT PREPARED counts the prepared xid, not its record's 0")
        let commitPrepared = try XCTUnwrap(wal.records.last { $0.kind == "COMMIT_PREPARED" })
        let point = try XCTUnwrap(last.restorePoints.first)
        XCTAssertGreaterThanOrEqual(microsSinceEpoch(point.time), WALOracle.micros(commitPrepared.description), "taken after COMMIT PREPARED")
        XCTAssertLessThanOrEqual(point.time, wal.restorePointTakenBy)
    }

    /// One flipped byte in a record's data fails its CRC: the parser does not throw, it ends the
    /// valid WAL before that record (`.invalidRecord`) and counts only the records before it.
    func testFlippedByteEndsValidWALBeforeTheRecord() throws {
        let wal = try GeneratedWAL.shared.get()
        let segment = try XCTUnwrap(wal.segments.last)
        let start = try XCTUnwrap(WALSegment.parseName(segment.name)).start.value
        // The last commit that lies within one page: flip the last byte of its data.
        let commit = try XCTUnwrap(wal.records.last { record in
            record.kind == "COMMIT" && record.lsn >= start
                && Int(record.lsn % UInt64(Self.pageSize)) + record.totalLength <= Self.pageSize
        })
        var bytes = segment.bytes
        bytes[Int(commit.lsn - start) + commit.totalLength - 1] ^= 0x01

        let summary = try WALSegment.summarize(bytes, name: segment.name)
        guard case .invalidRecord(let at, let reason) = summary.end else { return XCTFail("expected an invalid record, got \(summary.end)") }
        XCTAssertEqual(at, LSN(commit.lsn))
        XCTAssertTrue(reason.contains("CRC"), reason)
        XCTAssertFalse(summary.switched)
        XCTAssertEqual(summary.restorePoints, [])
        let oracle = WALOracle(wal.records, segmentStart: start, boundary: start + UInt64(Self.segmentSize), before: commit.lsn)
        XCTAssertEqual(summary.records, oracle.complete.count)
        XCTAssertEqual(summary.commits, oracle.commitTimes.count)
        XCTAssertEqual(summary.maxXid, oracle.commitXids.max())
        let previousEnd = commit.lsn % UInt64(Self.pageSize) == 24 ? commit.lsn - 24 : commit.lsn
        XCTAssertEqual(summary.endOfRecords, LSN(previousEnd), "the valid WAL ends where the damaged record starts")
    }

    /// A recycled segment keeps its old pages past what was written into it: the valid data
    /// ends at the first of them, and that is not an error.
    func testRecycledPagesEndTheWrittenData() throws {
        let wal = try GeneratedWAL.shared.get()
        let older = wal.segments[0], segment = wal.segments[1]
        let start = try XCTUnwrap(WALSegment.parseName(segment.name)).start.value
        let keptPages = 1000
        let boundary = keptPages * Self.pageSize
        var bytes = segment.bytes
        bytes.replaceSubrange(boundary..., with: older.bytes[boundary...])

        let summary = try WALSegment.summarize(bytes, name: segment.name)
        XCTAssertEqual(summary.end, .endOfWAL(at: LSN(start + UInt64(boundary))))
        let oracle = WALOracle(wal.records, segmentStart: start, boundary: start + UInt64(boundary))
        assertSummary(summary, matches: oracle, in: wal, segment.name + " with recycled pages")
    }

    func testFileThatDoesNotMatchItsNameOrFormatIsRejected() throws {
        let wal = try GeneratedWAL.shared.get()
        let segment = try XCTUnwrap(wal.segments.last)
        let (timeline, start) = try XCTUnwrap(WALSegment.parseName(segment.name))
        let nextName = LSN(start.value + UInt64(Self.segmentSize)).segmentName(timeline: timeline, segmentSize: UInt64(Self.segmentSize))

        assertRejected(segment.bytes, name: nextName, because: "the file name says")
        assertRejected(segment.bytes, name: segment.name + ".partial", because: "not a WAL segment file name")
        assertRejected(segment.bytes, name: segment.name, segmentSize: 2 * Self.segmentSize, because: "expected the segment size")
        assertRejected(segment.bytes.prefix(Self.segmentSize / 2), name: segment.name, because: "bytes, expected")

        var otherVersion = segment.bytes
        otherVersion[0] = 0x13  // PostgreSQL 16's magic is 0xD113
        assertRejected(otherVersion, name: segment.name, because: "expected 0xD110")

        let full = wal.segments[1]
        var garbage = full.bytes
        garbage[5 * Self.pageSize + 100] = 0xFF
        garbage[5 * Self.pageSize] = 0
        garbage[5 * Self.pageSize + 1] = 0
        assertRejected(garbage, name: full.name, because: "page 5 (offset 0xa000) is neither empty nor a WAL page")

        var misplaced = full.bytes
        misplaced.replaceSubrange(2 * Self.pageSize ..< 3 * Self.pageSize, with: full.bytes[Self.pageSize ..< 2 * Self.pageSize])
        assertRejected(misplaced, name: full.name, because: "page 2 (offset 0x4000) is for")

        var hole = full.bytes
        hole.replaceSubrange(10 * Self.pageSize ..< 11 * Self.pageSize, with: Data(count: Self.pageSize))
        assertRejected(hole, name: full.name, because: "after the written pages ended at page 10")
    }

    /// After a promotion, the new timeline's first segment starts as a copy of the old
    /// timeline's: its first pages keep the old xlp_tli. It must parse, named on the new
    /// timeline, and must not pass for a segment of the old timeline.
    func testFirstSegmentOfNewTimelineAfterPromotion() throws {
        let primary = try PostgresServer(settings: ["wal_keep_size": "1GB"])
        try primary.sql("CREATE TABLE ledger (id int PRIMARY KEY, note text)")
        try primary.sql("INSERT INTO ledger SELECT g, md5(g::text) FROM generate_series(1, 1000) g")
        let standbyDirectory = try primary.ownedDirectory("standby")
        try primary.asPostgres("\(PostgresServer.bin)/pg_basebackup", ["-h", primary.socketDirectory, "-p", "\(primary.port)",
                                                                     "-U", "postgres", "-D", standbyDirectory, "-R", "-X", "stream"])
        let standby = try PostgresServer(restoredDataDirectory: standbyDirectory)
        try standby.start()
        try primary.sql("INSERT INTO ledger SELECT g, 'before promotion' FROM generate_series(1001, 1100) g")
        let primaryEnd = try primary.sql("SELECT pg_current_wal_lsn()").trimmed
        let deadline = Date().addingTimeInterval(60)
        while try standby.sql("SELECT pg_last_wal_replay_lsn() >= '\(primaryEnd)'::pg_lsn").trimmed != "t" {
            guard Date() < deadline else { return XCTFail("the standby did not replay up to \(primaryEnd)") }
            usleep(50_000)
        }
        XCTAssertEqual(try standby.sql("SELECT pg_promote()").trimmed, "t")
        // Enough WAL to fill pages of the new timeline (the page the promotion happened on keeps its old header).
        try standby.sql("INSERT INTO ledger SELECT g, repeat('after promotion', 40) FROM generate_series(10001, 10100) g")
        let name = try standby.sql("SELECT pg_walfile_name(pg_switch_wal())").trimmed
        XCTAssertTrue(name.hasPrefix("00000002"), name)
        let bytes = try XCTUnwrap(FileManager.default.contents(atPath: standby.dataDirectory + "/pg_wal/" + name))
        let firstPageTimeline = bytes.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: 4, as: UInt32.self) }
        XCTAssertEqual(firstPageTimeline, 1, "the segment starts with the old timeline's pages")

        let summary = try WALSegment.summarize(bytes, name: name)
        XCTAssertEqual(summary.timeline, 2)
        XCTAssertEqual(summary.end, .switchRecord)
        let copy = try temporaryDirectory()
        try bytes.write(to: URL(fileURLWithPath: copy + "/" + name))
        let records = try WALOracle.waldump(directory: copy, first: name, last: name)
        let start = summary.start.value
        let oracle = WALOracle(records, segmentStart: start, boundary: start + UInt64(Self.segmentSize))
        XCTAssertEqual(summary.records, oracle.complete.count)
        XCTAssertEqual(summary.commits, oracle.commitTimes.count)
        XCTAssertGreaterThanOrEqual(summary.commits, 1, "the commit after the promotion")

        let oldTimelineName = summary.start.segmentName(timeline: 1, segmentSize: UInt64(Self.segmentSize))
        assertRejected(bytes, name: oldTimelineName, because: "later than the file name's timeline 1")

        // The standby's data directory lies in the primary's: stop it before the primary's
        // deinit removes that, and keep the primary until here (ARC may end it at its last use).
        try standby.stop()
        withExtendedLifetime(primary) {}
    }

    // MARK: Helpers

    private func assertSummary(_ summary: WALSummary, matches oracle: WALOracle, in wal: GeneratedWAL, _ what: String,
                file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(summary.records, oracle.complete.count, "records in \(what)", file: file, line: line)
        XCTAssertEqual(summary.commits, oracle.commitTimes.count, "commits in \(what)", file: file, line: line)
        XCTAssertEqual(summary.firstCommit.map(microsSinceEpoch), oracle.commitTimes.min(), "first commit in \(what)", file: file, line: line)
        XCTAssertEqual(summary.lastCommit.map(microsSinceEpoch), oracle.commitTimes.max(), "last commit in \(what)", file: file, line: line)
        XCTAssertEqual(summary.minXid, oracle.commitXids.min(), "min xid in \(what)", file: file, line: line)
        XCTAssertEqual(summary.maxXid, oracle.commitXids.max(), "max xid in \(what)", file: file, line: line)
        XCTAssertEqual(summary.aborts, oracle.aborts, "aborts in \(what)", file: file, line: line)
        XCTAssertEqual(summary.restorePoints.map(\.name), oracle.restorePoints.map { $0.name }, "restore points in \(what)", file: file, line: line)
        XCTAssertEqual(summary.restorePoints.map(\.lsn), oracle.restorePoints.map { $0.lsn }, "restore points in \(what)", file: file, line: line)
        // The next record starts where the last one ends, after a page header if that is a page
        // boundary; after a switch, at the start of the next segment.
        if let end = summary.endOfRecords, let last = oracle.complete.last,
           let next = wal.records.first(where: { $0.lsn > last.lsn }) {
            let segmentSize = UInt64(Self.segmentSize), pageSize = UInt64(Self.pageSize)
            let expected = last.kind == "SWITCH" ? (end.value - 1) / segmentSize * segmentSize + segmentSize + 40
                : end.value + (end.value % segmentSize == 0 ? 40 : end.value % pageSize == 0 ? 24 : 0)
            XCTAssertEqual(LSN(expected), LSN(next.lsn), "end of records in \(what)", file: file, line: line)
        }
    }

    private func assertRejected<Bytes: DataProtocol>(_ bytes: Bytes, name: String, segmentSize: Int = WALSegmentTests.segmentSize, because expected: String,
                                             file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertThrowsError(try WALSegment.summarize(Data(bytes), name: name, segmentSize: segmentSize), file: file, line: line) { error in
            let message = "\(error)"
            XCTAssertTrue(message.contains(expected), "\(message) should say \(expected)", file: file, line: line)
            XCTAssertTrue(message.contains(name), "\(message) should name the segment", file: file, line: line)
        }
    }

    private func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "coffer-wal-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        addTeardownBlock { try? FileManager.default.removeItem(atPath: path) }
        return path
    }

    private func bitwiseCRC32C(_ bytes: [UInt8]) -> UInt32 {
        var crc: UInt32 = 0xFFFF_FFFF
        for byte in bytes {
            crc ^= UInt32(byte)
            for _ in 0 ..< 8 { crc = crc & 1 != 0 ? (crc >> 1) ^ 0x82F6_3B78 : crc >> 1 }
        }
        return crc ^ 0xFFFF_FFFF
    }
}

/// Microseconds since the Unix epoch, exactly: Date counts seconds from 2001 in a Double, which
/// holds microseconds exactly for centuries around it.
private func microsSinceEpoch(_ date: Date) -> Int64 {
    Int64((date.timeIntervalSinceReferenceDate * 1_000_000).rounded()) + 978_307_200_000_000
}

extension String {
    fileprivate var trimmed: String { trimmingCharacters(in: .whitespacesAndNewlines) }
}

/// WAL from one workload, made once for the tests that only read it: a table, thousands of
/// transactions with rows of about 1 KB (records cross pages and segments), a switch, then single
/// commits, a rollback, a prepared transaction committed and one rolled back, a restore
/// point and pg_switch_wal(). The server is gone once the segments are copied.
private final class GeneratedWAL: Sendable {
    static let shared = Result { try GeneratedWAL() }

    let segments: [(name: String, bytes: Data)]
    /// pg_waldump's records over all the segments.
    let records: [WALOracle.Record]
    let switchEnd: LSN
    let systemIdentifier: UInt64
    let preparedXid: UInt32
    let restorePointTakenBy: Date

    private init() throws {
        let server = try PostgresServer(settings: ["max_prepared_transactions": "5", "wal_keep_size": "1GB"])
        let first = try server.sql("SELECT pg_walfile_name(pg_current_wal_lsn())").trimmed
        try server.sql("CREATE TABLE ledger (id int, payload text)")
        try server.sql("""
            DO $$ BEGIN FOR i IN 1..4000 LOOP
              INSERT INTO ledger SELECT i * 10 + g, repeat(md5((i * 10 + g)::text), 30) FROM generate_series(1, 8) g;
              COMMIT;
            END LOOP; END $$;
            """)
        try server.sql("SELECT pg_switch_wal()")
        for id in 1 ... 3 { try server.sql("INSERT INTO ledger VALUES (-\(id), 'single')") }
        try server.sql("BEGIN; INSERT INTO ledger VALUES (-10, 'rolled back'); ROLLBACK;")
        try server.sql("BEGIN; INSERT INTO ledger VALUES (-11, 'prepared, rolled back'); PREPARE TRANSACTION 'coffer-abort';")
        try server.sql("ROLLBACK PREPARED 'coffer-abort'")
        try server.sql("BEGIN; INSERT INTO ledger VALUES (-12, 'prepared'); PREPARE TRANSACTION 'coffer-2pc';")
        preparedXid = UInt32(try server.sql("SELECT transaction FROM pg_prepared_xacts WHERE gid = 'coffer-2pc'").trimmed)!
        try server.sql("COMMIT PREPARED 'coffer-2pc'")
        try server.sql("SELECT pg_create_restore_point('coffer-test')")
        restorePointTakenBy = Date()
        let switched = try server.sql("SELECT pg_walfile_name(end_lsn) || ' ' || end_lsn FROM pg_switch_wal() end_lsn").trimmed.split(separator: " ")
        let last = String(switched[0])
        switchEnd = LSN(String(switched[1]))!
        systemIdentifier = UInt64(try server.sql("SELECT system_identifier FROM pg_control_system()").trimmed)!

        // Copies, for pg_waldump too: checkpoints may recycle the originals.
        let copy = NSTemporaryDirectory() + "coffer-wal-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: copy, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: copy) }
        let (timeline, firstStart) = WALSegment.parseName(first)!
        let lastStart = WALSegment.parseName(last)!.start
        var segments: [(name: String, bytes: Data)] = []
        for start in stride(from: firstStart.value, through: lastStart.value, by: WALSegmentTests.segmentSize) {
            let name = LSN(start).segmentName(timeline: timeline, segmentSize: UInt64(WALSegmentTests.segmentSize))
            guard let bytes = FileManager.default.contents(atPath: server.dataDirectory + "/pg_wal/" + name) else {
                throw FixtureError("cannot read \(name)")
            }
            try bytes.write(to: URL(fileURLWithPath: copy + "/" + name))
            segments.append((name, bytes))
        }
        self.segments = segments
        records = try WALOracle.waldump(directory: copy, first: first, last: last)
    }
}

/// What pg_waldump says about the records starting in a segment before `boundary`.
private struct WALOracle {
    struct Record: Sendable {
        let lsn: UInt64
        let totalLength: Int
        let xid: UInt32
        let kind: String  // the first word of the description: COMMIT, INSERT, SWITCH, ...
        let description: String
    }

    /// Records that end before the boundary.
    var complete: [Record] = []
    /// The record that starts before the boundary and ends after it.
    var continuedRecord: Record?
    var commitTimes: [Int64] = []
    var commitXids: [UInt32] = []
    var aborts = 0
    var restorePoints: [(name: String, lsn: LSN)] = []

    init(_ records: [Record], segmentStart: UInt64, boundary: UInt64, before cut: UInt64 = .max) {
        let pageSize = UInt64(WALSegmentTests.pageSize)
        for record in records where record.lsn >= segmentStart && record.lsn < boundary && record.lsn < cut {
            // Record bytes that fit before the boundary: every page start in between takes a short header.
            let pageStartsBetween = (boundary - 1) / pageSize - record.lsn / pageSize
            guard UInt64(record.totalLength) <= boundary - record.lsn - 24 * pageStartsBetween else {
                continuedRecord = record
                break
            }
            complete.append(record)
            switch record.kind {
            case "COMMIT", "COMMIT_PREPARED":
                commitTimes.append(Self.micros(record.description))
                // COMMIT PREPARED records carry xid 0; the description names the prepared one.
                commitXids.append(record.kind == "COMMIT" ? record.xid
                                  : UInt32(record.description.dropFirst("COMMIT_PREPARED ".count).prefix { $0 != ":" })!)
            case "ABORT", "ABORT_PREPARED":
                aborts += 1
            case "RESTORE_POINT":
                restorePoints.append((String(record.description.dropFirst("RESTORE_POINT ".count)), LSN(record.lsn)))
            default:
                break
            }
        }
    }

    /// "COMMIT 2026-11-26 19:20:26.492524 UTC; inval msgs: ..." (pg_waldump run with TZ=UTC):
    /// microseconds since the Unix epoch.
    static func micros(_ description: String) -> Int64 {
        let stamp = Array(description.split(separator: ";")[0].utf8.suffix(30))  // "2026-11-26 19:20:26.492524 UTC"
        func number(_ range: Range<Int>) -> Int { Int(String(decoding: stamp[range], as: UTF8.self))! }
        var time = tm()
        time.tm_year = Int32(number(0 ..< 4) - 1900)
        time.tm_mon = Int32(number(5 ..< 7) - 1)
        time.tm_mday = Int32(number(8 ..< 10))
        time.tm_hour = Int32(number(11 ..< 13))
        time.tm_min = Int32(number(14 ..< 16))
        time.tm_sec = Int32(number(17 ..< 19))
        precondition(String(decoding: stamp[26...], as: UTF8.self) == " UTC", "unexpected time in \(description)")
        return Int64(timegm(&time)) * 1_000_000 + Int64(number(20 ..< 26))
    }

    /// pg_waldump's listing of the records from segment `first` through `last` in `directory`.
    static func waldump(directory: String, first: String, last: String) throws -> [Record] {
        let output = try FixtureProcess.output("/usr/bin/env", ["TZ=UTC", "\(PostgresServer.bin)/pg_waldump", "-p", directory, first, last])
        // rmgr: Transaction len (rec/tot):     34/    34, tx:        725, lsn: 0/0201E5B0, prev 0/0201E570, desc: COMMIT 2026-...
        return try output.split(separator: "\n").map { line in
            func field(after marker: String) throws -> Substring {
                guard let range = line.range(of: marker) else { throw FixtureError("no \(marker) in \(line)") }
                return line[range.upperBound...]
            }
            let lengths = try field(after: "len (rec/tot):").prefix { $0 != "," }
            let description = String(try field(after: ", desc: "))
            guard let total = Int(lengths.split(separator: "/")[1].trimmed),
                  let xid = UInt32(try field(after: "tx:").prefix { $0 != "," }.trimmed),
                  let lsn = LSN(String(try field(after: "lsn: ").prefix { $0 != "," })) else {
                throw FixtureError("cannot read pg_waldump line \(line)")
            }
            return Record(lsn: lsn.value, totalLength: total, xid: xid, kind: String(description.prefix { $0 != " " }),
                          description: description)
        }
    }
}

extension Substring {
    fileprivate var trimmed: String { trimmingCharacters(in: .whitespaces) }
}
