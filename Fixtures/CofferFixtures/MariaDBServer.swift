import Foundation

/// A throwaway MariaDB 10.11 server for tests: mariadb-install-db in a temporary directory,
/// a unix socket there and a free TCP port on 127.0.0.1, binary log on (ROW format, GTIDs
/// with server_id 1), run as root with `user=root` when the tests run as root (mariadbd
/// refuses root otherwise). Root logs in with no password. Stopped and removed at the end.
public final class MariaDBServer: @unchecked Sendable {
    public static let mariadbd = "/usr/sbin/mariadbd"
    public let root: String
    public let dataDirectory: String
    public let port: Int
    public private(set) var running = false

    public var socket: String { root + "/mysqld.sock" }
    /// The option file the server, the client and mariabackup read.
    public var defaultsFile: String { root + "/my.cnf" }
    public var pidFile: String { root + "/mysqld.pid" }

    /// - Parameter settings: extra [mariadbd] lines.
    public init(settings: [String: String] = [:]) throws {
        guard FileManager.default.isExecutableFile(atPath: MariaDBServer.mariadbd) else {
            throw FixtureError("MariaDB is not installed (scripts/bootstrap installs mariadb-server)")
        }
        root = try FixtureProcess.output("/bin/mktemp", ["-d", "/tmp/coffer-maria.XXXXXX"]).trimmingCharacters(in: .whitespacesAndNewlines)
        dataDirectory = root + "/data"
        port = try LoopbackPort.free()
        try writeDefaults(settings)
        try FixtureProcess.run("/usr/bin/mariadb-install-db", [
            "--defaults-file=\(defaultsFile)", "--auth-root-authentication-method=normal",
            "--skip-test-db", "--skip-name-resolve"])
        try start()
    }

    /// A server on a data directory restored elsewhere (not started yet), with its own
    /// socket, port and option file; the restored files stay where they are.
    public init(restoredDataDirectory: String, settings: [String: String] = [:]) throws {
        root = try FixtureProcess.output("/bin/mktemp", ["-d", "/tmp/coffer-maria.XXXXXX"]).trimmingCharacters(in: .whitespacesAndNewlines)
        dataDirectory = restoredDataDirectory
        port = try LoopbackPort.free()
        try writeDefaults(settings.merging(["server_id": "2"]) { a, _ in a })
    }

    deinit {
        try? stop()
        try? FileManager.default.removeItem(atPath: root)
    }

    private func writeDefaults(_ settings: [String: String]) throws {
        var server: [String: String] = [
            "datadir": dataDirectory, "socket": socket, "port": String(port), "bind-address": "127.0.0.1",
            "pid-file": pidFile, "log-error": root + "/error.log", "log-bin": "mariadb-bin",
            "binlog_format": "ROW", "server_id": "1", "innodb_buffer_pool_size": "64M",
            "innodb_log_file_size": "48M", "innodb_flush_log_at_trx_commit": "2", "sync_binlog": "0",
            "skip-name-resolve": "", "character-set-server": "utf8mb4", "max_connections": "100",
        ]
        if getuid() == 0 { server["user"] = "root" }
        for (k, v) in settings { server[k] = v }
        var text = "[mariadbd]\n"
        for (k, v) in server.sorted(by: { $0.key < $1.key }) { text += v.isEmpty ? "\(k)\n" : "\(k) = \(v)\n" }
        text += "\n[client]\nsocket = \(socket)\nuser = root\ndefault-character-set = utf8mb4\n"
        try text.write(toFile: defaultsFile, atomically: true, encoding: .utf8)
    }

    /// Starts mariadbd in the background (detached through a shell, so nothing here has to
    /// reap it) and waits, with a deadline, until it answers on its socket.
    public func start() throws {
        try FixtureProcess.run("/bin/sh", ["-c", "\(MariaDBServer.mariadbd) --defaults-file='\(defaultsFile)' </dev/null >/dev/null 2>&1 &"])
        running = true
        let deadline = Date().addingTimeInterval(90)
        while true {
            if (try? FixtureProcess.capture("/usr/bin/mariadb-admin", ["--defaults-file=\(defaultsFile)", "ping"]))?.status == 0 { return }
            if Date() > deadline { throw FixtureError("mariadbd did not start within 90 s:\n\(log.suffix(3000))") }
            usleep(100_000)
        }
    }

    /// The server's error log, for failure messages.
    public var log: String { (try? String(contentsOfFile: root + "/error.log", encoding: .utf8)) ?? "" }

    /// Clean shutdown, waiting (with a deadline) until the process is gone.
    public func stop() throws {
        guard running else { return }
        let pid = (try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap { Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        _ = try FixtureProcess.capture("/usr/bin/mariadb-admin", ["--defaults-file=\(defaultsFile)", "shutdown"])
        running = false
        guard let pid else { return }
        let deadline = Date().addingTimeInterval(90)
        while MariaDBServer.alive(pid) {
            if Date() > deadline {
                kill(pid, SIGKILL)
                throw FixtureError("mariadbd \(pid) did not stop within 90 s")
            }
            usleep(50_000)
        }
    }

    /// Kills the server without a clean shutdown (crash recovery tests).
    public func kill9() throws {
        guard let pid = (try? String(contentsOfFile: pidFile, encoding: .utf8)).flatMap({ Int32($0.trimmingCharacters(in: .whitespacesAndNewlines)) }) else { return }
        kill(pid, SIGKILL)
        while MariaDBServer.alive(pid) { usleep(20_000) }
        running = false
    }

    /// Whether `pid` is a live process (a zombie, left unreaped by an init that does not
    /// reap, counts as gone).
    static func alive(_ pid: Int32) -> Bool {
        guard let stat = try? String(contentsOfFile: "/proc/\(pid)/stat", encoding: .utf8) else { return false }
        guard let paren = stat.lastIndex(of: ")") else { return false }
        return !stat[stat.index(after: paren)...].trimmingCharacters(in: .whitespaces).hasPrefix("Z")
    }

    /// Runs SQL through the mariadb client; returns rows as tab-separated lines, no header.
    @discardableResult
    public func sql(_ statement: String, database: String? = nil) throws -> String {
        var args = ["--defaults-file=\(defaultsFile)", "-N", "-B", "-e", statement]
        if let database { args.append(database) }
        return try FixtureProcess.output("/usr/bin/mariadb", args)
    }

    /// One value, without its line end.
    public func value(_ statement: String, database: String? = nil) throws -> String {
        try sql(statement, database: database).trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Arguments for client tools (mariadb, mariadb-binlog, mydumper) to reach this server.
    public var clientArguments: [String] { ["--socket=\(socket)", "--user=root"] }
}
