import CofferIO
import Dispatch
import Foundation

/// Reads artifacts back: blobs are fetched, authenticated and decompressed in parallel (and
/// checked against their id for the checker), and written out in order.
public struct ArtifactReader: Sendable {
    public let vault: Vault
    private let window: Int
    private let windowBytes: Int
    /// Whether every blob's id is recomputed from its plaintext (Vault.openBlob says why a
    /// restore need not): the checker does, restores do not.
    private let checkIDs: Bool

    /// - Parameters:
    ///   - window: at most this many batches of blobs (`batchBlobs` each) are being fetched
    ///     and verified ahead of the writer;
    ///   - windowBytes: and no more are started once their plaintext adds up to this, so
    ///     memory stays bounded whatever the blob size (one blob may go over it).
    public init(vault: Vault, window: Int = 4 * ProcessInfo.processInfo.activeProcessorCount,
                windowBytes: Int = 32 << 20) throws {
        try vault.loadIndex()
        self.init(loadedVault: vault, window: window, windowBytes: windowBytes, checkIDs: false)
    }

    /// For callers that loaded the index themselves (the checker, which skips bad files).
    init(loadedVault vault: Vault, window: Int = 4 * ProcessInfo.processInfo.activeProcessorCount,
         windowBytes: Int = 32 << 20, checkIDs: Bool = true) {
        self.vault = vault
        self.window = max(1, window)
        self.windowBytes = max(1, windowBytes)
        self.checkIDs = checkIDs
    }

    /// The content blob ids of an artifact, in order.
    public func contentIDs(_ artifact: Artifact) throws -> [BlobID] {
        if let blobs = artifact.blobs { return blobs.ids }
        guard let lists = artifact.lists else {
            throw VaultError.invalidArgument("artifact \(artifact.name) has neither blobs nor lists")
        }
        return try lists.ids.flatMap { IDList.decode(try loadBlob($0, type: .list)) }
    }

    /// Streams the artifact to `sink` in order. Blobs are fetched and verified ahead on worker
    /// threads while the calling thread writes, so output overlaps decoding.
    public func read(_ artifact: Artifact, progress: (@Sendable (Int64) -> Void)? = nil,
                     to sink: (UnsafeRawBufferPointer) throws -> Void) throws {
        var written: Int64 = 0
        try read([artifact]) { piece in
            guard case .data(let plain) = piece else { return }   // no memory lent, no .lent
            try plain.withUnsafeBytes { try sink($0) }
            written += Int64(plain.count)
            progress?(written)
        }
    }

    /// What `read(_:to:)` hands on for several artifacts, in order: each artifact's `begin`
    /// (its index in the list), its plaintext blob by blob, and its `end` once its size checked.
    public enum Piece: Sendable {
        case begin(Int)
        case data([UInt8])
        /// The plaintext of consecutive blobs of one artifact, its first `count` bytes, opened
        /// into memory the caller's `BatchMemory` lent: the caller owns the loan again.
        case lent(LentMemory, count: Int)
        case end(Int)
    }

    /// Streams `artifacts` one after another to `sink`. One window of blobs runs across the
    /// artifact boundaries: while the caller writes one artifact, the next ones are already
    /// being decoded, which matters when there are thousands of small ones (a data directory).
    /// An artifact whose content does not add up to its size fails before its `end`.
    ///
    /// With `memory`, a batch of blobs of one artifact is opened straight into memory it lends
    /// when it has some free, and handed on as one `lent` piece instead of blob by blob: no
    /// copy of the plaintext on the way out (decision 022). Its calls all come from this thread.
    public func read(_ artifacts: [Artifact], into memory: BatchMemory? = nil, to sink: (Piece) throws -> Void) throws {
        let slots = ReadSlots()
        let queue = DispatchQueue(label: "coffer.restore", qos: .userInitiated, attributes: .concurrent)
        let loads = DispatchGroup()
        // Loans scheduled and not yet handed on, by their batch's first blob.
        var loans: [Int: LentMemory] = [:]
        defer {
            // On an early exit, let scheduled loads finish before their slots go away.
            loads.wait()
            for loan in loans.values { memory?.giveBack(loan) }
        }
        // Content ids of the artifacts the scheduler has reached and the writer not yet finished.
        var ids: [Int: [BlobID]] = [:]
        func contentIDs(of a: Int) throws -> [BlobID] {
            if let known = ids[a] { return known }
            let found = try self.contentIDs(artifacts[a])
            ids[a] = found
            return found
        }
        // The scheduler: the next blob to start, and what is started but not yet written.
        // Blobs are loaded in batches of consecutive ones (up to `batchBlobs` and about
        // `batchBytes`), one task and one wake-up of the writer a batch: per blob, those
        // were a third of the CPU of a restore of 16 KiB blobs. A batch starts only when it
        // fits in the window whole, so that writing one blob does not start a batch of one.
        var cursor = (artifact: 0, blob: 0)
        var scheduled = 0
        var next = 0               // the next blob to write; scheduled - next are in flight
        var inFlightBytes = 0      // their plaintext (an opened blob has its indexed size)
        let blobWindow = window * ArtifactReader.batchBlobs
        func fill() throws {
            while cursor.artifact < artifacts.count,
                  scheduled == next || (scheduled - next + ArtifactReader.batchBlobs <= blobWindow
                                       && inFlightBytes + ArtifactReader.batchBytes <= windowBytes) {
                var batch: [(slot: Int, id: BlobID, location: MasterIndex.Location?)] = []
                var batchBytes = 0
                var oneArtifact = true
                let firstArtifact = cursor.artifact
                while batch.count < ArtifactReader.batchBlobs, batchBytes < ArtifactReader.batchBytes,
                      cursor.artifact < artifacts.count {
                    let list = try contentIDs(of: cursor.artifact)
                    guard cursor.blob < list.count else {
                        cursor = (cursor.artifact + 1, 0)
                        continue
                    }
                    if cursor.artifact != firstArtifact { oneArtifact = false }
                    let id = list[cursor.blob]
                    // Past an artifact's last blob at once: the writer drops its ids when done.
                    cursor = cursor.blob + 1 < list.count ? (cursor.artifact, cursor.blob + 1) : (cursor.artifact + 1, 0)
                    let location = vault.index.lookup(id)
                    let size = Int(location?.entry.rawLength ?? 0)
                    inFlightBytes += size
                    batchBytes += size
                    batch.append((scheduled, id, location))
                    scheduled += 1
                }
                guard !batch.isEmpty else { return }
                // A batch within one artifact whose blobs are all indexed may go into lent memory.
                var loan: LentMemory?
                if let memory, oneArtifact, batch.allSatisfy({ $0.location != nil }), let lent = memory.borrow(batchBytes) {
                    loan = lent
                    loans[batch[0].slot] = lent
                }
                // The reads wait on the disk on threads of their own, so that a cold pack
                // never holds one of the cores the opening (AES-GCM, zstd) needs.
                loads.enter()
                BlockingThreads.shared.run { [batch, loan] in
                    let runs = readRuns(batch)
                    queue.async {
                        if let loan {
                            slots.fill([(batch[0].slot, open(batch, runs, into: loan))])
                        } else {
                            slots.fill(open(batch, runs).map { ($0.0, $0.1.map(Opened.blob)) })
                        }
                        loads.leave()
                    }
                }
            }
        }

        for a in artifacts.indices {
            try fill()
            let list = try contentIDs(of: a)
            try sink(.begin(a))
            var written: Int64 = 0
            var blob = 0
            while blob < list.count {
                switch try slots.wait(next).get() {
                case .blob(let plain):
                    next += 1
                    blob += 1
                    inFlightBytes -= plain.count
                    try fill()
                    written += Int64(plain.count)
                    try sink(.data(plain))
                case .batch(let blobs, let count):
                    let loan = loans.removeValue(forKey: next)!
                    next += blobs
                    blob += blobs
                    inFlightBytes -= count
                    try fill()
                    written += Int64(count)
                    try sink(.lent(loan, count: count))
                }
            }
            ids[a] = nil
            guard written == artifacts[a].size else {
                throw VaultError.corruptObject(kind: .manifests, name: artifacts[a].name,
                                               reason: "content is \(written) bytes, manifest says \(artifacts[a].size)")
            }
            try sink(.end(a))
        }
    }

    /// The most blobs, and bytes (one blob may go over), one task loads at once.
    static let batchBlobs = 64
    static let batchBytes = 1 << 20
    /// Blobs of one pack this close are read in one request, the bytes between them read
    /// and dropped: a batch's blobs lie near each other, interleaved with the blobs another
    /// backup worker packed at the same time.
    static let runGap = 256 << 10

    /// A stretch of one pack holding some of a batch's blobs, read in one request.
    private struct Run {
        let pack: PackID
        let offset: Int
        var end: Int
        /// Indexes into the batch.
        var members: [Int]
    }

    /// Reads the packs' bytes for a batch, a run of nearby blobs a request.
    private func readRuns(_ batch: [(slot: Int, id: BlobID, location: MasterIndex.Location?)])
        -> [(run: Run, bytes: Result<ObjectBytes, Error>)] {
        var byPack: [PackID: [Int]] = [:]
        for i in batch.indices {
            if let loc = batch[i].location { byPack[loc.pack, default: []].append(i) }
        }
        var runs: [Run] = []
        for (pack, members) in byPack {
            let first = runs.count
            for i in members.sorted(by: { batch[$0].location!.entry.offset < batch[$1].location!.entry.offset }) {
                let entry = batch[i].location!.entry
                let start = Int(entry.offset), end = start + Int(entry.length)
                // Sorted by offset, so a blob is never before its run's start (a blob repeated
                // within the batch overlaps it).
                if runs.count > first, start - runs[runs.count - 1].end <= ArtifactReader.runGap {
                    runs[runs.count - 1].end = max(runs[runs.count - 1].end, end)
                    runs[runs.count - 1].members.append(i)
                } else {
                    runs.append(Run(pack: pack, offset: start, end: end, members: [i]))
                }
            }
        }
        return runs.map { run in
            (run, Result { try vault.backend.view(.packs, run.pack.hex, offset: run.offset, length: run.end - run.offset) })
        }
    }

    /// Opens a batch's blobs, all indexed, one after another into `loan`: the result for its
    /// first blob says how many blobs and bytes it holds, or the first failure.
    private func open(_ batch: [(slot: Int, id: BlobID, location: MasterIndex.Location?)],
                      _ runs: [(run: Run, bytes: Result<ObjectBytes, Error>)],
                      into loan: LentMemory) -> Result<Opened, Error> {
        Result {
            var at = [Int](repeating: 0, count: batch.count)
            var total = 0
            for i in batch.indices {
                at[i] = total
                total += Int(batch[i].location!.entry.rawLength)
            }
            guard total <= loan.memory.count else {
                throw VaultError.invalidArgument("a batch of \(total) bytes for a loan of \(loan.memory.count)")
            }
            for (run, bytes) in runs {
                for i in run.members {
                    let entry = batch[i].location!.entry
                    try withSealed(entry, of: run, in: try bytes.get()) {
                        try vault.openBlob($0, entry: entry, pack: run.pack.hex, checkID: checkIDs,
                                           into: UnsafeMutableRawBufferPointer(rebasing: loan.memory[at[i] ..< at[i] + Int(entry.rawLength)]))
                    }
                }
            }
            return .batch(blobs: batch.count, bytes: total)
        }
    }

    /// Opens a batch's blobs out of the runs read for it.
    private func open(_ batch: [(slot: Int, id: BlobID, location: MasterIndex.Location?)],
                      _ runs: [(run: Run, bytes: Result<ObjectBytes, Error>)]) -> [(Int, Result<[UInt8], Error>)] {
        var results = [Result<[UInt8], Error>?](repeating: nil, count: batch.count)
        for (run, bytes) in runs {
            for i in run.members {
                let entry = batch[i].location!.entry
                results[i] = Result {
                    try withSealed(entry, of: run, in: try bytes.get()) {
                        try vault.openBlob($0, entry: entry, pack: run.pack.hex, checkID: checkIDs)
                    }
                }
            }
        }
        return batch.indices.map { i in
            (batch[i].slot, results[i] ?? Result { try load(batch[i].id, at: nil, type: .data) })
        }
    }

    /// A data blob's sealed bytes, cut out of the run read for it, for `body`.
    private func withSealed<T>(_ entry: PackEntry, of run: Run, in bytes: ObjectBytes,
                               _ body: (UnsafeRawBufferPointer) throws -> T) throws -> T {
        guard entry.type == .data else {
            throw VaultError.corruptObject(kind: .packs, name: run.pack.hex, reason: "blob \(entry.id.hex) is not of type \(BlobType.data)")
        }
        return try bytes.withUnsafeBytes { all in
            let at = Int(entry.offset) - run.offset
            return try body(UnsafeRawBufferPointer(rebasing: all[at ..< at + Int(entry.length)]))
        }
    }

    /// One blob's plaintext, authenticated (and checked against its id when `checkIDs`).
    public func loadBlob(_ id: BlobID, type: BlobType) throws -> [UInt8] {
        try load(id, at: vault.index.lookup(id), type: type)
    }

    private func load(_ id: BlobID, at location: MasterIndex.Location?, type: BlobType) throws -> [UInt8] {
        guard let loc = location else {
            throw VaultError.missingObject(kind: .packs, name: "(blob \(id.hex) is in no index)")
        }
        let packName = loc.pack.hex
        guard loc.entry.type == type else {
            throw VaultError.corruptObject(kind: .packs, name: packName, reason: "blob \(id.hex) is not of type \(type)")
        }
        let sealed = try vault.backend.read(.packs, packName, offset: Int(loc.entry.offset), length: Int(loc.entry.length))
        return try vault.openBlob(sealed, entry: loc.entry, pack: packName, checkID: checkIDs)
    }
}

/// Memory a reader may open blobs straight into, lent by whoever writes them out (the agent's
/// shared slots): the copy of each opened blob into that memory was a tenth of a restore's CPU.
public protocol BatchMemory: AnyObject {
    /// Room for `bytes`, if some is free now. Never waits: the reader holds what it borrowed
    /// until the caller reaches it, so waiting could wait on itself.
    func borrow(_ bytes: Int) -> LentMemory?
    /// A loan never handed on (the read failed or stopped early).
    func giveBack(_ loan: LentMemory)
}

/// Memory lent to a reader: the lender's number for it, and the bytes.
public struct LentMemory: @unchecked Sendable {   // only ever written by the one task it went to
    public let token: Int
    public let memory: UnsafeMutableRawBufferPointer

    public init(token: Int, memory: UnsafeMutableRawBufferPointer) {
        self.token = token
        self.memory = memory
    }
}

/// A batch's blobs as a worker left them: one blob's plaintext, or a whole batch opened
/// into a loan (the result of its first blob; its other blobs have none).
private enum Opened {
    case blob([UInt8])
    case batch(blobs: Int, bytes: Int)
}

/// One result slot per blob: filled by a worker, taken once by the writer.
private final class ReadSlots: @unchecked Sendable {
    private let condition = NSCondition()
    private var results: [Int: Result<Opened, Error>] = [:]

    func fill(_ filled: [(Int, Result<Opened, Error>)]) {
        condition.lock()
        for (i, result) in filled { results[i] = result }
        condition.broadcast()
        condition.unlock()
    }

    func wait(_ i: Int) -> Result<Opened, Error> {
        condition.lock()
        defer { condition.unlock() }
        while results[i] == nil { condition.wait() }
        return results.removeValue(forKey: i)!
    }
}
