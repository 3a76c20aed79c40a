import Foundation

/// A throwaway SecantusDB server (PyPI `secantusdb`, a MongoDB-compatible single-node replica
/// set) for tests: data in a temporary directory, on a free loopback port, stopped and removed
/// at the end. `restart()` reopens the same data on the same port.
public final class SecantusServer: @unchecked Sendable {
    public let root: String
    public let dataDirectory: String
    public let port: Int
    /// Extra command-line flags (`--oplog-max-entries 200`).
    public let flags: [String]
    public private(set) var pid: pid_t = 0

    public var uri: String { "mongodb://127.0.0.1:\(port)/?directConnection=true" }

    public init(flags: [String] = []) throws {
        guard let exe = SecantusServer.executable else {
            throw FixtureError("SecantusDB is not installed: secantusd-py is not on PATH (scripts/bootstrap runs pip install secantusdb)")
        }
        self.executable = exe
        root = try FixtureProcess.output("/bin/mktemp", ["-d", "/tmp/coffer-secantus.XXXXXX"]).trimmingCharacters(in: .whitespacesAndNewlines)
        dataDirectory = root + "/data"
        port = try LoopbackPort.free()
        self.flags = flags
        try start()
    }

    private let executable: String

    static var executable: String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/local/bin:/usr/bin:/bin"
        for dir in path.split(separator: ":") + ["/root/.pyenv/shims", "/usr/local/bin"] {
            let candidate = "\(dir)/secantusd-py"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }

    deinit {
        try? stop()
        try? FileManager.default.removeItem(atPath: root)
    }

    /// Starts the server and waits until it answers `hello` (60 s at most).
    public func start() throws {
        guard pid == 0 else { return }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, root + "/log", O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        let args = [executable, "--host", "127.0.0.1", "--port", "\(port)", "--storage-path", dataDirectory,
                    "--log-level", "WARNING"] + flags
        let argv: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var child: pid_t = 0
        let spawned = posix_spawn(&child, executable, &actions, nil, argv, environ)
        guard spawned == 0 else { throw FixtureError("cannot start secantusd-py: \(String(cString: strerror(spawned)))") }
        pid = child
        let deadline = Date().addingTimeInterval(60)
        while !SecantusServer.answersHello(port: port) {
            var status: Int32 = 0
            if waitpid(pid, &status, WNOHANG) == pid {
                pid = 0
                throw FixtureError("secantusd-py exited while starting: \(log.suffix(2000))")
            }
            guard Date() < deadline else {
                try? stop()
                throw FixtureError("secantusd-py did not answer hello within 60 s: \(log.suffix(2000))")
            }
            usleep(100_000)
        }
    }

    /// Stops the server (SIGTERM, then SIGKILL after 30 s) and waits for it to exit.
    public func stop() throws {
        guard pid != 0 else { return }
        kill(pid, SIGTERM)
        let deadline = Date().addingTimeInterval(30)
        var status: Int32 = 0
        while waitpid(pid, &status, WNOHANG) == 0 {
            if Date() > deadline { kill(pid, SIGKILL); waitpid(pid, &status, 0); break }
            usleep(50_000)
        }
        pid = 0
    }

    public func restart() throws {
        try stop()
        try start()
    }

    public var log: String { (try? String(contentsOfFile: root + "/log", encoding: .utf8)) ?? "" }

    /// Sends an OP_MSG `{hello: 1, $db: "admin"}` and reports whether a reply with ok came
    /// back. The fixture speaks the wire protocol itself so it needs no driver.
    static func answersHello(port: Int) -> Bool {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var tv = timeval(tv_sec: 2, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, socklen_t(MemoryLayout<timeval>.size))
        var addr = sockaddr_in()
        addr.sin_family = sa_family_t(AF_INET)
        addr.sin_addr.s_addr = inet_addr("127.0.0.1")
        addr.sin_port = UInt16(port).bigEndian
        let connected = withUnsafePointer(to: &addr) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else { return false }
        // {hello: 1 (int32), $db: "admin"}
        var body: [UInt8] = [0x10] + Array("hello".utf8) + [0, 1, 0, 0, 0]
        body += [0x02] + Array("$db".utf8) + [0, 6, 0, 0, 0] + Array("admin".utf8) + [0]
        var doc = le32(body.count + 5) + body + [0]
        doc = [0] + doc  // section kind 0: the body
        let flags = le32(0)
        let payload = flags + doc
        let header = le32(16 + payload.count) + le32(1) + le32(0) + le32(2013)
        let message = header + payload
        guard message.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, 0) }) == message.count else { return false }
        var reply = [UInt8](repeating: 0, count: 4096)
        let n = reply.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
        // A real reply is an OP_MSG (opcode 2013) carrying "ok".
        guard n > 21, reply[12] == 0xDD, reply[13] == 0x07 else { return false }
        return String(decoding: reply[0..<n], as: UTF8.self).contains("ok")
    }

    private static func le32(_ v: Int) -> [UInt8] {
        withUnsafeBytes(of: Int32(v).littleEndian) { Array($0) }
    }
}
