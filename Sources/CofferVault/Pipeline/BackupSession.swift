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
    /// Blobs this session has taken on to store, so that a repeated chunk is stored once.
    private let claimed = Mutex(Set<BlobID>())
    /// Recycled chunk, compression and sealing buffers (see BufferPool).
    private let chunks: BufferPool
    private let scratch: BufferPool

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
    /// - Parameter dedupe: false skips reading the index (every blob is stored): for small
    ///   streams that never repeat, such as WAL segments, where reading it would cost more.
    public init(vault: Vault, compressionLevel: Int? = nil, dedupe: Bool = true,
                workers: Int = ProcessInfo.processInfo.activeProcessorCount) throws {
        if dedupe { try vault.loadIndex() }
        self.vault = vault
        let level = compressionLevel ?? vault.config.compressionLevel
        self.zstd = level == 0 ? nil : Zstd(level: level)
        self.workers = max(1, workers)
        self.packer = Packer(vault: vault)
        // As many as can be in flight at once: chunks queued, and two buffers a busy worker.
        self.chunks = BufferPool(limit: self.workers * 4 + 1)
        self.scratch = BufferPool(limit: self.workers * 4 * 2)
    }

    public var statistics: Stats { stats.withLock { $0 } }

    /// Reads a stream to its end through `read` (which returns 0 at the end) and stores it.
    public func store(name: String, chunker: ChunkerSpec, progress: (@Sendable (Int64) -> Void)? = nil,
                      read: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) throws -> Artifact {
        let results = Mutex<[BlobID?]>([])
        let inflight = DispatchSemaphore(value: workers * 4)
        let group = DispatchGroup()
        var chunker = StreamChunker(spec: chunker, cdc: vault.cdc, read: read)
        var size: Int64 = 0
        var seq = 0
        do {
            while true {
                // Every wait is matched by a signal, on every path: libdispatch traps when a
                // semaphore is released below its initial count.
                inflight.wait()
                var chunk = chunks.take()
                let more: Bool
                do {
                    more = try chunker.next(into: &chunk)
                } catch {
                    inflight.signal()
                    throw error
                }
                guard more else {
                    inflight.signal()
                    break
                }
                if let error = failure.withLock({ $0 }) {
                    inflight.signal()
                    throw error
                }
                let n = seq
                seq += 1
                size += Int64(chunk.count)
                results.withLock { $0.append(nil) }
                group.enter()
                queue.async { [self, chunk] in
                    defer {
                        chunks.give(chunk)
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
        guard !vault.index.contains(id), claimed.withLock({ $0.insert(id).inserted }) else {
            stats.withLock { $0.reusedBlobs += 1 }
            return id
        }
        var compressed = scratch.take()
        var sealed = scratch.take()
        defer {
            scratch.give(compressed)
            scratch.give(sealed)
        }
        let length = plain.withUnsafeBytes {
            PackFormat.sealBlob($0, id: id, type: type, key: vault.key.dataKey, zstd: zstd, scratch: &compressed, into: &sealed)
        }
        stats.withLock {
            $0.newBlobs += 1
            $0.newRaw += Int64(plain.count)
            $0.newStored += Int64(length)
        }
        try sealed.withUnsafeBytes {
            try packer.add(id: id, type: type, sealed: UnsafeRawBufferPointer(rebasing: $0[0..<length]), rawLength: plain.count)
        }
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

/// Fills packs and writes them on their own threads, so that waiting on the disk never
/// holds a compute slot; at most `writesInFlight` packs wait or are being written, and a
/// worker that fills one more blocks (backpressure). An index file follows every
/// `indexEvery` packs (so a retried backup after a crash dedupes against what the crashed
/// one stored) and closes every flush.
final class Packer: Sendable {
    private let vault: Vault
    private let current: Mutex<PackBuilder>
    private let unindexed = Mutex<[(id: PackID, entries: [PackEntry])]>([])
    private let io = DispatchQueue(label: "coffer.packs", qos: .userInitiated, attributes: .concurrent)
    private let writeSlots: DispatchSemaphore
    private let writes = DispatchGroup()
    private let failure = Mutex<Error?>(nil)
    private let buffers = BufferPool(limit: Packer.writesInFlight + 1)
    static let indexEvery = 32
    static let writesInFlight = 2

    init(vault: Vault) {
        self.vault = vault
        current = Mutex(PackBuilder(buffer: []))
        writeSlots = DispatchSemaphore(value: Packer.writesInFlight)
    }

    func add(id: BlobID, type: BlobType, sealed: UnsafeRawBufferPointer, rawLength: Int) throws {
        if let error = failure.withLock({ $0 }) { throw error }
        let full: PackBuilder? = current.withLock { builder in
            builder.add(id: id, type: type, sealed: sealed, rawLength: rawLength)
            guard builder.size >= vault.config.packSize else { return nil }
            return replace(&builder)
        }
        if let full { enqueue(full) }
    }

    /// Writes the partial pack, waits for every pack write, then indexes what is not indexed.
    func flush() throws {
        let last: PackBuilder? = current.withLock { builder in builder.isEmpty ? nil : replace(&builder) }
        if let last { enqueue(last) }
        writes.wait()
        if let error = failure.withLock({ $0 }) { throw error }
        try writeIndex(force: true)
    }

    private func replace(_ builder: inout PackBuilder) -> PackBuilder {
        var fresh = buffers.take()
        fresh.reserveCapacity(vault.config.packSize + (4 << 20))
        let done = builder
        builder = PackBuilder(buffer: fresh)
        return done
    }

    private func enqueue(_ builder: consuming PackBuilder) {
        writeSlots.wait()
        writes.enter()
        // A box, so the closure owns the only reference and `finish` appends in place
        // instead of copying the pack.
        let job = PackJob(builder)
        io.async { [self] in
            defer {
                writeSlots.signal()
                writes.leave()
            }
            var pack = job.take()
            do {
                let id = pack.finish(key: vault.key.dataKey)
                try vault.backend.write(.packs, id.hex, pack.bytes)
                unindexed.withLock { $0.append((id, pack.entries)) }
                try writeIndex(force: false)
            } catch {
                failure.withLock { if $0 == nil { $0 = error } }
            }
            buffers.give(pack.takeBuffer())
        }
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
        // Durable and findable by any reader now, so other sessions may dedupe against them.
        for pack in batch { vault.index.add(pack: pack.id, entries: pack.entries) }
    }
}

private final class PackJob: @unchecked Sendable {
    private var builder: PackBuilder?
    init(_ builder: consuming PackBuilder) { self.builder = builder }
    func take() -> PackBuilder {
        defer { builder = nil }
        return builder!
    }
}
