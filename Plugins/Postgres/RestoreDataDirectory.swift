import CofferPluginKit
import CofferPluginProtocol
import Foundation

/// Writes a base backup back as a data directory: every directory, every file, the
/// backup_label, and the WAL that makes it consistent. Starting the server then recovers
/// to the backup's consistent point.
struct RestoreDataDirectory {
    let target: String

    func run(_ request: RestoreRequest, from source: ArtifactSource) throws -> RestoreDone {
        guard let base = request.backups.first else { throw PostgresError("nothing to restore") }
        let fm = FileManager.default
        if fm.fileExists(atPath: target), !(try fm.contentsOfDirectory(atPath: target)).isEmpty {
            throw PostgresError("target directory \(target) is not empty")
        }
        try fm.createDirectory(atPath: target, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        for dir in (base.metadata["directories"] ?? "").split(separator: "\n") {
            try fm.createDirectory(atPath: target + "/" + dir, withIntermediateDirectories: true,
                                   attributes: [.posixPermissions: 0o700])
        }
        for artifact in base.artifacts where artifact.name.hasPrefix("data/") {
            let path = target + "/" + artifact.name.dropFirst(5)
            guard fm.createFile(atPath: path, contents: nil, attributes: [.posixPermissions: 0o600]),
                  let handle = FileHandle(forWritingAtPath: path)
            else { throw PostgresError("cannot create \(path)") }
            try source.fetch(backup: base.id, name: artifact.name) { try handle.write(contentsOf: Data($0)) }
            try handle.synchronize()
            try handle.close()
        }
        return RestoreDone(positions: ["consistent_lsn": base.positions["consistent_lsn"] ?? ""])
    }
}
