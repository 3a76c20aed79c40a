import CofferPluginKit
import CofferPluginProtocol
import Foundation

/// Restores a dump into a target server and replays the oplog to the target point.
///
/// Options: `target_uri` (required), `database.OLD=NEW` (restore a database under another
/// name), `restore_connections` (parallel inserts, default 2), `existing=force` (drop the
/// target's collections of the same names first; without it, a collection that already
/// exists on the target fails the restore), `target_timestamp` (T:I) or `target_time`,
/// `replay` (auto, applyops, translate: how the oplog is written; decision 014).
public struct Restore {
    let options: [String: String]

    public init(options: [String: String]) { self.options = options }

    public func run(_ request: RestoreRequest, from source: ArtifactSource) throws -> RestoreDone {
        guard let uri = options["target_uri"], !uri.isEmpty else {
            throw MongoError("a MongoDB restore needs a target server: --target-uri mongodb://HOST:PORT (or --set target_uri=...)")
        }
        guard options["existing"] != "delta" else {
            throw MongoError("--delta is for file-based restores; a MongoDB restore writes into a server (use --force to replace the collections it restores)")
        }
        guard let base = request.backups.first, base.kind == "full" else { throw MongoError("the restore has no dump to start from") }
        guard let baseStart = base.positions["start_ts"].flatMap(Timestamp.init), let consistent = base.positions["ts"].flatMap(Timestamp.init) else {
            throw MongoError("dump \(base.id.prefix(12)) records no oplog positions")
        }
        let stop = try Stop(options: options)
        if let ts = stop.ts, ts < consistent {
            throw MongoError("the target \(ts) is before dump \(base.id.prefix(12)) became consistent (\(consistent))")
        }
        if let t = stop.timeMs, let w = base.positions["wall_ms"].flatMap(Int64.init), t < w {
            throw MongoError("the target \(Oplog.iso(t)) is before dump \(base.id.prefix(12)) became consistent (\(Oplog.iso(w)))")
        }
        let map = DatabaseMap(options: options)
        let connections = max(1, Int(options["restore_connections"] ?? "") ?? 2)
        let client = try MongoClient(uri: uri)
        // Asked before anything is written, so a forced applyops on a server without it fails
        // with the target untouched.
        let (replayMode, why) = try ReplayMode.choose(option: options["replay"], target: client)
        PluginRunner.log("coffer-mongodb: oplog replay by \(replayMode == .applyOps ? "applyOps" : "translation to ordinary writes") (\(why))")

        // Catalog first: every namespace's metadata, to check the target and create collections.
        let metaNames = base.artifacts.map(\.name).filter { $0.hasPrefix("meta/") }
        var metas: [(ns: Namespace, meta: Document)] = []
        var buffer: [UInt8] = []
        try source.fetch(metaNames.map { FetchItem(backup: base.id, name: $0) }) { i, piece in
            switch piece {
            case .begin: buffer = []
            case .data(let piece): piece.withUnsafeBytes { buffer += $0 }
            case .end:
                guard let ns = Namespace(artifact: metaNames[i]) else { throw MongoError("bad artifact name \(metaNames[i])") }
                metas.append((ns, try Document(bson: buffer)))
            }
        }
        try prepareTarget(client, metas.map { map.map($0.ns) })
        let collections = metas.filter { $0.meta["type"]?.string != "view" }
        for (ns, meta) in collections {
            var cmd: Document = ["create": .string(ns.collection)]
            for (k, v) in meta["options"]?.document?.fields ?? [] { cmd[k] = v }
            try client.command(map.map(ns.database), cmd)
        }

        // Documents, in bulk, on several connections.
        let dataNames = base.artifacts.map(\.name).filter { $0.hasPrefix("data/") }
        let inserter = ParallelInserter(uri: uri, workers: connections)
        var documents: Int64 = 0
        do {
            var splitter = BSONStreamSplitter()
            var batch = InsertBatch(ns: Namespace(database: "", collection: ""))
            try source.fetch(dataNames.map { FetchItem(backup: base.id, name: $0) }) { i, piece in
                switch piece {
                case .begin:
                    guard let ns = Namespace(artifact: dataNames[i]) else { throw MongoError("bad artifact name \(dataNames[i])") }
                    splitter = BSONStreamSplitter()
                    batch = InsertBatch(ns: map.map(ns))
                case .data(let piece):
                    try piece.withUnsafeBytes { raw in
                        try splitter.feed(raw) { doc in
                            batch.add(doc)
                            documents += 1
                            if batch.full {
                                try inserter.submit(batch)
                                batch = InsertBatch(ns: batch.ns)
                            }
                        }
                    }
                case .end:
                    try splitter.finish()
                    if !batch.isEmpty { try inserter.submit(batch) }
                    batch = InsertBatch(ns: batch.ns)
                }
            }
            try Restore.keepingAlive(source) { try inserter.finish() }
        } catch {
            inserter.cancel()
            throw error
        }

        // Indexes after the documents (one build each instead of maintenance per insert), then views.
        for (ns, meta) in collections {
            let specs: [BSON] = (meta["indexes"]?.array ?? []).compactMap { spec -> BSON? in
                guard var d = spec.document, d["name"]?.string != "_id_" else { return nil }
                d["ns"] = nil
                d["entryFormat"] = nil
                return .document(d)
            }
            if !specs.isEmpty {
                try Restore.keepingAlive(source) {
                    try client.command(map.map(ns.database), ["createIndexes": .string(ns.collection), "indexes": .array(specs)])
                }
            }
        }
        for (ns, meta) in metas where meta["type"]?.string == "view" {
            var cmd: Document = ["create": .string(ns.collection)]
            for (k, v) in meta["options"]?.document?.fields ?? [] { cmd[k] = v }
            try client.command(map.map(ns.database), cmd)
        }
        PluginRunner.log("coffer-mongodb: restored \(documents) documents in \(collections.count) collections")

        // The oplog: the dump's own (to its consistent point), then the captured slices.
        let applier = OplogApplier(client: client, map: map, mode: replayMode)
        var reached = consistent
        var reachedTime = base.positions["time"] ?? ""
        func replay(_ backup: BackupDescription, name: String, after: Timestamp, upTo limit: Timestamp?) throws -> Bool {
            var splitter = BSONStreamSplitter()
            var done = false
            try source.fetch(backup: backup.id, name: name) { raw in
                guard !done else { return }
                try splitter.feed(raw) { doc in
                    guard !done else { return }
                    let entry = try OplogEntry(Document(bson: doc))
                    if entry.ts <= after { return }
                    if let limit, entry.ts > limit { return }
                    if !stop.includes(entry) { done = true; return }
                    try applier.apply(entry)
                    if entry.ts > reached {
                        reached = entry.ts
                        reachedTime = Oplog.iso(entry.wall)
                    }
                }
            }
            if !done { try splitter.finish() }
            return done
        }
        var stopped = try replay(base, name: "oplog.bson", after: baseStart, upTo: consistent)
        for log in request.backups.dropFirst() where !stopped {
            guard log.kind == "log", let artifact = log.artifacts.first else { continue }
            stopped = try replay(log, name: artifact.name, after: consistent, upTo: nil)
        }
        try applier.finish()
        PluginRunner.log("coffer-mongodb: replayed \(applier.applied) oplog entries (\(replayMode.rawValue)"
                         + (replayMode == .applyOps ? ", \(applier.applyOpsCommands) applyOps commands" : "") + "), reached \(reached)")
        return RestoreDone(positions: ["ts": reached.description, "time": reachedTime, "replay": replayMode.rawValue,
                                       "documents": String(documents), "oplog_entries": String(applier.applied)])
    }

    /// Fails when a namespace to restore exists on the target, or drops it with existing=force.
    func prepareTarget(_ client: MongoClient, _ namespaces: [Namespace]) throws {
        let force = options["existing"] == "force"
        for db in Set(namespaces.map(\.database)) {
            let existing = Set(try client.commandCursor(db, ["listCollections": .int32(1), "nameOnly": .bool(true)])
                .compactMap { $0["name"]?.string })
            for ns in namespaces where ns.database == db && existing.contains(ns.collection) {
                guard force else {
                    throw MongoError("\(ns) already exists on the target; restore under another name (--set database.\(db)=NEWNAME) or replace it (--force)")
                }
                try client.command(db, ["drop": .string(ns.collection)])
            }
        }
    }
}

extension Restore {
    /// Runs `work` on another thread and tells the agent the plugin is alive every few
    /// seconds meanwhile: an index build on a large collection can outlast plugin_timeout.
    static func keepingAlive(_ source: ArtifactSource, _ work: @escaping @Sendable () throws -> Void) throws {
        final class Outcome: @unchecked Sendable { var error: Error? }
        let outcome = Outcome()
        let done = DispatchSemaphore(value: 0)
        Thread.detachNewThread {
            do { try work() } catch { outcome.error = error }
            done.signal()
        }
        while done.wait(timeout: .now() + 5) == .timedOut { try source.alive() }
        if let error = outcome.error { throw error }
    }
}

/// Where replay stops: after the last entry at or before a Timestamp or a time; nil: the end.
struct Stop {
    var ts: Timestamp?
    var timeMs: Int64?

    init(options: [String: String]) throws {
        if let text = options["target_timestamp"] {
            guard let ts = Timestamp(text) else { throw MongoError("cannot read the oplog timestamp '\(text)' (use T:I, e.g. 1795730121:3)") }
            self.ts = ts
        }
        if let text = options["target_time"] {
            guard let t = Oplog.parseTime(text) else { throw MongoError("cannot read the time '\(text)' (use 2026-11-26T19:40:01.123Z)") }
            timeMs = t
        }
    }

    func includes(_ e: OplogEntry) -> Bool {
        if let ts, e.ts > ts { return false }
        if let timeMs, e.wall > timeMs { return false }
        return true
    }
}
