import Dispatch
import Foundation

/// Reads artifacts back: blobs are fetched, authenticated, decompressed and checked against
/// their id in parallel, and written out in order.
public struct ArtifactReader: Sendable {
    public let vault: Vault
    private let window: Int

    public init(vault: Vault, window: Int = 4 * ProcessInfo.processInfo.activeProcessorCount) throws {
        try vault.loadIndex()
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

    public func read(_ artifact: Artifact, progress: (@Sendable (Int64) -> Void)? = nil,
                     to sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        let ids = try contentIDs(artifact)
        var written: Int64 = 0
        for start in stride(from: 0, to: ids.count, by: window) {
            let batch = Array(ids[start..<min(start + window, ids.count)])
            let results = UnsafeResults(count: batch.count)
            DispatchQueue.concurrentPerform(iterations: batch.count) { i in
                results.set(i, Result { try loadBlob(batch[i], type: .data) })
            }
            for i in 0..<batch.count {
                let plain = try results.get(i).get()
                try plain.withUnsafeBytes { try sink($0) }
                written += Int64(plain.count)
                progress?(written)
            }
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
        let sealed = try vault.backend.read(.packs, packName, offset: Int(loc.entry.offset), length: Int(loc.entry.length))
        guard loc.entry.type == type,
              let plain = PackFormat.openBlob(sealed, id: id, type: type, rawLength: Int(loc.entry.rawLength),
                                              key: vault.key.dataKey)
        else {
            throw VaultError.corruptObject(kind: .packs, name: packName,
                                           reason: "blob \(id.hex) at offset \(loc.entry.offset) fails authentication")
        }
        guard BlobID(bytes: vault.idHasher.mac(prefix: [type.rawValue], plain)) == id else {
            throw VaultError.corruptObject(kind: .packs, name: packName, reason: "blob \(id.hex) does not match its id")
        }
        return plain
    }
}

/// Per-index result slots written by `concurrentPerform` iterations, each touching only its
/// own slot, and read after the perform returns. Raw memory, because a Swift array in a
/// class would trip exclusivity checking under concurrent writes to different elements.
private final class UnsafeResults: @unchecked Sendable {
    private let slots: UnsafeMutableBufferPointer<Result<[UInt8], Error>>
    init(count: Int) {
        slots = .allocate(capacity: count)
        slots.initialize(repeating: .success([]))
    }
    deinit {
        slots.deinitialize()
        slots.deallocate()
    }
    func set(_ i: Int, _ r: Result<[UInt8], Error>) { slots[i] = r }
    func get(_ i: Int) -> Result<[UInt8], Error> { slots[i] }
}
