import Foundation

/// `coffer prune`: applies each source's retention policy, removes the manifests (and log
/// references) it drops, then collects garbage (docs/decisions/009).
public struct Pruner {
    /// Something the engine plugin reports about a chain (a missing log, ...), as far as
    /// prune compares them: before and after the drop.
    public struct ChainIssue: Hashable, Sendable {
        public var kind: String
        public var log: String?
        public var detail: String

        public init(kind: String, log: String?, detail: String) {
            self.kind = kind
            self.log = log
            self.detail = detail
        }

        /// Two reports name the same issue when kind and log agree (details carry ranges).
        var key: String { "\(kind)\u{0}\(log ?? detail)" }
    }

    /// The engine's verdict on a set of one source's records; throws when it cannot be asked.
    public typealias ChainCheck = (_ source: String, _ records: [BackupRecord]) throws -> [ChainIssue]

    public struct Options: Sendable {
        public var policies: [String: RetentionPolicy] = [:]
        public var now = Date()
        public var dryRun = false
        /// false: only apply the policies; blobs are collected by a later run.
        public var collect = true
        public var gc = GarbageCollector.Options()

        public init() {}
    }

    public struct SourceReport: Codable, Sendable {
        public var source: String
        public var backups: [RetentionDecision] = []
        public var logsKept = 0
        public var logsRemoved = 0
        /// Every removed log, and the kept ones whose reason is not the general rule.
        public var logs: [RetentionDecision] = []
        /// Why logs were kept beyond the rule, when the engine plugin said so.
        public var logNotes: [String] = []
    }

    public struct Report: Codable, Sendable {
        public var dryRun: Bool
        public var now: Date
        public var sources: [SourceReport] = []
        public var manifestsRemoved = 0
        public var logReferencesRemoved = 0
        public var gc: GarbageCollector.Report?
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

    public func run(chainCheck: ChainCheck?) throws -> Report {
        // The real clock: `now` may be a what-if time, and lock staleness is about the present.
        let lock = options.dryRun ? nil : try HeldLock.prune(backend: vault.backend)
        defer { lock?.release() }
        var report = Report(dryRun: options.dryRun, now: options.now)

        progress?("reading manifests")
        var bySource: [String: [BackupRecord]] = [:]
        var unreadable = 0
        var dropped = Set<String>()
        for id in try vault.backend.list(.manifests) {
            do {
                let m = try vault.readManifest(id: id)
                bySource[m.source, default: []].append(BackupRecord(id: id, manifest: m))
            } catch let error as VaultError {
                unreadable += 1
                report.warnings.append("manifest \(id): \(error); its source's policy is applied without it")
            }
        }

        for (source, policy) in options.policies.sorted(by: { $0.key < $1.key }) {
            let records = bySource[source] ?? []
            var (backups, logs) = Retention.decide(records, policy: policy, now: options.now)
            var notes: [String] = []
            let droppedBackups = Set(backups.filter { !$0.keep }.map(\.id))
            confirmChain(source: source, records: records.filter { !droppedBackups.contains($0.id) }, logs: &logs,
                         notes: &notes, check: chainCheck)
            var s = SourceReport(source: source, backups: backups)
            s.logsKept = logs.filter(\.keep).count
            s.logsRemoved = logs.count - s.logsKept
            s.logs = logs.filter { !$0.keep || !$0.reasons[0].hasPrefix("archived after") }
            s.logNotes = notes
            report.sources.append(s)
            backups.removeAll(where: \.keep)
            for d in backups + logs.filter({ !$0.keep }) {
                if !options.dryRun {
                    try remove(d, source: source, report: &report)
                    Failpoint.hit("prune.manifest-removed")
                } else {
                    report.manifestsRemoved += 1
                    dropped.insert(d.id)
                }
            }
        }

        guard options.collect else { return report }
        guard unreadable == 0 else {
            report.warnings.append("garbage collection skipped: \(unreadable) manifest(s) cannot be read, so what they need is unknown")
            return report
        }
        var gc = options.gc
        gc.dryRun = options.dryRun
        gc.ignoring = dropped
        report.gc = try GarbageCollector(vault: vault, options: gc, progress: progress).run()
        return report
    }

    /// The manifest first: a reference whose manifest is gone reads as "not there"
    /// (vault-format §11a), so a crash between the two leaves nothing wrong.
    private func remove(_ d: RetentionDecision, source: String, report: inout Report) throws {
        try vault.backend.remove(.manifests, d.id)
        report.manifestsRemoved += 1
        guard let log = d.log else { return }
        let ref = vault.logReferenceName(source: source, log: log)
        // Only if it still names this manifest: a push of the same log since then wrote a
        // reference to its own manifest, which stays.
        if let bytes = try? vault.backend.read(.logs, ref), String(decoding: bytes, as: UTF8.self) == d.id {
            try vault.backend.remove(.logs, ref)
            report.logReferencesRemoved += 1
        }
    }

    /// Asks the engine whether the chain stays whole without the logs the rule drops
    /// (`records` are the source's records without the dropped backups): an issue that
    /// appears only without them names a log to keep; one that names none keeps them all.
    private func confirmChain(source: String, records: [BackupRecord], logs: inout [RetentionDecision],
                              notes: inout [String], check: ChainCheck?) {
        guard logs.contains(where: { !$0.keep }) else { return }
        func keepAll(_ why: String) {
            notes.append(why)
            for i in logs.indices where !logs[i].keep {
                logs[i].keep = true
                logs[i].reasons = [why]
            }
        }
        guard let check else { return keepAll("kept: no engine plugin to confirm which logs the chain needs") }
        do {
            let before = Set(try check(source, records).map(\.key))
            for _ in 0..<16 {
                let removed = Set(logs.filter { !$0.keep }.map(\.id))
                guard !removed.isEmpty else { return }
                let fresh = try check(source, records.filter { !removed.contains($0.id) }).filter { !before.contains($0.key) }
                guard !fresh.isEmpty else { return }
                var restored = false
                for issue in fresh {
                    for i in logs.indices where !logs[i].keep && logs[i].log != nil && logs[i].log == issue.log {
                        logs[i].keep = true
                        logs[i].reasons = ["the engine's chain needs it (without it: \(issue.kind), \(issue.detail))"]
                        notes.append("kept \(issue.log!): the engine reports \(issue.kind) without it")
                        restored = true
                    }
                }
                if !restored {
                    return keepAll("kept: without them the engine reports \(fresh.map { "\($0.kind): \($0.detail)" }.joined(separator: "; "))")
                }
            }
            keepAll("kept: the engine's answers did not settle")
        } catch {
            keepAll("kept: the engine plugin could not confirm which logs the chain needs (\(error))")
        }
    }
}
