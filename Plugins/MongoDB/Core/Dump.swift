import CofferPluginKit
import CofferPluginProtocol
import Foundation

/// A consistent dump of a replica-set member: every collection's documents, its options and
/// indexes, the views, and the oplog written while it ran, so that a restore (documents, then
/// that oplog replayed) is consistent at the dump's end, as `mongodump --oplog` is.
///
/// Why not one snapshot (readConcern snapshot + atClusterTime): SecantusDB accepts the read
/// concern but returns the newest data whatever the cluster time (docs/engines/mongodb.md),
/// and snapshot reads on mongod expire after minutes (minSnapshotHistoryWindowInSeconds),
/// too short for a large dump. The oplog method works on both.
public struct Dump {
    let uri: String
    let connections: Int
    /// Documents of one collection are read ahead up to this many bytes while another is sent.
    let readAhead = 32 << 20

    public init(uri: String, connections: Int) {
        self.uri = uri
        self.connections = max(1, connections)
    }

    public struct Entry {
        let ns: Namespace
        let info: Document
        var isView: Bool { info["type"]?.string == "view" }
    }

    public func run(into sink: ArtifactSink) throws -> BackupDone {
        let client = try MongoClient(uri: uri)
        let hello = try client.command("admin", ["hello": .int32(1)])
        guard let setName = hello["setName"]?.string else {
            throw MongoError("the server is not a replica-set member (hello has no setName): there is no oplog to make a dump consistent")
        }
        let start = try Oplog.newest(client)
        let entries = try catalog(client)
        PluginRunner.log("coffer-mongodb: dumping \(entries.count) namespaces from oplog \(start.ts) with \(connections) connections")

        for e in entries {
            var meta = e.info
            meta["db"] = .string(e.ns.database)
            if !e.isView {
                let indexes = try client.commandCursor(e.ns.database, ["listIndexes": .string(e.ns.collection)])
                meta["indexes"] = .array(indexes.map { .document($0) })
            }
            try sink.artifact(name: e.ns.metadataArtifact, chunker: "cdc") { try $0.write(meta.bytes) }
        }
        let collections = entries.filter { !$0.isView }
        var counts: [Int64] = []
        try ParallelReader(uri: uri, workers: connections, readAhead: readAhead).read(collections.map(\.ns)) { i, channel in
            var n: Int64 = 0
            try sink.artifact(name: collections[i].ns.dataArtifact, chunker: "cdc") { out in
                while let piece = try channel.take() {
                    n += Int64(piece.count)
                    try out.write(piece)
                }
            }
            counts.append(n)
        }

        // The oplog from the dump's start to now: replayed over the documents it makes them
        // consistent at its last entry, C. (One query: on SecantusDB every query of the
        // oplog scans all of it.)
        var entriesCopied = 0
        var end = start
        try sink.artifact(name: "oplog.bson", chunker: "cdc") { out in
            let cursor = try client.find("local", "oplog.rs", filter: ["ts": .document(["$gte": .timestamp(start.ts)])])
            var first = true
            var lastRaw: [UInt8] = []
            while try cursor.next({ raw -> Void in
                lastRaw = Array(raw)
                if first {
                    let d = try Document(bson: raw)
                    guard d["ts"]?.timestamp == start.ts else {
                        throw MongoError("the oplog rolled over during the dump: its entry \(start.ts) is gone (the oldest is \(d["ts"]?.timestamp.map(\.description) ?? "?")); give the oplog more room")
                    }
                    first = false
                }
                try out.write(Array(raw))
                entriesCopied += 1
            }) != nil {}
            if first { throw MongoError("the oplog rolled over during the dump: its entry \(start.ts) is gone") }
            end = try OplogEntry(Document(bson: lastRaw))
        }
        PluginRunner.log("coffer-mongodb: dump consistent at \(end.ts) (\(entriesCopied) oplog entries during the dump)")
        return BackupDone(
            positions: ["start_ts": start.ts.description, "start_time": Oplog.iso(start.wall),
                        "ts": end.ts.description, "time": Oplog.iso(end.wall), "wall_ms": String(end.wall)],
            metadata: ["set_name": setName, "collections": String(collections.count),
                       "views": String(entries.count - collections.count), "bytes": String(counts.reduce(0, +)),
                       "format": "coffer-mongodb 1"])
    }

    /// Every collection and view to back up, databases in name order.
    func catalog(_ client: MongoClient) throws -> [Entry] {
        let dbs = try client.command("admin", ["listDatabases": .int32(1), "nameOnly": .bool(true)])
        let names = (dbs["databases"]?.array ?? []).compactMap { $0.document?["name"]?.string }
            .filter { !Namespace.excluded(database: $0) }.sorted()
        var out: [Entry] = []
        for db in names {
            for info in try client.commandCursor(db, ["listCollections": .int32(1)]) {
                guard let name = info["name"]?.string else { continue }
                let ns = Namespace(database: db, collection: name)
                if ns.excluded { continue }
                out.append(Entry(ns: ns, info: info))
            }
        }
        return out.sorted { ($0.ns.database, $0.ns.collection) < ($1.ns.database, $1.ns.collection) }
    }
}
