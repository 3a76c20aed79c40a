import CofferAgent
import CofferVault
import Foundation
import XCTest

/// `[source.NAME.retention]` and `[prune]` in the config file.
final class RetentionConfigTests: XCTestCase {
    func testRetentionAndPruneKeysAreRead() throws {
        let config = try CofferConfig.parse("""
            [prune]
            repack_threshold = 0.3
            grace = "30m"
            clock_skew = "1m"

            [source.main]
            engine = "postgres"
            connection = "host=/tmp"
            [source.main.retention]
            keep_last = 3
            keep_hourly = 24
            keep_daily = 7
            keep_weekly = 4
            keep_monthly = 12
            keep_yearly = 2
            keep_within = "36h"
            pitr_window = "1w"
            timezone = "Europe/Berlin"

            [source.other]
            engine = "stream"
            """)
        let policy = try XCTUnwrap(config.sources["main"]?.retention)
        XCTAssertEqual(policy.keepLast, 3)
        XCTAssertEqual(policy.keepHourly, 24)
        XCTAssertEqual(policy.keepDaily, 7)
        XCTAssertEqual(policy.keepWeekly, 4)
        XCTAssertEqual(policy.keepMonthly, 12)
        XCTAssertEqual(policy.keepYearly, 2)
        XCTAssertEqual(policy.keepWithin, 36 * 3600)
        XCTAssertEqual(policy.pitrWindow, 7 * 86400)
        XCTAssertEqual(policy.timeZone.identifier, "Europe/Berlin")
        XCTAssertEqual(config.sources["main"]?.options, ["connection": "host=/tmp"], "retention is not a plugin option")
        XCTAssertNil(config.sources["other"]?.retention)
        XCTAssertEqual(config.prune.repackThreshold, 0.3)
        XCTAssertEqual(config.prune.grace, 1800)
        XCTAssertEqual(config.prune.clockSkew, 60)
    }

    func testBadRetentionSettingsAreRefusedWithTheirName() {
        let cases: [(String, String)] = [
            ("keep_daily = \"7\"", "source.s.retention.keep_daily must be a whole number"),
            ("keep_last = -1", "source.s.retention.keep_last must be a whole number"),
            ("keep_within = \"7 days\"", "source.s.retention.keep_within must be a duration"),
            ("pitr_window = 7", "source.s.retention.pitr_window must be a duration"),
            ("timezone = \"Mars/Olympus\"", "source.s.retention.timezone must be a time zone"),
            ("keep_lasst = 3", "unknown key source.s.retention.keep_lasst"),
            ("", "source.s.retention has no rule"),
        ]
        for (line, message) in cases {
            XCTAssertThrowsError(try CofferConfig.parse("[source.s]\nengine = \"stream\"\n[source.s.retention]\n\(line)\n"), line) { error in
                XCTAssertTrue("\(error)".contains(message), "\(line): \(error)")
            }
        }
        XCTAssertThrowsError(try CofferConfig.parse("[prune]\nrepack_threshold = 1.5\n")) { error in
            XCTAssertTrue("\(error)".contains("prune.repack_threshold"), "\(error)")
        }
        XCTAssertThrowsError(try CofferConfig.parse("[prune]\ngrace = 5\n")) { error in
            XCTAssertTrue("\(error)".contains("prune.grace must be a duration"), "\(error)")
        }
    }
}
