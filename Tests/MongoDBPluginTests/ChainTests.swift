import CofferMongoDB
import CofferPluginProtocol
import XCTest

/// The chain rules on recorded positions alone: windows, gaps, plans and refusals.
final class MongoChainTests: XCTestCase {
    func dump(_ id: String, _ ts: String) -> BackupDescription {
        BackupDescription(id: id, kind: "full", positions: ["ts": ts, "start_ts": ts, "wall_ms": "\(Timestamp(ts)!.t)000"], metadata: [:], artifacts: [])
    }

    func slice(_ id: String, after: String?, first: String, last: String) -> BackupDescription {
        var p = ["log": "oplog-\(first)-\(last)", "first_ts": first, "last_ts": last,
                 "first_wall_ms": "\(Timestamp(first)!.t)000", "last_wall_ms": "\(Timestamp(last)!.t)000"]
        p["after_ts"] = after
        return BackupDescription(id: id, kind: "log", positions: p, metadata: [:], artifacts: [])
    }

    func testContiguousSlicesMakeOneWindowAndPlanTheSlicesToReplay() throws {
        let chain = Chain([dump("D", "100:5"), slice("S1", after: nil, first: "90:1", last: "110:1"),
                           slice("S2", after: "110:1", first: "111:1", last: "120:3"), slice("S3", after: "120:3", first: "121:1", last: "130:1")])
        let report = chain.verify()
        XCTAssertEqual(report.problems, [])
        XCTAssertEqual(report.windows.map(\.fromPosition), ["100:5"])
        XCTAssertEqual(report.windows.map(\.toPosition), ["130:1"])
        XCTAssertEqual(try chain.plan(target: ["timestamp": "115:0"]).plan, ["D", "S1", "S2", "S3"])
        XCTAssertEqual(try chain.plan(target: [:]).target, ["timestamp": "130:1"])
        XCTAssertNotNil(try chain.plan(target: ["timestamp": "99:0"]).refusal, "before the dump is consistent")
        XCTAssertNotNil(try chain.plan(target: ["timestamp": "130:2"]).refusal, "after the last captured entry")
    }

    func testAMissingSliceIsNamedAndBoundsTheWindow() throws {
        let chain = Chain([dump("D", "100:5"), slice("S1", after: nil, first: "90:1", last: "110:1"),
                           slice("S3", after: "120:3", first: "121:1", last: "130:1")])
        let report = chain.verify()
        XCTAssertEqual(report.problems.count, 1)
        XCTAssertEqual(report.problems.first?.kind, "missing")
        XCTAssertEqual(report.problems.first?.log, "oplog-121:1-130:1")
        XCTAssertTrue(report.problems.first?.detail.contains("after 110:1") == true, report.problems.first?.detail ?? "")
        XCTAssertEqual(report.windows.map(\.toPosition), ["110:1"])
        let refused = try chain.plan(target: ["timestamp": "125:0"])
        XCTAssertNil(refused.plan)
        XCTAssertTrue(refused.refusal?.contains("outside the restorable window") == true)
        XCTAssertEqual(try chain.plan(target: ["timestamp": "105:0"]).plan, ["D", "S1"])
    }

    func testADumpNoSliceContinuesIsAGapAndANewerDumpStartsAWindow() throws {
        let chain = Chain([dump("D1", "100:5"), dump("D2", "200:1"),
                           slice("S1", after: nil, first: "150:1", last: "210:1")])
        let report = chain.verify()
        XCTAssertEqual(report.problems.map(\.kind), ["missing"])
        XCTAssertTrue(report.problems[0].detail.contains("D1"), report.problems[0].detail)
        XCTAssertEqual(report.windows.map(\.base), ["D1", "D2"])
        XCTAssertEqual(try chain.plan(target: ["timestamp": "205:0"]).plan, ["D2", "S1"])
        XCTAssertNotNil(try chain.plan(target: ["timestamp": "120:0"]).refusal)
    }
}
