import CofferPluginProtocol
import Foundation

/// What an engine plugin implements; `PluginRunner` does the protocol around it.
public protocol EnginePlugin: Sendable {
    /// The engine name sources use (`engine = "postgres"`).
    var engine: String { get }
    /// backup.full, backup.incremental, backup.log, restore.
    var capabilities: [String] { get }
    func backup(_ request: BackupRequest, into sink: ArtifactSink) throws -> BackupDone
    func restore(_ request: RestoreRequest, from source: ArtifactSource) throws -> RestoreDone
    /// Windows, problems and restore plans of a source's chain (engines with a log).
    func chain(_ request: ChainRequest) throws -> ChainReport
}

extension EnginePlugin {
    public func chain(_ request: ChainRequest) throws -> ChainReport {
        throw ProtocolError.peerFailed("the \(engine) plugin keeps no log chain")
    }
}

/// Streams artifacts to the agent.
public final class ArtifactSink: @unchecked Sendable {
    let writer: FrameWriter

    init(writer: FrameWriter) { self.writer = writer }

    /// Sends one artifact: `body` writes its bytes; the size is counted and sent at the end.
    public func artifact(name: String, chunker: String = "cdc", body: (ArtifactWriter) throws -> Void) throws {
        try writer.send(ArtifactBegin(name: name, chunker: chunker))
        let out = ArtifactWriter(writer: writer)
        try body(out)
        try writer.send(ArtifactEnd(name: name, size: out.size))
    }
}

public final class ArtifactWriter: @unchecked Sendable {
    let writer: FrameWriter
    public private(set) var size: Int64 = 0

    init(writer: FrameWriter) { self.writer = writer }

    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        try writer.sendData(bytes)
        size += Int64(bytes.count)
    }

    public func write(_ bytes: [UInt8]) throws { try bytes.withUnsafeBytes { try write($0) } }
}

/// Fetches artifacts from the agent during a restore.
public final class ArtifactSource: @unchecked Sendable {
    let reader: FrameReader
    let writer: FrameWriter

    init(reader: FrameReader, writer: FrameWriter) {
        self.reader = reader
        self.writer = writer
    }

    /// Streams one artifact of one backup to `sink`; returns its size.
    @discardableResult
    public func fetch(backup: String, name: String, to sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Int64 {
        try writer.send(Fetch(backup: backup, name: name))
        return try receive(name: name, to: sink)
    }

    /// Streams the log named `log` of the source to `sink`; returns its size, or nil when
    /// the vault has no such log.
    public func fetchLog(_ log: String, to sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Int64? {
        try writer.send(FetchLog(log: log))
        guard let frame = try reader.next() else { throw ProtocolError.closed }
        if try Wire.type(of: frame) == "log.missing" { return nil }
        let begin = try PluginRunner.decodeExpected(ArtifactBegin.self, "artifact.begin", frame)
        return try receive(begin: begin, name: log, to: sink)
    }

    private func receive(name: String, to sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Int64 {
        let begin = try PluginRunner.expect(ArtifactBegin.self, "artifact.begin", from: reader)
        return try receive(begin: begin, name: name, to: sink)
    }

    private func receive(begin: ArtifactBegin, name: String, to sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Int64 {
        var size: Int64 = 0
        while let frame = try reader.next() {
            if frame.kind == .data {
                try frame.payload.withUnsafeBytes { try sink($0) }
                size += Int64(frame.payload.count)
                continue
            }
            let end = try PluginRunner.decodeExpected(ArtifactEnd.self, "artifact.end", frame)
            guard end.name == begin.name, end.size == size else {
                throw ProtocolError.malformed("artifact \(name): got \(size) bytes, the agent says \(end.size)")
            }
            return size
        }
        throw ProtocolError.closed
    }
}

/// The plugin's side of the protocol on stdin/stdout; logs go to stderr.
public enum PluginRunner {
    public static func main(_ plugin: some EnginePlugin, software: String) -> Never {
        signal(SIGPIPE, SIG_IGN)
        let reader = FrameReader(fd: STDIN_FILENO)
        let writer = FrameWriter(fd: STDOUT_FILENO)
        do {
            let hello = try expect(Hello.self, "hello", from: reader)
            guard hello.protocol == PluginProtocol.version else {
                throw ProtocolError.malformed("the agent speaks protocol \(hello.protocol), this plugin \(PluginProtocol.version)")
            }
            try writer.send(Hello(software: software, engine: plugin.engine, capabilities: plugin.capabilities))
            guard let frame = try reader.next() else { exit(0) }
            switch try Wire.type(of: frame) {
            case "backup":
                let request = try Wire.decode(BackupRequest.self, from: frame)
                let done = try plugin.backup(request, into: ArtifactSink(writer: writer))
                try writer.send(done)
                _ = try expect(Committed.self, "committed", from: reader)
            case "restore":
                let request = try Wire.decode(RestoreRequest.self, from: frame)
                let done = try plugin.restore(request, from: ArtifactSource(reader: reader, writer: writer))
                try writer.send(done)
            case "chain":
                try writer.send(try plugin.chain(try Wire.decode(ChainRequest.self, from: frame)))
            case let other:
                throw ProtocolError.malformed("unexpected \(other) message")
            }
            exit(0)
        } catch {
            log("error: \(error)")
            try? writer.send(ErrorMessage(message: "\(error)"))
            exit(1)
        }
    }

    public static func log(_ line: String) {
        FileHandle.standardError.write(Data((line + "\n").utf8))
    }

    static func expect<M: Decodable>(_ type: M.Type, _ name: String, from reader: FrameReader) throws -> M {
        guard let frame = try reader.next() else { throw ProtocolError.closed }
        return try decodeExpected(type, name, frame)
    }

    static func decodeExpected<M: Decodable>(_ type: M.Type, _ name: String, _ frame: Frame) throws -> M {
        let got = try Wire.type(of: frame)
        if got == "error" { throw Wire.peerFailure(frame) }
        guard got == name else { throw ProtocolError.malformed("expected \(name), got \(got)") }
        return try Wire.decode(type, from: frame)
    }
}
