// coffer-postgres: the PostgreSQL engine plugin (docs/plugin-protocol.md).
import CofferPluginKit
import CofferPluginProtocol

struct PostgresPlugin: EnginePlugin {
    let engine = "postgres"
    let capabilities = ["backup.full", "backup.log", "restore", "chain"]

    /// Source options: connection (libpq conninfo), mode (local or remote), data_directory
    /// (local mode), block_size (bytes per chunk of relation files, default 65536). A log
    /// backup (`coffer wal-push`) takes wal_path, the file archive_command was given.
    func backup(_ request: BackupRequest, into sink: ArtifactSink) throws -> BackupDone {
        switch request.kind {
        case "full":
            let o = request.options
            let blockSize = Int(o["block_size"] ?? "65536") ?? 0
            guard blockSize >= 8192, blockSize % 8192 == 0 else { throw PostgresError("block_size must be a multiple of 8192") }
            // Local when the plugin can read the data directory (it is named), remote (the
            // replication protocol) otherwise; `mode` says so explicitly.
            switch o["mode"] ?? (o["data_directory"] == nil ? "remote" : "local") {
            case "local":
                guard let dataDirectory = o["data_directory"] else {
                    throw PostgresError("source \(request.source) has mode = \"local\" but no data_directory")
                }
                let connection = try Connection(o["connection"] ?? "")
                return try BaseBackup(connection: connection, dataDirectory: dataDirectory, blockSize: blockSize).run(into: sink)
            case "remote":
                return try RemoteBaseBackup(conninfo: o["connection"] ?? "", blockSize: blockSize).run(into: sink)
            case let other:
                throw PostgresError("source \(request.source): mode must be \"local\" or \"remote\", not \"\(other)\"")
            }
        case "log":
            guard let path = request.options["wal_path"] else { throw PostgresError("a log backup needs wal_path") }
            let segmentSize = UInt64(request.options["wal_segment_size"] ?? "") ?? 16 << 20
            return try ArchivePush(path: path, segmentSize: segmentSize).run(into: sink)
        default:
            throw PostgresError("\(request.kind) backups are not implemented (full and log are)")
        }
    }

    /// Modes (option `mode`): the default restores a base backup (RestoreDataDirectory
    /// lists its options); `wal-fetch` delivers one archived file (log, path, spool);
    /// `prefetch` fills the spool after one (log, count, spool, wal_segment_size).
    func restore(_ request: RestoreRequest, from source: ArtifactSource) throws -> RestoreDone {
        let o = request.options
        // `mode` is also a source key (local, remote): those restore a base backup too.
        switch o["mode"] ?? "base" {
        case "wal-fetch":
            guard let log = o["log"], let path = o["path"] else { throw PostgresError("wal-fetch needs log and path") }
            return try WALFetch(log: log, path: path, spool: o["spool"]).run(from: source)
        case "prefetch":
            guard let log = o["log"], let spool = o["spool"] else { throw PostgresError("prefetch needs log and spool") }
            return try WALPrefetch(after: log, count: Int(o["count"] ?? "") ?? 8, spool: spool,
                                   segmentSize: UInt64(o["wal_segment_size"] ?? "") ?? 16 << 20).run(from: source)
        default:
            return try RestoreDataDirectory(options: o).run(request, from: source)
        }
    }

    /// verify: windows and problems; plan: the base backup for a target (Chain.swift).
    func chain(_ request: ChainRequest) throws -> ChainReport {
        let chain = Chain(request.backups)
        switch request.action {
        case "verify": return chain.verify()
        case "plan": return try chain.plan(target: request.target)
        default: throw PostgresError("unknown chain action \(request.action)")
        }
    }
}

PluginRunner.main(PostgresPlugin(), software: "coffer-postgres")
