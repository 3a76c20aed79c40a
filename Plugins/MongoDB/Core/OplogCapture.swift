import Foundation

/// Where capture hands each finished slice: stored durably before `commit` returns.
public protocol SliceSink: AnyObject {
    /// Stores one slice (concatenated BSON oplog entries) with its positions.
    func commit(name: String, bytes: [UInt8], positions: [String: String], metadata: [String: String]) throws
    /// Says the capture is alive while the server is quiet.
    func alive() throws
}

/// Tails local.oplog.rs (tailable, awaitData) into slices, each a run of whole entries cut
/// by time or size, never inside a group of entries sharing one Timestamp (a transaction
/// on SecantusDB). Resumes right after the last stored entry and fails, naming the gap,
/// when the oplog no longer holds it.
public final class OplogCapture {
    let uri: String
    let follow: Bool
    let sliceSeconds: Double
    let sliceBytes: Int
    /// Option capture_after_gap = "continue": after a gap, capture from the oldest entry the
    /// oplog still has (the gap stays in the chain, named by verify) instead of failing.
    let continueAfterGap: Bool
    /// The last entry already stored (the previous slice's last_ts); nil: from the oldest entry.
    var after: Timestamp?
    /// Stops a follow capture (a signal handler sets it).
    let stopRequested: @Sendable () -> Bool

    public init(uri: String, follow: Bool, after: Timestamp?, options: [String: String],
                stopRequested: @escaping @Sendable () -> Bool = { false }) {
        self.uri = uri
        self.follow = follow
        self.after = after
        sliceSeconds = Double(options["capture_slice_seconds"] ?? "") ?? 5
        sliceBytes = Int(options["capture_slice_bytes"] ?? "") ?? 16 << 20
        continueAfterGap = options["capture_after_gap"] == "continue"
        self.stopRequested = stopRequested
    }

    struct Slice {
        var bytes: [UInt8] = []
        var first: OplogEntry?
        var last: OplogEntry?
        var count = 0
        var started = Date()
    }

    public func run(into sink: SliceSink) throws {
        var failures = 0
        while true {
            do {
                let finished = try tail(into: sink)
                if finished { return }
                failures = 0
            } catch let error as GapError {
                guard continueAfterGap, after != nil else { throw error }
                PluginRunnerLog.log("coffer-mongodb: \(error); capture_after_gap = continue: capturing from the oldest entry, the gap stays in the chain")
                after = nil
            } catch {
                // The server went away (a restart): reconnect and resume after the last
                // stored entry; an unstored slice is read again from the oplog.
                guard follow, !stopRequested(), failures < 60 else { throw error }
                failures += 1
                PluginRunnerLog.log("coffer-mongodb: capture lost the server (\(error)); retrying")
                try sink.alive()
                Thread.sleep(forTimeInterval: 1)
            }
            if stopRequested() { return }
        }
    }

    /// One cursor's life. Returns true when the capture is complete (follow == false).
    func tail(into sink: SliceSink) throws -> Bool {
        let client = try MongoClient(uri: uri)
        let setName = try client.command("admin", ["hello": .int32(1)])["setName"]?.string ?? ""
        let end = follow ? nil : try Oplog.newest(client).ts
        var filter = Document()
        if let after { filter = ["ts": .document(["$gte": .timestamp(after)])] }
        let cursor = try client.find("local", "oplog.rs", filter: filter,
                                     opts: ["tailable": .bool(true), "awaitData": .bool(true), "maxAwaitTimeMS": .int32(1000),
                                            "batchSize": .int32(1000)])
        let source = TailSource(client: client, cursor: cursor)
        var slice = Slice()
        var checkedResume = after == nil
        var lastAlive = Date()

        func cut() throws {
            guard let first = slice.first, let last = slice.last else { return }
            let name = OplogCapture.sliceName(first: first.ts, last: last.ts)
            var positions = ["log": name, "first_ts": first.ts.description, "last_ts": last.ts.description,
                             "first_time": Oplog.iso(first.wall), "last_time": Oplog.iso(last.wall),
                             "last_wall_ms": String(last.wall), "first_wall_ms": String(first.wall)]
            if let after { positions["after_ts"] = after.description }
            try sink.commit(name: name, bytes: slice.bytes, positions: positions,
                            metadata: ["set_name": setName, "entries": String(slice.count)])
            after = last.ts
            slice = Slice()
            lastAlive = Date()
        }

        while true {
            if let (e, raw) = try source.next() {
                if !checkedResume {
                    // The first entry must be the last stored one; anything newer means the
                    // oplog was truncated past it and entries in between are lost.
                    guard let after, e.ts == after else {
                        throw GapError(after: after!, oldest: e.ts, oldestTime: e.wall)
                    }
                    checkedResume = true
                }
                if let after, e.ts <= after { continue }
                if let end, e.ts > end {
                    // --once stores up to the newest entry at its start. Under a steady write
                    // load the cursor is never idle, so the end is checked here as well.
                    try cut()
                    return true
                }
                if let last = slice.last, last.ts != e.ts, slice.bytes.count >= sliceBytes || Date().timeIntervalSince(slice.started) >= sliceSeconds {
                    try cut()
                }
                if slice.first == nil { slice.first = e; slice.started = Date() }
                slice.last = e
                slice.bytes += raw
                slice.count += 1
                continue
            }
            if !checkedResume {
                // Not even the last stored entry came back.
                let oldest = try? Oplog.oldest(client)
                throw GapError(after: after!, oldest: oldest?.ts, oldestTime: oldest?.wall)
            }
            // Nothing new within maxAwaitTimeMS.
            if let end {
                if (slice.last?.ts ?? after ?? Timestamp(t: 0, i: 0)) >= end || !cursor.alive {
                    try cut()
                    return true
                }
                try sink.alive()
                continue
            }
            if !slice.bytes.isEmpty && Date().timeIntervalSince(slice.started) >= sliceSeconds { try cut() }
            if stopRequested() { return true }
            if Date().timeIntervalSince(lastAlive) >= 5 {
                try sink.alive()
                lastAlive = Date()
            }
            guard cursor.alive else { return false }
        }
    }

    /// A slice's log name: its first and last Timestamps, zero-padded so names sort in order.
    static func sliceName(first: Timestamp, last: Timestamp) -> String {
        func pad(_ ts: Timestamp) -> String {
            String(repeating: "0", count: max(0, 10 - String(ts.t).count)) + String(ts.t) + "."
                + String(repeating: "0", count: max(0, 10 - String(ts.i).count)) + String(ts.i)
        }
        return "oplog-\(pad(first))-\(pad(last))"
    }
}

/// The entries of a freshly opened tailable cursor on the oplog, without the hole SecantusDB
/// leaves in it: its find answers the first batch from one scan of the oplog and starts the
/// tail after the newest entry visible once that scan is done, so entries committed during
/// the scan come from neither (probed on 0.7.0b3: 38 of 171 entries missed under a write loop
/// while the cursor opened on a 100,000-entry oplog). So once the cursor has answered, one
/// plain query from its first entry reads everything committed by then; the cursor's own
/// entries are taken only past the last of those. On mongod the plain query is a cheap
/// range read and changes nothing.
final class TailSource {
    typealias Item = (OplogEntry, [UInt8])
    let client: MongoClient
    let cursor: MongoCursor
    private var started = false
    private var fill: MongoCursor?
    private var handedThrough: Timestamp?

    init(client: MongoClient, cursor: MongoCursor) {
        self.client = client
        self.cursor = cursor
    }

    private func tail() throws -> Item? {
        try cursor.next { raw -> Item in (try OplogEntry(Document(bson: raw)), Array(raw)) }
    }

    /// The next entry, or nil when none is there now.
    func next() throws -> Item? {
        if !started {
            started = true
            // The cursor's first entry: its find has run, so its tail has started.
            guard let (first, _) = try tail() else { return nil }
            fill = try client.find("local", "oplog.rs", filter: ["ts": .document(["$gte": .timestamp(first.ts)])],
                                   opts: ["batchSize": .int32(1000)])
        }
        if let f = fill {
            if let item = try f.next({ raw -> Item in (try OplogEntry(Document(bson: raw)), Array(raw)) }) {
                handedThrough = item.0.ts
                return item
            }
            fill = nil
            guard handedThrough != nil else {
                throw MongoError("the oplog moved past the capture's first entry while the capture opened its cursor")
            }
        }
        while let item = try tail() {
            if let through = handedThrough, item.0.ts <= through { continue }
            return item
        }
        return nil
    }
}

/// The oplog no longer holds the entry capture must resume after.
public struct GapError: Error, CustomStringConvertible {
    public let after: Timestamp
    public let oldest: Timestamp?
    public let oldestTime: Int64?

    public var description: String {
        let now = oldest.map { "its oldest entry is now \($0)" + (oldestTime.map { " (\(Oplog.iso($0)))" } ?? "") } ?? "it is empty"
        return "gap in the oplog: the last captured entry \(after) is no longer in local.oplog.rs (\(now)); "
            + "the writes between them are lost to the log. Take a new dump to start a new chain, and give the oplog more room or capture more often"
    }
}

/// stderr logging without the plugin kit, so the capture code stays testable on its own.
enum PluginRunnerLog {
    static func log(_ line: String) { FileHandle.standardError.write(Data((line + "\n").utf8)) }
}
