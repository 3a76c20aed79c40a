import CofferPluginProtocol
import Foundation
import Synchronization

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
public final class PluginProcess: @unchecked Sendable {
    public let name: String
    let reader: FrameReader
    let writer: FrameWriter
    public private(set) var hello: Hello?
    private let process = Process()
    private let stdinPipe = Pipe()
    private let stdoutPipe = Pipe()
    private let stderrPipe = Pipe()
    private let logTail = LogTail()

    /// - Parameters:
    ///   - timeout: how long the plugin may stay silent before the job fails.
    ///   - log: receives each line the plugin writes on stderr.
    public init(path: String, arguments: [String] = [], environment: [String: String]? = nil, timeout: Double,
                log: @escaping @Sendable (String) -> Void = { _ in }) throws {
        name = (path as NSString).lastPathComponent
        // A plugin that dies while we write to it must give us EPIPE, not kill the agent.
        signal(SIGPIPE, SIG_IGN)
        process.executableURL = URL(fileURLWithPath: path)
        process.arguments = arguments
        if let environment { process.environment = environment }
        process.standardInput = stdinPipe
        process.standardOutput = stdoutPipe
        process.standardError = stderrPipe
        reader = FrameReader(fd: stdoutPipe.fileHandleForReading.fileDescriptor, timeout: timeout)
        writer = FrameWriter(fd: stdinPipe.fileHandleForWriting.fileDescriptor)
        let tail = logTail
        let sink = log
        stderrPipe.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            guard !data.isEmpty else {
                handle.readabilityHandler = nil
                return
            }
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                sink(String(line))
                tail.append(String(line))
            }
        }
        do {
            try process.run()
        } catch {
            throw PluginError.failed(plugin: name, reason: "could not be started: \(error)", log: [])
        }
    }

    /// Exchanges hellos; fails unless the plugin speaks our protocol and serves `engine`.
    public func handshake(engine: String, software: String) throws {
        if hello != nil { return }
        try guarded {
            try writer.send(Hello(software: software))
            guard let frame = try reader.next() else { throw ProtocolError.closed }
            let hello = try Wire.decode(Hello.self, from: frame)
            guard hello.type == "hello", hello.protocol == PluginProtocol.version else {
                throw ProtocolError.malformed("expected hello for protocol \(PluginProtocol.version), got \(hello.type) \(hello.protocol)")
            }
            guard hello.engine == engine else {
                throw ProtocolError.malformed("plugin serves engine '\(hello.engine ?? "")', not '\(engine)'")
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
        if process.isRunning { Foundation.kill(process.processIdentifier, SIGKILL) }
    }

    /// Waits for the plugin to exit and describes how it did.
    @discardableResult
    public func waitForExit() -> String {
        try? stdinPipe.fileHandleForWriting.close()
        process.waitUntilExit()
        switch process.terminationReason {
        case .exit: return "exit status \(process.terminationStatus)"
        case .uncaughtSignal: return "killed by signal \(process.terminationStatus)"
        @unknown default: return "status \(process.terminationStatus)"
        }
    }

    public var exitedCleanly: Bool { process.terminationReason == .exit && process.terminationStatus == 0 }

    func recentLog() -> [String] { logTail.lines }
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
}
