import CofferIO
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
        let tablespaces = try Tablespaces(recorded: base.metadata["tablespaces"] ?? "", options: options)
        let delta = try prepareTarget()
        try tablespaces.prepare(target: target, existing: options["existing"])
        let fm = FileManager.default
        var expected = Set<String>()
        for dir in (base.metadata["directories"] ?? "").split(separator: "\n") {
            expected.insert(String(dir))
            try fm.createDirectory(atPath: tablespaces.path(String(dir), target: target), withIntermediateDirectories: true,
                                   attributes: [.posixPermissions: 0o700])
        }
        // Asked for all at once (in batches) and written on other threads while the next
        // ones arrive: a round trip per file and one thread for everything was most of a
        // restore's time. Half the cores write: the agent's decoding needs the rest, and on
        // two cores a second writer measured only more CPU (it spins on the directory lock).
        // Into an empty target, the files are also created ahead, a directory per core, and
        // the largest come first: while the agent decodes them, the creating of the many
        // small ones (which costs the plugin more than their data) is done by the time the
        // writer gets to them.
        let files = base.artifacts.filter { $0.name.hasPrefix("data/") }
            .sorted { ($0.size, $1.name) > ($1.size, $0.name) }
        for artifact in files { expected.insert(String(artifact.name.dropFirst(5))) }
        let paths = files.map { tablespaces.path(String($0.name.dropFirst(5)), target: target) }
        let cores = ProcessInfo.processInfo.activeProcessorCount
        let writers = FileWriters(threads: min(4, max(1, cores / 2)), creating: delta ? [] : paths,
                                  creators: min(4, cores))
        do {
            var file: FileWriters.File?
            try source.fetch(files.map { FetchItem(backup: base.id, name: $0.name) }) { i, piece in
                switch piece {
                case .begin:
                    file = try writers.begin(FileRestorer(path: paths[i], delta: delta, size: files[i].size))
                case .data(let piece):
                    if let file { try writers.append(piece, to: file) }
                case .end:
                    if let file { try writers.end(file) }
                    file = nil
                }
            }
            try writers.finish()
        } catch {
            writers.abort()
            throw error
        }
        if delta { try removeUnexpected(expected) }
        try tablespaces.writeMap(target: target)
        try configureRecovery()
        // One sync of each file system rather than one per file: thousands of small relation
        // files would otherwise each wait for the disk.
        for path in [target] + tablespaces.entries.map(\.location) {
            let dir = open(path, O_RDONLY | O_DIRECTORY)
            guard dir >= 0, linuxSyncfs(dir) == 0 else { throw PostgresError("cannot sync \(path): \(String(cString: strerror(errno)))") }
            close(dir)
        }
        var positions = ["consistent_lsn": base.positions["stop_lsn"] ?? "", "base": base.id]
        if options["start"] == "1" {
            positions.merge(try RecoveryRun(dataDirectory: target, tablespaces: tablespaces.entries.map(\.location), options: options,
                                             keepAlive: { try source.alive() }).startAndWait()) { $1 }
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
        // A plain restore (no archive, no target) leaves the configuration as it was backed up.
        if settings.isEmpty { return }
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
        // Archive recovery needs a way to fetch WAL; without one the server recovers from the
        // backup's own WAL to its consistent point, as a plain base backup restore.
        guard options["restore_command"] != nil else { return }
        guard FileManager.default.createFile(atPath: target + "/recovery.signal", contents: nil, attributes: [.posixPermissions: 0o600]) else {
            throw PostgresError("cannot create \(target)/recovery.signal")
        }
    }
}

/// Writes one restored file as its data arrives. In delta mode an existing file is compared
/// block by block and only differing blocks are written, so an unchanged file costs reads
/// only; a new file is written whole. The size is set only by `finish`, once all the data has
/// come, and `abandon` removes a file whose data did not all come: a failed restore leaves no
/// file that looks restored. The caller syncs the file system once at the end.
struct FileRestorer: Sendable {
    let path: String
    let delta: Bool
    let size: Int64
    private var fd: Int32 = -1
    private var opened = false
    private var finished = false
    private var offset: off_t = 0
    private var existing: [UInt8] = []
    private var direct: DirectWriter?
    static let directMinimum: Int64 = 1 << 20

    init(path: String, delta: Bool, size: Int64) {
        self.path = path
        self.delta = delta
        self.size = size
    }

    /// Writes (or in delta mode compares, then writes) the file's next bytes.
    mutating func write(_ bytes: UnsafeRawBufferPointer) throws {
        if !opened { try create() }
        if let direct {
            do { try direct.write(bytes) } catch let e as DirectWriterError { throw PostgresError(e.description) }
            offset += off_t(bytes.count)
            return
        }
        var done = 0
        while done < bytes.count {
            let piece = UnsafeRawBufferPointer(rebasing: bytes[done..<min(bytes.count, done + (1 << 20))])
            if delta {
                if existing.count < piece.count { existing = [UInt8](repeating: 0, count: piece.count) }
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

    /// After the last bytes: checks the size, cuts off what a delta target had beyond it.
    mutating func finish() throws {
        if !opened { try create() }
        defer { closeFile() }
        if let direct {
            do { try direct.finish() } catch let e as DirectWriterError { throw PostgresError(e.description) }
        }
        guard offset == off_t(size) else { throw PostgresError("\(path): got \(offset) bytes, expected \(size)") }
        if ftruncate(fd, offset) != 0 {
            throw PostgresError("cannot finish \(path): \(String(cString: strerror(errno)))")
        }
        finished = true
    }

    /// The data will not all come: a file this began to write goes.
    mutating func abandon() {
        closeFile()
        if opened && !finished { unlink(path) }
    }

    private mutating func create() throws {
        fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | (delta ? 0 : O_TRUNC), 0o600)
        guard fd >= 0 else { throw PostgresError("cannot create \(path): \(String(cString: strerror(errno)))") }
        opened = true
        // A new large file skips the page cache (DirectWriter says why); small ones are not
        // worth a synchronous device write each, and delta mode reads what it compares.
        if !delta, size >= Self.directMinimum {
            direct = DirectWriter(fd: fd, describe: { [path] in path })
        }
    }

    private mutating func closeFile() {
        direct = nil
        if fd >= 0 { close(fd) }
        fd = -1
    }
}

/// syncfs(2), which Glibc's Swift module leaves out (it needs _GNU_SOURCE).
@_silgen_name("syncfs") func linuxSyncfs(_ fd: Int32) -> Int32
