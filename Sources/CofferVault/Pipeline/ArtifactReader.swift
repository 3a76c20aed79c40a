import Dispatch
import Foundation

/// Reads artifacts back: blobs are fetched, authenticated, decompressed and checked against
/// their id in parallel, and written out in order.
public struct ArtifactReader: Sendable {
    public let vault: Vault
    private let window: Int

    public init(vault: Vault, window: Int = 4 * ProcessInfo.processInfo.activeProcessorCount) throws {
        try vault.loadIndex()
        self.init(loadedVault: vault, window: window)
    }

    /// For callers that loaded the index themselves (the checker, which skips bad files).
    init(loadedVault vault: Vault, window: Int = 4 * ProcessInfo.processInfo.activeProcessorCount) {
        self.vault = vault
        self.window = max(1, window)
    }

    /// The content blob ids of an artifact, in order.
    public func contentIDs(_ artifact: Artifact) throws -> [BlobID] {
        if let blobs = artifact.blobs { return blobs.ids }
        guard let lists = artifact.lists else {
            throw VaultError.invalidArgument("artifact \(artifact.name) has neither blobs nor lists")
        }
        return try lists.ids.flatMap { IDList.decode(try loadBlob($0, type: .list)) }
    }

    /// Streams the artifact to `sink` in order. Up to `window` blobs are fetched and verified
    /// ahead on worker threads while the calling thread writes, so output overlaps decoding.
    public func read(_ artifact: Artifact, progress: (@Sendable (Int64) -> Void)? = nil,
                     to sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let ids = try contentIDs(artifact)
        let slots = ReadSlots()
        let queue = DispatchQueue(label: "coffer.restore", qos: .userInitiated, attributes: .concurrent)
        func schedule(_ i: Int) {
            guard i < ids.count else { return }
            queue.async { slots.fill(i, Result { try loadBlob(ids[i], type: .data) }) }
        }
        for i in 0..<min(window, ids.count) { schedule(i) }
        var written: Int64 = 0
        defer {
            // On an early exit, let scheduled loads finish before their slots go away.
            queue.sync(flags: .barrier) {}
        }
        for i in 0..<ids.count {
            let plain = try slots.wait(i).get()
            schedule(i + window)
            try plain.withUnsafeBytes { try sink($0) }
            written += Int64(plain.count)
            progress?(written)
        }
        guard written == artifact.size else {
            throw VaultError.corruptObject(kind: .manifests, name: artifact.name,
                                           reason: "content is \(written) bytes, manifest says \(artifact.size)")
        }
    }

    /// One blob's plaintext, authenticated and checked against its id.
    public func loadBlob(_ id: BlobID, type: BlobType) throws -> [UInt8] {
        guard let loc = vault.index.lookup(id) else {
            throw VaultError.missingObject(kind: .packs, name: "(blob \(id.hex) is in no index)")
        }
        let packName = loc.pack.hex
        guard loc.entry.type == type else {
            throw VaultError.corruptObject(kind: .packs, name: packName, reason: "blob \(id.hex) is not of type \(type)")
        }
        let sealed = try vault.backend.read(.packs, packName, offset: Int(loc.entry.offset), length: Int(loc.entry.length))
        return try vault.openBlob(sealed, entry: loc.entry, pack: packName)
    }
}

/// One result slot per blob of an artifact: filled by a worker, taken once by the writer.
private final class ReadSlots: @unchecked Sendable {
    private let condition = NSCondition()
    private var results: [Int: Result<[UInt8], Error>] = [:]

    func fill(_ i: Int, _ result: Result<[UInt8], Error>) {
        condition.lock()
        results[i] = result
        condition.broadcast()
        condition.unlock()
    }

    func wait(_ i: Int) -> Result<[UInt8], Error> {
        condition.lock()
        defer { condition.unlock() }
        while results[i] == nil { condition.wait() }
        return results.removeValue(forKey: i)!
    }
}
