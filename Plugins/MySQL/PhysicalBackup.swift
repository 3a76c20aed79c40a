import CofferPluginKit
import CofferPluginProtocol
import Foundation

/// A physical full backup: mariabackup's xbstream, read straight from its stdout (no copy on
/// disk) and stored as one artifact per file (PhysicalLayout), consistent at the binlog
/// position and GTID mariabackup reports.
struct PhysicalBackup {
    let options: [String: String]
    let settings: ConnectionSettings

    func run(into sink: ArtifactSink) throws -> BackupDone {
        let connection = try Connection(settings)
        let version = connection.serverVersion
        guard connection.isMariaDB else {
            throw MySQLError("physical backups drive mariabackup, which needs MariaDB (this is MySQL \(version); use method = \"logical\")")
        }
        let pageSize = Int(try connection.value("SELECT @@innodb_page_size") ?? "") ?? 16384
        let dataDirectory = try options["data_directory"] ?? connection.value("SELECT @@datadir") ?? ""
        // mariabackup wants a target directory even when it streams (for a few scratch
        // files); it stays empty and is removed.
        let scratch = NSTemporaryDirectory() + "coffer-mariabackup-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: scratch, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        var args: [String] = []
        if let defaults = options["defaults_file"] { args.append("--defaults-file=\(defaults)") }
        args += ["--backup", "--stream=xbstream", "--target-dir=\(scratch)", "--datadir=\(dataDirectory)"]
        args += settings.toolArguments
        if let parallel = options["backup_parallel"] { args.append("--parallel=\(parallel)") }
        let tool = options["mariabackup"] ?? "mariabackup"
        let child = try Subprocess(tool, args, stdout: .pipe)
        var stopped = false
        defer { if !stopped { child.terminate(); _ = child.wait() } }
        // mariabackup's log goes on to the agent as it is written (the agent quotes the
        // last lines of a failed job), but for its line per file: a stall says where.
        let relay = LogRelay(path: child.stderrPath, prefix: "mariabackup: ")
        defer { relay.stop() }
        let started = Date()
        let fd = child.output
        Subprocess.widenPipe(fd)
        Subprocess.widenPipe(STDOUT_FILENO)
        let ahead = ReadAhead { buffer in
            while true {
                let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
                if n >= 0 { return n }
                if errno != EINTR { throw MySQLError("reading from mariabackup: \(String(cString: strerror(errno)))") }
            }
        }
        let counts: XBStreamSplitter.Counts
        do {
            counts = try XBStreamSplitter(pageSize: pageSize).run(XBStreamReader(read: { try ahead.read(into: $0) }), into: sink)
            ahead.finish()
        } catch {
            // mariabackup first, so that the reading thread sees the pipe's end.
            child.terminate()
            ahead.stop(error)
            throw error
        }
        stopped = true
        try child.check()
        let log = child.stderrText
        guard log.contains("completed OK!") else {
            throw MySQLError("mariabackup exited 0 without 'completed OK!': \(child.stderrTail)")
        }
        let binlog = try MariabackupLog.binlogPosition(log)
        return BackupDone(
            positions: ["binlog_file": binlog.file, "binlog_pos": String(binlog.position), "gtid": binlog.gtid,
                        "consistent_time": String(Int64(Date().timeIntervalSince1970 * 1_000_000))],
            metadata: ["method": "physical", "layout": PhysicalLayout.name, "page_size": String(pageSize),
                       "files": String(counts.files), "server_version": version, "data_directory": dataDirectory,
                       "started": ISO8601DateFormatter().string(from: started),
                       "server_id": try connection.value("SELECT @@server_id") ?? ""])
    }
}

/// Copies lines appended to a file to the plugin's stderr, once a second, until stopped.
final class LogRelay: @unchecked Sendable {
    private let lock = NSLock()
    private var running = true
    private let done = DispatchSemaphore(value: 0)

    init(path: String, prefix: String) {
        Thread { [self] in
            var offset: UInt64 = 0
            var partial = ""
            while true {
                lock.lock()
                let go = running
                lock.unlock()
                if let h = FileHandle(forReadingAtPath: path) {
                    h.seek(toFileOffset: offset)
                    let data = h.readDataToEndOfFile()
                    try? h.close()
                    offset += UInt64(data.count)
                    partial += String(decoding: data, as: UTF8.self)
                    while let nl = partial.firstIndex(of: "\n") {
                        let line = partial[..<nl]
                        // One line per file copied would drown the rest.
                        if !line.contains("Streaming") && !line.contains("...done") { PluginRunner.log(prefix + line) }
                        partial = String(partial[partial.index(after: nl)...])
                    }
                }
                if !go { break }
                Thread.sleep(forTimeInterval: 1)
            }
            done.signal()
        }.start()
    }

    func stop() {
        lock.lock()
        let was = running
        running = false
        lock.unlock()
        if was { done.wait() }
    }
}

/// What mariabackup's log says of where the copy is consistent.
enum MariabackupLog {
    /// "MySQL binlog position: filename 'mariadb-bin.000002', position '1234', GTID of the
    /// last change '0-1-5'" (10.x prints it once the copy is fixed, under BLOCK_COMMIT).
    static func binlogPosition(_ log: String) throws -> (file: String, position: UInt64, gtid: String) {
        guard let line = log.split(separator: "\n").last(where: { $0.contains("binlog position:") }) else {
            throw MySQLError("mariabackup reported no binlog position (is log_bin on?)")
        }
        func quoted(after key: String) -> String? {
            guard let r = line.range(of: key + " '") else { return nil }
            let rest = line[r.upperBound...]
            guard let end = rest.firstIndex(of: "'") else { return nil }
            return String(rest[..<end])
        }
        guard let file = quoted(after: "filename"), let pos = quoted(after: "position").flatMap(UInt64.init) else {
            throw MySQLError("cannot read mariabackup's binlog position line: \(line)")
        }
        return (file, pos, quoted(after: "GTID of the last change") ?? "")
    }
}
