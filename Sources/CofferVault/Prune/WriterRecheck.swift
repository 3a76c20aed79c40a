import Foundation

/// The writer's half of the garbage-collection protocol (docs/decisions/009).
///
/// A writer dedupes against the index it loaded. A prune running meanwhile may write a new
/// index without some of those blobs (garbage when it looked: no manifest named them) and
/// delete the files the writer loaded. The packs stay on disk while this writer's marker
/// lives; before its manifest becomes durable, and once more after, the writer makes sure
/// every blob it reused is in the index as it is now, naming the old location again where
/// it is not.
extension Vault {
    func keepIndexed(_ reused: Set<BlobID>, since start: (files: Set<String>, generation: Int)) throws {
        guard !reused.isEmpty else { return }
        let listed = Set(try backend.list(.index))
        let now = index.loaded
        // Nothing this session could have deduped against was superseded: done (one listing).
        if start.files.isSubset(of: listed), now.files.isSubset(of: listed), now.generation == start.generation { return }
        let current = MasterIndex()
        try current.load(backend: backend, key: key.dataKey, strict: true)
        var byPack: [PackID: [PackEntry]] = [:]
        var unresolved: [BlobID] = []
        for id in reused where !current.contains(id) {
            if let location = index.lookup(id) {
                byPack[location.pack, default: []].append(location.entry)
            } else {
                unresolved.append(id)
            }
        }
        if !unresolved.isEmpty {
            // This process read the index afresh since (another session did): look for the
            // blobs in the packs that deletion plans hold.
            let found = try locateInPlans(Set(unresolved))
            for id in unresolved {
                guard let (pack, entry) = found[id] else {
                    throw VaultError.missingObject(kind: .packs, name: "(blob \(id.hex), reused by this backup, was removed by a prune)")
                }
                byPack[pack, default: []].append(entry)
            }
        }
        guard !byPack.isEmpty else { return }
        for pack in byPack.keys where !(try backend.exists(.packs, pack.hex)) {
            throw VaultError.missingObject(kind: .packs, name: "\(pack.hex) (holds blobs this backup reused; a prune deleted it)")
        }
        try writeIndexFile(byPack.map { (id: $0.key, entries: $0.value) })
    }

    /// Writes one index file naming these packs' entries; returns its name.
    @discardableResult
    func writeIndexFile(_ packs: [(id: PackID, entries: [PackEntry])]) throws -> String {
        let sealed = AESGCM.seal(key: key.dataKey, aad: AssociatedData.index, IndexFile(packs: packs).encode())
        let name = SHA256.hex(sealed)
        try backend.write(.index, name, sealed)
        return name
    }

    /// Where the blobs are among the packs of every deletion plan (read from pack headers).
    func locateInPlans(_ ids: Set<BlobID>) throws -> [BlobID: (PackID, PackEntry)] {
        var found: [BlobID: (PackID, PackEntry)] = [:]
        for name in try backend.list(.gc) {
            guard let plan = try? DeletionPlan.read(backend: backend, name: name) else { continue }
            for hex in plan.packs {
                guard let pack = PackID(hex: hex), let entries = try? readPackHeader(hex) else { continue }
                for e in entries where ids.contains(e.id) && found[e.id] == nil { found[e.id] = (pack, e) }
                if found.count == ids.count { return found }
            }
        }
        return found
    }

    /// A pack's own header, read from its tail and checked (VaultChecker's reading).
    func readPackHeader(_ name: String) throws -> [PackEntry] {
        try VaultChecker(vault: self).readHeader(name: name, size: try backend.size(.packs, name))
    }
}
