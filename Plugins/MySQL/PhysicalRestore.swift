import CofferPluginKit
import CofferPluginProtocol
import Foundation

/// Restores a physical backup as a data directory: its files are written straight into the
/// target (a backup of the older one-stream layout goes through `mbstream -x`), then
/// `mariabackup --prepare` makes it consistent (at the backup's binlog position). The target
/// then is the data directory (copy-back done). Options: target_dir; existing = force to
/// replace a non-empty target; os_user to own the files (mysql, when the server runs as that
/// user); prepare_memory (--use-memory of the prepare, default 1G).
struct PhysicalRestore {
    let options: [String: String]

    func run(base: BackupDescription, logs: [BackupDescription], from source: ArtifactSource) throws -> RestoreDone {
        guard let target = options["target_dir"], !target.isEmpty else { throw MySQLError("restore needs target_dir") }
        try prepareTarget(target)
        if base.metadata["layout"] == PhysicalLayout.name {
            try writeFiles(of: base, into: target, from: source)
        } else {
            try extractStream(of: base, into: target, from: source)
        }
        // Recovery applies the redo log copied during the backup in batches the size of its
        // buffer pool: mariabackup's default (100 MiB) means many passes over a busy backup's log.
        let prepare = try Subprocess(options["mariabackup"] ?? "mariabackup",
                                     ["--prepare", "--target-dir=\(target)", "--use-memory=\(options["prepare_memory"] ?? "1G")"])
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
        // Durable before the restore says it is done: one sync of the file system for the
        // files written here, prepare's and the replay's writes.
        let dir = open(target, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { if dir >= 0 { close(dir) } }
        guard dir >= 0, mysqlSyncfs(dir) == 0 else { throw MySQLError("cannot sync \(target): \(String(cString: strerror(errno)))") }
        return RestoreDone(positions: ["base": base.id, "binlog_file": base.positions["binlog_file"] ?? "",
                                       "binlog_pos": base.positions["binlog_pos"] ?? "", "gtid": base.positions["gtid"] ?? ""]
                                       .merging(replayed) { _, new in new })
    }

    /// The per-file layout: every run written at its offset, in backup order.
    private func writeFiles(of base: BackupDescription, into target: String, from source: ArtifactSource) throws {
        var items: [FetchItem] = []
        var runs: [(path: String, offset: UInt64, size: Int64)] = []
        for artifact in base.artifacts {
            guard let run = PhysicalLayout.parse(artifact.name) else {
                throw MySQLError("backup \(base.id) has an artifact \(artifact.name) that is no file of a physical backup")
            }
            try PhysicalLayout.check(run.path)
            items.append(FetchItem(backup: base.id, name: artifact.name))
            runs.append((run.path, run.offset, artifact.size))
        }
        let writer = FileRunWriter(directory: target)
        do {
            try source.fetch(items) { i, piece in
                switch piece {
                case .begin: try writer.open(path: runs[i].path, offset: runs[i].offset, size: runs[i].size)
                case .data(let piece): try writer.append(piece)
                case .end: try writer.close()
                }
            }
            try writer.finish()
        } catch {
            writer.abort(error)
            throw error
        }
    }

    /// Backups from before the per-file layout: one xbstream, extracted by mbstream.
    private func extractStream(of base: BackupDescription, into target: String, from source: ArtifactSource) throws {
        let extract = try Subprocess(options["mbstream"] ?? "mbstream", ["-x", "-C", target], stdin: .pipe)
        do {
            try source.fetch(backup: base.id, name: PhysicalLayout.legacyArtifact) { try extract.write($0) }
            extract.closeInput()
            try extract.check()
        } catch {
            extract.closeInput()
            _ = extract.wait()
            throw error
        }
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

/// syncfs(2), which Glibc's Swift module leaves out (it needs _GNU_SOURCE).
@_silgen_name("syncfs") func mysqlSyncfs(_ fd: Int32) -> Int32
