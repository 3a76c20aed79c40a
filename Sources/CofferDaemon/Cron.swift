import Foundation

/// A 5-field cron schedule (minute hour day-of-month month day-of-week), evaluated in a
/// time zone. Fields take `*`, numbers, ranges `a-b`, steps `*/n` and `a-b/n`, lists
/// `a,b,c`, and names for months (jan..dec) and days (sun..sat; 0 and 7 are Sunday).
/// As in Vixie cron, when both day fields are restricted a day matching either one fires.
///
/// Daylight saving time (Foundation's Calendar/TimeZone), as Vixie cron: a job with a
/// fixed minute and hour runs once per day — right after a spring-forward gap that
/// swallowed its time, and only at the first of the two occurrences in the autumn;
/// a job with a wildcard in either field follows real time (its skipped minutes do not
/// exist, its repeated ones run twice).
public struct CronSchedule: Sendable, Equatable, CustomStringConvertible {
    public let expression: String
    public let timeZone: TimeZone
    let minutes: Set<Int>
    let hours: Set<Int>
    let days: Set<Int>
    let months: Set<Int>
    let weekdays: Set<Int>  // 0 = Sunday
    let daysRestricted: Bool
    let weekdaysRestricted: Bool

    public var description: String { "\(expression) (\(timeZone.identifier))" }

    public init(_ expression: String, timeZone: TimeZone = TimeZone(identifier: "UTC")!) throws {
        self.expression = expression
        self.timeZone = timeZone
        let fields = expression.split(whereSeparator: { $0 == " " || $0 == "\t" }).map(String.init)
        guard fields.count == 5 else {
            throw CronError("'\(expression)': a schedule has 5 fields (minute hour day month weekday), found \(fields.count)")
        }
        minutes = try Self.field(fields[0], 0...59, names: [:], what: "minute", in: expression)
        hours = try Self.field(fields[1], 0...23, names: [:], what: "hour", in: expression)
        days = try Self.field(fields[2], 1...31, names: [:], what: "day of month", in: expression)
        months = try Self.field(fields[3], 1...12, names: Self.monthNames, what: "month", in: expression)
        var wd = try Self.field(fields[4], 0...7, names: Self.dayNames, what: "day of week", in: expression)
        if wd.remove(7) != nil { wd.insert(0) }
        weekdays = wd
        daysRestricted = !fields[2].hasPrefix("*")
        weekdaysRestricted = !fields[4].hasPrefix("*")
    }

    static let monthNames = ["jan": 1, "feb": 2, "mar": 3, "apr": 4, "may": 5, "jun": 6,
                             "jul": 7, "aug": 8, "sep": 9, "oct": 10, "nov": 11, "dec": 12]
    static let dayNames = ["sun": 0, "mon": 1, "tue": 2, "wed": 3, "thu": 4, "fri": 5, "sat": 6]

    static func field(_ text: String, _ range: ClosedRange<Int>, names: [String: Int], what: String,
                      in expression: String) throws -> Set<Int> {
        func bad(_ why: String) -> CronError { CronError("'\(expression)': \(what) field '\(text)': \(why)") }
        func value(_ s: Substring) throws -> Int {
            if let n = Int(s) {
                guard range.contains(n) else { throw bad("\(n) is outside \(range.lowerBound)-\(range.upperBound)") }
                return n
            }
            if let n = names[s.lowercased()] { return n }
            throw bad("'\(s)' is not a number\(names.isEmpty ? "" : " or a name")")
        }
        var out = Set<Int>()
        for item in text.split(separator: ",", omittingEmptySubsequences: false) {
            let parts = item.split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count <= 2, !parts[0].isEmpty else { throw bad("'\(item)' is not a value, range or step") }
            var step = 1
            if parts.count == 2 {
                guard let s = Int(parts[1]), s > 0 else { throw bad("step '\(parts[1])' must be a positive number") }
                step = s
            }
            var low: Int, high: Int
            if parts[0] == "*" {
                low = range.lowerBound
                high = range.upperBound
            } else if let dash = parts[0].firstIndex(of: "-") {
                low = try value(parts[0][..<dash])
                high = try value(parts[0][parts[0].index(after: dash)...])
                guard low <= high else { throw bad("range \(parts[0]) runs backwards") }
            } else {
                low = try value(parts[0])
                // `5/15` means from 5 to the end in steps of 15, as in Vixie cron.
                high = parts.count == 2 ? range.upperBound : low
            }
            out.formUnion(stride(from: low, through: high, by: step))
        }
        return out
    }

    func matches(month: Int, day: Int, weekday: Int) -> Bool {
        guard months.contains(month) else { return false }
        let d = days.contains(day), w = weekdays.contains(weekday)
        if daysRestricted && weekdaysRestricted { return d || w }
        return d && w
    }

    /// The first firing strictly after `date`, or nil when there is none within 5 years
    /// (`0 0 30 feb *` never fires).
    public func next(after date: Date) -> Date? {
        let limit = date.addingTimeInterval(5 * 366 * 86400)
        let walked = walk(after: date, limit: limit)
        // A fixed-time job whose wall-clock time fell into a spring-forward gap runs at
        // the first instant after the gap (as Vixie cron does), not never.
        if isFixedTime, let gap = firstGapFiring(after: date, before: walked ?? limit) { return gap }
        return walked
    }

    /// Minute and hour both fixed (no `*`): such a job runs once per wall-clock day even
    /// across DST changes. Jobs with a wildcard follow real time instead.
    var isFixedTime: Bool { !expression.split(separator: " ")[0].contains("*") && !expression.split(separator: " ")[1].contains("*") }

    private var calendar: Calendar {
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = timeZone
        return calendar
    }

    private func walk(after date: Date, limit: Date) -> Date? {
        let calendar = self.calendar
        // Start at the next whole minute (every zone offset in use is whole minutes).
        var t = Date(timeIntervalSince1970: (date.timeIntervalSince1970 / 60).rounded(.down) * 60 + 60)
        while t <= limit {
            let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .weekday], from: t)
            if !matches(month: c.month!, day: c.day!, weekday: c.weekday! - 1) {
                // On to the next local midnight.
                guard let dayStart = calendar.date(from: DateComponents(year: c.year, month: c.month, day: c.day)),
                      let nextDay = calendar.date(byAdding: .day, value: 1, to: dayStart), nextDay > t else { return nil }
                t = nextDay
                continue
            }
            if !hours.contains(c.hour!) {
                t = t.addingTimeInterval(Double(60 - c.minute!) * 60)
                continue
            }
            if minutes.contains(c.minute!) {
                // The repeated hour of an autumn change: a fixed-time job ran at the first one.
                if isFixedTime && isSecondOccurrence(t, hour: c.hour!, minute: c.minute!, calendar) {
                    t = t.addingTimeInterval(60)
                    continue
                }
                return t
            }
            t = t.addingTimeInterval(60)
        }
        return nil
    }

    /// Whether the wall time of `t` already happened an hour (or so) earlier: the
    /// repeated hour when clocks go back.
    private func isSecondOccurrence(_ t: Date, hour: Int, minute: Int, _ calendar: Calendar) -> Bool {
        let back = timeZone.secondsFromGMT(for: t.addingTimeInterval(-3600)) - timeZone.secondsFromGMT(for: t)
        guard back > 0 else { return false }
        let earlier = calendar.dateComponents([.hour, .minute], from: t.addingTimeInterval(-Double(back)))
        return earlier.hour == hour && earlier.minute == minute
    }

    /// The instant right after a spring-forward gap in (date, before) whose skipped wall
    /// times include one this schedule names.
    private func firstGapFiring(after date: Date, before end: Date) -> Date? {
        let calendar = self.calendar
        var from = date
        while let transition = timeZone.nextDaylightSavingTimeTransition(after: from), transition < end {
            from = transition
            let jump = timeZone.secondsFromGMT(for: transition) - timeZone.secondsFromGMT(for: transition.addingTimeInterval(-1))
            guard jump > 0, transition > date else { continue }
            // Local times [wall(transition) - jump, wall(transition)) never happened.
            let c = calendar.dateComponents([.month, .day, .hour, .minute, .weekday], from: transition)
            guard matches(month: c.month!, day: c.day!, weekday: c.weekday! - 1) else { continue }
            let wall = c.hour! * 60 + c.minute!
            for m in stride(from: wall - jump / 60, to: wall, by: 1) where m >= 0 {
                if hours.contains(m / 60) && minutes.contains(m % 60) { return transition }
            }
        }
        return nil
    }

    /// The last firing at or before `date`, searched back up to `within` seconds; tells
    /// whether a run was missed while the agent was down.
    public func previous(atOrBefore date: Date, within: TimeInterval = 400 * 86400) -> Date? {
        for window: TimeInterval in [3600, 86400, 8 * 86400, 32 * 86400, within] where window <= within {
            var t = date.addingTimeInterval(-window)
            var last: Date?
            while let n = next(after: t), n <= date {
                last = n
                t = n
            }
            if let last { return last }
        }
        return nil
    }
}

public struct CronError: Error, CustomStringConvertible, Equatable {
    public let description: String
    init(_ description: String) { self.description = description }
}
