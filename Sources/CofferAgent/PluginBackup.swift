import CofferPluginProtocol
import CofferVault
import Foundation

extension PluginJob {
    /// A backup taken by the plugin: every artifact it streams goes through the vault
    /// pipeline, and the manifest is written only after the plugin says `done`. A plugin
    /// that dies, hangs or breaks the protocol first leaves no manifest (its stored blobs
    /// are reused next time). Returns the new backup id.
    public func backup(_ request: BackupRequest, software: String = "coffer",
                    progress: (@Sendable (Int64) -> Void)? = nil) throws -> String {
        try plugin.handshake(engine: engine, software: software)
        // A log (one WAL segment) is unique content: reading the whole index to dedupe it
        // would cost more than it could save on every archive_command call.
        let session = try BackupSession(vault: vault, dedupe: request.kind != "log")
        let started = Date()
        var artifacts: [Artifact] = []
        return try plugin.guarded { () throws -> String in
            try plugin.writer.send(request)
            while true {
                guard let frame = try plugin.reader.next() else { throw ProtocolError.closed }
                switch try Wire.type(of: frame) {
                case "artifact.begin":
                    let begin = try Wire.decode(ArtifactBegin.self, from: frame)
                    let spec: ChunkerSpec
                    do {
                        spec = try ChunkerSpec(parsing: begin.chunker ?? "cdc")
                    } catch {
                        throw ProtocolError.malformed("artifact \(begin.name): \(error)")
                    }
                    let feed = DataFeed(reader: plugin.reader, name: begin.name)
                    let base = artifacts.reduce(Int64(0)) { $0 + $1.size }
                    var overall: (@Sendable (Int64) -> Void)?
                    if let progress { overall = { progress(base + $0) } }
                    let artifact = try session.store(name: begin.name, chunker: spec, progress: overall, read: feed.read)
                    try feed.checkEnd(size: artifact.size)
                    artifacts.append(artifact)
                case "done":
                    let done = try Wire.decode(BackupDone.self, from: frame)
                    let manifest = Manifest(source: request.source, engine: engine, kind: request.kind,
                                            parent: request.parent, started: started, finished: Date(),
                                            positions: done.positions, artifacts: artifacts, metadata: done.metadata)
                    let id = request.kind == "log" ? try commitLog(manifest, session: session)
                                                   : try session.commit(manifest)
                    try plugin.writer.send(Committed(backup: id))
                    plugin.waitForExit()
                    return id
                case "error":
                    throw Wire.peerFailure(frame)
                case let other:
                    throw ProtocolError.malformed("unexpected \(other) message during a backup")
                }
            }
        }
    }
}

extension PluginJob {
    /// A log is stored once under its name: pushed again with the same content it is the
    /// same backup (an archive command retried after a crash must succeed); with other
    /// content it is refused, since one of the two copies is wrong and the DBA must know.
    func commitLog(_ manifest: Manifest, session: BackupSession) throws -> String {
        guard let log = manifest.positions["log"], !log.isEmpty else {
            throw ProtocolError.malformed("a log backup must name its log (positions.log)")
        }
        if let existing = try vault.logManifest(source: manifest.source, log: log) {
            guard existing.manifest.artifacts == manifest.artifacts else {
                throw AgentError.logConflict(source: manifest.source, log: log, existing: existing.id)
            }
            return existing.id
        }
        let id = try session.commit(manifest)
        try vault.recordLog(source: manifest.source, log: log, manifest: id)
        return id
    }
}

/// Hands the data frames of one artifact to the chunker as a byte stream.
final class DataFeed: @unchecked Sendable {
    private let reader: FrameReader
    private let name: String
    private var pending: [UInt8] = []
    private var offset = 0
    private var end: ArtifactEnd?

    init(reader: FrameReader, name: String) {
        self.reader = reader
        self.name = name
    }

    func read(into buf: UnsafeMutableRawBufferPointer) throws -> Int {
        while offset == pending.count {
            if end != nil { return 0 }
            guard let frame = try reader.next() else { throw ProtocolError.closed }
            if frame.kind == .data {
                pending = frame.payload
                offset = 0
                continue
            }
            let type = try Wire.type(of: frame)
            if type == "error" { throw Wire.peerFailure(frame) }
            guard type == "artifact.end" else {
                throw ProtocolError.malformed("artifact \(name) interrupted by a \(type) message")
            }
            end = try Wire.decode(ArtifactEnd.self, from: frame)
        }
        let n = min(buf.count, pending.count - offset)
        pending.withUnsafeBytes { buf.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
        offset += n
        return n
    }

    func checkEnd(size: Int64) throws {
        guard let end, end.name == name else { throw ProtocolError.malformed("artifact \(name) has no matching artifact.end") }
        guard end.size == size else {
            throw ProtocolError.malformed("artifact \(name): plugin says \(end.size) bytes, sent \(size)")
        }
    }
}
