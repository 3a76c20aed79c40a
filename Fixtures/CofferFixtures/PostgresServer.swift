import Foundation

/// A throwaway PostgreSQL 15 server for tests: initdb in a temporary directory, started on a
/// unix socket there (no TCP), as the `postgres` OS user when running as root (PostgreSQL
/// refuses root), stopped and removed at the end.
public final class PostgresServer: @unchecked Sendable {
    public static let bin = "/usr/lib/postgresql/15/bin"
    public let root: String
    public let dataDirectory: String
    public let port: Int
    /// Whether it also listens on 127.0.0.1:`port`, with TLS (a self-signed certificate).
    public let tls: Bool
    public private(set) var running = false

    public var socketDirectory: String { root }
    public var conninfo: String { "host=\(root) port=\(port) user=postgres dbname=postgres" }
    /// Over TCP, refusing anything but TLS (libpq's `sslmode=require`); only with `tls`.
    public var tlsConninfo: String { "host=127.0.0.1 port=\(port) user=postgres dbname=postgres sslmode=require" }

    /// - Parameters:
    ///   - settings: extra postgresql.conf lines (`wal_level = replica`, ...);
    ///   - tls: also listen on 127.0.0.1 with TLS, on a free port (the socket's too).
    public init(settings: [String: String] = [:], tls: Bool = false) throws {
        guard FileManager.default.isExecutableFile(atPath: "\(PostgresServer.bin)/initdb") else {
            throw FixtureError("PostgreSQL 15 is not installed (scripts/bootstrap installs postgresql-15)")
        }
        self.tls = tls
        port = tls ? try LoopbackPort.free() : 5432
        root = try FixtureProcess.output("/bin/mktemp", ["-d", "/tmp/coffer-pg.XXXXXX"]).trimmingCharacters(in: .whitespacesAndNewlines)
        dataDirectory = root + "/data"
        if getuid() == 0 { try FixtureProcess.run("/bin/chown", ["postgres:postgres", root]) }
        try asPostgres("\(PostgresServer.bin)/initdb", ["-D", dataDirectory, "-A", "trust", "-U", "postgres", "--no-sync"])
        var conf = "listen_addresses = ''\nunix_socket_directories = '\(root)'\nport = \(port)\nfsync = off\n"
        if tls {
            // A throwaway self-signed certificate: sslmode=require encrypts without checking it.
            try asPostgres("/usr/bin/openssl", ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2",
                                                "-subj", "/CN=localhost", "-keyout", dataDirectory + "/server.key",
                                                "-out", dataDirectory + "/server.crt"])
            try asPostgres("/bin/chmod", ["600", dataDirectory + "/server.key"])
            conf += "ssl = on\nssl_cert_file = 'server.crt'\nssl_key_file = 'server.key'\n"
        }
        for (k, v) in settings.sorted(by: { $0.key < $1.key }) { conf += "\(k) = \(v)\n" }
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: dataDirectory + "/postgresql.conf"))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data(conf.utf8))
        try handle.close()
        try start()
    }

    /// A server on a data directory restored elsewhere (not started yet): it gets its own
    /// socket directory, whatever the restored postgresql.conf says.
    public init(restoredDataDirectory: String) throws {
        port = 5432
        tls = false
        root = try FixtureProcess.output("/bin/mktemp", ["-d", "/tmp/coffer-pg.XXXXXX"]).trimmingCharacters(in: .whitespacesAndNewlines)
        dataDirectory = restoredDataDirectory
        if getuid() == 0 { try FixtureProcess.run("/bin/chown", ["-R", "postgres:postgres", root, restoredDataDirectory]) }
        try FixtureProcess.run("/bin/chmod", ["700", restoredDataDirectory])
    }

    /// A server some other program started (a restore with --start) on `dataDirectory`,
    /// listening on a socket in `socketDirectory`: stopped and that directory removed at the end.
    public init(adopting dataDirectory: String, socketDirectory: String) {
        port = 5432
        tls = false
        root = socketDirectory
        self.dataDirectory = dataDirectory
        running = true
    }

    /// A directory for sockets or files, owned by the postgres OS user when running as root.
    public static func scratchDirectory() throws -> String {
        let path = try FixtureProcess.output("/bin/mktemp", ["-d", "/tmp/coffer-pg.XXXXXX"]).trimmingCharacters(in: .whitespacesAndNewlines)
        if getuid() == 0 { try FixtureProcess.run("/bin/chown", ["postgres:postgres", path]) }
        return path
    }

    deinit {
        try? stop()
        try? FileManager.default.removeItem(atPath: root)
    }

    public func start() throws {
        try asPostgres("\(PostgresServer.bin)/pg_ctl", ["-D", dataDirectory, "-l", root + "/log", "-w", "-t", "60",
                                                         "-o", "-c unix_socket_directories='\(root)' -c port=\(port) -c listen_addresses='\(tls ? "127.0.0.1" : "")'",
                                                         "start"])
        running = true
    }

    /// The server log, for failure messages.
    public var log: String { (try? String(contentsOfFile: root + "/log", encoding: .utf8)) ?? "" }

    public func stop() throws {
        guard running else { return }
        try asPostgres("\(PostgresServer.bin)/pg_ctl", ["-D", dataDirectory, "-m", "fast", "-w", "stop"])
        running = false
    }

    /// Runs SQL through psql and returns its unaligned, tuples-only output.
    @discardableResult
    public func sql(_ statement: String, database: String = "postgres") throws -> String {
        try FixtureProcess.output("/usr/bin/psql", ["-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", root, "-p", "\(port)",
                                                    "-U", "postgres", "-d", database, "-c", statement])
    }

    /// Runs a command as the postgres OS user (directly when not root).
    public func asPostgres(_ tool: String, _ args: [String]) throws {
        if getuid() == 0 {
            try FixtureProcess.run("/usr/sbin/runuser", ["-u", "postgres", "--", tool] + args)
        } else {
            try FixtureProcess.run(tool, args)
        }
    }

    /// Makes a directory owned by the postgres OS user (for restored data directories).
    public func ownedDirectory(_ name: String) throws -> String {
        let path = root + "/" + name
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true,
                                                attributes: [.posixPermissions: 0o700])
        if getuid() == 0 { try FixtureProcess.run("/bin/chown", ["postgres:postgres", path]) }
        return path
    }
}

public struct FixtureError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Runs tools to completion. posix_spawn and waitpid rather than Foundation's Process:
/// Process never notices the exit of `runuser` once it has started a daemon (the child
/// stays a zombie and waitUntilExit hangs), which is exactly how servers are started here.
public enum FixtureProcess {
    public static func run(_ tool: String, _ args: [String]) throws {
        _ = try output(tool, args)
    }

    public static func output(_ tool: String, _ args: [String]) throws -> String {
        let result = try capture(tool, args)
        guard result.status == 0 else {
            throw FixtureError("\(tool) \(args.joined(separator: " ")) failed (status \(result.status)): \(result.stderr)")
        }
        return result.stdout
    }

    /// Runs a tool to completion and returns its exit status (128 + signal when killed)
    /// and what it printed.
    public static func capture(_ tool: String, _ args: [String]) throws -> (status: Int32, stdout: String, stderr: String) {
        let scratch = NSTemporaryDirectory() + "coffer-fixture-" + UUID().uuidString
        defer {
            unlink(scratch + ".out")
            unlink(scratch + ".err")
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, scratch + ".out", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_addopen(&actions, 2, scratch + ".err", O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv: [UnsafeMutablePointer<CChar>?] = ([tool] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawn(&pid, tool, &actions, nil, argv, environ)
        guard spawned == 0 else { throw FixtureError("cannot start \(tool): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let out = (try? String(contentsOfFile: scratch + ".out", encoding: .utf8)) ?? ""
        let err = (try? String(contentsOfFile: scratch + ".err", encoding: .utf8)) ?? ""
        // WIFEXITED and WEXITSTATUS, which Swift does not import.
        return (status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f), out, err)
    }
}
