import CofferIO
import CZstd
import Dispatch
import Foundation
import Synchronization

/// Stores streams into the vault and records them in one manifest.
///
/// The calling thread reads and chunks (chunking is sequential by nature); worker threads
/// hash, dedupe, compress, seal and pack, a batch of consecutive chunks (up to 1 MiB) a
/// task. A semaphore bounds the batches in flight, so memory stays flat whatever the
/// stream's size, and a slow disk slows the reader down.
/// Streams of large fixed pieces that are not deduplicated (log segments) take a shorter
/// way, `storeStreamed`: one piece at a time, compressed while it arrives.
/// Nothing becomes visible until `commit`: packs first, then the index naming them, then
/// the manifest naming their blobs.
public final class BackupSession: Sendable {
    public let vault: Vault
    let zstd: Zstd?
    private let dedupe: Bool
    private let workers: Int
    private let queue = DispatchQueue(label: "coffer.backup", qos: .userInitiated, attributes: .concurrent)
    let packer: Packer
    private let failure = Mutex<Error?>(nil)
    private let started = Date()
    private let stats = Mutex(Stats())
    /// Blobs this session has taken on to store, so that a repeated chunk is stored once.
    private let claimed = Mutex(Set<BlobID>())
    /// Recycled batches of chunks, and compression and sealing buffers (see BufferPool).
    private let chunks: BufferPool<ChunkBatch>
    private let scratch: BufferPool<[UInt8]>
    /// Garbage collection (docs/decisions/009): this session's in-progress marker, written
    /// before the index is read and removed once the manifest is durable (or the session
    /// dies), and the blobs it took from the index rather than storing them, which must
    /// still be indexed when the manifest is written.
    private let marker: HeldLock
    private let reused = Mutex(Set<BlobID>())
    /// Batches handed to the workers and not yet stored, across every stream of the
    /// session: the bound on its memory however many streams are still being finished.
    private let inflight: DispatchSemaphore
    /// Every batch handed to the workers, of every stream: `commit` waits for them all.
    private let batches = DispatchGroup()
    private let indexAtStart: (files: Set<String>, generation: Int)

    public struct Stats: Sendable {
        /// Bytes read from the streams.
        public var logical: Int64 = 0
        /// Blobs stored anew, and their plaintext and stored sizes.
        public var newBlobs = 0
        public var newRaw: Int64 = 0
        public var newStored: Int64 = 0
        /// Blobs already in the vault (or in this backup).
        public var reusedBlobs = 0
        /// Bytes stored from memory their producer lent (`submit(lend:)`), not copied into
        /// the session's batches.
        public var lent: Int64 = 0
    }

    /// - Parameter compressionLevel: zstd level; 0 stores blobs uncompressed; nil takes the vault's.
    /// - Parameter dedupe: false skips reading the index (every blob is stored): for small
    ///   streams that never repeat, such as WAL segments, where reading it would cost more.
    public init(vault: Vault, compressionLevel: Int? = nil, dedupe: Bool = true,
                workers: Int = ProcessInfo.processInfo.activeProcessorCount) throws {
        // The marker first: a prune that supersedes index files after this point sees it and
        // keeps the packs they named until this session is over.
        self.marker = try HeldLock.writer(backend: vault.backend)
        if dedupe { try vault.loadIndex() }
        self.indexAtStart = vault.index.loaded
        self.vault = vault
        let level = compressionLevel ?? vault.config.compressionLevel
        self.zstd = level == 0 ? nil : Zstd(level: level)
        self.dedupe = dedupe
        self.workers = max(1, workers)
        self.packer = Packer(vault: vault)
        self.inflight = DispatchSemaphore(value: self.workers * 4)
        // As many as can be in flight at once: batches queued, and two buffers a busy worker.
        self.chunks = BufferPool(limit: self.workers * 4 + 1, make: { ChunkBatch() }, reset: { $0.reset(); return true })
        self.scratch = BufferPool(limit: self.workers * 4 * 2, emptied: false)
    }

    public var statistics: Stats { stats.withLock { $0 } }

    /// Reads a stream to its end through `read` (which returns 0 at the end) and stores it.
    public func store(name: String, chunker: ChunkerSpec, progress: (@Sendable (Int64) -> Void)? = nil,
                      read: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) throws -> Artifact {
        try submit(name: name, chunker: chunker, progress: progress, read: read).finish()
    }

    /// `store`, returning once the stream is read: its last batches may still be with the
    /// workers, and `PendingArtifact.finish` waits for them. A caller with many streams
    /// (a base backup's thousands of small files) reads the next while the workers finish
    /// this one, instead of leaving a core idle at every stream's end. A worker's failure
    /// shows at `finish`, at a later `submit`, or at `commit`, whichever comes first.
    public func submit(name: String, chunker: ChunkerSpec, progress: (@Sendable (Int64) -> Void)? = nil,
                       read: @escaping (UnsafeMutableRawBufferPointer) throws -> Int) throws -> PendingArtifact {
        try submit(name: name, chunker: chunker, progress: progress, input: .read(read))
    }

    /// `submit` for a producer that lends its memory (`LentBytes`; nil at the end) rather
    /// than copying into the session's: fixed-size chunks that lie whole in one piece are
    /// stored from there, uncopied, and the piece is let go once they are. A batch holds at
    /// most one piece, so the session holds at most `workers * 4 + 1` (the batches in flight
    /// and the piece being read): a producer with more never waits long for one back.
    public func submit(name: String, chunker: ChunkerSpec, progress: (@Sendable (Int64) -> Void)? = nil,
                       lend: @escaping () throws -> LentBytes?) throws -> PendingArtifact {
        try submit(name: name, chunker: chunker, progress: progress, input: .lend(LentStream(lend)))
    }

    private func submit(name: String, chunker: ChunkerSpec, progress: (@Sendable (Int64) -> Void)?,
                        input: ChunkSource.Input) throws -> PendingArtifact {
        if !dedupe, let zstd, let piece = BackupSession.streamedPiece(chunker) {
            let artifact = try storeStreamed(name: name, chunker: chunker, piece: piece, zstd: zstd, progress: progress, read: input.read)
            return PendingArtifact(session: self, name: name, chunker: chunker, size: artifact.size, stored: artifact)
        }
        let results = OrderedBlobIDs()
        let group = DispatchGroup()
        var source = ChunkSource(spec: chunker, cdc: vault.cdc, input: input)
        let tables = Zstd.TableChoice()
        var size: Int64 = 0, lent: Int64 = 0
        var seq = 0
        do {
            while true {
                // Every wait is matched by a signal, on every path: libdispatch traps when a
                // semaphore is released below its initial count.
                inflight.wait()
                // Small chunks go to the workers in batches: waking a worker, and the reader
                // when a batch is done, is then paid per batch. Per chunk it was a futex wake
                // and a context switch each, a third of a backup's system time at 16 KiB.
                let batch = chunks.take()
                do {
                    while batch.used < BackupSession.batchBytes, batch.count < BackupSession.batchChunks,
                          try source.fits(batch), try source.next(into: batch) {
                        if !source.batches { break }
                    }
                } catch {
                    chunks.give(batch)
                    inflight.signal()
                    throw error
                }
                guard batch.count > 0 else {
                    chunks.give(batch)
                    inflight.signal()
                    break
                }
                if let error = failure.withLock({ $0 }) {
                    chunks.give(batch)
                    inflight.signal()
                    throw error
                }
                let first = seq
                seq += batch.count
                size += Int64(batch.used)
                lent += Int64(batch.lent)
                results.ids.withLock { $0.append(contentsOf: repeatElement(nil, count: batch.count)) }
                group.enter()
                batches.enter()
                queue.async { [self] in
                    defer {
                        chunks.give(batch)
                        inflight.signal()
                        group.leave()
                        batches.leave()
                    }
                    do {
                        let ids = try (0..<batch.count).map { try storeBlob(batch.chunk($0), type: .data, tables: tables) }
                        results.ids.withLock { $0.replaceSubrange(first..<(first + ids.count), with: ids) }
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
        stats.withLock {
            $0.logical += size
            $0.lent += lent
        }
        return PendingArtifact(session: self, name: name, chunker: chunker, size: size, group: group, results: results)
    }

    /// The artifact for ids in stream order, once every batch of it is stored.
    fileprivate func finish(_ pending: PendingArtifact) throws -> Artifact {
        pending.group.wait()
        if let error = failure.withLock({ $0 }) { throw error }
        let ids = pending.results.ids.withLock { $0.map { $0! } }
        return try artifact(name: pending.name, size: pending.size, spec: pending.chunker, ids: ids)
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

    private func artifact(name: String, size: Int64, spec chunker: ChunkerSpec, ids: [BlobID]) throws -> Artifact {
        let spec = chunker.description
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

    /// The most bytes, and chunks, `store` hands a worker at once.
    static let batchBytes = 1 << 20
    static let batchChunks = 64

    func storeBlob(_ plain: [UInt8], type: BlobType) throws -> BlobID {
        try plain.withUnsafeBytes { try storeBlob($0, type: type) }
    }

    /// Hashes, dedupes, seals and packs one blob; returns its id. `tables` is the choice of
    /// zstd hash table of the stream the blob is a piece of.
    func storeBlob(_ plain: UnsafeRawBufferPointer, type: BlobType, tables: Zstd.TableChoice? = nil) throws -> BlobID {
        let id = BlobID(bytes: vault.idHasher.mac(prefix: [type.rawValue], plain))
        guard claim(id) else { return id }
        var compressed = scratch.take()
        var sealed = scratch.take()
        defer {
            scratch.give(compressed)
            scratch.give(sealed)
        }
        let length = PackFormat.sealBlob(plain, id: id, type: type, key: vault.key.dataKey, zstd: zstd, tables: tables,
                                         scratch: &compressed, into: &sealed)
        try pack(id: id, type: type, sealed: sealed, length: length, rawLength: plain.count)
        return id
    }

    private func pack(id: BlobID, type: BlobType, sealed: [UInt8], length: Int, rawLength: Int) throws {
        stats.withLock {
            $0.newBlobs += 1
            $0.newRaw += Int64(rawLength)
            $0.newStored += Int64(length)
        }
        try sealed.withUnsafeBytes {
            try packer.add(id: id, type: type, sealed: UnsafeRawBufferPointer(rebasing: $0[0..<length]), rawLength: rawLength)
        }
    }

    /// True when this session is to store `id`: it is neither in the vault's index nor
    /// taken already by this session.
    private func claim(_ id: BlobID) -> Bool {
        if vault.index.contains(id) {
            reused.withLock { _ = $0.insert(id) }
            stats.withLock { $0.reusedBlobs += 1 }
            return false
        }
        guard claimed.withLock({ $0.insert(id).inserted }) else {
            stats.withLock { $0.reusedBlobs += 1 }
            return false
        }
        return true
    }

    // MARK: - streams compressed as they arrive

    /// The piece size for `storeStreamed`: chunkers whose cuts fall at fixed offsets and
    /// whose pieces are big enough for the overlap to pay (`whole`, and the 16 MiB `fixed`
    /// pieces of larger WAL segments).
    static func streamedPiece(_ chunker: ChunkerSpec) -> Int? {
        switch chunker {
        case .whole: return ChunkerSpec.wholeLimit
        case .fixed(let size) where size >= 1 << 20: return size
        default: return nil
        }
    }

    /// Stores a stream of large fixed pieces that is not deduplicated (a log segment) while
    /// it arrives: each piece is compressed on another core as its bytes come in, and its id
    /// hashed there as soon as its last byte is in, so that of a 16 MiB WAL segment's zstd
    /// (~20 ms at level 1) and HMAC (~10 ms) little is left when the plugin is done sending.
    /// The blobs are the ones `store`'s pipeline would make: the same cuts, ids and rule for
    /// storing raw (an equivalent zstd frame, made by streaming).
    private func storeStreamed(name: String, chunker: ChunkerSpec, piece: Int, zstd: Zstd,
                               progress: (@Sendable (Int64) -> Void)?,
                               read: (UnsafeMutableRawBufferPointer) throws -> Int) throws -> Artifact {
        var ids: [BlobID] = []
        var size: Int64 = 0
        var eof = false
        while !eof {
            let compressor = StreamCompressor(level: zstd.level, size: piece)
            var id: BlobID?
            let plain = try [UInt8](unsafeUninitializedCapacity: piece) { buffer, count in
                let bytes = UnsafeMutableRawBufferPointer(buffer)
                // The compressor reads this buffer on its own queue: wait for it on every way
                // out, before the array takes the buffer over.
                defer { compressor.finish() }
                var filled = 0
                while filled < piece {
                    let n = try read(UnsafeMutableRawBufferPointer(rebasing: bytes[filled...]))
                    if n == 0 {
                        eof = true
                        break
                    }
                    compressor.feed(UnsafeRawBufferPointer(rebasing: bytes[filled ..< filled + n]))
                    filled += n
                }
                count = filled
                guard filled > 0 else { return }
                // The HMAC needs every byte; it runs while the compressor catches up.
                let hashed = Mutex<BlobID?>(nil)
                let group = DispatchGroup()
                nonisolated(unsafe) let whole = UnsafeRawBufferPointer(rebasing: bytes[0 ..< filled])
                DispatchQueue.global(qos: .userInitiated).async(group: group) { [vault] in
                    let mac = vault.idHasher.mac(prefix: [BlobType.data.rawValue], whole)
                    hashed.withLock { $0 = BlobID(bytes: mac) }
                }
                compressor.finish()
                group.wait()
                id = hashed.withLock { $0 }
            }
            guard let id else { break }
            size += Int64(plain.count)
            ids.append(id)
            if claim(id) {
                var sealed = scratch.take()
                defer { scratch.give(sealed) }
                let length: Int
                if let frame = compressor.frame {
                    // As PackFormat.sealBlob: the encoding byte, then the zstd frame, or the raw
                    // bytes when it does not save 1/64 (Zstd.compress's rule).
                    let shrinks = plain.count > 64 && frame.count < plain.count - plain.count / 64
                    let aad = AssociatedData.blob(id, .data)
                    length = withUnsafeBytes(of: shrinks ? PackFormat.encodingZstd : PackFormat.encodingRaw) { flag in
                        if shrinks { return AESGCM.seal(key: vault.key.dataKey, aad: aad, parts: [flag, frame], into: &sealed, at: 0) }
                        return plain.withUnsafeBytes { AESGCM.seal(key: vault.key.dataKey, aad: aad, parts: [flag, $0], into: &sealed, at: 0) }
                    }
                } else {
                    // Shorter than the piece the frame was begun for (a history file, the end of
                    // a stream): its frame must record its real size, so it is made again in one go.
                    var compressed = scratch.take()
                    defer { scratch.give(compressed) }
                    length = plain.withUnsafeBytes {
                        PackFormat.sealBlob($0, id: id, type: .data, key: vault.key.dataKey, zstd: zstd, scratch: &compressed, into: &sealed)
                    }
                }
                try pack(id: id, type: .data, sealed: sealed, length: length, rawLength: plain.count)
            }
            progress?(size)
        }
        stats.withLock { $0.logical += size }
        return try artifact(name: name, size: size, spec: chunker, ids: ids)
    }

    /// Makes everything durable and records the manifest; returns the backup id.
    public func commit(_ manifest: Manifest) throws -> String {
        // Streams submitted and not finished still have blobs on their way to the packer.
        batches.wait()
        if let error = failure.withLock({ $0 }) { throw error }
        try packer.flush()
        // Reused blobs a concurrent prune took out of the index are indexed again, before
        // the manifest and once more after it (the prune may have superseded the index in
        // between); docs/decisions/009.
        let reused = self.reused.withLock { $0 }
        try vault.keepIndexed(reused, since: indexAtStart)
        let id = try vault.writeManifest(manifest)
        do {
            try vault.keepIndexed(reused, since: indexAtStart)
        } catch {
            try? vault.backend.remove(.manifests, id)  // it names blobs that are gone: never record it
            throw error
        }
        marker.release()
        return id
    }

    /// A manifest for a plain stream backup with this session's start time.
    public func manifest(source: String, engine: String = "stream", kind: String = "stream",
                         artifacts: [Artifact], metadata: [String: String] = [:]) -> Manifest {
        Manifest(source: source, engine: engine, kind: kind, started: started, finished: Date(),
                 artifacts: artifacts, metadata: metadata)
    }
}

/// One zstd frame made by streaming, on a serial queue of its own: `feed` hands it the
/// pieces of a blob in order while they arrive, `finish` ends the frame and waits for it.
/// The frame is begun for `size` bytes, so that its header records the content size as the
/// vault format wants; fed fewer, it fails and `frame` is nil. Its output is sized to the
/// bound, so it never runs out of room.
private final class StreamCompressor: @unchecked Sendable {
    private let context: OpaquePointer
    private let output: UnsafeMutableRawBufferPointer
    private let queue = DispatchQueue(label: "coffer.compress", qos: .userInitiated)
    // Touched only on `queue`, or after `finish` has waited for it.
    private var written = 0
    private var failed = false
    private var ended = false

    init(level: Int32, size: Int) {
        context = ZSTD_createCCtx()!
        ZSTD_CCtx_setParameter(context, ZSTD_c_compressionLevel, level)
        ZSTD_CCtx_setPledgedSrcSize(context, UInt64(size))
        output = .allocate(byteCount: ZSTD_compressBound(size), alignment: 16)
    }

    deinit {
        ZSTD_freeCCtx(context)
        output.deallocate()
    }

    /// `piece` must stay valid and unchanged until `finish` returns.
    func feed(_ piece: UnsafeRawBufferPointer) {
        nonisolated(unsafe) let piece = piece
        queue.async { self.compress(piece, directive: ZSTD_e_continue) }
    }

    func finish() {
        queue.sync {
            if !ended { compress(UnsafeRawBufferPointer(start: nil, count: 0), directive: ZSTD_e_end) }
            ended = true
        }
    }

    /// The finished frame, nil when it failed. Valid while this lives.
    var frame: UnsafeRawBufferPointer? {
        guard ended, !failed else { return nil }
        return UnsafeRawBufferPointer(rebasing: output[0 ..< written])
    }

    private func compress(_ piece: UnsafeRawBufferPointer, directive: ZSTD_EndDirective) {
        guard !failed else { return }
        var input = ZSTD_inBuffer(src: piece.baseAddress, size: piece.count, pos: 0)
        var out = ZSTD_outBuffer(dst: output.baseAddress, size: output.count, pos: written)
        while true {
            let remaining = ZSTD_compressStream2(context, &out, &input, directive)
            if ZSTD_isError(remaining) != 0 {
                failed = true
                return
            }
            let done = directive == ZSTD_e_end ? remaining == 0 : input.pos == input.size
            if done { break }
            if out.pos == out.size {
                failed = true  // cannot happen within the bound
                return
            }
        }
        written = out.pos
    }
}

/// The chunks of a stream, each put straight into a batch: content-defined ones copied out
/// of StreamChunker's look-ahead buffer, fixed and whole ones read in place, or lent from
/// the producer's memory when it lends and they lie whole in one piece. Those need no
/// look-ahead; their cuts are StreamChunker's all the same (every `size` bytes from the
/// start of the stream, the last one shorter).
private struct ChunkSource {
    /// Where the stream's bytes come from: copied into the caller's memory, or lent.
    enum Input {
        case read((UnsafeMutableRawBufferPointer) throws -> Int)
        case lend(LentStream)

        var read: (UnsafeMutableRawBufferPointer) throws -> Int {
            switch self {
            case .read(let read): return read
            case .lend(let stream): return stream.read
            }
        }
    }

    private var chunker: StreamChunker?
    private let piece: Int
    private let read: (UnsafeMutableRawBufferPointer) throws -> Int
    /// Set when pieces are lent and chunks are fixed-size: those lying whole in one piece
    /// are lent on to the batch.
    private let lent: LentStream?
    private var eof = false

    init(spec: ChunkerSpec, cdc: FastCDC, input: Input) {
        read = input.read
        switch spec {
        case .contentDefined:
            chunker = StreamChunker(spec: spec, cdc: cdc, read: read)
            piece = 0
        case .fixed(let size):
            chunker = nil
            piece = size
        case .whole:
            chunker = nil
            piece = ChunkerSpec.wholeLimit
        }
        if case .lend(let stream) = input, chunker == nil { lent = stream } else { lent = nil }
        self.batches = piece < ChunkerSpec.wholeLimit
    }

    /// Whether more chunks may follow one in its batch: a 16 MiB piece fills one alone.
    let batches: Bool

    /// Whether the next chunk may join `batch`: not when it would be lent from another piece
    /// than the batch's (a batch holds one lender; see ChunkBatch).
    func fits(_ batch: ChunkBatch) throws -> Bool {
        guard let lent, let lender = batch.lender else { return true }
        let available = try lent.available()
        return available < piece || lent.owner === lender
    }

    /// Adds the next chunk to `batch`; false at the end.
    mutating func next(into batch: ChunkBatch) throws -> Bool {
        if chunker != nil {
            let n = try chunker!.next(copyingTo: batch.free.baseAddress!)
            if n > 0 { batch.append(length: n) }
            return n > 0
        }
        if eof { return false }
        if let lent, try lent.available() >= piece {
            let chunk = lent.lend(piece)
            batch.append(lent: chunk.bytes, owner: chunk.owner)
            return true
        }
        // Read, or lent but across two pieces or the stream's last: copied.
        let room = batch.free
        var filled = 0
        while filled < piece {
            let n = try read(UnsafeMutableRawBufferPointer(rebasing: room[filled ..< piece]))
            if n == 0 {
                eof = true
                break
            }
            filled += n
        }
        if filled > 0 { batch.append(length: filled) }
        return filled > 0
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
    private let writeSlots: DispatchSemaphore
    private let writes = DispatchGroup()
    private let failure = Mutex<Error?>(nil)
    /// Pack buffers, recycled: a pack is built in the pages the one before it used.
    let buffers = BufferPool<[UInt8]>(limit: Packer.writesInFlight + 1)
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
        BlockingThreads.shared.run { [self] in
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
            // Consumed explicitly: `pack.takeBuffer()` left a copy of `pack` alive, so the
            // pool's emptying found the array shared and allocated a new one, and every pack
            // was built in fresh pages, faulted in and zeroed (a full backup of the
            // benchmark's cluster: 77,000–89,000 page faults before, 53,000–54,000 after).
            buffers.give((consume pack).takeBuffer())
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

/// A stream `BackupSession.submit` has read, whose blobs may still be being stored.
public final class PendingArtifact: Sendable {
    public let name: String
    /// Bytes read from the stream: known as soon as `submit` returns.
    public let size: Int64
    fileprivate let chunker: ChunkerSpec
    fileprivate let group: DispatchGroup
    fileprivate let results: OrderedBlobIDs
    private let session: BackupSession
    private let stored: Artifact?

    fileprivate init(session: BackupSession, name: String, chunker: ChunkerSpec, size: Int64,
                     group: DispatchGroup = DispatchGroup(), results: OrderedBlobIDs = OrderedBlobIDs(), stored: Artifact? = nil) {
        self.session = session
        self.name = name
        self.chunker = chunker
        self.size = size
        self.group = group
        self.results = results
        self.stored = stored
    }

    /// Waits for the stream's last batches and returns it as the manifest records it.
    public func finish() throws -> Artifact {
        if let stored { return stored }
        return try session.finish(self)
    }
}

/// A stream's blob ids in order, each filled in by the worker that stored its batch.
final class OrderedBlobIDs: Sendable {
    let ids = Mutex<[BlobID?]>([])
}

private final class PackJob: @unchecked Sendable {
    private var builder: PackBuilder?
    init(_ builder: consuming PackBuilder) { self.builder = builder }
    func take() -> PackBuilder {
        defer { builder = nil }
        return builder!
    }
}
