// coffer-mysql: the MySQL/MariaDB engine plugin (docs/plugin-protocol.md, docs/engines/mysql.md).
import CofferPluginKit
import CofferPluginProtocol

struct MySQLPlugin: EnginePlugin {
    let engine = "mysql"
    let capabilities = ["backup.full", "restore", "capture", "chain"]

    /// Source options: socket or host/port, user, password_file; method = physical
    /// (mariabackup, default) or logical (parallel dump); see docs/engines/mysql.md.
    func backup(_ request: BackupRequest, into sink: ArtifactSink) throws -> BackupDone {
        let settings = try ConnectionSettings(options: request.options)
        switch request.kind {
        case "full":
            switch request.options["method"] ?? "physical" {
            case "physical": return try PhysicalBackup(options: request.options, settings: settings).run(into: sink)
            case "logical": return try LogicalDump(options: request.options, settings: settings).run(into: sink)
            default: throw MySQLError("method must be physical or logical, not '\(request.options["method"] ?? "")'")
            }
        default:
            throw MySQLError("\(request.kind) backups are not implemented (full is)")
        }
    }

    /// Binlog slices, one after another, from right after the vault's last (BinlogCapture).
    func capture(_ request: CaptureRequest, into sink: LogSink) throws {
        try BinlogCapture(request: request, settings: try ConnectionSettings(options: request.options), sink: sink).run()
    }

    /// verify: windows and problems of the binlog chain; plan: base and slices for a target.
    func chain(_ request: ChainRequest) throws -> ChainReport {
        let chain = BinlogChain(request.backups)
        switch request.action {
        case "verify": return chain.verify()
        case "plan": return try chain.plan(target: request.target)
        default: throw MySQLError("unknown chain action \(request.action)")
        }
    }

    func restore(_ request: RestoreRequest, from source: ArtifactSource) throws -> RestoreDone {
        guard let base = request.backups.first else { throw MySQLError("nothing to restore") }
        let logs = request.backups.dropFirst().filter { $0.kind == "log" }
        switch base.metadata["method"] {
        case "physical": return try PhysicalRestore(options: request.options).run(base: base, logs: Array(logs), from: source)
        case "logical": return try LogicalRestore(options: request.options).run(base: base, logs: Array(logs), from: source)
        default: throw MySQLError("backup \(base.id) has an unknown method '\(base.metadata["method"] ?? "")'")
        }
    }
}

PluginRunner.main(MySQLPlugin(), software: "coffer-mysql")
