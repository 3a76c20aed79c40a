import CofferAgent
import CofferFixtures
import CofferPluginProtocol
import CofferVault
import Foundation

/// A fresh vault in a scratch directory and coffer-postgres driven through the agent's
/// PluginJob, for tests that need no archiving (and so no CLI and no config file).
final class PluginVault {
    let dir: String
    let vault: Vault

    init() throws {
        dir = NSTemporaryDirectory() + "coffer-pgtest-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        vault = try Vault.create(backend: LocalBackend(path: dir + "/vault"), secret: .passphrase([1]),
                                 scrypt: ScryptParameters(n: 1 << 10, r: 8, p: 1))
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }

    private func job() throws -> PluginJob {
        let products = BuildProducts.directory(containing: "coffer-postgres")
        let path = try PluginLocator.find(engine: "postgres", environment: ["COFFER_PLUGIN_PATH": products])
        return PluginJob(vault: vault, plugin: try PluginProcess(path: path, timeout: 120), engine: "postgres")
    }

    /// A full backup of `server`: local mode reads its data directory, remote mode asks it
    /// for BASE_BACKUP over a replication connection.
    func backup(_ server: PostgresServer, remote: Bool) throws -> String {
        let options = remote ? ["connection": server.conninfo, "mode": "remote"]
                             : ["connection": server.conninfo, "data_directory": server.dataDirectory]
        return try backup(options: options)
    }

    /// A full backup with these source options.
    func backup(options: [String: String]) throws -> String {
        try job().backup(BackupRequest(source: "main", kind: "full", options: options))
    }

    /// Restores a backup into `dir/name` (not started); returns the directory.
    func restore(_ id: String, name: String, options: [String: String] = [:]) throws -> String {
        let target = dir + "/" + name
        _ = try job().restore(source: "main", backups: [id], options: options.merging(["target_dir": target]) { $1 })
        return target
    }

    /// Bytes of the vault's files on disk.
    func diskBytes() throws -> Int64 {
        var total: Int64 = 0
        let root = dir + "/vault"
        let e = FileManager.default.enumerator(atPath: root)
        while let f = e?.nextObject() as? String {
            let attrs = try FileManager.default.attributesOfItem(atPath: root + "/" + f)
            if attrs[.type] as? FileAttributeType == .typeRegular { total += (attrs[.size] as? Int64) ?? 0 }
        }
        return total
    }
}
