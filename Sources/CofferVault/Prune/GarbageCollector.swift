import Foundation

/// Collects blobs no manifest names, safely while other writers add data
/// (docs/decisions/009). Two phases, possibly in different runs:
///
/// 1. `plan`: read the index and every manifest; copy the live blobs of mostly-garbage packs
///    into new packs; write index files naming every pack that stays (all their entries)
///    and the new ones; delete the index files read at the start; then record every pack
///    no index names any more (garbage, repacked, never indexed) in a deletion plan.
/// 2. `execute`: delete a plan's packs once it is older than the grace period and no live
///    writer began before it (such a writer may have deduped against them). A pack that an
///    index names again, or that holds a blob a manifest needs and no index names, is kept
///    (and indexed): the writers' side of the protocol (WriterRecheck) names what it reused.
///
/// The caller holds the prune lock. Every step is durable before the next, so a crash at
/// any point leaves only extra objects: unindexed packs (a later plan takes them), index
/// files that duplicate others, or a plan whose packs are partly gone.
public struct GarbageCollector {
    public struct Options: Sendable {
        /// A pack whose bytes are at least this fraction garbage is repacked (0 < x ≤ 1).
        public var repackThreshold: Double = 0.5
        /// A plan's packs are deleted only once the plan is this old: readers (a restore)
        /// that loaded the old index keep finding their blobs meanwhile.
        public var grace: TimeInterval = 3600
        /// How far the clocks of hosts writing to the vault may disagree.
        public var clockSkew: TimeInterval = 300
        public var dryRun = false
        /// Manifests to count as gone (a dry run's policy removals).
        public var ignoring: Set<String> = []

        public init() {}
    }

    public struct Pending: Codable, Sendable {
        public var plan: String
        public var created: Date
        public var packs: Int
        /// Why it waits: the grace period, or the writers that began before it.
        public var waitingFor: String
    }

    public struct Report: Codable, Sendable {
        public var manifests = 0
        public var indexFilesBefore = 0
        public var indexFilesWritten = 0
        public var packsBefore = 0
        public var liveBlobs = 0
        public var garbageBlobs = 0
        public var garbageBytes: Int64 = 0
        /// Packs with no live blob, packs repacked (their live blobs copied to new packs), and
        /// packs on disk that no index named.
        public var packsUnreferenced = 0
        public var packsRepacked = 0
        public var packsUnindexed = 0
        public var packsWritten = 0
        public var bytesCopied: Int64 = 0
        /// Packs put into a deletion plan by this run, and packs deleted (from any plan).
        public var packsPlanned = 0
        public var packsDeleted = 0
        public var bytesDeleted: Int64 = 0
        /// Blobs a concurrent writer reused that were indexed again instead of deleted.
        public var blobsReindexed = 0
        public var deadMarkersRemoved = 0
        public var pending: [Pending] = []
        public var warnings: [String] = []
    }

    let vault: Vault
    let options: Options
    let progress: (@Sendable (String) -> Void)?

    public init(vault: Vault, options: Options, progress: (@Sendable (String) -> Void)? = nil) {
        self.vault = vault
        self.options = options
        self.progress = progress
    }

    private var backend: any VaultBackend { vault.backend }

    /// Both phases: a new plan, then every plan that may run.
    public func run() throws -> Report {
        var report = Report()
        try plan(&report)
        try execute(&report)
        return report
    }

    // MARK: - phase 1

    /// The index as its files say: every pack's entries (each id once per pack), and where
    /// each blob is first found.
    struct IndexView {
        var files: [String] = []
        var packs: [PackID: [PackEntry]] = [:]
        var first: [BlobID: (pack: PackID, entry: PackEntry)] = [:]

        init(vault: Vault) throws {
            files = try vault.backend.list(.index)
            var seen: [PackID: Set<BlobID>] = [:]
            for name in files {
                let file = try IndexFile.read(backend: vault.backend, name: name, key: vault.key.dataKey)
                for (pack, entries) in file.packs {
                    for e in entries where seen[pack, default: []].insert(e.id).inserted {
                        packs[pack, default: []].append(e)
                        if first[e.id] == nil { first[e.id] = (pack, e) }
                    }
                }
            }
        }
    }

    func plan(_ report: inout Report) throws {
        progress?("reading the index")
        let index = try IndexView(vault: vault)
        report.indexFilesBefore = index.files.count
        progress?("reading manifests")
        let manifestNames = try backend.list(.manifests).filter { !options.ignoring.contains($0) }
        report.manifests = manifestNames.count
        let live = try liveBlobs(manifestNames, locate: { index.first[$0] }, report: &report)
        report.liveBlobs = live.count

        let onDisk = Set(try backend.list(.packs))
        report.packsBefore = onDisk.count
        var keep: [(id: PackID, entries: [PackEntry])] = []
        var repack: [(id: PackID, entries: [PackEntry])] = []
        var drop: [String] = []
        for (pack, entries) in index.packs.sorted(by: { $0.key < $1.key }) {
            guard onDisk.contains(pack.hex) else {
                // Damage a prune cannot mend; the index keeps naming it so `vault check` does too.
                report.warnings.append("pack \(pack.hex) is named by the index but missing")
                keep.append((pack, entries))
                continue
            }
            let total = entries.reduce(Int64(0)) { $0 + Int64($1.length) }
            let liveBytes = entries.reduce(Int64(0)) { $0 + (live.contains($1.id) ? Int64($1.length) : 0) }
            let garbage = entries.filter { !live.contains($0.id) }
            report.garbageBlobs += garbage.count
            report.garbageBytes += total - liveBytes
            if liveBytes == 0 {
                report.packsUnreferenced += 1
                drop.append(pack.hex)
            } else if total > 0, Double(total - liveBytes) / Double(total) >= options.repackThreshold {
                repack.append((pack, entries))
            } else {
                keep.append((pack, entries))
            }
        }
        let indexedNames = Set(index.packs.keys.map(\.hex))
        let unindexed = onDisk.subtracting(indexedNames).sorted()
        report.packsUnindexed = unindexed.count

        var written: [(id: PackID, entries: [PackEntry])] = []
        if !options.dryRun {
            written = try copyLive(from: &repack, into: &keep, live: live, report: &report)
        } else {
            report.packsRepacked = repack.count
        }
        drop += repack.map(\.id.hex)
        drop += unindexed
        guard !drop.isEmpty || index.files.count > 1 else { return }
        guard !options.dryRun else {
            report.packsPlanned = drop.count
            return
        }

        // The new index first, durable; only then the files it supersedes go. Between the
        // two, blobs are named twice, which readers accept.
        progress?("writing the index")
        for batch in IndexBatches(keep + written) {
            try vault.writeIndexFile(batch)
            report.indexFilesWritten += 1
        }
        Failpoint.hit("gc.index-written")
        for name in index.files {
            try backend.remove(.index, name)
            Failpoint.hit("gc.index-removed")
        }
        let created = Date()

        // A backup that committed while this ran may name blobs that were garbage when the
        // manifests were read; its writer indexes them again, and so does this (whichever is
        // first), so that no manifest names a blob no index holds for longer than a moment.
        let dropSet = Set(drop)
        let rescued = try rescueNewlyReferenced(since: Set(manifestNames), old: index, dropping: dropSet, report: &report)
        let planned = drop.filter { !rescued.contains($0) }
        report.packsPlanned = planned.count
        if !planned.isEmpty {
            _ = try DeletionPlan(created: created, host: ProcessInfo.processInfo.hostName, packs: planned).write(backend: backend)
            Failpoint.hit("gc.plan-written")
        }
    }

    /// Every blob the manifests need: content ids, and list blobs with what they list.
    func liveBlobs(_ manifests: [String], locate: (BlobID) -> (pack: PackID, entry: PackEntry)?,
                   report: inout Report) throws -> Set<BlobID> {
        var live = Set<BlobID>()
        for id in manifests {
            // An unreadable manifest stops collection: what it needs cannot be known.
            let m: Manifest
            do {
                m = try vault.readManifest(id: id)
            } catch VaultError.missingObject(kind: .manifests, name: _) {
                continue  // removed since the listing: only a prune removes manifests
            }
            for artifact in m.artifacts {
                for blob in artifact.blobs?.ids ?? [] { live.insert(blob) }
                for list in artifact.lists?.ids ?? [] {
                    live.insert(list)
                    guard let at = locate(list) else {
                        report.warnings.append("manifest \(id) names list blob \(list.hex), which no index holds")
                        continue
                    }
                    let sealed = try backend.read(.packs, at.pack.hex, offset: Int(at.entry.offset), length: Int(at.entry.length))
                    for blob in IDList.decode(try vault.openBlob(sealed, entry: at.entry, pack: at.pack.hex)) { live.insert(blob) }
                }
            }
        }
        return live
    }

    /// Copies the live blobs of `repack` into new packs (checked on the way: damage is not
    /// copied silently; a pack with a bad live blob is kept as it is instead).
    private func copyLive(from repack: inout [(id: PackID, entries: [PackEntry])],
                          into keep: inout [(id: PackID, entries: [PackEntry])],
                          live: Set<BlobID>, report: inout Report) throws -> [(id: PackID, entries: [PackEntry])] {
        var written: [(id: PackID, entries: [PackEntry])] = []
        var builder = PackBuilder(buffer: [])
        var copied = Set<BlobID>()
        func flush() throws {
            guard !builder.isEmpty else { return }
            let id = builder.finish(key: vault.key.dataKey)
            try backend.write(.packs, id.hex, builder.bytes)
            Failpoint.hit("gc.pack-written")
            written.append((id, builder.entries))
            report.packsWritten += 1
            builder = PackBuilder(buffer: [])
        }
        var repacked: [(id: PackID, entries: [PackEntry])] = []
        for (n, pack) in repack.enumerated() {
            progress?("repacking \(n + 1)/\(repack.count)")
            let bytes = try backend.read(.packs, pack.id.hex)
            let wanted = pack.entries.filter { live.contains($0.id) && !copied.contains($0.id) }
            let sound = wanted.allSatisfy { e in
                (try? vault.openBlob(Array(bytes[Int(e.offset) ..< Int(e.offset + e.length)]), entry: e, pack: pack.id.hex)) != nil
            }
            guard sound else {
                report.warnings.append("pack \(pack.id.hex) has a damaged live blob: kept as it is, not repacked")
                keep.append(pack)
                continue
            }
            for e in wanted {
                bytes.withUnsafeBytes { b in
                    builder.add(id: e.id, type: e.type, sealed: UnsafeRawBufferPointer(rebasing: b[Int(e.offset) ..< Int(e.offset + e.length)]),
                                rawLength: Int(e.rawLength))
                }
                copied.insert(e.id)
                report.bytesCopied += Int64(e.length)
                if builder.size >= vault.config.packSize { try flush() }
            }
            repacked.append(pack)
        }
        try flush()
        repack = repacked
        report.packsRepacked = repacked.count
        return written
    }

    /// Manifests written since `known` were read: their blobs that no index names now but a
    /// pack about to be planned holds are indexed again, and those packs are not planned.
    private func rescueNewlyReferenced(since known: Set<String>, old: IndexView, dropping: Set<String>,
                                       report: inout Report) throws -> Set<String> {
        let fresh = try backend.list(.manifests).filter { !known.contains($0) }
        guard !fresh.isEmpty else { return [] }
        let current = MasterIndex()
        try current.load(backend: backend, key: vault.key.dataKey, strict: true)
        let needed = try liveBlobs(fresh, locate: { id in current.lookup(id).map { ($0.pack, $0.entry) } ?? old.first[id] },
                                   report: &report)
        var byPack: [PackID: [PackEntry]] = [:]
        for id in needed where !current.contains(id) {
            guard let at = old.first[id], dropping.contains(at.pack.hex) else { continue }
            byPack[at.pack, default: []].append(at.entry)
        }
        guard !byPack.isEmpty else { return [] }
        try vault.writeIndexFile(byPack.map { ($0.key, $0.value) })
        report.blobsReindexed += byPack.values.reduce(0) { $0 + $1.count }
        return Set(byPack.keys.map(\.hex))
    }

    // MARK: - phase 2

    func execute(_ report: inout Report) throws {
        let planNames = try backend.list(.gc)
        let now = Date()
        let locks = try LockTable(backend: backend)
        if !options.dryRun {
            for name in locks.dead(now: now) {
                try backend.remove(.locks, name)
                report.deadMarkersRemoved += 1
            }
        }
        guard !planNames.isEmpty else { return }
        var due: [(name: String, plan: DeletionPlan)] = []
        // Packs of plans that must wait. A pack can be in several plans: taken out of the
        // index, named again (its writer's index file, a writer's or a prune's re-check),
        // loaded by a writer that began after the first plan, and taken out again by a
        // later prune. Only the latest plan's time covers that writer, so a pack is deleted
        // only once every plan naming it may run.
        var waiting = Set<String>()
        for name in planNames {
            let plan: DeletionPlan
            do {
                plan = try DeletionPlan.read(backend: backend, name: name)
            } catch {
                report.warnings.append("\(error)")
                continue
            }
            let age = now.timeIntervalSince(plan.created)
            if age < options.grace {
                report.pending.append(Pending(plan: name, created: plan.created, packs: plan.packs.count,
                                              waitingFor: "grace period: deletable after \(Timestamp.format(plan.created.addingTimeInterval(options.grace)))"))
                waiting.formUnion(plan.packs)
                continue
            }
            let blockers = locks.blocking(since: plan.created, skew: options.clockSkew, now: now)
            if !blockers.isEmpty {
                report.pending.append(Pending(plan: name, created: plan.created, packs: plan.packs.count,
                                              waitingFor: "writers that began before it: " + blockers.joined(separator: "; ")))
                waiting.formUnion(plan.packs)
                continue
            }
            due.append((name, plan))
        }
        guard !due.isEmpty else { return }

        // What is indexed and what is needed, as of now.
        progress?("checking what the deletion plans hold")
        let current = MasterIndex()
        try current.load(backend: backend, key: vault.key.dataKey, strict: true)
        let indexedPacks = Set(try IndexView(vault: vault).packs.keys.map(\.hex))
        let onDisk = Set(try backend.list(.packs))
        var headers: [String: [PackEntry]] = [:]
        var inPlans: [BlobID: (pack: PackID, entry: PackEntry)] = [:]
        // Waiting plans' packs too: a list blob only they hold still says which blobs are live.
        let planned = due.flatMap(\.plan.packs) + waiting.sorted()
        for hex in planned where headers[hex] == nil && onDisk.contains(hex) && !indexedPacks.contains(hex) {
            guard let pack = PackID(hex: hex) else { continue }
            // A pack whose header does not read is unusable: it is deleted with no entries.
            let entries = (try? vault.readPackHeader(hex)) ?? []
            headers[hex] = entries
            for e in entries where inPlans[e.id] == nil { inPlans[e.id] = (pack, e) }
        }
        let live = try liveBlobs(try backend.list(.manifests),
                                 locate: { id in current.lookup(id).map { ($0.pack, $0.entry) } ?? inPlans[id] }, report: &report)

        for (name, plan) in due {
            for (n, hex) in plan.packs.enumerated() {
                progress?("deleting packs \(n + 1)/\(plan.packs.count)")
                // Gone, indexed again, left to a plan that waits, or already handled by another plan.
                guard !waiting.contains(hex), let entries = headers.removeValue(forKey: hex), let pack = PackID(hex: hex) else { continue }
                let needed = entries.filter { live.contains($0.id) && !current.contains($0.id) }
                if !needed.isEmpty {
                    report.warnings.append("pack \(hex) holds \(needed.count) blob(s) a manifest needs: indexed again, not deleted")
                    if !options.dryRun { try vault.writeIndexFile([(pack, needed)]) }
                    report.blobsReindexed += needed.count
                    continue
                }
                let size = (try? backend.size(.packs, hex)) ?? 0
                if !options.dryRun {
                    try backend.remove(.packs, hex)
                    Failpoint.hit("gc.pack-deleted")
                }
                report.packsDeleted += 1
                report.bytesDeleted += Int64(size)
            }
            if !options.dryRun { try backend.remove(.gc, name) }
        }
    }
}

/// Index files of at most `limit` entries (a file is read whole into memory).
struct IndexBatches: Sequence, IteratorProtocol {
    private var packs: ArraySlice<(id: PackID, entries: [PackEntry])>
    private let limit: Int

    init(_ packs: [(id: PackID, entries: [PackEntry])], limit: Int = 65536) {
        self.packs = packs[...]
        self.limit = limit
    }

    mutating func next() -> [(id: PackID, entries: [PackEntry])]? {
        guard !packs.isEmpty else { return nil }
        var batch: [(id: PackID, entries: [PackEntry])] = []
        var count = 0
        while let pack = packs.first, batch.isEmpty || count + pack.entries.count <= limit {
            batch.append(pack)
            count += pack.entries.count
            packs = packs.dropFirst()
        }
        return batch
    }
}
