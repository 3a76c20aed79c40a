import Foundation

/// A tool run with pipes (mariabackup, mbstream, mariadb-binlog, mariadb): posix_spawn and
/// waitpid, with its stderr in a scratch file quoted in errors.
final class Subprocess {
    let tool: String
    let pid: pid_t
    /// The parent's end of the child's stdin (write) or stdout (read), when asked for.
    private(set) var input: Int32 = -1
    private(set) var output: Int32 = -1
    let stderrPath: String

    enum Stream { case pipe, null, fd(Int32) }

    init(_ tool: String, _ args: [String], stdin: Stream = .null, stdout: Stream = .null,
         environment: [String: String] = [:]) throws {
        self.tool = tool
        stderrPath = NSTemporaryDirectory() + "coffer-mysql-\(getpid())-" + UUID().uuidString + ".err"
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var close: [Int32] = []
        func wire(_ stream: Stream, _ target: Int32, reading: Bool) throws -> Int32 {
            switch stream {
            case .null:
                posix_spawn_file_actions_addopen(&actions, target, "/dev/null", reading ? O_RDONLY : O_WRONLY, 0)
                return -1
            case .fd(let fd):
                posix_spawn_file_actions_adddup2(&actions, fd, target)
                return -1
            case .pipe:
                var p: [Int32] = [0, 0]
                guard pipe(&p) == 0 else { throw MySQLError("pipe: \(String(cString: strerror(errno)))") }
                let (childEnd, parentEnd) = reading ? (p[0], p[1]) : (p[1], p[0])
                _ = fcntl(parentEnd, F_SETFD, FD_CLOEXEC)
                posix_spawn_file_actions_adddup2(&actions, childEnd, target)
                posix_spawn_file_actions_addclose(&actions, childEnd)
                close.append(childEnd)
                return parentEnd
            }
        }
        let inFD = try wire(stdin, 0, reading: true)
        let outFD = try wire(stdout, 1, reading: false)
        posix_spawn_file_actions_addopen(&actions, 2, stderrPath, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        let argv: [UnsafeMutablePointer<CChar>?] = ([tool] + args).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        let envp: [UnsafeMutablePointer<CChar>?] = env.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { envp.forEach { free($0) } }
        var child: pid_t = 0
        let spawned = posix_spawnp(&child, tool, &actions, nil, argv, envp)
        for fd in close { Glibc.close(fd) }
        guard spawned == 0 else {
            if inFD >= 0 { Glibc.close(inFD) }
            if outFD >= 0 { Glibc.close(outFD) }
            throw MySQLError("cannot start \(tool): \(String(cString: strerror(spawned)))")
        }
        pid = child
        input = inFD
        output = outFD
    }

    deinit {
        closeInput()
        if output >= 0 { Glibc.close(output) }
        unlink(stderrPath)
    }

    func closeInput() {
        if input >= 0 { Glibc.close(input) }
        input = -1
    }

    /// Reads the child's stdout into `buffer`; 0 at its end.
    func read(_ buffer: UnsafeMutableRawBufferPointer) throws -> Int {
        while true {
            let n = Glibc.read(output, buffer.baseAddress, buffer.count)
            if n >= 0 { return n }
            if errno != EINTR { throw MySQLError("reading from \(tool): \(String(cString: strerror(errno)))") }
        }
    }

    /// Writes all of `bytes` to the child's stdin.
    func write(_ bytes: UnsafeRawBufferPointer) throws {
        var off = 0
        while off < bytes.count {
            let n = Glibc.write(input, bytes.baseAddress! + off, bytes.count - off)
            if n < 0 {
                if errno == EINTR { continue }
                throw MySQLError("\(tool) stopped reading (\(String(cString: strerror(errno)))): \(stderrTail)")
            }
            off += n
        }
    }

    /// Waits for the exit; the status (128 + signal when killed).
    func wait() -> Int32 {
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        return status & 0x7f == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f)
    }

    /// Waits, and throws with the tool's last stderr lines unless it exited 0.
    func check() throws {
        let status = wait()
        guard status == 0 else { throw MySQLError("\(tool) failed (exit \(status)): \(stderrTail)") }
    }

    var stderrText: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }
    var stderrTail: String {
        stderrText.split(separator: "\n").suffix(12).joined(separator: "\n")
    }

    func terminate() { kill(pid, SIGTERM) }

    /// Asks for a 1 MiB pipe (Linux's default is 64 KiB), so that writer and reader take
    /// fewer turns. Best effort: the user's pipe memory may be used up.
    static func widenPipe(_ fd: Int32) {
        _ = fcntl(fd, 1031 /* F_SETPIPE_SZ, which Glibc's module leaves out */, Int32(1 << 20))
    }
}
