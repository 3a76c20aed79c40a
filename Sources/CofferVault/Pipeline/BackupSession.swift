import Dispatch
import Foundation
import Synchronization

/// Stores streams into the vault and records them in one manifest.
///
/// The calling thread reads and chunks (chunking is sequential by nature); worker threads
/// hash, dedupe, compress, seal and pack. A semaphore bounds the chunks in flight, so memory
/// stays flat whatever the stream's size, and a slow disk slows the reader down.
/// Nothing becomes visible until `commit`: packs first, then the index naming them, then
/// the manifest naming their blobs.
public final class BackupSession: Sendable {
    public let vault: Vault
    private let zstd: Zstd?
    private let workers: Int
    private let queue = DispatchQueue(label: "coffer.backup", qos: .userInitiated, attributes: .concurrent)
    private let packer: Packer
    private let failure = Mutex<Error?>(nil)
    private let started = Date()
    private let stats = Mutex(Stats())

    public struct Stats: Sendable {
        /// Bytes read from the streams.
        public var logical: Int64 = 0
        /// Blobs stored anew, and their plaintext and stored sizes.
        public var newBlobs = 0
        public var newRaw: Int64 = 0
        public var newStored: Int64 = 0
        /// Blobs already in the vault (or in this backup).
        public var reusedBlobs = 0
    }

    /// - Parameter compressionLevel: zstd level; 0 stores blobs uncompressed; nil takes the vault's.
    public init(vault: Vault, compressionLevel: Int? = nil,
                workers: Int = ProcessInfo.processInfo.activeProcessorCount) throws {
        try vault.loadIndex()
        self.vault = vault
        let level = compressionLevel ?? vault.config.compressionLevel
        self.zstd = level == 0 ? nil : Zstd(level: level)
        self.workers = max(1, workers)
        self.packer = Packer(vault: vault)
    }

    public var statistics: Stats { stats.withLock { $0 } }

    /// Reads a stream to its end through `read` (which returns 0 at the end) and stores it.
    public func store(name: String, chunker: ChunkerSpec, progress: (@Sendable (Int64) -> Void)? = nil,
                      read: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) throws -> Artifact {
        let results = Mutex<[BlobID?]>([])
        let inflight = DispatchSemaphore(value: workers * 2)
        let group = DispatchGroup()
        var chunker = StreamChunker(spec: chunker == .contentDefined ? .contentDefined : chunker, cdc: vault.cdc, read: read)
        var size: Int64 = 0
        var seq = 0
        do {
            while let chunk = try chunker.next() {
                if let error = failure.withLock({ $0 }) { throw error }
                let n = seq
                seq += 1
                size += Int64(chunk.count)
                results.withLock { $0.append(nil) }
                inflight.wait()
                group.enter()
                queue.async { [self] in
                    defer {
                        inflight.signal()
                        group.leave()
                    }
                    do {
                        let id = try storeBlob(chunk, type: .data)
                        results.withLock { $0[n] = id }
                    } catch {
                        failure.withLock { if $0 == nil { $0 = error } }
                    }
                }
                progress?(size)
            }
        } catch {
            group.wait()
            failure.withLock { if $0 == nil { $0 = error } }
            throw error
        }
        group.wait()
        if let error = failure.withLock({ $0 }) { throw error }
        stats.withLock { $0.logical += size }
        let ids = results.withLock { $0.map { $0! } }
        return try artifact(name: name, size: size, chunker: chunker, ids: ids)
    }

    /// Stores a stream already in memory.
    public func store(name: String, chunker: ChunkerSpec, bytes: [UInt8]) throws -> Artifact {
        var offset = 0
        return try store(name: name, chunker: chunker) { buf in
            let n = min(buf.count, bytes.count - offset)
            bytes.withUnsafeBytes { src in
                buf.baseAddress!.copyMemory(from: src.baseAddress! + offset, byteCount: n)
            }
            offset += n
            return n
        }
    }

    private func artifact(name: String, size: Int64, chunker: StreamChunker, ids: [BlobID]) throws -> Artifact {
        let spec = chunker.spec.description
        if ids.count <= Artifact.inlineLimit {
            return Artifact(name: name, size: size, chunker: spec, blobs: IDList(ids), lists: nil)
        }
        var lists: [BlobID] = []
        for start in stride(from: 0, to: ids.count, by: Artifact.idsPerList) {
            let part = Array(ids[start..<min(start + Artifact.idsPerList, ids.count)])
            lists.append(try storeBlob(IDList.encode(part), type: .list))
        }
        return Artifact(name: name, size: size, chunker: spec, blobs: nil, lists: IDList(lists))
    }

    /// Hashes, dedupes, seals and packs one blob; returns its id.
    func storeBlob(_ plain: [UInt8], type: BlobType) throws -> BlobID {
        let id = BlobID(bytes: vault.idHasher.mac(prefix: [type.rawValue], plain))
        guard vault.index.claim(id) else {
            stats.withLock { $0.reusedBlobs += 1 }
            return id
        }
        let sealed = plain.withUnsafeBytes {
            PackFormat.sealBlob($0, id: id, type: type, key: vault.key.dataKey, zstd: zstd)
        }
        stats.withLock {
            $0.newBlobs += 1
            $0.newRaw += Int64(plain.count)
            $0.newStored += Int64(sealed.count)
        }
        try packer.add(id: id, type: type, sealed: sealed, rawLength: plain.count)
        return id
    }

    /// Makes everything durable and records the manifest; returns the backup id.
    public func commit(_ manifest: Manifest) throws -> String {
        if let error = failure.withLock({ $0 }) { throw error }
        try packer.flush()
        return try vault.writeManifest(manifest)
    }

    /// A manifest for a plain stream backup with this session's start time.
    public func manifest(source: String, engine: String = "stream", kind: String = "stream",
                         artifacts: [Artifact], metadata: [String: String] = [:]) -> Manifest {
        Manifest(source: source, engine: engine, kind: kind, started: started, finished: Date(),
                 artifacts: artifacts, metadata: metadata)
    }
}

/// Fills packs and writes them; writes an index file every `indexEvery` packs (so a retried
/// backup after a crash dedupes against what the crashed one stored) and on flush.
final class Packer: Sendable {
    private let vault: Vault
    private let current: Mutex<PackBuilder>
    private let unindexed = Mutex<[(id: PackID, entries: [PackEntry])]>([])
    static let indexEvery = 32

    init(vault: Vault) {
        self.vault = vault
        current = Mutex(PackBuilder(capacity: vault.config.packSize + (1 << 20)))
    }

    func add(id: BlobID, type: BlobType, sealed: [UInt8], rawLength: Int) throws {
        let full: PackBuilder? = current.withLock { builder in
            builder.add(id: id, type: type, sealed: sealed, rawLength: rawLength)
            guard builder.size >= vault.config.packSize else { return nil }
            let done = builder
            builder = PackBuilder(capacity: vault.config.packSize + (1 << 20))
            return done
        }
        if let full { try write(full) }
    }

    /// Writes the partial pack and the index of every pack not yet indexed.
    func flush() throws {
        let last: PackBuilder? = current.withLock { builder in
            guard !builder.isEmpty else { return nil }
            let done = builder
            builder = PackBuilder(capacity: 0)
            return done
        }
        if let last { try write(last) }
        try writeIndex(force: true)
    }

    private func write(_ builder: consuming PackBuilder) throws {
        let pack = builder.finish(key: vault.key.dataKey)
        try vault.backend.write(.packs, pack.id.hex, pack.bytes)
        vault.index.add(pack: pack.id, entries: pack.entries)
        unindexed.withLock { $0.append((pack.id, pack.entries)) }
        try writeIndex(force: false)
    }

    private func writeIndex(force: Bool) throws {
        let batch: [(id: PackID, entries: [PackEntry])] = unindexed.withLock { list in
            guard !list.isEmpty, force || list.count >= Packer.indexEvery else { return [] }
            defer { list.removeAll() }
            return list
        }
        guard !batch.isEmpty else { return }
        let sealed = AESGCM.seal(key: vault.key.dataKey, aad: AssociatedData.index, IndexFile(packs: batch).encode())
        do {
            try vault.backend.write(.index, SHA256.hex(sealed), sealed)
        } catch {
            unindexed.withLock { $0.insert(contentsOf: batch, at: 0) }
            throw error
        }
    }
}
