import CofferPluginKit
import CofferPluginProtocol
import Foundation

/// Restores a physical backup as a data directory: the xbstream is fetched straight into
/// `mbstream -x` in the target, then `mariabackup --prepare` makes it consistent (at the
/// backup's binlog position). The target then is the data directory (copy-back done).
/// Options: target_dir; existing = force to replace a non-empty target; os_user to own
/// the files (mysql, when the server runs as that user).
struct PhysicalRestore {
    let options: [String: String]

    func run(base: BackupDescription, logs: [BackupDescription], from source: ArtifactSource) throws -> RestoreDone {
        guard let target = options["target_dir"], !target.isEmpty else { throw MySQLError("restore needs target_dir") }
        try prepareTarget(target)
        let extract = try Subprocess(options["mbstream"] ?? "mbstream", ["-x", "-C", target], stdin: .pipe)
        do {
            try source.fetch(backup: base.id, name: "mariabackup.xbstream") { try extract.write($0) }
            extract.closeInput()
            try extract.check()
        } catch {
            extract.closeInput()
            _ = extract.wait()
            throw error
        }
        let prepare = try Subprocess(options["mariabackup"] ?? "mariabackup", ["--prepare", "--target-dir=\(target)"])
        try prepare.check()
        var replayed: [String: String] = [:]
        if !logs.isEmpty {
            // Point in time: the binlog from the base's position to the target, replayed into
            // a server started on the restored directory for the purpose.
            let server = try TemporaryServer(dataDirectory: target, options: options)
            replayed = try BinlogReplay(options: options, base: base, slices: logs).run(from: source, into: server.settings)
            try server.stop()
            for name in ["coffer-replay.pid", "coffer-replay.err"] { try? FileManager.default.removeItem(atPath: target + "/" + name) }
        }
        if let user = options["os_user"] {
            let chown = try Subprocess("chown", ["-R", "\(user):\(user)", target])
            try chown.check()
        }
        return RestoreDone(positions: ["base": base.id, "binlog_file": base.positions["binlog_file"] ?? "",
                                       "binlog_pos": base.positions["binlog_pos"] ?? "", "gtid": base.positions["gtid"] ?? ""]
                                       .merging(replayed) { _, new in new })
    }

    private func prepareTarget(_ target: String) throws {
        let fm = FileManager.default
        if let contents = try? fm.contentsOfDirectory(atPath: target), !contents.isEmpty {
            guard options["existing"] == "force" else {
                throw MySQLError("\(target) is not empty (give --force to replace its contents)")
            }
            for name in contents { try fm.removeItem(atPath: target + "/" + name) }
        }
        try fm.createDirectory(atPath: target, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o750])
    }
}
