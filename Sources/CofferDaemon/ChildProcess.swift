import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

/// A job's `coffer` child, in a process group of its own: a signal to the group reaches
/// the plugin it started too, so nothing outlives a stopped job.
final class ChildProcess: Sendable {
    let pid: pid_t
    /// reaped: the pid may be reused, never signal it again.
    private let state = Mutex<(reaped: Bool, termination: Termination?, waiters: [CheckedContinuation<Termination, Never>])>((false, nil, []))

    struct Termination: Sendable, Equatable {
        /// The exit code, or nil when a signal ended it.
        let exitCode: Int32?
        let signal: Int32?
        /// The last lines it wrote on stderr.
        var stderrTail: [String] = []
        var succeeded: Bool { exitCode == 0 }
        var description: String { exitCode.map { "exit code \($0)" } ?? "signal \(signal ?? 0)" }
    }

    private let tail = StderrTail()

    /// Starts `executable arguments` with stdin from /dev/null; each line it writes on
    /// stdout goes to `stdout` in order (then nil at its end), each stderr line to `stderr`.
    init(executable: String, arguments: [String], environment: [String: String],
         stdout: @escaping @Sendable (String?) -> Void, stderr: @escaping @Sendable (String) -> Void) throws {
        var outPipe: [Int32] = [0, 0], errPipe: [Int32] = [0, 0]
        guard pipe(&outPipe) == 0 else { throw ChildError.spawn(executable, errno) }
        guard pipe(&errPipe) == 0 else {
            close(outPipe[0]); close(outPipe[1])
            throw ChildError.spawn(executable, errno)
        }
        // Only the child's dup2'ed copies cross exec (no other job inherits these).
        for fd in outPipe + errPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        var attr = posix_spawnattr_t()
        posix_spawnattr_init(&attr)
        defer { posix_spawnattr_destroy(&attr) }
        // Own process group; default signal handling (the agent ignores SIGPIPE).
        var defaults = sigset_t()
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        sigaddset(&defaults, SIGTERM)
        sigaddset(&defaults, SIGINT)
        var noMask = sigset_t()
        sigemptyset(&noMask)
        posix_spawnattr_setsigdefault(&attr, &defaults)
        posix_spawnattr_setsigmask(&attr, &noMask)
        posix_spawnattr_setpgroup(&attr, 0)
        posix_spawnattr_setflags(&attr, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGDEF | POSIX_SPAWN_SETSIGMASK))
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer { for p in argv + envp { free(p) } }
        var spawned: pid_t = 0
        let rc = posix_spawn(&spawned, executable, &actions, &attr, argv, envp)
        let pid = spawned
        close(outPipe[1])
        close(errPipe[1])
        guard rc == 0 else {
            close(outPipe[0]); close(errPipe[0])
            throw ChildError.spawn(executable, rc)
        }
        self.pid = pid
        let outDone = DispatchSemaphore(value: 0), errDone = DispatchSemaphore(value: 0)
        Self.readLines(outPipe[0], { stdout($0) }, done: outDone, end: { stdout(nil) })
        let tail = self.tail
        Self.readLines(errPipe[0], { line in
            stderr(line)
            tail.append(line)
        }, done: errDone, end: {})
        let thread = Thread { [self] in
            // Wait without reaping, mark reaped under the lock, then reap: a signal sent
            // under the lock can never reach a recycled pid.
            var info = siginfo_t()
            while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) < 0 && errno == EINTR {}
            self.state.withLock { $0.reaped = true }
            var status: Int32 = 0
            while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
            // Lines before exit first: a job's result is its last line.
            outDone.wait()
            errDone.wait()
            var termination = (status & 0x7f) == 0 ? Termination(exitCode: (status >> 8) & 0xff, signal: nil)
                                                    : Termination(exitCode: nil, signal: status & 0x7f)
            termination.stderrTail = tail.lines
            let waiters = self.state.withLock { s -> [CheckedContinuation<Termination, Never>] in
                s.termination = termination
                defer { s.waiters = [] }
                return s.waiters
            }
            for w in waiters { w.resume(returning: termination) }
        }
        thread.start()
    }

    /// Waits for the child to exit (and its output to be read).
    func wait() async -> Termination {
        await withCheckedContinuation { c in
            let done = state.withLock { s -> Termination? in
                if let t = s.termination { return t }
                s.waiters.append(c)
                return nil
            }
            if let done { c.resume(returning: done) }
        }
    }

    var hasExited: Bool { state.withLock { $0.termination != nil } }

    /// Signals the child's whole process group (the child and its plugin), unless reaped.
    func signalGroup(_ sig: Int32) {
        state.withLock { s in
            if !s.reaped { kill(-pid, sig) }
        }
    }

    private static func readLines(_ fd: Int32, _ handler: @escaping @Sendable (String) -> Void, done: DispatchSemaphore,
                                  end: @escaping @Sendable () -> Void) {
        let thread = Thread {
            defer {
                close(fd)
                end()
                done.signal()
            }
            var pending = [UInt8]()
            var buffer = [UInt8](repeating: 0, count: 64 << 10)
            while true {
                let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress, $0.count) }
                if n < 0 && errno == EINTR { continue }
                if n <= 0 { break }
                pending.append(contentsOf: buffer[0..<n])
                while let nl = pending.firstIndex(of: 10) {
                    handler(String(decoding: pending[..<nl], as: UTF8.self))
                    pending.removeSubrange(...nl)
                }
            }
            if !pending.isEmpty { handler(String(decoding: pending, as: UTF8.self)) }
        }
        thread.start()
    }
}

/// The last 20 lines a child wrote on stderr, for failure messages and alerts.
final class StderrTail: Sendable {
    private let buffer = Mutex<[String]>([])
    func append(_ line: String) {
        buffer.withLock {
            $0.append(line)
            if $0.count > 20 { $0.removeFirst() }
        }
    }
    var lines: [String] { buffer.withLock { $0 } }
}

enum ChildError: Error, CustomStringConvertible {
    case spawn(String, Int32)
    var description: String {
        switch self {
        case .spawn(let path, let err): return "cannot start \(path): \(String(cString: strerror(err)))"
        }
    }
}
