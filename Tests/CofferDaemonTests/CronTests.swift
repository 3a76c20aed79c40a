@testable import CofferDaemon
import Foundation
import XCTest

final class CronTests: XCTestCase {
    let utc = TimeZone(identifier: "UTC")!
    let berlin = TimeZone(identifier: "Europe/Berlin")!

    func date(_ iso: String) -> Date { ISO8601DateFormatter().date(from: iso)! }

    func next(_ expr: String, after: String, zone: TimeZone? = nil, count: Int = 1) throws -> [String] {
        let cron = try CronSchedule(expr, timeZone: zone ?? utc)
        var out: [String] = []
        var t = date(after)
        for _ in 0..<count {
            guard let n = cron.next(after: t) else { break }
            out.append(ISO8601DateFormatter().string(from: n))
            t = n
        }
        return out
    }

    func testStepsRangesAndLists() throws {
        XCTAssertEqual(try next("*/15 * * * *", after: "2026-11-26T10:07:00Z", count: 4),
                       ["2026-11-26T10:15:00Z", "2026-11-26T10:30:00Z", "2026-11-26T10:45:00Z", "2026-11-26T11:00:00Z"])
        XCTAssertEqual(try next("5,35 1 * * *", after: "2026-11-26T01:05:00Z", count: 3),
                       ["2026-11-26T01:35:00Z", "2026-11-27T01:05:00Z", "2026-11-27T01:35:00Z"])
        // 2026-11-26 is a Thursday: 9-17/2 is 9, 11, 13, 15, 17 on weekdays only.
        XCTAssertEqual(try next("0 9-17/2 * * mon-fri", after: "2026-11-26T16:00:00Z", count: 3),
                       ["2026-11-26T17:00:00Z", "2026-11-27T09:00:00Z", "2026-11-27T11:00:00Z"])
        XCTAssertEqual(try next("0 9-17/2 * * mon-fri", after: "2026-11-27T17:30:00Z"), ["2026-11-30T09:00:00Z"])
        XCTAssertEqual(try next("10-12 3 * * *", after: "2026-11-26T03:10:30Z", count: 3),
                       ["2026-11-26T03:11:00Z", "2026-11-26T03:12:00Z", "2026-11-27T03:10:00Z"])
        // `a/n`: from a to the end of the range.
        XCTAssertEqual(try next("50/5 0 * * *", after: "2026-11-26T00:00:00Z", count: 3),
                       ["2026-11-26T00:50:00Z", "2026-11-26T00:55:00Z", "2026-11-27T00:50:00Z"])
    }

    func testNamesAndSunday() throws {
        XCTAssertEqual(try next("0 0 1 jan,JUL *", after: "2026-11-26T00:00:00Z", count: 2),
                       ["2027-01-01T00:00:00Z", "2027-07-01T00:00:00Z"])
        XCTAssertEqual(try next("0 0 * * 7", after: "2026-11-26T00:00:00Z"), ["2026-11-29T00:00:00Z"])
        XCTAssertEqual(try next("0 0 * * sun", after: "2026-11-26T00:00:00Z"), ["2026-11-29T00:00:00Z"])
        XCTAssertEqual(try next("0 0 * feb-mar sat", after: "2026-11-26T00:00:00Z"), ["2027-02-06T00:00:00Z"])
    }

    func testDayOfMonthOrDayOfWeekWhenBothRestricted() throws {
        // Either the 13th or a Friday (Vixie cron), not only Friday the 13th.
        XCTAssertEqual(try next("0 0 13 * fri", after: "2026-11-26T00:00:00Z", count: 4),
                       ["2026-11-27T00:00:00Z", "2026-12-04T00:00:00Z", "2026-12-11T00:00:00Z", "2026-12-13T00:00:00Z"])
        // One restricted, the other `*`: only the restricted one counts.
        XCTAssertEqual(try next("0 0 13 * *", after: "2026-11-26T00:00:00Z"), ["2026-12-13T00:00:00Z"])
    }

    func testNeverFiring() throws {
        XCTAssertNil(try CronSchedule("0 0 30 feb *").next(after: date("2026-01-01T00:00:00Z")))
    }

    func testBadExpressionsAreNamed() {
        func message(_ expr: String) -> String {
            do {
                _ = try CronSchedule(expr)
                return "accepted"
            } catch { return "\(error)" }
        }
        XCTAssertTrue(message("* * * *").contains("5 fields"), message("* * * *"))
        XCTAssertTrue(message("60 * * * *").contains("minute field '60': 60 is outside 0-59"), message("60 * * * *"))
        XCTAssertTrue(message("* 24 * * *").contains("hour"), message("* 24 * * *"))
        XCTAssertTrue(message("*/0 * * * *").contains("step"), message("*/0 * * * *"))
        XCTAssertTrue(message("5-1 * * * *").contains("backwards"), message("5-1 * * * *"))
        XCTAssertTrue(message("0 0 * foo *").contains("'foo' is not a number or a name"), message("0 0 * foo *"))
        XCTAssertTrue(message("0 0 * * mon-").contains("day of week"), message("0 0 * * mon-"))
        XCTAssertTrue(message("0 0 0 * *").contains("day of month"), message("0 0 0 * *"))
        XCTAssertTrue(message("1,,2 * * * *").contains("minute"), message("1,,2 * * * *"))
    }

    func testSpringForwardRunsAFixedTimeJobRightAfterTheGap() throws {
        // Europe/Berlin, 2026-03-29: 02:00 CET becomes 03:00 CEST at 01:00 UTC; 02:30 never happens.
        XCTAssertEqual(try next("30 2 * * *", after: "2026-03-28T12:00:00Z", zone: berlin, count: 2),
                       ["2026-03-29T01:00:00Z", "2026-03-30T00:30:00Z"])
        // A job at a time that exists that day is untouched: 03:30 CEST = 01:30 UTC.
        XCTAssertEqual(try next("30 3 * * *", after: "2026-03-28T12:00:00Z", zone: berlin), ["2026-03-29T01:30:00Z"])
        // A wildcard job follows real time: 01:30 CET, then 03:00 CEST.
        XCTAssertEqual(try next("*/30 * * * *", after: "2026-03-29T00:15:00Z", zone: berlin, count: 3),
                       ["2026-03-29T00:30:00Z", "2026-03-29T01:00:00Z", "2026-03-29T01:30:00Z"])
    }

    func testFallBackRunsAFixedTimeJobOnce() throws {
        // Europe/Berlin, 2026-10-25: 03:00 CEST becomes 02:00 CET at 01:00 UTC; 02:30 happens
        // at 00:30 UTC and again at 01:30 UTC. A daily job runs at the first only.
        XCTAssertEqual(try next("30 2 * * *", after: "2026-10-24T12:00:00Z", zone: berlin, count: 2),
                       ["2026-10-25T00:30:00Z", "2026-10-26T01:30:00Z"])
        // Every half hour of real time, the repeated hour included.
        XCTAssertEqual(try next("*/30 * * * *", after: "2026-10-25T00:15:00Z", zone: berlin, count: 4),
                       ["2026-10-25T00:30:00Z", "2026-10-25T01:00:00Z", "2026-10-25T01:30:00Z", "2026-10-25T02:00:00Z"])
    }

    func testTimeZoneShiftsTheFiring() throws {
        // 02:00 in Berlin in winter is 01:00 UTC; in New York 07:00 UTC.
        XCTAssertEqual(try next("0 2 * * *", after: "2026-11-26T00:00:00Z", zone: berlin), ["2026-11-26T01:00:00Z"])
        XCTAssertEqual(try next("0 2 * * *", after: "2026-11-26T00:00:00Z", zone: TimeZone(identifier: "America/New_York")!),
                       ["2026-11-26T07:00:00Z"])
    }

    func testPrevious() throws {
        let cron = try CronSchedule("0 2 * * *")
        XCTAssertEqual(cron.previous(atOrBefore: date("2026-11-26T10:00:00Z")), date("2026-11-26T02:00:00Z"))
        XCTAssertEqual(cron.previous(atOrBefore: date("2026-11-26T02:00:00Z")), date("2026-11-26T02:00:00Z"))
        XCTAssertEqual(cron.previous(atOrBefore: date("2026-11-26T01:59:00Z")), date("2026-11-25T02:00:00Z"))
        XCTAssertEqual(try CronSchedule("0 0 1 jan *").previous(atOrBefore: date("2026-11-26T00:00:00Z")),
                       date("2026-01-01T00:00:00Z"))
    }
}
