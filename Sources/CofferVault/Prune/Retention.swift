import Foundation

/// Which backups of a source to keep (docs/config.md, `[source.NAME.retention]`). The
/// keep_* rules are restic's and borg's: the newest backup in each of the last N hours,
/// days, ... that have backups.
public struct RetentionPolicy: Sendable, Equatable {
    public var keepLast: Int?
    public var keepHourly: Int?
    public var keepDaily: Int?
    public var keepWeekly: Int?
    public var keepMonthly: Int?
    public var keepYearly: Int?
    /// Every backup started within this many seconds before now.
    public var keepWithin: TimeInterval?
    /// Every second of the last this-many seconds stays restorable (docs/decisions/009).
    public var pitrWindow: TimeInterval?
    /// Where hours, days, weeks, months and years begin.
    public var timeZone = TimeZone(identifier: "UTC")!

    /// Logs archived up to this long before the oldest kept backup started are kept too:
    /// the archiving host's clock and the backup host's may disagree.
    public static let logMargin: TimeInterval = 3600

    public init() {}

    public var hasRules: Bool {
        [keepLast, keepHourly, keepDaily, keepWeekly, keepMonthly, keepYearly].contains { $0 != nil }
            || keepWithin != nil || pitrWindow != nil
    }
}

/// A duration as the config file and the CLI write it: "7d", "36h", "1w2d", "90m", "30s".
public enum RetentionDuration {
    public static func parse(_ text: String) -> TimeInterval? {
        let units: [Character: TimeInterval] = ["w": 604_800, "d": 86_400, "h": 3_600, "m": 60, "s": 1]
        var total: TimeInterval = 0
        var number = ""
        var any = false
        for c in text.trimmingCharacters(in: .whitespaces) {
            if c.isASCII, c.isNumber {
                number.append(c)
            } else if let unit = units[c], let n = Int(number) {
                total += TimeInterval(n) * unit
                number = ""
                any = true
            } else {
                return nil
            }
        }
        return any && number.isEmpty ? total : nil
    }

    public static func format(_ seconds: TimeInterval) -> String {
        var rest = Int(seconds)
        var out = ""
        for (unit, size) in [("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)] where rest >= size {
            out += "\(rest / size)\(unit)"
            rest %= size
        }
        return out.isEmpty ? "0s" : out
    }
}

/// What prune decided for one backup or log, and why.
public struct RetentionDecision: Codable, Sendable, Equatable {
    public var id: String
    public var kind: String
    public var started: Date
    /// The log's name, for logs.
    public var log: String?
    public var keep: Bool
    /// Every rule that keeps it, or the one reason it goes.
    public var reasons: [String]
}

public enum Retention {
    /// Applies `policy` to one source's records (backups and logs).
    ///
    /// Backups (every kind but `log`): kept by any keep_* rule, by the point-in-time window
    /// (the newest full backup that became consistent before the window's start, or the
    /// oldest full backup when none did), as the parent of a kept incremental, and the
    /// newest backup always. Logs: kept from the oldest kept backup's start (less
    /// `logMargin`) on, so every kept backup can be rolled forward to now and verification
    /// finds no hole between kept backups; older logs go. The engine plugin then confirms
    /// (Pruner) that the chain it needs is whole.
    public static func decide(_ records: [BackupRecord], policy: RetentionPolicy, now: Date)
        -> (backups: [RetentionDecision], logs: [RetentionDecision]) {
        let bases = records.filter { $0.manifest.kind != "log" }
            .sorted { ($0.manifest.started, $0.id) > ($1.manifest.started, $1.id) }
        var reasons: [String: [String]] = [:]
        func keep(_ r: BackupRecord, _ why: String) { reasons[r.id, default: []].append(why) }

        if let n = policy.keepLast {
            for (i, r) in bases.prefix(max(0, n)).enumerated() { keep(r, "keep_last: \(i + 1) of \(n)") }
        }
        var calendar = Calendar(identifier: .iso8601)
        calendar.timeZone = policy.timeZone
        let buckets: [(String, Int?, (Date) -> String)] = [
            ("keep_hourly", policy.keepHourly, { d in bucket(calendar, d, [.year, .month, .day, .hour]) { "\($0[0])-\(pad($0[1]))-\(pad($0[2])) \(pad($0[3])):00" } }),
            ("keep_daily", policy.keepDaily, { d in bucket(calendar, d, [.year, .month, .day]) { "\($0[0])-\(pad($0[1]))-\(pad($0[2]))" } }),
            ("keep_weekly", policy.keepWeekly, { d in bucket(calendar, d, [.yearForWeekOfYear, .weekOfYear]) { "\($0[0])-W\(pad($0[1]))" } }),
            ("keep_monthly", policy.keepMonthly, { d in bucket(calendar, d, [.year, .month]) { "\($0[0])-\(pad($0[1]))" } }),
            ("keep_yearly", policy.keepYearly, { d in bucket(calendar, d, [.year]) { "\($0[0])" } }),
        ]
        for (name, count, key) in buckets {
            guard var remaining = count else { continue }
            var last: String?
            for r in bases where remaining > 0 {
                let k = key(r.manifest.started)
                if k != last {
                    keep(r, "\(name): newest of \(k)")
                    last = k
                    remaining -= 1
                }
            }
        }
        if let within = policy.keepWithin {
            let since = now.addingTimeInterval(-within)
            for r in bases where r.manifest.started >= since {
                keep(r, "keep_within \(RetentionDuration.format(within)): started after \(Timestamp.format(since))")
            }
        }
        let fulls = bases.filter { $0.manifest.kind == "full" || $0.manifest.kind == "stream" }
        if let window = policy.pitrWindow {
            let start = now.addingTimeInterval(-window)
            // `finished` is no earlier than the moment the backup became consistent.
            if let anchor = fulls.first(where: { $0.manifest.finished <= start }) {
                keep(anchor, "pitr_window \(RetentionDuration.format(window)): the base for restoring to \(Timestamp.format(start))")
            } else if let oldest = fulls.last {
                keep(oldest, "pitr_window \(RetentionDuration.format(window)): the oldest base (the window begins before any backup)")
            }
        }
        if let newest = bases.first { keep(newest, "newest backup (always kept)") }
        // Kept incrementals keep what they build on.
        let byID = Dictionary(bases.map { ($0.id, $0) }, uniquingKeysWith: { a, _ in a })
        var queue = bases.filter { reasons[$0.id] != nil }
        while let r = queue.popLast() {
            guard let parent = r.manifest.parent, let p = byID[parent] else { continue }
            let fresh = reasons[p.id] == nil
            keep(p, "parent of kept backup \(r.id.prefix(12))")
            if fresh { queue.append(p) }
        }

        let backupDecisions = bases.map { r in
            RetentionDecision(id: r.id, kind: r.manifest.kind, started: r.manifest.started, log: nil,
                              keep: reasons[r.id] != nil, reasons: reasons[r.id] ?? ["no rule keeps it"])
        }
        let kept = bases.filter { reasons[$0.id] != nil }
        let oldestKept = kept.last
        let logs = records.filter { $0.manifest.kind == "log" }
            .sorted { ($0.manifest.started, $0.id) < ($1.manifest.started, $1.id) }
        let logDecisions = logs.map { r -> RetentionDecision in
            let decision = { (keep: Bool, why: String) in
                RetentionDecision(id: r.id, kind: "log", started: r.manifest.started, log: r.manifest.positions["log"],
                                  keep: keep, reasons: [why])
            }
            guard let oldest = oldestKept else { return decision(true, "no backup of the source is kept: its logs stay") }
            let cutoff = oldest.manifest.started.addingTimeInterval(-RetentionPolicy.logMargin)
            if r.manifest.started >= cutoff {
                return decision(true, "archived after the oldest kept backup \(oldest.id.prefix(12)) began (less \(RetentionDuration.format(RetentionPolicy.logMargin)))")
            }
            return decision(false, "archived before the oldest kept backup \(oldest.id.prefix(12)) began (\(Timestamp.format(oldest.manifest.started)))")
        }
        return (backupDecisions, logDecisions)
    }

    private static func bucket(_ calendar: Calendar, _ date: Date, _ units: [Calendar.Component], _ format: ([Int]) -> String) -> String {
        let parts = calendar.dateComponents(Set(units), from: date)
        return format(units.map { parts.value(for: $0) ?? 0 })
    }

    private static func pad(_ n: Int) -> String { n < 10 ? "0\(n)" : "\(n)" }
}
