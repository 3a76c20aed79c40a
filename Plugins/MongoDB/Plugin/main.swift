// coffer-mongodb: the MongoDB engine plugin (docs/engines/mongodb.md).
import CofferMongoDB
import CofferPluginKit
import CofferPluginProtocol

struct MongoDBPlugin: EnginePlugin {
    let engine = "mongodb"
    let capabilities = ["backup.full", "restore", "chain"]

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

PluginRunner.main(MongoDBPlugin(), software: "coffer-mongodb")
