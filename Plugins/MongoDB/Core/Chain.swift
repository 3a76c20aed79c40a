import CofferPluginProtocol
import Foundation

/// MongoDB's rules for a chain: a dump is consistent at an oplog Timestamp C; oplog slices
/// each hold the entries (after_ts, last_ts] (or [first_ts, last_ts] for the first slice
/// of a capture that had nothing to resume from). A dump can be rolled forward to any point
/// up to the end of the unbroken run of slices that starts at or before C.
public struct Chain {
    struct Base {
        let id: String
        let ts: Timestamp
        let wall: Int64
    }

    struct Slice {
        let id: String
        let name: String
        let after: Timestamp?
        let first: Timestamp
        let last: Timestamp
        let lastWall: Int64
        let firstWall: Int64

        /// Whether this slice holds every entry after `ts` up to its end.
        func continues(_ ts: Timestamp) -> Bool {
            if let after { return after <= ts && ts < last }
            return first <= ts && ts < last
        }
    }

    var bases: [Base] = []
    var slices: [Slice] = []
    var problems: [ChainProblem] = []

    public init(_ backups: [BackupDescription]) {
        for b in backups {
            if b.kind == "full" {
                guard let ts = b.positions["ts"].flatMap(Timestamp.init) else {
                    problems.append(ChainProblem(kind: "corrupt", log: nil, detail: "dump \(b.id.prefix(12)) records no oplog Timestamp"))
                    continue
                }
                bases.append(Base(id: b.id, ts: ts, wall: b.positions["wall_ms"].flatMap { Int64($0) } ?? Int64(ts.t) * 1000))
            } else if b.kind == "log", let name = b.positions["log"] {
                guard let first = b.positions["first_ts"].flatMap(Timestamp.init), let last = b.positions["last_ts"].flatMap(Timestamp.init) else {
                    problems.append(ChainProblem(kind: "corrupt", log: name, detail: "oplog slice \(name) records no Timestamps"))
                    continue
                }
                slices.append(Slice(id: b.id, name: name, after: b.positions["after_ts"].flatMap(Timestamp.init), first: first, last: last,
                                    lastWall: b.positions["last_wall_ms"].flatMap { Int64($0) } ?? Int64(last.t) * 1000,
                                    firstWall: b.positions["first_wall_ms"].flatMap { Int64($0) } ?? Int64(first.t) * 1000))
            }
        }
        bases.sort { $0.ts < $1.ts }
        slices.sort { $0.last < $1.last }
    }

    /// How far a base reaches: the slices that continue it, in order, and their end.
    func reach(from base: Base) -> (end: Timestamp, wall: Int64, walked: [Slice]) {
        var end = base.ts
        var wall = base.wall
        var walked: [Slice] = []
        while let next = slices.first(where: { $0.continues(end) }) {
            walked.append(next)
            end = next.last
            wall = next.lastWall
        }
        return (end, wall, walked)
    }

    /// Breaks between slices, and dumps whose consistent point no slice continues though
    /// newer slices exist: named, so verify fails on them.
    func gaps() -> [ChainProblem] {
        var out: [ChainProblem] = []
        for (i, s) in slices.enumerated() where i > 0 {
            let prev = slices[i - 1]
            if let after = s.after, after == prev.last { continue }
            if s.after == nil && s.first <= prev.last { continue }
            let from = s.after.map { "\($0)" } ?? "\(prev.last)"
            out.append(ChainProblem(kind: "missing", log: s.name,
                                    detail: "oplog entries after \(prev.last) (end of \(prev.name)) up to \(s.first) (start of \(s.name)) are not in the vault (the slice resumes after \(from))"))
        }
        for b in bases {
            let later = slices.filter { $0.last > b.ts }
            if let first = later.first, !later.contains(where: { $0.continues(b.ts) }) {
                out.append(ChainProblem(kind: "missing", log: first.name,
                                        detail: "no oplog slice continues dump \(b.id.prefix(12)) from its consistent point \(b.ts) (\(Oplog.iso(b.wall))); the next slice starts at \(first.first)"))
            }
        }
        return out
    }

    func windows() -> [RestoreWindow] {
        var merged: [(base: Base, end: Timestamp, wall: Int64)] = []
        for b in bases {
            let r = reach(from: b)
            if let last = merged.last, b.ts <= last.end {
                if r.end > last.end { merged[merged.count - 1].end = r.end; merged[merged.count - 1].wall = r.wall }
            } else {
                merged.append((b, r.end, r.wall))
            }
        }
        return merged.map {
            RestoreWindow(stream: "oplog", base: $0.base.id, fromPosition: $0.base.ts.description, toPosition: $0.end.description,
                          fromTime: Oplog.iso($0.base.wall), toTime: Oplog.iso($0.wall))
        }
    }

    public func verify() -> ChainReport {
        var problems = self.problems + gaps()
        if bases.isEmpty { problems.append(ChainProblem(kind: "missing", log: nil, detail: "no dump: nothing can be restored")) }
        return ChainReport(windows: windows(), problems: problems)
    }

    /// The newest dump from which the target is reachable, with the slices to replay.
    public func plan(target: [String: String]) throws -> ChainReport {
        var report = verify()
        var resolved: [String: String] = [:]
        let description: String
        let fits: (Base, Timestamp, Int64) -> Bool
        if let text = target["timestamp"] {
            guard let ts = Timestamp(text) else { throw MongoError("cannot read the oplog timestamp '\(text)' (use T:I, e.g. 1795730121:3)") }
            resolved["timestamp"] = ts.description
            description = "oplog timestamp \(ts)"
            fits = { b, end, _ in b.ts <= ts && ts <= end }
        } else if let text = target["time"] {
            guard let t = Oplog.parseTime(text) else { throw MongoError("cannot read the time '\(text)' (use 2026-11-26T19:40:01.123Z)") }
            resolved["time"] = Oplog.iso(t)
            description = "time \(Oplog.iso(t))"
            fits = { b, _, wall in b.wall <= t && t <= wall }
        } else {
            description = "the latest point"
            fits = { _, _, _ in true }
        }
        for b in bases.reversed() {
            let r = reach(from: b)
            guard fits(b, r.end, r.wall) else { continue }
            report.plan = [b.id] + r.walked.map(\.id)
            if resolved.isEmpty { resolved["timestamp"] = r.end.description }
            report.target = resolved
            return report
        }
        let windows = report.windows.map { "from \($0.fromTime ?? "?") (\($0.fromPosition)) to \($0.toTime ?? "?") (\($0.toPosition))" }
        var reason = "cannot restore to \(description): it is outside the restorable window"
        reason += windows.isEmpty ? "s (there are none)" : (windows.count == 1 ? ", " : "s, ") + windows.joined(separator: "; ")
        report.refusal = reason
        return report
    }
}
