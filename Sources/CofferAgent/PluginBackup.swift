import CofferPluginProtocol
import CofferVault
import Dispatch
import Foundation
import Synchronization

extension PluginJob {
    /// A backup taken by the plugin: every artifact it streams goes through the vault
    /// pipeline, and the manifest is written only after the plugin says `done`. A plugin
    /// that dies, hangs or breaks the protocol first leaves no manifest (its stored blobs
    /// are reused next time). Returns the new backup id.
    public func backup(_ request: BackupRequest, software: String = "coffer",
                    progress: (@Sendable (Int64) -> Void)? = nil) throws -> String {
        try backupWithStatistics(request, software: software, progress: progress).id
    }

    /// `backup`, also returning what it stored: blobs new to the vault (with their plaintext
    /// and stored bytes) and blobs it reused.
    public func backupWithStatistics(_ request: BackupRequest, software: String = "coffer",
                                     progress: (@Sendable (Int64) -> Void)? = nil) throws -> (id: String, statistics: BackupSession.Stats) {
        try plugin.handshake(engine: engine, software: software)
        let session = try makeSession(for: request)
        let started = Date()
        let id = try plugin.guarded { () throws -> String in
            try plugin.writer.send(request)
            return try receive(request, session: session, frames: FrameQueue(plugin.reader), started: started, progress: progress)
        }
        return (id, session.statistics)
    }

    /// `backup` for a job whose vault is still being opened: `open` runs on another thread
    /// while the plugin starts, gets the request and sends its first frames, which are kept
    /// until the vault is there. For an archive command, whose vault is opened on every
    /// call, this hides the plugin's start and its reading and checking of the WAL file
    /// behind the key derivation (scrypt, ~90 ms with a passphrase). A vault that does not
    /// open fails the job with its own error, whatever the plugin did meanwhile.
    public static func backup(_ request: BackupRequest, plugin: PluginProcess, engine: String, software: String = "coffer",
                              openingVault open: @escaping @Sendable () throws -> Vault) throws -> String {
        let opened = Mutex<Result<Vault, any Error>?>(nil)
        let ready = DispatchSemaphore(value: 0)
        DispatchQueue.global(qos: .userInitiated).async {
            let result = Result { try open() }
            opened.withLock { $0 = result }
            ready.signal()
        }
        let started = Date()
        let frames = FrameQueue(plugin.reader)
        var pluginFailure: (any Error)?
        do {
            try plugin.handshake(engine: engine, software: software)
            try plugin.guarded {
                try plugin.writer.send(request)
                try frames.readAhead(until: { opened.withLock { $0 != nil } })
            }
        } catch {
            pluginFailure = error
        }
        ready.wait()
        let vault: Vault
        do {
            vault = try opened.withLock { $0! }.get()
        } catch {
            plugin.kill()
            plugin.waitForExit()
            throw error
        }
        if let pluginFailure { throw pluginFailure }
        let job = PluginJob(vault: vault, plugin: plugin, engine: engine)
        return try plugin.guarded { () throws -> String in
            let session = try job.makeSession(for: request)
            return try job.receive(request, session: session, frames: frames, started: started, progress: nil)
        }
    }

    func makeSession(for request: BackupRequest) throws -> BackupSession {
        // A log (one WAL segment) is unique content: reading the whole index to dedupe it
        // would cost more than it could save on every archive_command call.
        let isLog = request.kind == "log"
        // A source may trade space for speed (compression_level = 1, as pgBackRest's
        // compress-level); otherwise the vault's level.
        var level: Int?
        if let text = request.options["compression_level"] {
            guard let l = Int(text), (0...19).contains(l) else {
                throw VaultError.invalidArgument("source \(request.source): compression_level must be 0 (none) to 19, not '\(text)'")
            }
            level = l
        }
        if isLog { level = min(level ?? vault.config.compressionLevel, Self.logCompressionLevel(vault)) }
        return try BackupSession(vault: vault, compressionLevel: level, dedupe: !isLog)
    }

    /// The plugin's side of a backup once it has the request: artifacts until `done`, then
    /// the commit and `committed`.
    private func receive(_ request: BackupRequest, session: BackupSession, frames: FrameQueue, started: Date,
                         progress: (@Sendable (Int64) -> Void)?) throws -> String {
        // Each artifact's last blobs are still being stored while the next one is read.
        var pending: [PendingArtifact] = []
        var base: Int64 = 0
        while true {
            guard let frame = try frames.next() else { throw ProtocolError.closed }
            switch try Wire.type(of: frame) {
            case "artifact.begin":
                var overall: (@Sendable (Int64) -> Void)?
                if let progress { overall = { [base] in progress(base + $0) } }
                let artifact = try receiveArtifact(frame, session: session, frames: frames, progress: overall)
                base += artifact.size
                pending.append(artifact)
            case "done":
                let done = try Wire.decode(BackupDone.self, from: frame)
                let artifacts = try pending.map { try $0.finish() }
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

extension PluginJob {
    /// Reads the artifact that `begin` (an `artifact.begin` frame) opens, from its data
    /// frames up to its `artifact.end`, into the session, which may still be storing its
    /// last blobs when this returns.
    func receiveArtifact(_ begin: Frame, session: BackupSession, frames: FrameQueue,
                         progress: (@Sendable (Int64) -> Void)?) throws -> PendingArtifact {
        let begin = try Wire.decode(ArtifactBegin.self, from: begin)
        let spec: ChunkerSpec
        do {
            spec = try ChunkerSpec(parsing: begin.chunker ?? "cdc")
        } catch {
            throw ProtocolError.malformed("artifact \(begin.name): \(error)")
        }
        let feed = DataFeed(frames: frames, name: begin.name)
        let artifact: PendingArtifact
        if case .fixed = spec, plugin.usesSharedMemory {
            // Blocks of data files: those lying whole in a slot of shared memory are stored
            // from there, not copied out first (decision 024).
            artifact = try session.submit(name: begin.name, chunker: spec, progress: progress, lend: feed.lend)
        } else {
            artifact = try session.submit(name: begin.name, chunker: spec, progress: progress, read: feed.read)
        }
        try feed.checkEnd(size: artifact.size)
        return artifact
    }
}

/// The plugin's frames, those read ahead first.
final class FrameQueue {
    private let reader: FrameReader
    private var ahead: [Frame] = []
    private var head = 0

    init(_ reader: FrameReader) { self.reader = reader }

    func next() throws -> Frame? {
        try next(leavingData: false)
    }

    /// As FrameReader's: a data frame not read ahead is left for `readData`.
    func nextLeavingData() throws -> Frame? {
        try next(leavingData: true)
    }

    /// As FrameReader's: a data frame comes back as `piece`, its bytes left in their slot;
    /// a frame read ahead comes with its payload (and no piece).
    func next(piece: inout DataPiece?) throws -> Frame? {
        piece = nil
        guard head < ahead.count else { return try reader.next(piece: &piece) }
        return try next()
    }

    var dataLeft: Int { reader.dataLeft }

    func readData(into buf: UnsafeMutableRawBufferPointer) throws -> Int {
        try reader.readData(into: buf)
    }

    private func next(leavingData: Bool) throws -> Frame? {
        guard head < ahead.count else { return try leavingData ? reader.nextLeavingData() : reader.next() }
        let frame = ahead[head]
        ahead[head].payload = []  // taken: its memory goes as soon as the caller is done with it
        head += 1
        return frame
    }

    /// Reads and keeps frames until `stop` says so, the plugin has said all it will say
    /// before an answer (done or error), or `limit` bytes are kept.
    func readAhead(until stop: () -> Bool, limit: Int = 64 << 20) throws {
        var kept = 0
        while !stop() && kept < limit {
            guard let frame = try reader.next() else { return }
            ahead.append(frame)
            kept += frame.payload.count
            if frame.kind == .control, let type = try? Wire.type(of: frame), type == "done" || type == "error" { return }
        }
    }
}

extension PluginJob {
    /// zstd level for logs: at most 1. A log sits on the archive command's critical path
    /// (the server keeps its WAL until the command returns): on 16 MiB WAL segments level 1
    /// compressed 1.5x as fast as level 3 (594 against 389 MB/s) for 1.6% more bytes
    /// (ratio 2.54 against 2.58). A vault without compression (0) or with a faster
    /// (negative) level keeps its own.
    static func logCompressionLevel(_ vault: Vault) -> Int {
        min(vault.config.compressionLevel, 1)
    }

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
        // Each step is durable (file fsync, rename, directory fsync) before the next begins:
        // packs, the index naming them, the manifest (session.commit), then the reference.
        // A crash anywhere leaves at most objects nothing names yet, never a reference to a
        // manifest or a manifest to blobs that are not on disk; `committed`, and with it
        // archive_command's exit 0, comes only after the reference.
        let id = try session.commit(manifest)
        try vault.recordLog(source: manifest.source, log: log, manifest: id)
        return id
    }
}

/// Hands the data frames of one artifact to the session: read as a byte stream, each frame
/// copied straight into the chunker's buffer (only frames read ahead while a vault was
/// opening come as arrays), or lent, frame by frame.
final class DataFeed: @unchecked Sendable {
    private let frames: FrameQueue
    private let name: String
    private var pending: [UInt8] = []
    private var offset = 0
    private var end: ArtifactEnd?

    init(frames: FrameQueue, name: String) {
        self.frames = frames
        self.name = name
    }

    func read(into buf: UnsafeMutableRawBufferPointer) throws -> Int {
        guard buf.count > 0 else { return 0 }
        while offset == pending.count {
            if frames.dataLeft > 0 { return try frames.readData(into: buf) }
            if end != nil { return 0 }
            guard let frame = try frames.nextLeavingData() else { throw ProtocolError.closed }
            if frame.kind == .data {
                pending = frame.payload
                offset = 0
                continue
            }
            try control(frame)
        }
        let n = min(buf.count, pending.count - offset)
        pending.withUnsafeBytes { buf.baseAddress!.copyMemory(from: $0.baseAddress! + offset, byteCount: n) }
        offset += n
        return n
    }

    /// The artifact's next data frame as lent bytes: in its slot of shared memory, which
    /// goes back to the plugin when the session lets go of it; a frame that came as an array
    /// copied. Nil after the artifact's end.
    func lend() throws -> LentBytes? {
        precondition(offset == pending.count && frames.dataLeft == 0, "an artifact is either read or lent")
        while end == nil {
            var piece: DataPiece?
            guard let frame = try frames.next(piece: &piece) else { throw ProtocolError.closed }
            if frame.kind == .data {
                if let piece {
                    guard piece.count > 0 else { continue }
                    return piece.sharedBytes.map { LentBytes(bytes: $0, owner: piece) } ?? piece.withUnsafeBytes { LentBytes.copying($0) }
                }
                guard !frame.payload.isEmpty else { continue }
                return frame.payload.withUnsafeBytes { LentBytes.copying($0) }
            }
            try control(frame)
        }
        return nil
    }

    /// A control frame inside the artifact: its end, or the plugin's error.
    private func control(_ frame: Frame) throws {
        let type = try Wire.type(of: frame)
        if type == "error" { throw Wire.peerFailure(frame) }
        guard type == "artifact.end" else {
            throw ProtocolError.malformed("artifact \(name) interrupted by a \(type) message")
        }
        end = try Wire.decode(ArtifactEnd.self, from: frame)
    }

    func checkEnd(size: Int64) throws {
        guard let end, end.name == name else { throw ProtocolError.malformed("artifact \(name) has no matching artifact.end") }
        guard end.size == size else {
            throw ProtocolError.malformed("artifact \(name): plugin says \(end.size) bytes, sent \(size)")
        }
    }
}
