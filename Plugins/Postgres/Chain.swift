import CofferPluginProtocol
import Foundation

/// PostgreSQL's rules for a chain: which archived WAL a base backup needs to reach a point,
/// across timelines. A timeline's WAL is its ancestors' WAL up to each switch point (from
/// its history file), then its own; for every segment, recovery reads the copy of the
/// newest timeline on that path that had begun by then, and so does this walk.
struct Chain {
    struct Base {
        let id: String
        let timeline: UInt32
        let stop: LSN
        /// When the backup became consistent (µs since the Unix epoch); nil for old backups.
        let time: Int64?
    }

    struct Segment {
        let id: String
        let name: String
        let timeline: UInt32
        let number: UInt64
        let summary: WALSummaryRecord
    }

    /// A span of one timeline, [begin, end), on a timeline's path.
    struct Span {
        let timeline: UInt32
        let begin: LSN
        let end: LSN?
    }

    /// How far a base backup's chain goes before the archive runs out or breaks.
    struct Reach {
        var end: LSN
        var lastCommit: Int64?
        var walked: [Segment] = []
        /// The first segment the walk needed and did not find, when segments follow it.
        var brokenAt: String?
    }

    let segmentSize: UInt64
    var bases: [Base] = []
    var segments: [String: Segment] = [:]
    var histories: [UInt32: [Span]] = [:]
    var problems: [ChainProblem] = []

    init(_ backups: [BackupDescription]) {
        segmentSize = backups.lazy.compactMap { $0.metadata["wal_segment_size"].flatMap { UInt64($0) } }.first ?? 16 << 20
        var copies: [String: [BackupDescription]] = [:]
        for b in backups {
            if b.kind == "full" {
                guard let tli = b.positions["timeline"].flatMap({ UInt32($0) }),
                      let stop = b.positions["stop_lsn"].flatMap({ LSN($0) })
                else {
                    problems.append(ChainProblem(kind: "corrupt", log: nil, detail: "base backup \(b.id.prefix(12)) records no timeline or stop LSN"))
                    continue
                }
                bases.append(Base(id: b.id, timeline: tli, stop: stop, time: b.positions["consistent_time"].flatMap { Int64($0) }))
            } else if b.kind == "log", let log = b.positions["log"] {
                copies[log, default: []].append(b)
            }
        }
        for (log, list) in copies {
            if list.count > 1, Set(list.map { $0.metadata }).count > 1 {
                problems.append(ChainProblem(kind: "duplicate", log: log,
                                             detail: "\(log) is recorded \(list.count) times with different content (\(list.map { String($0.id.prefix(12)) }.joined(separator: ", ")))"))
            }
            let b = list[0]
            switch WALFileName(log, segmentSize: segmentSize) {
            case .segment(let tli, let n):
                segments[log] = Segment(id: b.id, name: log, timeline: tli, number: n, summary: WALSummaryRecord(metadata: b.metadata))
            case .history(let tli):
                histories[tli] = Chain.parseHistory(b.metadata["history"] ?? "", timeline: tli)
            default:
                break // partial segments and backup history files are kept, never replayed
            }
        }
        bases.sort { $0.stop < $1.stop }
        for tli in Set(segments.values.map(\.timeline)) where tli > 1 && histories[tli] == nil {
            problems.append(ChainProblem(kind: "missing", log: WALFileName.history(timeline: tli),
                                         detail: "timeline \(tli) has WAL but its history file \(WALFileName.history(timeline: tli)) is not in the vault"))
        }
    }

    /// A history file: one line per ancestor, "parentTLI<TAB>switchpoint<TAB>reason".
    static func parseHistory(_ text: String, timeline: UInt32) -> [Span] {
        var spans: [Span] = []
        var begin = LSN(0)
        for line in text.split(separator: "\n") {
            let fields = line.split(whereSeparator: { $0 == "\t" || $0 == " " })
            guard fields.count >= 2, !line.hasPrefix("#"), let tli = UInt32(fields[0]), let end = LSN(String(fields[1])) else { continue }
            spans.append(Span(timeline: tli, begin: begin, end: end))
            begin = end
        }
        spans.append(Span(timeline: timeline, begin: begin, end: nil))
        return spans
    }

    /// The spans whose WAL makes up `timeline`, oldest first.
    func path(_ timeline: UInt32) -> [Span] {
        histories[timeline] ?? [Span(timeline: timeline, begin: LSN(0), end: nil)]
    }

    var timelines: [UInt32] {
        Set(segments.values.map(\.timeline)).union(histories.keys).union(bases.map(\.timeline)).sorted()
    }

    func segmentNumber(_ lsn: LSN) -> UInt64 { lsn.value / segmentSize }

    /// The timeline whose copy of segment `n` recovery reads on this path.
    func timeline(for n: UInt64, on path: [Span]) -> UInt32 {
        path.last(where: { segmentNumber($0.begin) <= n })?.timeline ?? path[0].timeline
    }

    func name(_ n: UInt64, on path: [Span]) -> String {
        WALFileName.segment(timeline: timeline(for: n, on: path), number: n, segmentSize: segmentSize)
    }

    /// Bases that lie on the path: on one of its timelines, before that timeline's switch.
    func bases(on path: [Span]) -> [Base] {
        bases.filter { b in path.contains { $0.timeline == b.timeline && ($0.end.map { b.stop <= $0 } ?? true) } }
    }

    /// The last segment number any WAL on the path reaches.
    func lastSegment(on path: [Span]) -> UInt64? {
        segments.values.filter { s in
            path.contains { $0.timeline == s.timeline && s.number >= segmentNumber($0.begin)
                && ($0.end.map { s.number <= segmentNumber($0) } ?? true) }
        }.map(\.number).max()
    }

    func reach(from base: Base, on path: [Span]) -> Reach {
        var reach = Reach(end: base.stop, lastCommit: base.time)
        var n = segmentNumber(base.stop)
        let last = lastSegment(on: path) ?? 0
        while true {
            let expected = name(n, on: path)
            guard let segment = segments[expected] else {
                if n <= last { reach.brokenAt = expected }
                return reach
            }
            reach.walked.append(segment)
            let segmentEnd = LSN((n + 1) * segmentSize)
            reach.end = max(reach.end, segment.summary.recordsEnd.map { min($0, segmentEnd) } ?? segmentEnd)
            if let t = segment.summary.lastCommit { reach.lastCommit = max(reach.lastCommit ?? t, t) }
            n += 1
        }
    }

    /// Every segment missing between the oldest base on the path and its newest WAL, as runs.
    func gaps(on path: [Span]) -> [(first: String, last: String, count: UInt64)] {
        guard let oldest = bases(on: path).first, let last = lastSegment(on: path) else { return [] }
        var runs: [(String, String, UInt64)] = []
        var n = segmentNumber(oldest.stop)
        while n <= last {
            if segments[name(n, on: path)] == nil {
                let first = n
                while n <= last, segments[name(n, on: path)] == nil { n += 1 }
                runs.append((name(first, on: path), name(n - 1, on: path), n - first))
            }
            n += 1
        }
        return runs
    }

    /// The restorable windows of one timeline: each base's reach, overlapping ones merged.
    func windows(timeline: UInt32) -> [RestoreWindow] {
        let path = path(timeline)
        var merged: [(base: Base, end: LSN, lastCommit: Int64?)] = []
        for base in bases(on: path) {
            let r = reach(from: base, on: path)
            if let last = merged.last, base.stop <= last.end {
                merged[merged.count - 1].end = max(last.end, r.end)
                merged[merged.count - 1].lastCommit = [last.lastCommit, r.lastCommit].compactMap { $0 }.max()
            } else {
                merged.append((base, r.end, r.lastCommit))
            }
        }
        return merged.map {
            RestoreWindow(stream: "timeline \(timeline)", base: $0.base.id, fromPosition: $0.base.stop.description,
                          toPosition: $0.end.description, fromTime: $0.base.time.map(PGTime.format),
                          toTime: $0.lastCommit.map(PGTime.format))
        }
    }

    func verify() -> ChainReport {
        var problems = self.problems
        var named = Set<String>()
        for tli in timelines {
            for gap in gaps(on: path(tli)) where named.insert(gap.first).inserted {
                let what = gap.count == 1 ? "segment \(gap.first) is missing"
                    : "\(gap.count) segments are missing, \(gap.first) to \(gap.last)"
                problems.append(ChainProblem(kind: "missing", log: gap.first, detail: "timeline \(tli): \(what)"))
            }
        }
        if bases.isEmpty { problems.append(ChainProblem(kind: "missing", log: nil, detail: "no base backup: nothing can be restored")) }
        return ChainReport(windows: timelines.flatMap { windows(timeline: $0) }, problems: problems)
    }

    /// Picks the newest base backup from which the target can be reached on its timeline:
    /// the one asked for, or else the newest timeline on which the target lies (a restore
    /// point or a time that only an older timeline reached is still found).
    func plan(target: [String: String]) throws -> ChainReport {
        let report = verify()
        let timelines: [UInt32]
        switch target["timeline"] ?? "latest" {
        case "latest":
            timelines = self.timelines.reversed()
            guard !timelines.isEmpty else { return refuse(report, "the vault holds no backup of this source") }
        case let text:
            guard let t = UInt32(text) else { throw PostgresError("timeline must be a number or 'latest', not '\(text)'") }
            timelines = [t]
        }
        var resolved = target
        let description: String
        let fits: (Base, Reach) -> Bool
        if let text = target["time"] {
            guard let t = PGTime.parse(text) else { throw PostgresError("cannot read the time '\(text)' (use 2026-11-26 19:40:01.123456+00)") }
            resolved["time"] = PGTime.format(t)
            description = "time \(PGTime.format(t))"
            // Recovery stops at the first commit after the target, so one must follow it.
            fits = { b, r in (b.time.map { $0 <= t } ?? false) && (r.lastCommit.map { t < $0 } ?? false) }
        } else if let text = target["lsn"] {
            guard let l = LSN(text) else { throw PostgresError("cannot read the LSN '\(text)' (use 0/3000060)") }
            description = "LSN \(l)"
            fits = { b, r in b.stop <= l && l < r.end }
        } else if let text = target["xid"] {
            guard let x = UInt32(text) else { throw PostgresError("cannot read the transaction id '\(text)'") }
            description = "transaction \(x)"
            fits = { _, r in r.walked.contains { s in (s.summary.minXid.map { $0 <= x } ?? false) && (s.summary.maxXid.map { x <= $0 } ?? false) } }
        } else if let name = target["name"] {
            description = "restore point '\(name)'"
            fits = { b, r in r.walked.contains { $0.summary.restorePoints.contains { $0.name == name && $0.lsn >= b.stop } } }
        } else {
            description = "the latest point"
            fits = { _, _ in true }
        }
        for timeline in timelines {
            let path = path(timeline)
            for base in bases(on: path).reversed() where fits(base, reach(from: base, on: path)) {
                var plan = report
                plan.plan = [base.id]
                resolved["timeline"] = String(timeline)
                plan.target = resolved
                return plan
            }
        }
        let windows = timelines.flatMap { self.windows(timeline: $0) }.map {
            "on \($0.stream) from \($0.fromTime ?? "?") (\($0.fromPosition)) to \($0.toTime ?? "?") (\($0.toPosition))"
        }
        let on = timelines.count == 1 ? " on timeline \(timelines[0])" : ""
        var reason = "cannot restore to \(description)\(on): it is outside the restorable window"
        reason += windows.isEmpty ? "s (there are none)" : (windows.count == 1 ? ", " : "s, ") + windows.joined(separator: "; ")
        if target["time"] != nil {
            reason += ". A time target must lie after a base backup became consistent and before the last archived commit (recovery stops at the first commit after it)"
        }
        return refuse(report, reason)
    }

    private func refuse(_ report: ChainReport, _ reason: String) -> ChainReport {
        var r = report
        r.refusal = reason
        return r
    }
}
