import CofferPluginKit
import Foundation

/// Starts a restored server and waits until archive recovery is over and the server takes
/// writes (promoted); a server that stops first (a target it could not
/// reach, WAL it could not fetch) fails the restore with the end of its log.
struct RecoveryRun {
    let dataDirectory: String
    /// Tablespace locations, handed to the server's user with the data directory.
    let tablespaces: [String]
    let options: [String: String]
    /// Called while waiting, to keep the agent from taking a long recovery for a hang.
    let keepAlive: () throws -> Void

    var logFile: String { dataDirectory + "/coffer-recovery.log" }

    func startAndWait() throws -> [String: String] {
        let version = ((try? String(contentsOfFile: dataDirectory + "/PG_VERSION", encoding: .utf8)) ?? "15")
            .trimmingCharacters(in: .whitespacesAndNewlines)
        let pgctl = ["/usr/lib/postgresql/\(version)/bin/pg_ctl", "/usr/bin/pg_ctl"]
            .first { FileManager.default.isExecutableFile(atPath: $0) } ?? "pg_ctl"
        var argv = [pgctl, "-D", dataDirectory, "-l", logFile, "-w", "-t", "3600", "start"]
        if geteuid() == 0 {
            // PostgreSQL refuses to run as root: hand the directory to its OS user.
            let user = options["os_user"] ?? "postgres"
            guard let pw = getpwnam(user) else { throw PostgresError("no OS user \(user) to run the restored server as (os_user)") }
            for tree in [dataDirectory] + tablespaces { try chownTree(tree, uid: pw.pointee.pw_uid, gid: pw.pointee.pw_gid) }
            argv = ["/usr/sbin/runuser", "-u", user, "--"] + argv
        }
        PluginRunner.log("starting the restored server: \(argv.joined(separator: " "))")
        let status = try Spawn.run(argv)
        guard status == 0 else { throw PostgresError("the restored server did not start (pg_ctl status \(status)):\n\(logTail())") }
        var lastNote = Date()
        while !promoted() {
            guard serverRunning() else {
                throw PostgresError("the restored server stopped before recovery ended:\n\(logTail())")
            }
            if Date().timeIntervalSince(lastNote) > 10 {
                PluginRunner.log("recovery is still running (\(logLines().last ?? ""))")
                lastNote = Date()
            }
            try keepAlive()
            usleep(100_000)
        }
        try? FileManager.default.removeItem(atPath: dataDirectory + "/pg_wal/coffer-prefetch")
        var result = ["server": "running", "log": logFile]
        for line in logLines() {
            if let r = line.range(of: "recovery stopping ") { result["stopped"] = String(line[r.lowerBound...]) }
            if let r = line.range(of: "last completed transaction was at log time ") { result["last_transaction"] = String(line[r.upperBound...]) }
            if let r = line.range(of: "selected new timeline ID: ") {
                result["timeline"] = String(line[r.upperBound...].prefix { $0.isNumber })
            }
            if let r = line.range(of: "redo done at ") { result["redo_done"] = String(line[r.upperBound...].prefix { $0 != " " }) }
        }
        return result
    }

    /// Recovery is over once the server takes writes: asked over its socket (postmaster.pid
    /// names it), or, where this user cannot log in, read from pg_control's cluster state.
    private func promoted() -> Bool {
        if FileManager.default.fileExists(atPath: dataDirectory + "/recovery.signal") { return false }
        let pid = ((try? String(contentsOfFile: dataDirectory + "/postmaster.pid", encoding: .utf8)) ?? "")
            .split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
        if pid.count > 4, let connection = try? Connection(
            "host='\(pid[4])' port=\(pid[3]) dbname=postgres user='\(options["os_user"] ?? "postgres")' connect_timeout=5"),
           let inRecovery = try? connection.value("SELECT pg_is_in_recovery()") {
            return inRecovery == "f"
        }
        return controlFileState() == RecoveryRun.inProduction
    }

    /// DBState's DB_IN_PRODUCTION, and where pg_control keeps the state: after the system
    /// identifier (8 bytes) and two 4-byte version numbers; the same in every release.
    static let inProduction: Int32 = 6

    private func controlFileState() -> Int32? {
        guard let data = FileManager.default.contents(atPath: dataDirectory + "/global/pg_control"), data.count >= 20 else { return nil }
        return data.withUnsafeBytes { Int32(littleEndian: $0.loadUnaligned(fromByteOffset: 16, as: Int32.self)) }
    }

    private func logLines() -> [String] {
        ((try? String(contentsOfFile: logFile, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init)
    }

    private func logTail() -> String { logLines().suffix(15).map { "  " + $0 }.joined(separator: "\n") }

    private func serverRunning() -> Bool {
        guard let pidText = try? String(contentsOfFile: dataDirectory + "/postmaster.pid", encoding: .utf8),
              let pid = pidText.split(separator: "\n").first.flatMap({ Int32($0) })
        else { return false }
        return kill(pid, 0) == 0
    }

    private func chownTree(_ path: String, uid: uid_t, gid: gid_t) throws {
        guard chown(path, uid, gid) == 0 else { throw PostgresError("cannot chown \(path): \(String(cString: strerror(errno)))") }
        for child in (FileManager.default.enumerator(atPath: path)?.allObjects as? [String]) ?? [] {
            lchown(path + "/" + child, uid, gid)
        }
    }
}

/// Runs a tool to completion with its output on the plugin's stderr (stdout is the
/// protocol). posix_spawn and waitpid: Foundation's Process can miss the exit of a tool
/// that leaves a daemon behind.
enum Spawn {
    /// Marks every descriptor above stderr close-on-exec. A server started from here must
    /// not inherit the plugin's descriptors: the agent learns that the plugin has exited
    /// when the last holder of one of them closes it, which a postmaster never would.
    static func closeOnExec() {
        for entry in (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")) ?? [] {
            guard let fd = Int32(entry), fd > 2 else { continue }
            let flags = fcntl(fd, F_GETFD)
            if flags >= 0 { _ = fcntl(fd, F_SETFD, flags | FD_CLOEXEC) }
        }
    }

    static func run(_ argv: [String]) throws -> Int32 {
        closeOnExec()
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, 2, 1)
        let cargs: [UnsafeMutablePointer<CChar>?] = argv.map { strdup($0) } + [nil]
        defer { cargs.forEach { free($0) } }
        var pid: pid_t = 0
        let spawned = posix_spawnp(&pid, argv[0], &actions, nil, cargs, environ)
        guard spawned == 0 else { throw PostgresError("cannot start \(argv[0]): \(String(cString: strerror(spawned)))") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }
}
