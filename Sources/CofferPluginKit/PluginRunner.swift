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
    /// Stores the source's log as it is written, one `sink.commit` per log (capability
    /// "capture"). Returns, when `request.follow` is false, once all there is is stored.
    func capture(_ request: CaptureRequest, into sink: LogSink) throws
}

extension EnginePlugin {
    public func chain(_ request: ChainRequest) throws -> ChainReport {
        throw ProtocolError.peerFailed("the \(engine) plugin keeps no log chain")
    }

    public func capture(_ request: CaptureRequest, into sink: LogSink) throws {
        throw ProtocolError.peerFailed("the \(engine) plugin does not capture a log")
    }
}

/// Streams artifacts to the agent.
public final class ArtifactSink: @unchecked Sendable {
    let writer: FrameWriter

    init(writer: FrameWriter) { self.writer = writer }

    /// Sends the file at `path` as one artifact, as it is when read (a file that changes
    /// meanwhile is sent as read: engines make that consistent through their log).
    /// `observe` sees each piece as it is sent. Returns false, sending nothing, when the
    /// file does not exist (any more).
    @discardableResult
    public func file(name: String, path: String, chunker: String,
                     observe: ((UnsafeRawBufferPointer) -> Void)? = nil) throws -> Bool {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else {
            if errno == ENOENT { return false }
            throw ProtocolError.io("open \(path): \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        try artifact(name: name, chunker: chunker) { out in
            // Read straight into the memory the frame goes out from (a slot of shared memory).
            while try out.write(filling: { buf in
                while true {
                    let n = read(fd, buf.baseAddress!, buf.count)
                    if n >= 0 {
                        if n > 0 { observe?(UnsafeRawBufferPointer(rebasing: buf[0 ..< n])) }
                        return n
                    }
                    if errno != EINTR { throw ProtocolError.io("read \(path): \(String(cString: strerror(errno)))") }
                }
            }) > 0 {}
        }
        return true
    }

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

    /// Sends what `fill` writes into the memory it is given (at most 1 MiB; it returns the
    /// count, 0 at the end): no copy on this side. Returns that count.
    public func write(filling fill: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> Int {
        let n = try writer.sendData(filling: fill)
        size += Int64(n)
        return n
    }
}

/// One artifact to fetch during a restore.
public struct FetchItem: Sendable, Equatable {
    public var backup: String
    public var name: String

    public init(backup: String, name: String) {
        self.backup = backup
        self.name = name
    }
}

/// What `ArtifactSource.fetch(_:receive:)` hands on for each artifact, in order.
public enum FetchedPiece: Sendable {
    /// The artifact starts; the size the agent announces.
    case begin(size: Int64?)
    /// Its next bytes, maybe still in the agent's shared memory: the receiver may pass them
    /// to another thread, and must let go of them soon (see `DataPiece`).
    case data(DataPiece)
    /// All of it arrived, as many bytes as the agent says it sent.
    case end(size: Int64)
}

/// Fetches artifacts from the agent during a restore.
public final class ArtifactSource: @unchecked Sendable {
    let reader: FrameReader
    let writer: FrameWriter
    /// Whether the agent answers `fetch.many` (it says so in the restore request).
    let answersMany: Bool
    private var lastAlive = Date.distantPast

    init(reader: FrameReader, writer: FrameWriter, answersMany: Bool = false) {
        self.reader = reader
        self.writer = writer
        self.answersMany = answersMany
    }

    /// Streams one artifact of one backup to `sink`; returns its size.
    @discardableResult
    public func fetch(backup: String, name: String, to sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Int64 {
        try writer.send(Fetch(backup: backup, name: name))
        let begin = try PluginRunner.expect(ArtifactBegin.self, "artifact.begin", from: reader)
        return try receive(begin: begin, name: name, to: sink)
    }

    /// Streams many artifacts, in order: `receive(i, piece)` gets item i's begin, its data and
    /// its end before item i + 1's. Far faster than `fetch` one by one for many small
    /// artifacts: they are asked for in batches (`fetch.many`), so there is no round trip per
    /// artifact and the agent decodes the next ones while it sends one. An agent that does
    /// not answer `fetch.many` gets one `fetch` per artifact, with the same result.
    public func fetch(_ items: [FetchItem], receive handle: (Int, FetchedPiece) throws -> Void) throws {
        guard answersMany else {
            for (i, item) in items.enumerated() {
                try writer.send(Fetch(backup: item.backup, name: item.name))
                try receive(item: i, of: items, to: handle)
            }
            return
        }
        let batches = ArtifactSource.batches(items)
        func request(_ k: Int) throws {
            let range = batches[k]
            try writer.send(FetchMany(backup: items[range.lowerBound].backup, names: items[range].map(\.name)))
        }
        if !batches.isEmpty { try request(0) }
        for (k, range) in batches.enumerated() {
            for i in range {
                // The next batch goes out once this one is being answered: the agent reads it
                // as soon as it is done with this one, so it never waits for the plugin, and no
                // more than one request is ever queued (the agent does not read while it sends;
                // requests written into a full pipe then would block both sides).
                let next = i == range.lowerBound && k + 1 < batches.count
                try receive(item: i, of: items, to: handle, then: next ? { try request(k + 1) } : nil)
            }
        }
    }

    /// Consecutive items of one backup, at most 256 and about 8 KiB of request: an unread
    /// request always fits in the pipe to the agent, even a small one.
    static func batches(_ items: [FetchItem]) -> [Range<Int>] {
        var out: [Range<Int>] = []
        var start = 0
        var bytes = 0
        for (i, item) in items.enumerated() {
            let cost = 2 * item.name.utf8.count + 3   // quoted, and JSON escapes every slash
            if i > start, item.backup != items[start].backup || i - start == 256 || bytes + cost > 8000 {
                out.append(start..<i)
                start = i
                bytes = 0
            }
            bytes += cost
        }
        if start < items.count { out.append(start..<items.count) }
        return out
    }

    private func receive(item i: Int, of items: [FetchItem], to handle: (Int, FetchedPiece) throws -> Void,
                         then: (() throws -> Void)? = nil) throws {
        let begin = try PluginRunner.expect(ArtifactBegin.self, "artifact.begin", from: reader)
        guard begin.name == items[i].name else {
            throw ProtocolError.malformed("asked for \(items[i].name), the agent sent \(begin.name)")
        }
        try then?()
        try handle(i, .begin(size: begin.size))
        let size = try receivePayloads(begin: begin, name: items[i].name) { try handle(i, .data($0)) }
        try handle(i, .end(size: size))
    }

    /// Tells the agent the plugin is still at work though it fetches nothing (a recovery
    /// replaying WAL), so that the silence timeout does not fire. At most one message a
    /// second; call it as often as is convenient, between fetches only.
    public func alive() throws {
        guard Date().timeIntervalSince(lastAlive) >= 1 else { return }
        try writer.send(Alive())
        lastAlive = Date()
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

    private func receive(begin: ArtifactBegin, name: String, to sink: (UnsafeRawBufferPointer) throws -> Void) throws -> Int64 {
        try receivePayloads(begin: begin, name: name) { try $0.withUnsafeBytes(sink) }
    }

    /// The data frames of the artifact `begin` opened, each piece handed on as it came, up
    /// to its end; returns the size, checked against what the agent says it sent.
    private func receivePayloads(begin: ArtifactBegin, name: String, to sink: (DataPiece) throws -> Void) throws -> Int64 {
        var size: Int64 = 0
        var piece: DataPiece?
        while let frame = try reader.next(piece: &piece) {
            if let data = piece {
                piece = nil
                size += Int64(data.count)
                try sink(data)
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
            // Shared memory when the agent offers it; without it (mapping failed), the pipe.
            var capabilities = plugin.capabilities
            if let count = hello.sharedSlots {
                do {
                    let shared = try SharedSlots.attach(count: count)
                    reader.shared = shared
                    writer.shared = shared
                    capabilities.append(Hello.sharedData)
                } catch {
                    log("data goes through the pipe: \(error)")
                }
            }
            try writer.send(Hello(software: software, engine: plugin.engine, capabilities: capabilities))
            guard var frame = try reader.next() else { exit(0) }
            // A chain request too large for one frame comes with its records before it.
            var records: [BackupDescription] = []
            while try Wire.type(of: frame) == "chain.records" {
                records += try Wire.decode(ChainRecords.self, from: frame).backups
                guard let next = try reader.next() else { throw ProtocolError.closed }
                frame = next
            }
            switch try Wire.type(of: frame) {
            case "backup":
                let request = try Wire.decode(BackupRequest.self, from: frame)
                let done = try plugin.backup(request, into: ArtifactSink(writer: writer))
                try writer.send(done)
                _ = try expect(Committed.self, "committed", from: reader)
            case "restore":
                let request = try Wire.decode(RestoreRequest.self, from: frame)
                widenPipe(STDIN_FILENO)
                let source = ArtifactSource(reader: reader, writer: writer,
                                            answersMany: request.capabilities?.contains("fetch.many") == true)
                let done = try plugin.restore(request, from: source)
                try writer.send(done)
            case "chain":
                var request = try Wire.decode(ChainRequest.self, from: frame)
                request.backups = records + request.backups
                try writer.send(try plugin.chain(request))
            case "capture":
                let request = try Wire.decode(CaptureRequest.self, from: frame)
                try plugin.capture(request, into: LogSink(writer: writer, reader: reader))
                try writer.send(CaptureDone())
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

    /// Asks for a 1 MiB pipe (Linux's default is 64 KiB, one data frame of a data file), so
    /// the agent can send ahead while the plugin writes instead of the two taking turns.
    /// Best effort: the pipe may be no pipe, or the user's pipe memory used up.
    static func widenPipe(_ fd: Int32) {
        #if os(Linux)
        _ = fcntl(fd, 1031 /* F_SETPIPE_SZ, which Glibc's module leaves out */, Int32(1 << 20))
        #endif
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
