import CofferVault
import Foundation
import XCTest

/// The keep_* rules on a hand-made history whose answers were worked out by hand (the
/// comments say why each backup stays), with "now" and every backup's time injected.
final class RetentionTests: XCTestCase {
    static func t(_ s: String) -> Date { Timestamp.parse(s)! }
    static let now = t("2026-11-26T12:00:00Z")  // a Thursday; ISO week 48 is Nov 23 to 29

    /// b1 ... b11, full backups, oldest first; each finished 10 minutes after it started.
    static let history: [(String, String)] = [
        ("b1", "2026-09-15T03:00:00Z"), ("b2", "2026-10-01T03:00:00Z"), ("b3", "2026-10-20T03:00:00Z"),
        ("b4", "2026-10-31T23:00:00Z"), ("b5", "2026-11-20T03:00:00Z"), ("b6", "2026-11-23T03:00:00Z"),
        ("b7", "2026-11-24T03:00:00Z"), ("b8", "2026-11-25T03:00:00Z"), ("b9", "2026-11-25T15:00:00Z"),
        ("b10", "2026-11-26T03:00:00Z"), ("b11", "2026-11-26T09:00:00Z"),
    ]

    static func record(_ id: String, _ started: Date, kind: String = "full", parent: String? = nil,
                       log: String? = nil) -> BackupRecord {
        BackupRecord(id: id, manifest: Manifest(source: "db", engine: "test", kind: kind, parent: parent, started: started,
                                                finished: started.addingTimeInterval(600),
                                                positions: log.map { ["log": $0] } ?? [:], artifacts: []))
    }

    static var records: [BackupRecord] { history.map { record($0.0, t($0.1)) } }

    func kept(_ policy: RetentionPolicy, _ records: [BackupRecord] = RetentionTests.records) -> Set<String> {
        Set(Retention.decide(records, policy: policy, now: RetentionTests.now).backups.filter(\.keep).map(\.id))
    }

    func testLastDailyWeeklyMonthlyKeepExactlyTheNewestOfEachPeriod() {
        var p = RetentionPolicy()
        p.keepLast = 2      // b11, b10
        p.keepDaily = 3     // Nov 26: b11, Nov 25: b9, Nov 24: b7
        p.keepWeekly = 2    // W48: b11, W47: b5
        p.keepMonthly = 3   // Nov: b11, Oct: b4 (Oct 31 23:00), Sep: b1
        XCTAssertEqual(kept(p), ["b11", "b10", "b9", "b7", "b5", "b4", "b1"])
        let decisions = Retention.decide(RetentionTests.records, policy: p, now: RetentionTests.now).backups
        let b4 = decisions.first { $0.id == "b4" }!
        XCTAssertEqual(b4.reasons, ["keep_monthly: newest of 2026-10"])
        let b11 = decisions.first { $0.id == "b11" }!
        XCTAssertEqual(Set(b11.reasons), ["keep_last: 1 of 2", "keep_daily: newest of 2026-11-26", "keep_weekly: newest of 2026-W48",
                                          "keep_monthly: newest of 2026-11", "newest backup (always kept)"])
        XCTAssertEqual(decisions.first { $0.id == "b8" }!.reasons, ["no rule keeps it"])
    }

    func testPeriodsFollowTheTimeZone() throws {
        var p = RetentionPolicy()
        p.keepDaily = 3
        p.timeZone = try XCTUnwrap(TimeZone(identifier: "America/New_York"))  // UTC-5 in November
        // Local days: b11 Nov 26 04:00; b10 Nov 25 22:00 (newest of Nov 25); b8 Nov 24 22:00.
        XCTAssertEqual(kept(p), ["b11", "b10", "b8"])
        p.timeZone = TimeZone(identifier: "UTC")!
        XCTAssertEqual(kept(p), ["b11", "b9", "b7"])
    }

    func testHourlyAndYearly() {
        var p = RetentionPolicy()
        p.keepHourly = 3   // one backup an hour bucket: b11, b10, b9
        XCTAssertEqual(kept(p), ["b11", "b10", "b9"])
        p = RetentionPolicy()
        p.keepYearly = 5   // all in 2026: b11
        XCTAssertEqual(kept(p), ["b11"])
    }

    func testKeepWithinCountsFromNow() {
        var p = RetentionPolicy()
        p.keepWithin = RetentionDuration.parse("2d")  // since Nov 24 12:00
        XCTAssertEqual(kept(p), ["b8", "b9", "b10", "b11"])
    }

    func testNewestIsAlwaysKept() {
        var p = RetentionPolicy()
        p.keepWithin = RetentionDuration.parse("1h")  // nothing started within the hour
        XCTAssertEqual(kept(p), ["b11"])
    }

    func testPitrWindowKeepsTheBaseForItsStartAndTheLogsFromTheOldestKeptBase() {
        var p = RetentionPolicy()
        p.keepLast = 1
        p.pitrWindow = RetentionDuration.parse("3d")  // from Nov 23 12:00: b6 finished 03:10 that day
        var records = RetentionTests.records
        // A log every 3 hours from Sep 15 to now.
        var logs: [BackupRecord] = []
        var at = RetentionTests.t("2026-09-15T00:00:00Z")
        while at < RetentionTests.now {
            logs.append(RetentionTests.record("log-\(Int(at.timeIntervalSince1970))", at, kind: "log", log: "L\(Int(at.timeIntervalSince1970))"))
            at.addTimeInterval(3 * 3600)
        }
        records += logs
        let (backups, logDecisions) = Retention.decide(records, policy: p, now: RetentionTests.now)
        XCTAssertEqual(Set(backups.filter(\.keep).map(\.id)), ["b11", "b6"])
        XCTAssertTrue(backups.first { $0.id == "b6" }!.reasons[0].hasPrefix("pitr_window 3d: the base for restoring to 2026-11-23T12:00:00"))
        // Logs archived from an hour before b6 began (Nov 23 02:00) on stay; the rest go.
        let cutoff = RetentionTests.t("2026-11-23T02:00:00Z")
        XCTAssertEqual(Set(logDecisions.filter(\.keep).map(\.id)), Set(logs.filter { $0.manifest.started >= cutoff }.map(\.id)))
        XCTAssertEqual(logDecisions.filter { !$0.keep }.count, logs.filter { $0.manifest.started < cutoff }.count)
        XCTAssertGreaterThan(logDecisions.filter { !$0.keep }.count, 500)
    }

    func testWindowLongerThanHistoryKeepsTheOldestBase() {
        var p = RetentionPolicy()
        p.pitrWindow = RetentionDuration.parse("52w")
        XCTAssertEqual(kept(p), ["b1", "b11"])
    }

    func testKeptIncrementalKeepsItsParents() {
        var records = RetentionTests.records
        records.append(RetentionTests.record("i1", RetentionTests.t("2026-11-26T10:00:00Z"), kind: "incremental", parent: "b10"))
        records.append(RetentionTests.record("i2", RetentionTests.t("2026-11-26T11:00:00Z"), kind: "incremental", parent: "i1"))
        var p = RetentionPolicy()
        p.keepLast = 1
        XCTAssertEqual(kept(p, records), ["i2", "i1", "b10"])
    }

    func testDurations() {
        XCTAssertEqual(RetentionDuration.parse("7d"), 7 * 86400)
        XCTAssertEqual(RetentionDuration.parse("1w2d3h4m5s"), TimeInterval(788_645))
        XCTAssertNil(RetentionDuration.parse("7"))
        XCTAssertNil(RetentionDuration.parse("d"))
        XCTAssertNil(RetentionDuration.parse("7x"))
        XCTAssertEqual(RetentionDuration.format(90000), "1d1h")
    }
}
