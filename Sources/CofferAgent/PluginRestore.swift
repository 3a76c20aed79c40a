import CofferPluginProtocol
import CofferVault
import Foundation

extension PluginJob {
    /// Data frames to a restoring plugin gather blobs up to this many bytes, and pieces.
    static let gatheredFrame = 1 << 20
    static let gatheredPieces = 64

    /// A restore done by the plugin of `backups` (ids, base first) of `source`: the agent
    /// answers its `fetch` and `fetch.many` requests from the vault (only for those backups)
    /// until the plugin says `restored`. `options` go to the plugin.
    public func restore(source: String, backups: [String], options: [String: String],
                    software: String = "coffer") throws -> RestoreDone {
        let manifests = try backups.map { try vault.readManifest(id: $0) }
        let descriptions = zip(backups, manifests).map { id, m in
            BackupDescription(id: id, kind: m.kind, positions: m.positions, metadata: m.metadata,
                              artifacts: m.artifacts.map { ArtifactDescription(name: $0.name, size: $0.size) })
        }
        // Looked up once: a base backup has thousands of artifacts, asked for by name.
        var artifacts: [String: [String: Artifact]] = [:]
        for (id, m) in zip(backups, manifests) {
            artifacts[id] = Dictionary(m.artifacts.map { ($0.name, $0) }, uniquingKeysWith: { first, _ in first })
        }
        let request = RestoreRequest(source: source, backups: descriptions, options: options,
                                     capabilities: ["fetch.many"])
        try plugin.handshake(engine: engine, software: software)
        let reader = try ArtifactReader(vault: vault)
        let lender = plugin.writer.shared.map(SlotLender.init)
        // Every name of a request is checked before anything of it is sent.
        func lookup(_ backup: String, _ names: [String]) throws -> [Artifact] {
            guard backups.contains(backup), let known = artifacts[backup] else {
                throw ProtocolError.malformed("fetch of backup \(backup), which is not part of this restore")
            }
            return try names.map { name in
                guard let artifact = known[name] else {
                    throw ProtocolError.malformed("backup \(backup) has no artifact \(name)")
                }
                return artifact
            }
        }
        // Answers a request: each artifact as artifact.begin, data, artifact.end, in order. The
        // reader decodes ahead across the artifacts while this thread writes to the plugin.
        // Small blobs (a MySQL page is 16 KiB) go out gathered into frames of about 1 MiB:
        // one frame, and one system call, instead of one each.
        var pending: [[UInt8]] = []
        var pendingBytes = 0
        func flush() throws {
            guard !pending.isEmpty else { return }
            // A piece alone may be a blob over 1 MiB, which sendData splits into frames.
            if pending.count == 1 { try plugin.writer.sendData(pending[0]) } else { try plugin.writer.sendData(parts: pending) }
            pending.removeAll(keepingCapacity: true)
            pendingBytes = 0
        }
        func send(_ list: [Artifact], as names: [String]? = nil) throws {
            do {
                try reader.read(list, into: lender) { piece in
                    switch piece {
                    case .begin(let i):
                        try plugin.writer.send(ArtifactBegin(name: names?[i] ?? list[i].name, size: list[i].size))
                    case .data(let plain):
                        if pendingBytes + plain.count > PluginJob.gatheredFrame || pending.count == PluginJob.gatheredPieces { try flush() }
                        pending.append(plain)
                        pendingBytes += plain.count
                    case .lent(let loan, let count):
                        try flush()
                        lender?.sent(loan)
                        try plugin.writer.send(filledSlot: loan.token, length: count)
                    case .end(let i):
                        try flush()
                        try plugin.writer.send(ArtifactEnd(name: names?[i] ?? list[i].name, size: list[i].size))
                    }
                }
            } catch ProtocolError.closed {
                // The plugin stopped reading and exited while we sent: it failed on its side
                // (a full disk) and said why in an `error` we have not read yet, behind any
                // request it had queued. That is the reason to report, not a broken pipe.
                while let frame = try? plugin.reader.next() {
                    if (try? Wire.type(of: frame)) == "error" { throw Wire.peerFailure(frame) }
                }
                throw ProtocolError.closed
            } catch let error where !(error is ProtocolError) {
                // The vault failed us (a corrupt or missing blob) amid an artifact. Told so,
                // the plugin removes the files it was writing and exits, where a kill would
                // leave them half written; what it answers is only its echo of this error.
                try? plugin.writer.send(ErrorMessage(message: "\(error)"))
                while (try? plugin.reader.next()) != nil {}
                throw error
            }
        }
        return try plugin.guarded { () throws -> RestoreDone in
            try plugin.writer.send(request)
            while true {
                guard let frame = try plugin.reader.next() else { throw ProtocolError.closed }
                switch try Wire.type(of: frame) {
                case "fetch":
                    let fetch = try Wire.decode(Fetch.self, from: frame)
                    try send(try lookup(fetch.backup, [fetch.name]))
                case "fetch.many":
                    let fetch = try Wire.decode(FetchMany.self, from: frame)
                    try send(try lookup(fetch.backup, fetch.names))
                case "fetch.log":
                    let fetch = try Wire.decode(FetchLog.self, from: frame)
                    guard let record = try vault.logManifest(source: source, log: fetch.log) else {
                        try plugin.writer.send(LogMissing(log: fetch.log))
                        continue
                    }
                    guard record.manifest.artifacts.count == 1, let artifact = record.manifest.artifacts.first else {
                        throw VaultError.corruptObject(kind: .manifests, name: record.id,
                                                       reason: "log \(fetch.log) has \(record.manifest.artifacts.count) artifacts, not one")
                    }
                    try send([artifact], as: [fetch.log])
                case "restored":
                    let done = try Wire.decode(RestoreDone.self, from: frame)
                    plugin.waitForExit()
                    return done
                case "error":
                    throw Wire.peerFailure(frame)
                case let other:
                    throw ProtocolError.malformed("unexpected \(other) message during a restore")
                }
            }
        }
    }
}

/// Lends a restore's reader the shared slots, so that blobs are opened straight into the
/// memory the plugin reads (decision 022). Only what a slot holds and what would not go
/// inline anyway; the reader and the sender are the same thread, as SharedSlots wants.
///
/// One slot is never lent: data that is not lent (pieces across artifacts, small files)
/// waits for a slot to copy into, and if the reader held them all, for batches queued
/// behind it, it would wait forever.
final class SlotLender: BatchMemory {
    let slots: SharedSlots
    /// Lent and neither sent nor given back.
    private var out = 0

    init(_ slots: SharedSlots) { self.slots = slots }

    func borrow(_ bytes: Int) -> LentMemory? {
        guard bytes > FrameWriter.inlineLimit, bytes <= SharedSlots.slotSize, out < slots.count - 1,
              let slot = try? slots.acquireIfFree() else { return nil }
        out += 1
        return LentMemory(token: slot, memory: slots.slot(slot))
    }

    /// The loan's slot went to the plugin, which gives it back as usual.
    func sent(_ loan: LentMemory) { out -= 1 }

    func giveBack(_ loan: LentMemory) {
        out -= 1
        slots.putBack(loan.token)
    }
}
