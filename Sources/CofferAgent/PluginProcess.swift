import CofferPluginProtocol
import Dispatch
import Foundation
import Synchronization
#if canImport(Glibc)
import Glibc
#endif

public enum PluginError: Error, CustomStringConvertible {
    case notFound(engine: String, searched: [String])
    /// The job failed because of the plugin: it crashed, hung, broke the protocol or said so.
    case failed(plugin: String, reason: String, log: [String])

    public var description: String {
        switch self {
        case .notFound(let engine, let searched):
            return "no plugin for engine '\(engine)': looked for coffer-\(engine) in \(searched.joined(separator: ", ")) (set COFFER_PLUGIN_PATH)"
        case .failed(let plugin, let reason, let log):
            let tail = log.isEmpty ? "" : "\nlast lines from \(plugin):\n  " + log.joined(separator: "\n  ")
            return "\(plugin) \(reason)\(tail)"
        }
    }
}

/// Finds `coffer-<engine>` on COFFER_PLUGIN_PATH, then next to the running executable.
public enum PluginLocator {
    public static func find(engine: String, environment: [String: String] = ProcessInfo.processInfo.environment) throws -> String {
        let name = "coffer-\(engine)"
        var dirs = (environment["COFFER_PLUGIN_PATH"] ?? "").split(separator: ":").map(String.init)
        if let exe = try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe") {
            dirs.append((exe as NSString).deletingLastPathComponent)
        }
        for dir in dirs where FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
            return "\(dir)/\(name)"
        }
        throw PluginError.notFound(engine: engine, searched: dirs)
    }
}

/// A running plugin: its stdin and stdout carry frames, its stderr is its log.
///
/// Spawned with posix_spawn and reaped with waitpid rather than through Foundation's
/// Process: that one polls for the child's exit in 50 ms run-loop steps (on every
/// `coffer wal-push`, a fifth of its time) and closes every possible descriptor in the
/// child one by one.
public final class PluginProcess: @unchecked Sendable {
    public let name: String
    let reader: FrameReader
    let writer: FrameWriter
    public private(set) var hello: Hello?
    private let pid: pid_t
    /// Our ends of the plugin's stdin and stdout; the log thread owns the stderr one.
    private let input: Int32
    private let output: Int32
    /// Whether `input` is still open, and the wait status once the plugin is reaped. Held
    /// while signalling, so a signal never reaches a recycled pid.
    private let state = Mutex<(inputOpen: Bool, status: Int32?)>((true, nil))
    private let logTail = LogTail()
    private let logDrained = DispatchSemaphore(value: 0)
    /// Memory offered to the plugin for data (its descriptors 3 and 4), in use once its
    /// hello accepts it; nil when it could not be made or `COFFER_SHARED_MEMORY=off`.
    private let shared: SharedSlots?

    /// The pipe from the plugin holds a whole 1 MiB data frame, so that a segment crosses
    /// in 16 writes instead of 256 hand-overs of the default 64 KiB.
    static let pipeSize: Int32 = 1 << 20

    /// - Parameters:
    ///   - timeout: how long the plugin may stay silent before the job fails.
    ///   - log: receives each line the plugin writes on stderr.
    public init(path: String, arguments: [String] = [], environment: [String: String]? = nil, timeout: Double,
                log: @escaping @Sendable (String) -> Void = { _ in }) throws {
        let name = (path as NSString).lastPathComponent
        self.name = name
        // A plugin that dies while we write to it must give us EPIPE, not kill the agent.
        signal(SIGPIPE, SIG_IGN)
        var pipes: [(read: Int32, write: Int32)] = []
        let pid: pid_t
        // Best effort: without it data crosses the pipe, as it does for a plugin that declines.
        let offer = ProcessInfo.processInfo.environment["COFFER_SHARED_MEMORY"] == "off" ? nil : try? SharedSlots.create()
        defer {
            if let offer {
                close(offer.memoryFD)
                close(offer.peerSocket)
            }
        }
        do {
            for _ in 0 ..< 3 { pipes.append(try Self.makePipe()) }
            _ = fcntl(pipes[1].write, Self.setPipeSize, Self.pipeSize)  // a smaller pipe only costs time
            pid = try Self.spawn(path: path, arguments: arguments, environment: environment,
                                 stdio: (pipes[0].read, pipes[1].write, pipes[2].write),
                                 shared: offer.map { ($0.memoryFD, $0.peerSocket) })
        } catch {
            for pipe in pipes {
                close(pipe.read)
                close(pipe.write)
            }
            throw PluginError.failed(plugin: name, reason: "could not be started: \(error)", log: [])
        }
        shared = offer?.slots
        shared?.timeout = timeout
        let (stdin, stdout, stderr) = (pipes[0], pipes[1], pipes[2])
        // The child's ends: only the child may hold them, or we would never see its EOF.
        close(stdin.read)
        close(stdout.write)
        close(stderr.write)
        self.pid = pid
        input = stdin.write
        output = stdout.read
        reader = FrameReader(fd: output, timeout: timeout)
        reader.dropsAlive = true
        writer = FrameWriter(fd: input)
        let tail = logTail, drained = logDrained, errFD = stderr.read
        let thread = Thread {
            LogTail.pump(fd: errFD) { line in
                log(line)
                tail.append(line)
            }
            close(errFD)
            drained.signal()
        }
        thread.name = "\(name) stderr"
        thread.start()
    }

    deinit {
        // Never leave a zombie (or a plugin nobody talks to any more) behind.
        if state.withLock({ $0.status == nil }) {
            kill()
            waitForExit()
        }
        closeInput()
        close(output)
    }

    /// Exchanges hellos; fails unless the plugin speaks our protocol and serves `engine`.
    public func handshake(engine: String, software: String) throws {
        if hello != nil { return }
        try guarded {
            try writer.send(Hello(software: software, sharedSlots: shared?.count))
            guard let frame = try reader.next() else { throw ProtocolError.closed }
            let hello = try Wire.decode(Hello.self, from: frame)
            guard hello.type == "hello", hello.protocol == PluginProtocol.version else {
                throw ProtocolError.malformed("expected hello for protocol \(PluginProtocol.version), got \(hello.type) \(hello.protocol)")
            }
            guard hello.engine == engine else {
                throw ProtocolError.malformed("plugin serves engine '\(hello.engine ?? "")', not '\(engine)'")
            }
            if let shared, hello.capabilities?.contains(Hello.sharedData) == true {
                reader.shared = shared
                writer.shared = shared
            }
            self.hello = hello
        }
    }

    /// Runs `body`; any failure kills the plugin and becomes a `PluginError` naming why.
    func guarded<T>(_ body: () throws -> T) throws -> T {
        do {
            return try body()
        } catch let error as PluginError {
            kill()
            throw error
        } catch let error as ProtocolError {
            kill()
            let status = waitForExit()
            let reason: String
            switch error {
            case .closed: reason = "stopped unexpectedly (\(status))"
            case .timeout(let seconds): reason = "sent nothing for \(Int(seconds)) s and was killed"
            case .malformed(let detail): reason = "broke the protocol: \(detail)"
            case .io(let detail): reason = "could not be talked to: \(detail)"
            case .peerFailed(let message): reason = "failed: \(message)"
            }
            throw PluginError.failed(plugin: name, reason: reason, log: recentLog())
        } catch {
            kill()
            throw error
        }
    }

    public func kill() {
        state.withLock { if $0.status == nil { _ = Glibc.kill(pid, SIGKILL) } }
    }

    /// Asks the plugin to stop (SIGTERM): how a following capture is ended.
    public func terminate() {
        state.withLock { if $0.status == nil { _ = Glibc.kill(pid, SIGTERM) } }
    }

    /// Waits for the plugin to exit and describes how it did.
    @discardableResult
    public func waitForExit() -> String {
        closeInput()
        if state.withLock({ $0.status == nil }) {
            // Wait without reaping, then reap under the lock: `kill` holds it, so it can
            // never signal a pid that was reaped and handed to another process meanwhile.
            var info = siginfo_t()
            while waitid(P_PID, id_t(pid), &info, WEXITED | WNOWAIT) != 0 && errno == EINTR {}
            state.withLock { s in
                guard s.status == nil else { return }
                var status: Int32 = 0
                while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
                s.status = status
            }
            // Its last words, for the error message; bounded, as a process it started may
            // still hold its stderr.
            _ = logDrained.wait(timeout: .now() + 1)
        }
        let status = state.withLock { $0.status } ?? 0
        let signal = status & 0x7F
        return signal == 0 ? "exit status \((status >> 8) & 0xFF)" : "killed by signal \(signal)"
    }

    public var exitedCleanly: Bool { state.withLock { $0.status } == 0 }

    /// Whether data crosses through shared memory (the plugin accepted it in its hello).
    public var usesSharedMemory: Bool { reader.shared != nil }

    func recentLog() -> [String] { logTail.lines }

    private func closeInput() {
        state.withLock { s in
            if s.inputOpen {
                close(input)
                s.inputOpen = false
            }
        }
    }

    // MARK: - spawning

    private static let setPipeSize: Int32 = 1031  // F_SETPIPE_SZ (Linux), not exported to Swift

    private struct SpawnError: Error, CustomStringConvertible {
        let description: String
        init(_ call: String, _ code: Int32) { description = "\(call): \(String(cString: strerror(code)))" }
    }

    private static func makePipe() throws -> (read: Int32, write: Int32) {
        var fds: [Int32] = [0, 0]
        guard pipe(&fds) == 0 else { throw SpawnError("pipe", errno) }
        // Close-on-exec, so no other child inherits them; above 2, so the dup2 onto the
        // child's stdio always happens (and clears the flag there).
        return (cloexecAbove2(fds[0]), cloexecAbove2(fds[1]))
    }

    private static func cloexecAbove2(_ fd: Int32) -> Int32 {
        guard fd <= 2 else {
            _ = fcntl(fd, F_SETFD, FD_CLOEXEC)
            return fd
        }
        let moved = fcntl(fd, F_DUPFD_CLOEXEC, 3)
        close(fd)
        return moved
    }

    /// - Parameter shared: the shared memory and socket, for the plugin's descriptors 3 and 4.
    private static func spawn(path: String, arguments: [String], environment: [String: String]?,
                              stdio: (Int32, Int32, Int32), shared: (memory: Int32, socket: Int32)?) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, stdio.0, 0)
        posix_spawn_file_actions_adddup2(&actions, stdio.1, 1)
        posix_spawn_file_actions_adddup2(&actions, stdio.2, 2)
        // Nothing else of ours reaches the plugin (it may run code we do not trust with
        // our descriptors); the open ones are listed rather than all up to the limit. The
        // shared memory's are left for the dup2s below (they are close-on-exec anyway).
        for fd in openDescriptors() where fd > 2 && fd != shared?.memory && fd != shared?.socket {
            posix_spawn_file_actions_addclose(&actions, fd)
        }
        if let shared {
            // Both are 10 or above (SharedSlots.create), so neither is overwritten first.
            posix_spawn_file_actions_adddup2(&actions, shared.memory, SharedSlots.memoryDescriptor)
            posix_spawn_file_actions_adddup2(&actions, shared.socket, SharedSlots.socketDescriptor)
        }

        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Its own process group, so a terminal's ^C reaches the agent, which then stops it;
        // no signal blocked, and SIGPIPE back to its default (we ignore it here).
        var empty = sigset_t(), defaults = sigset_t()
        sigemptyset(&empty)
        sigemptyset(&defaults)
        sigaddset(&defaults, SIGPIPE)
        posix_spawnattr_setsigmask(&attributes, &empty)
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setpgroup(&attributes, 0)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETPGROUP | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))

        let argv = ([path] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let envp = environment.map { $0.map { strdup("\($0.key)=\($0.value)") } + [nil] }
        defer { envp?.forEach { free($0) } }
        var pid: pid_t = 0
        let result = envp.map { posix_spawn(&pid, path, &actions, &attributes, argv, $0) }
            ?? posix_spawn(&pid, path, &actions, &attributes, argv, environ)
        guard result == 0 else { throw SpawnError("posix_spawn", result) }
        return pid
    }

    /// Our open descriptors, from /proc/self/fd; without /proc, every one up to the limit.
    private static func openDescriptors() -> [Int32] {
        if let dir = opendir("/proc/self/fd") {
            defer { closedir(dir) }
            let own = dirfd(dir)
            var fds: [Int32] = []
            while let entry = readdir(dir) {
                let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
                if let fd = Int32(name), fd != own { fds.append(fd) }
            }
            return fds
        }
        let limit = sysconf(Int32(_SC_OPEN_MAX))
        return (0 ..< Int32(limit > 0 ? min(limit, 1 << 16) : 1024)).map { $0 }
    }
}

/// The last lines a plugin wrote on stderr, for error messages.
final class LogTail: Sendable {
    private let state = Mutex<[String]>([])
    static let keep = 10

    func append(_ line: String) {
        state.withLock { t in
            t.append(line)
            if t.count > LogTail.keep { t.removeFirst(t.count - LogTail.keep) }
        }
    }

    var lines: [String] { state.withLock { $0 } }

    /// Reads `fd` to its end and hands over each line (the last one even without a newline).
    static func pump(fd: Int32, line: (String) -> Void) {
        var buffer = [UInt8](repeating: 0, count: 1 << 14)
        var partial: [UInt8] = []
        while true {
            let n = buffer.withUnsafeMutableBytes { read(fd, $0.baseAddress!, $0.count) }
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else { break }
            partial += buffer[0 ..< n]
            while let newline = partial.firstIndex(of: 0x0A) {
                if newline > 0 { line(String(decoding: partial[0 ..< newline], as: UTF8.self)) }
                partial.removeSubrange(0 ... newline)
            }
        }
        if !partial.isEmpty { line(String(decoding: partial, as: UTF8.self)) }
    }
}
