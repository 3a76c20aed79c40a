import Foundation

/// A mariadbd on a restored data directory, only for replaying binlog into it: on a unix
/// socket, no network, no grant checks, no binlog of its own; shut down cleanly after.
final class TemporaryServer {
    let socket: String
    private let child: Subprocess
    private var stopped = false

    init(dataDirectory: String, options: [String: String]) throws {
        socket = NSTemporaryDirectory() + "coffer-replay-\(getpid()).sock"
        var args = ["--no-defaults", "--datadir=\(dataDirectory)", "--socket=\(socket)", "--skip-networking",
                    "--skip-grant-tables", "--skip-log-bin", "--pid-file=\(dataDirectory)/coffer-replay.pid",
                    "--log-error=\(dataDirectory)/coffer-replay.err",
                    "--innodb-buffer-pool-size=\(options["replay_buffer_pool"] ?? "256M")"]
        if getuid() == 0 { args.append("--user=\(options["os_user"] ?? "root")") }
        child = try Subprocess(options["mariadbd"] ?? "/usr/sbin/mariadbd", args)
        let deadline = Date().addingTimeInterval(Double(options["replay_start_seconds"] ?? "") ?? 300)
        while true {
            if (try? Connection(settings)) != nil { return }
            var status: Int32 = 0
            if waitpid(child.pid, &status, WNOHANG) == child.pid {
                stopped = true
                let log = (try? String(contentsOfFile: dataDirectory + "/coffer-replay.err", encoding: .utf8)) ?? ""
                throw MySQLError("mariadbd on the restored data directory exited: \(log.split(separator: "\n").suffix(10).joined(separator: "\n"))")
            }
            guard Date() < deadline else {
                child.terminate()
                throw MySQLError("mariadbd on the restored data directory did not answer in time")
            }
            usleep(100_000)
        }
    }

    var settings: ConnectionSettings {
        // Never fails: a socket is given.
        try! ConnectionSettings(options: ["socket": socket, "user": "root"])
    }

    /// Clean shutdown: the restored directory is left consistent for the real server.
    func stop() throws {
        guard !stopped else { return }
        stopped = true
        try Connection(settings).execute("SHUTDOWN")
        let status = child.wait()
        guard status == 0 else { throw MySQLError("mariadbd on the restored data directory exited \(status) at shutdown") }
    }

    deinit {
        if !stopped {
            child.terminate()
            _ = child.wait()
        }
    }
}
