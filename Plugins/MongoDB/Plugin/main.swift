// coffer-mongodb: the MongoDB engine plugin (docs/engines/mongodb.md).
import CofferMongoDB
import CofferPluginKit
import CofferPluginProtocol

struct MongoDBPlugin: EnginePlugin {
    let engine = "mongodb"
    let capabilities = ["backup.full", "restore", "chain", "capture"]

    /// Source options: uri (a mongodb:// connection string to a replica-set member),
    /// dump_connections (collections read at once, default 2).
    func backup(_ request: BackupRequest, into sink: ArtifactSink) throws -> BackupDone {
        guard request.kind == "full" else {
            throw MongoError("\(request.kind) backups are not what the MongoDB plugin takes: dumps are full; the oplog is captured (coffer capture)")
        }
        guard let uri = request.options["uri"] else { throw MongoError("source \(request.source) has no uri") }
        let connections = Int(request.options["dump_connections"] ?? "") ?? 2
        guard connections >= 1 else { throw MongoError("dump_connections must be at least 1") }
        return try Dump(uri: uri, connections: connections).run(into: sink)
    }

    /// Tails the oplog into slices (capture_slice_seconds, default 5; capture_slice_bytes,
    /// default 16 MiB), resuming after the last stored slice. SIGTERM ends it at once: an
    /// uncommitted slice is read again from the oplog next time.
    func capture(_ request: CaptureRequest, into sink: LogSink) throws {
        guard let uri = request.options["uri"] else { throw MongoError("source \(request.source) has no uri") }
        var after: Timestamp?
        if let last = request.last {
            guard let ts = last.positions["last_ts"].flatMap(Timestamp.init) else {
                throw MongoError("the last stored log \(last.positions["log"] ?? last.id) records no last_ts")
            }
            after = ts
        }
        try OplogCapture(uri: uri, follow: request.follow, after: after, options: request.options).run(into: LogSinkAdapter(sink))
    }

    func restore(_ request: RestoreRequest, from source: ArtifactSource) throws -> RestoreDone {
        try Restore(options: request.options).run(request, from: source)
    }

    func chain(_ request: ChainRequest) throws -> ChainReport {
        let chain = Chain(request.backups)
        switch request.action {
        case "verify": return chain.verify()
        case "plan": return try chain.plan(target: request.target)
        default: throw MongoError("unknown chain action \(request.action)")
        }
    }
}

/// Stores each oplog slice as one log through the agent.
final class LogSinkAdapter: SliceSink {
    let sink: LogSink
    init(_ sink: LogSink) { self.sink = sink }

    func commit(name: String, bytes: [UInt8], positions: [String: String], metadata: [String: String]) throws {
        try sink.artifact(name: "oplog.bson", chunker: "whole") { try $0.write(bytes) }
        let id = try sink.commit(positions: positions, metadata: metadata)
        PluginRunner.log("coffer-mongodb: stored \(name) as \(id.prefix(12))")
    }

    func alive() throws { try sink.alive() }
}

PluginRunner.main(MongoDBPlugin(), software: "coffer-mongodb")
