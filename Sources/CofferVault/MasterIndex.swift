import Synchronization

/// The in-memory index of every blob in the vault whose pack and index file are durable.
/// Only such blobs may be deduped against: a blob still in flight in a session that may yet
/// fail is the session's own business (BackupSession keeps those).
/// About 90 bytes an entry: 1 TiB at 1 MiB chunks is ~90 MB.
public final class MasterIndex: Sendable {
    public struct Location: Sendable {
        public let pack: PackID
        public let entry: PackEntry
    }

    struct Slot {
        var pack: UInt32
        var offset: UInt32
        var length: UInt32
        var rawLength: UInt32
        var type: BlobType
    }

    struct State {
        var packs: [PackID] = []
        var packNumbers: [PackID: UInt32] = [:]
        var blobs: [BlobID: Slot] = [:]
        var loadedFiles: Set<String> = []
        /// Bumped each time the index is read afresh because a prune superseded files.
        var generation = 0
    }

    private let state = Mutex(State())

    public init() {}

    public func contains(_ id: BlobID) -> Bool {
        state.withLock { $0.blobs[id] != nil }
    }

    func add(pack: PackID, entries: [PackEntry]) {
        state.withLock { s in s.insert(pack: pack, entries: entries) }
    }

    public func lookup(_ id: BlobID) -> Location? {
        state.withLock { s in
            guard let slot = s.blobs[id] else { return nil }
            return Location(pack: s.packs[Int(slot.pack)],
                            entry: PackEntry(type: slot.type, id: id, offset: slot.offset, length: slot.length,
                                             rawLength: slot.rawLength))
        }
    }


    /// Reads the index files not yet loaded. Returns the names of files that failed to open.
    ///
    /// Garbage collection (docs/decisions/009) writes index files that supersede others and
    /// then deletes those: a loaded file that is gone means locations may have moved, so the
    /// whole index is read again and swapped in at once; a listed file that vanishes before
    /// it is read was superseded by one written before it went, so the listing is redone.
    @discardableResult
    func load(backend: any VaultBackend, key: [UInt8], strict: Bool) throws -> [(name: String, reason: String)] {
        for _ in 0..<8 {
            let names = try backend.list(.index)
            let listed = Set(names)
            let superseded = state.withLock { s in !s.loadedFiles.isSubset(of: listed) }
            var fresh = superseded ? State() : nil
            let toRead = superseded ? names : state.withLock { s in names.filter { !s.loadedFiles.contains($0) } }
            var bad: [(String, String)] = []
            var vanished = false
            for name in toRead {
                do {
                    let file = try IndexFile.read(backend: backend, name: name, key: key)
                    if fresh != nil {
                        for pack in file.packs { fresh!.insert(pack: pack.id, entries: pack.entries) }
                        fresh!.loadedFiles.insert(name)
                    } else {
                        state.withLock { s in
                            for pack in file.packs { s.insert(pack: pack.id, entries: pack.entries) }
                            s.loadedFiles.insert(name)
                        }
                    }
                } catch VaultError.missingObject(.index, _) {
                    vanished = true
                    break
                } catch let error as VaultError {
                    if strict { throw error }
                    bad.append((name, error.description))
                }
            }
            if vanished { continue }
            if var fresh {
                state.withLock { s in
                    fresh.generation = s.generation + 1
                    s = fresh
                }
            }
            return bad
        }
        throw VaultError.io(path: backend.location, message: "index files keep vanishing while being read (a prune is rewriting the index); try again")
    }

    /// Names of the index files read so far, and how often the index was read afresh.
    var loaded: (files: Set<String>, generation: Int) { state.withLock { ($0.loadedFiles, $0.generation) } }
}

extension MasterIndex.State {
    mutating func insert(pack: PackID, entries: [PackEntry]) {
        let number: UInt32
        if let n = packNumbers[pack] {
            number = n
        } else {
            number = UInt32(packs.count)
            packs.append(pack)
            packNumbers[pack] = number
        }
        for e in entries {
            if blobs[e.id] == nil {
                blobs[e.id] = MasterIndex.Slot(pack: number, offset: e.offset, length: e.length,
                                              rawLength: e.rawLength, type: e.type)
            }
        }
    }
}

extension IndexFile {
    static func read(backend: any VaultBackend, name: String, key: [UInt8]) throws -> IndexFile {
        let stored = try backend.read(.index, name)
        guard SHA256.hex(stored) == name else {
            throw VaultError.corruptObject(kind: .index, name: name, reason: "content does not match its name (hash)")
        }
        guard let plain = AESGCM.open(key: key, aad: AssociatedData.index, stored) else {
            throw VaultError.corruptObject(kind: .index, name: name, reason: "fails authentication")
        }
        do {
            return try IndexFile.decode(plain)
        } catch {
            throw VaultError.corruptObject(kind: .index, name: name, reason: "unreadable: \(error)")
        }
    }
}
