@testable import coffer_mysql
import CofferPluginProtocol
import XCTest

/// The chain rules on recorded positions alone (no server): what verify names, what plan
/// picks. The same rules meet real captures in MySQLPointInTimeTests.
final class BinlogChainTests: XCTestCase {
    private func full(_ id: String, _ file: String, _ pos: Int, gtid: String) -> BackupDescription {
        BackupDescription(id: id, kind: "full", positions: ["binlog_file": file, "binlog_pos": String(pos), "gtid": gtid,
                                                           "consistent_time": "1000000000"],
                          metadata: ["method": "physical"], artifacts: [])
    }

    private func slice(_ id: String, _ file: String, _ start: Int, _ end: Int, closed: Bool, from: String, to: String) -> BackupDescription {
        BackupDescription(id: id, kind: "log", positions: ["log": "\(file)@\(start)-\(end)", "file": file, "start": String(start),
                                                          "end": String(end), "closed": closed ? "1" : "0",
                                                          "gtid_start": from, "gtid_end": to, "last_time": "1000"],
                          metadata: [:], artifacts: [])
    }

    func testAGTIDJumpBetweenFilesIsNamedPerDomainAndEndsTheWindow() throws {
        let chain = BinlogChain([
            full("base", "b.000001", 400, gtid: "0-1-3"),
            slice("s1", "b.000001", 0, 900, closed: true, from: "0-1-0", to: "0-1-9,1-1-4"),
            slice("s2", "b.000002", 0, 500, closed: false, from: "0-1-9,1-1-7", to: "0-1-12,1-1-8"),
        ])
        let report = chain.verify()
        XCTAssertEqual(report.problems.count, 1)
        XCTAssertEqual(report.problems.first?.detail,
                       "GTID discontinuity in domain 1: b.000001 ends at 1-1-4, b.000002 starts at 1-1-7")
        XCTAssertEqual(report.windows.first?.toPosition, "b.000001:900")
        let refused = try chain.plan(target: ["position": "b.000002:100"])
        XCTAssertNil(refused.plan)
        XCTAssertTrue(refused.refusal?.contains("restorable windows: b.000001:400") ?? false, refused.refusal ?? "")
        XCTAssertEqual(try chain.plan(target: ["position": "b.000001:800"]).plan, ["base", "s1"])
    }

    func testAHoleInsideAFileIsNamedByByteRange() {
        let report = BinlogChain([
            full("base", "b.000001", 4, gtid: ""),
            slice("s1", "b.000001", 0, 300, closed: false, from: "", to: ""),
            slice("s2", "b.000001", 350, 900, closed: true, from: "", to: ""),
        ]).verify()
        XCTAssertEqual(report.problems.map(\.detail), ["binlog b.000001: bytes 300 to 350 are not in the vault (a hole)"])
        XCTAssertEqual(report.windows.first?.toPosition, "b.000001:300")
    }
}
