import CofferPluginKit
import CofferPluginProtocol
import Foundation

/// Writes a base backup back as a data directory (every directory, every file, the
/// backup_label and the WAL that makes it consistent), then configures recovery through
/// Coffer: restore_command, the target, and promotion once it is reached. With `start`
/// it starts the server, waits for recovery to end and reports where it stopped.
struct RestoreDataDirectory {
    /// Options, as the agent passes them:
    /// - target_dir: where the data directory goes;
    /// - existing: "force" (empty a non-empty target first) or "delta" (keep what matches,
    ///   rewrite what differs, remove what the backup does not have); a non-empty target is
    ///   refused otherwise;
    /// - restore_command: the command recovery fetches WAL with (`coffer wal-fetch ... %f %p`);
    /// - target_time, target_lsn, target_xid, target_name, target_timeline: the recovery target;
    /// - pg.<setting>: extra settings for postgresql.auto.conf (pg.port=5433);
    /// - start: "1" to start the server and wait for the end of recovery; os_user (default
    ///   postgres) runs it when Coffer runs as root.
    let options: [String: String]
    var target: String { options["target_dir"] ?? "" }

    func run(_ request: RestoreRequest, from source: ArtifactSource) throws -> RestoreDone {
        guard let base = request.backups.first else { throw PostgresError("nothing to restore") }
        guard !target.isEmpty else { throw PostgresError("restore needs target_dir") }
        let delta = try prepareTarget()
        let fm = FileManager.default
        var expected = Set<String>()
        for dir in (base.metadata["directories"] ?? "").split(separator: "\n") {
            expected.insert(String(dir))
            try fm.createDirectory(atPath: target + "/" + dir, withIntermediateDirectories: true,
                                   attributes: [.posixPermissions: 0o700])
        }
        for artifact in base.artifacts where artifact.name.hasPrefix("data/") {
            let relative = String(artifact.name.dropFirst(5))
            expected.insert(relative)
            try FileRestorer(path: target + "/" + relative, delta: delta, size: artifact.size).write { sink in
                try source.fetch(backup: base.id, name: artifact.name, to: sink)
            }
        }
        if delta { try removeUnexpected(expected) }
        try configureRecovery()
        // One sync of the whole file system rather than one per file: thousands of small
        // relation files would otherwise each wait for the disk.
        let dir = open(target, O_RDONLY | O_DIRECTORY)
        guard dir >= 0, linuxSyncfs(dir) == 0 else { throw PostgresError("cannot sync \(target): \(String(cString: strerror(errno)))") }
        close(dir)
        var positions = ["consistent_lsn": base.positions["stop_lsn"] ?? "", "base": base.id]
        if options["start"] == "1" {
            positions.merge(try RecoveryRun(dataDirectory: target, options: options).startAndWait()) { $1 }
        }
        return RestoreDone(positions: positions)
    }

    /// Makes sure the target may be written; true when restoring as a delta.
    private func prepareTarget() throws -> Bool {
        let fm = FileManager.default
        let entries = fm.fileExists(atPath: target) ? try fm.contentsOfDirectory(atPath: target) : []
        if entries.isEmpty {
            try fm.createDirectory(atPath: target, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
            return false
        }
        if fm.fileExists(atPath: target + "/postmaster.pid") {
            throw PostgresError("\(target) has a postmaster.pid: a server may be running on it; stop it first")
        }
        switch options["existing"] {
        case "force":
            for entry in entries { try fm.removeItem(atPath: target + "/" + entry) }
            return false
        case "delta":
            return true
        default:
            throw PostgresError("target directory \(target) is not empty; use --delta to update it in place or --force to replace its contents")
        }
    }

    /// After a delta restore, what the backup does not have goes (PostgreSQL would otherwise
    /// find relation files of dropped tables, or WAL from another history).
    private func removeUnexpected(_ expected: Set<String>) throws {
        let fm = FileManager.default
        guard let walker = fm.enumerator(atPath: target) else { return }
        var doomed: [String] = []
        while let relative = walker.nextObject() as? String {
            if !expected.contains(relative) {
                doomed.append(relative)
                var isDir: ObjCBool = false
                if fm.fileExists(atPath: target + "/" + relative, isDirectory: &isDir), isDir.boolValue { walker.skipDescendants() }
            }
        }
        for relative in doomed { try fm.removeItem(atPath: target + "/" + relative) }
    }

    /// recovery.signal plus the settings in postgresql.auto.conf, replacing any recovery
    /// settings the backed-up server carried (a server that was itself restored once).
    private func configureRecovery() throws {
        let autoConf = target + "/postgresql.auto.conf"
        let existing = (try? String(contentsOfFile: autoConf, encoding: .utf8)) ?? ""
        var settings: [(String, String)] = []
        if let command = options["restore_command"] { settings.append(("restore_command", command)) }
        let targets = [("target_time", "recovery_target_time"), ("target_lsn", "recovery_target_lsn"),
                       ("target_xid", "recovery_target_xid"), ("target_name", "recovery_target_name")]
        for (option, setting) in targets { if let v = options[option] { settings.append((setting, v)) } }
        if let timeline = options["target_timeline"] { settings.append(("recovery_target_timeline", timeline)) }
        if targets.contains(where: { options[$0.0] != nil }) { settings.append(("recovery_target_action", "promote")) }
        for (key, value) in options.sorted(by: { $0.key < $1.key }) where key.hasPrefix("pg.") {
            settings.append((String(key.dropFirst(3)), value))
        }
        let replaced = Set(settings.map(\.0)).union(targets.map(\.1)).union(["restore_command", "recovery_target",
                                                                             "recovery_target_action", "recovery_target_timeline"])
        var lines = existing.split(separator: "\n", omittingEmptySubsequences: false).filter { line in
            let key = line.split(separator: "=").first?.trimmingCharacters(in: .whitespaces) ?? ""
            return !replaced.contains(key)
        }
        while lines.last?.isEmpty == true { lines.removeLast() }
        lines.append("# Recovery from a Coffer vault, written by coffer restore.")
        for (key, value) in settings { lines.append("\(key) = '\(value.replacingOccurrences(of: "'", with: "''"))'") }
        try (lines.joined(separator: "\n") + "\n").write(toFile: autoConf, atomically: true, encoding: .utf8)
        guard FileManager.default.createFile(atPath: target + "/recovery.signal", contents: nil, attributes: [.posixPermissions: 0o600]) else {
            throw PostgresError("cannot create \(target)/recovery.signal")
        }
    }
}

/// Writes one restored file. In delta mode an existing file is compared block by block as
/// the data arrives and only differing blocks are written, so an unchanged file costs reads
/// only; a new file is written whole. The caller syncs the file system once at the end.
struct FileRestorer {
    let path: String
    let delta: Bool
    let size: Int64

    func write(_ fetch: ((UnsafeRawBufferPointer) throws -> Void) throws -> Void) throws {
        let fd = open(path, O_RDWR | O_CREAT | (delta ? 0 : O_TRUNC), 0o600)
        guard fd >= 0 else { throw PostgresError("cannot create \(path): \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var offset: off_t = 0
        var existing = [UInt8](repeating: 0, count: delta ? 1 << 20 : 0)
        try fetch { bytes in
            var done = 0
            while done < bytes.count {
                let piece = UnsafeRawBufferPointer(rebasing: bytes[done..<min(bytes.count, done + (1 << 20))])
                if delta {
                    let got = existing.withUnsafeMutableBytes { pread(fd, $0.baseAddress!, piece.count, offset) }
                    if got == piece.count, existing.withUnsafeBytes({ memcmp($0.baseAddress!, piece.baseAddress!, piece.count) }) == 0 {
                        offset += off_t(piece.count)
                        done += piece.count
                        continue
                    }
                }
                var written = 0
                while written < piece.count {
                    let n = pwrite(fd, piece.baseAddress! + written, piece.count - written, offset + off_t(written))
                    if n < 0 {
                        if errno == EINTR { continue }
                        throw PostgresError("cannot write \(path): \(String(cString: strerror(errno)))")
                    }
                    written += n
                }
                offset += off_t(piece.count)
                done += piece.count
            }
        }
        guard offset == off_t(size) else { throw PostgresError("\(path): got \(offset) bytes, expected \(size)") }
        if ftruncate(fd, offset) != 0 {
            throw PostgresError("cannot finish \(path): \(String(cString: strerror(errno)))")
        }
    }
}

/// syncfs(2), which Glibc's Swift module leaves out (it needs _GNU_SOURCE).
@_silgen_name("syncfs") func linuxSyncfs(_ fd: Int32) -> Int32
