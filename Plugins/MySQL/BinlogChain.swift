import CofferPluginProtocol
import Foundation

/// A point in the binlog: a file and a byte position in it, ordered by file then position.
struct BinlogPosition: Comparable, CustomStringConvertible {
    let file: String
    let offset: UInt64

    init(file: String, offset: UInt64) {
        self.file = file
        self.offset = offset
    }

    /// FILE:POS.
    init?(_ text: String) {
        guard let colon = text.lastIndex(of: ":"), let n = UInt64(text[text.index(after: colon)...]) else { return nil }
        file = String(text[..<colon])
        offset = n
    }

    var description: String { "\(file):\(offset)" }

    static func < (a: BinlogPosition, b: BinlogPosition) -> Bool {
        let c = BinlogName.compare(a.file, b.file)
        return c < 0 || (c == 0 && a.offset < b.offset)
    }
}

/// The rules of a MySQL source's chain: base backups at binlog positions, binlog slices
/// that must abut within a file, files that must follow each other with nothing missing,
/// and GTID state that must carry over from one file to the next in every domain.
struct BinlogChain {
    struct Base {
        let id: String
        let method: String
        let position: BinlogPosition
        let gtid: String
        /// µs since the Unix epoch.
        let time: Int64?
    }

    struct Slice {
        let id: String
        let file: String
        let start: UInt64
        let end: UInt64
        let closed: Bool
        let gtidStart: GTIDState
        let gtidEnd: GTIDState
        let firstTime: UInt32?
        let lastTime: UInt32?
    }

    /// An unbroken stretch of binlog, from `from` to `to`, and the slices that make it.
    struct Run {
        var from: BinlogPosition
        var to: BinlogPosition
        var slices: [Slice]
        var lastTime: UInt32?
    }

    var bases: [Base] = []
    var runs: [Run] = []
    var problems: [ChainProblem] = []

    init(_ backups: [BackupDescription]) {
        var slices: [Slice] = []
        for b in backups {
            let p = b.positions
            if b.kind == "full" {
                guard let file = p["binlog_file"], let pos = p["binlog_pos"].flatMap(UInt64.init) else {
                    problems.append(ChainProblem(kind: "corrupt", log: nil, detail: "backup \(b.id.prefix(12)) records no binlog position"))
                    continue
                }
                bases.append(Base(id: b.id, method: b.metadata["method"] ?? "", position: BinlogPosition(file: file, offset: pos),
                                  gtid: p["gtid"] ?? "", time: p["consistent_time"].flatMap { Int64($0) }))
            } else if b.kind == "log" {
                guard let file = p["file"], let start = p["start"].flatMap(UInt64.init), let end = p["end"].flatMap(UInt64.init) else {
                    problems.append(ChainProblem(kind: "corrupt", log: p["log"], detail: "log \(p["log"] ?? b.id) records no file/start/end"))
                    continue
                }
                slices.append(Slice(id: b.id, file: file, start: start, end: end, closed: p["closed"] == "1",
                                    gtidStart: GTIDState(p["gtid_start"] ?? ""), gtidEnd: GTIDState(p["gtid_end"] ?? ""),
                                    firstTime: p["first_time"].flatMap(UInt32.init), lastTime: p["last_time"].flatMap(UInt32.init)))
            }
        }
        bases.sort { $0.position < $1.position }
        slices.sort { BinlogPosition(file: $0.file, offset: $0.start) < BinlogPosition(file: $1.file, offset: $1.start) }
        walk(slices)
    }

    /// Splits the slices into unbroken runs, naming every hole, overlap and GTID jump.
    private mutating func walk(_ slices: [Slice]) {
        var run: Run?
        var previous: Slice?
        for s in slices {
            defer { previous = s }
            guard var current = run, let prev = previous else {
                run = Run(from: BinlogPosition(file: s.file, offset: s.start), to: BinlogPosition(file: s.file, offset: s.end),
                          slices: [s], lastTime: s.lastTime)
                continue
            }
            var broken: ChainProblem?
            if s.file == prev.file {
                if s.start > prev.end {
                    broken = ChainProblem(kind: "missing", log: s.file,
                                          detail: "binlog \(s.file): bytes \(prev.end) to \(s.start) are not in the vault (a hole)")
                } else if s.start < prev.end {
                    problems.append(ChainProblem(kind: "duplicate", log: s.file,
                                                 detail: "binlog \(s.file): slices overlap at \(s.start) (the one before ends at \(prev.end))"))
                    continue
                }
            } else {
                if !prev.closed {
                    broken = ChainProblem(kind: "missing", log: prev.file,
                                          detail: "binlog \(prev.file) is stored only up to \(prev.end): its end is not in the vault")
                } else if !BinlogName.follows(s.file, prev.file) {
                    let missing = BinlogChain.between(prev.file, s.file)
                    broken = ChainProblem(kind: "missing", log: missing,
                                          detail: "binlog \(missing) is missing: the vault has \(prev.file), then \(s.file)")
                } else if s.start != 0 {
                    broken = ChainProblem(kind: "missing", log: s.file,
                                          detail: "binlog \(s.file): bytes 0 to \(s.start) are not in the vault")
                } else {
                    for (domain, e) in s.gtidStart.entries {
                        guard let before = prev.gtidEnd.entries[domain] else { continue }
                        if before.seq != e.seq || before.server != e.server {
                            broken = ChainProblem(kind: "missing", log: s.file,
                                                  detail: "GTID discontinuity in domain \(domain): \(prev.file) ends at \(before.domain)-\(before.server)-\(before.seq), \(s.file) starts at \(e.domain)-\(e.server)-\(e.seq)")
                        }
                    }
                }
            }
            if let broken {
                problems.append(broken)
                runs.append(current)
                run = Run(from: BinlogPosition(file: s.file, offset: s.start), to: BinlogPosition(file: s.file, offset: s.end),
                          slices: [s], lastTime: s.lastTime)
            } else {
                current.to = BinlogPosition(file: s.file, offset: s.end)
                current.slices.append(s)
                current.lastTime = s.lastTime ?? current.lastTime
                run = current
            }
        }
        if let run { runs.append(run) }
    }

    static func between(_ a: String, _ b: String) -> String {
        guard let x = BinlogName.split(a) else { return b }
        return "\(x.0).\(String(format: "%06llu", x.1 + 1))"
    }

    /// The run that a base's position lies in (from its position on, the log is unbroken).
    func run(for base: Base) -> Run? {
        runs.first { $0.from <= base.position && base.position <= $0.to }
    }

    func window(_ base: Base) -> RestoreWindow {
        let from = base.time.map { BinlogChain.iso(Double($0) / 1_000_000) }
        guard let run = run(for: base) else {
            return RestoreWindow(stream: "binlog", base: base.id, fromPosition: base.position.description,
                                 toPosition: base.position.description, fromTime: from, toTime: from)
        }
        return RestoreWindow(stream: "binlog", base: base.id, fromPosition: base.position.description,
                             toPosition: run.to.description, fromTime: from,
                             toTime: run.lastTime.map { BinlogChain.iso(Double($0)) } ?? from)
    }

    func verify() -> ChainReport {
        ChainReport(windows: bases.map(window), problems: problems)
    }

    /// The base and the slices to replay for `target` (time, position, gtid; none: the
    /// latest point), the newest base from which it is reachable.
    func plan(target: [String: String]) throws -> ChainReport {
        let windows = bases.map(window)
        func refuse(_ why: String) -> ChainReport {
            let list = windows.map { "\($0.fromPosition) (\($0.fromTime ?? "?")) to \($0.toPosition) (\($0.toTime ?? "?")), base \($0.base.prefix(12))" }
            return ChainReport(windows: windows, problems: problems,
                               refusal: why + (list.isEmpty ? "; there is no base backup" : "; restorable windows: " + list.joined(separator: "; ")))
        }
        let time = try target["time"].map { try BinlogChain.parseTime($0) }
        let position = try target["position"].map { text -> BinlogPosition in
            guard let p = BinlogPosition(text) else { throw MySQLError("--to-position takes FILE:POS, not '\(text)'") }
            return p
        }
        let gtid = target["gtid"].map { GTIDState($0) }
        if let gtid, gtid.entries.isEmpty { throw MySQLError("--to-gtid takes DOMAIN-SERVER-SEQ[,...], not '\(target["gtid"]!)'") }

        for base in bases.reversed() {
            let run = self.run(for: base)
            let end = run?.to ?? base.position
            if let position {
                guard base.position <= position, position <= end else { continue }
            }
            if let time {
                guard let t0 = base.time, Double(t0) / 1_000_000 <= time else { continue }
                guard let last = run?.lastTime, time <= Double(last) + 1 else { continue }
            }
            if let gtid {
                // Reachable when every domain's target lies between the base's state and the run's end.
                let baseState = GTIDState(base.gtid)
                let endState = run?.slices.last?.gtidEnd ?? baseState
                let ok = gtid.entries.allSatisfy { d, e in
                    (baseState.entries[d]?.seq ?? 0) <= e.seq && e.seq <= (endState.entries[d]?.seq ?? 0)
                }
                guard ok else { continue }
            }
            // The base's whole file (its start holds the format description replay needs) and on.
            let slices = (run?.slices ?? []).filter { (s: Slice) -> Bool in
                guard BinlogName.compare(s.file, base.position.file) >= 0 else { return false }
                guard let position else { return true }
                return BinlogPosition(file: s.file, offset: s.start) < position
            }
            var resolved = target
            if target.isEmpty { resolved["position"] = end.description }
            return ChainReport(windows: windows, problems: problems, plan: [base.id] + slices.map(\.id), target: resolved)
        }
        let what = target.isEmpty ? "the latest point" : target.map { "\($0.key) \($0.value)" }.sorted().joined(separator: ", ")
        return refuse("\(what) is not reachable from any base backup with an unbroken binlog")
    }

    static func iso(_ seconds: Double) -> String {
        let f = ISO8601DateFormatter()
        f.formatOptions = [.withInternetDateTime]
        return f.string(from: Date(timeIntervalSince1970: seconds))
    }

    /// "2026-11-26 19:40:01[.123][+00[:00]|Z]" (no zone: UTC) → seconds since the epoch.
    static func parseTime(_ text: String) throws -> Double {
        var s = text.trimmingCharacters(in: .whitespaces).replacingOccurrences(of: "T", with: " ")
        var offset = 0
        if s.hasSuffix("Z") { s.removeLast() }
        else if let r = s.range(of: "[+-][0-9]{2}(:?[0-9]{2})?$", options: .regularExpression) {
            let zone = s[r].replacingOccurrences(of: ":", with: "")
            let sign = zone.hasPrefix("-") ? -1 : 1
            let digits = zone.dropFirst()
            let hours = Int(digits.prefix(2)) ?? 0, minutes = Int(digits.dropFirst(2)) ?? 0
            offset = sign * (hours * 3600 + minutes * 60)
            s = String(s[..<r.lowerBound])
        }
        var fraction = 0.0
        if let dot = s.firstIndex(of: ".") {
            fraction = Double("0" + s[dot...]) ?? 0
            s = String(s[..<dot])
        }
        let f = DateFormatter()
        f.locale = Locale(identifier: "en_US_POSIX")
        f.timeZone = TimeZone(identifier: "UTC")
        f.dateFormat = "yyyy-MM-dd HH:mm:ss"
        guard let d = f.date(from: s) else { throw MySQLError("cannot read the time '\(text)' (2026-11-26 19:40:01, UTC unless a zone follows)") }
        return d.timeIntervalSince1970 + fraction - Double(offset)
    }
}
