// coffer-postgres: the PostgreSQL engine plugin (docs/plugin-protocol.md).
import CofferPluginKit
import CofferPluginProtocol

struct PostgresPlugin: EnginePlugin {
    let engine = "postgres"
    let capabilities = ["backup.full", "restore"]

    /// Source options: connection (libpq conninfo), data_directory (local mode),
    /// block_size (bytes per chunk of relation files, default 65536).
    func backup(_ request: BackupRequest, into sink: ArtifactSink) throws -> BackupDone {
        guard request.kind == "full" else { throw PostgresError("\(request.kind) backups are not implemented yet") }
        guard let dataDirectory = request.options["data_directory"] else {
            throw PostgresError("source \(request.source) has no data_directory (remote mode is not implemented yet)")
        }
        let blockSize = Int(request.options["block_size"] ?? "65536") ?? 0
        guard blockSize >= 8192, blockSize % 8192 == 0 else { throw PostgresError("block_size must be a multiple of 8192") }
        let connection = try Connection(request.options["connection"] ?? "")
        return try BaseBackup(connection: connection, dataDirectory: dataDirectory, blockSize: blockSize).run(into: sink)
    }

    /// Options: target_dir, the (empty or missing) directory to write the data directory to.
    func restore(_ request: RestoreRequest, from source: ArtifactSource) throws -> RestoreDone {
        guard let target = request.options["target_dir"] else { throw PostgresError("restore needs target_dir") }
        return try RestoreDataDirectory(target: target).run(request, from: source)
    }
}

PluginRunner.main(PostgresPlugin(), software: "coffer-postgres")
