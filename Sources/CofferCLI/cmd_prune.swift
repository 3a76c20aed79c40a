import ArgumentParser
import CofferAgent
import CofferVault
import Foundation

struct Prune: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Apply the retention policies, then collect blobs no backup needs.",
        discussion: """
        Each source with a [source.NAME.retention] table in the config file keeps the backups \
        its rules keep (keep_last, keep_hourly ... keep_yearly, keep_within, pitr_window; \
        the newest backup always) and the logs from the oldest kept backup on, which the \
        engine plugin confirms leave the chain whole. Every decision is printed with the rule \
        that made it. Sources without a retention table are left alone.

        Then garbage collection: packs whose blobs no manifest needs are taken out of the \
        index and recorded in a deletion plan, packs mostly garbage are repacked, and the \
        index is rewritten into few files. A plan's packs are deleted by a later prune once \
        the plan is older than the grace period ([prune] grace, default 1h) and every writer \
        that was running when it was made has finished. Backups, wal-push and other agents may \
        run meanwhile (docs/decisions/009); only one prune runs at a time (exit 18 otherwise).

        --dry-run changes nothing and prints what would be removed. --json prints one JSON \
        report on stdout (docs/cli.md); progress goes to stderr on a terminal.
        """
    )

    @OptionGroup var options: VaultOptions

    @Option(help: "Prune only this source (default: every source with a retention table).")
    var source: String?

    @Flag(help: "Decide and report, but remove nothing.")
    var dryRun = false

    @Flag(name: .customLong("no-gc"), help: "Only apply the retention policies; leave garbage collection to a later run.")
    var noGC = false

    @Option(help: ArgumentHelp("Repack packs at least this fraction garbage (0 < x ≤ 1; [prune] repack_threshold, default 0.5).",
                               valueName: "fraction"))
    var repackThreshold: Double?

    @Option(help: ArgumentHelp("Delete a plan's packs only once it is this old (e.g. 1h, 0s; [prune] grace, default 1h).",
                               valueName: "duration"))
    var grace: String?

    @Option(help: ArgumentHelp("Apply the policies as if it were this time (RFC 3339), to see what a later prune will do.",
                               valueName: "time"))
    var now: String?

    @Flag(help: "Print the report as JSON.")
    var json = false

    func run() throws {
        try reportingErrors {
            let config = try options.requireConfig()
            var prune = Pruner.Options()
            let sources = try source.map { [try config.source($0)] } ?? config.sources.values.sorted { $0.name < $1.name }
            for s in sources {
                guard let policy = s.retention else {
                    if source != nil {
                        throw VaultError.invalidArgument("source \(s.name) has no [source.\(s.name).retention] table: nothing to prune by")
                    }
                    continue
                }
                prune.policies[s.name] = policy
            }
            guard !prune.policies.isEmpty || !noGC else {
                throw VaultError.invalidArgument("no source has a retention table ([source.NAME.retention] in the config file) and --no-gc leaves nothing to do")
            }
            if let now {
                guard let date = Timestamp.parse(now) else { throw VaultError.invalidArgument("--now: cannot read '\(now)' (use 2026-11-26T21:00:00Z)") }
                prune.now = date
            }
            prune.dryRun = dryRun
            prune.collect = !noGC
            if let x = repackThreshold ?? config.prune.repackThreshold {
                guard x > 0, x <= 1 else { throw VaultError.invalidArgument("--repack-threshold must be above 0 and at most 1") }
                prune.gc.repackThreshold = x
            }
            if let text = grace {
                guard let seconds = RetentionDuration.parse(text) else { throw VaultError.invalidArgument("--grace: cannot read '\(text)' (use 1h, 30m, 0s)") }
                prune.gc.grace = seconds
            } else if let seconds = config.prune.grace {
                prune.gc.grace = seconds
            }
            if let skew = config.prune.clockSkew { prune.gc.clockSkew = skew }

            let vault = try options.open()
            let progress = ProgressLine("prune:")
            let engines = Dictionary(config.sources.values.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in a })
            let report = try Pruner(vault: vault, options: prune, progress: { progress.update(message: $0) })
                .run(chainCheck: { name, records in
                    try Prune.chainIssues(vault: vault, source: engines[name]!, records: records)
                })
            progress.finish()
            if json {
                try Terminal.printJSON(report)
            } else {
                print(Prune.text(report))
            }
        }
    }

    /// The engine plugin's verification of these records, as prune compares it.
    static func chainIssues(vault: Vault, source: CofferConfig.Source, records: [BackupRecord]) throws -> [Pruner.ChainIssue] {
        let plugin = try PluginProcess(path: try PluginLocator.find(engine: source.engine), timeout: source.pluginTimeout) {
            Terminal.note("\(source.engine): \($0)")
        }
        let report = try PluginJob(vault: vault, plugin: plugin, engine: source.engine)
            .chain(source: source.name, records: records, action: "verify", options: source.options,
                   software: "coffer \(Coffer.configuration.version)")
        return report.problems.map { Pruner.ChainIssue(kind: $0.kind, log: $0.log, detail: $0.detail) }
    }

    static func text(_ r: Pruner.Report) -> String {
        var lines: [String] = []
        let verb = r.dryRun ? "would remove" : "removed"
        for s in r.sources {
            let kept = s.backups.filter(\.keep).count
            lines.append("source \(s.source): keep \(kept) backup\(kept == 1 ? "" : "s"), \(verb) \(s.backups.count - kept); logs: keep \(s.logsKept), \(verb) \(s.logsRemoved)")
            for d in s.backups {
                lines.append("  \(d.keep ? "keep  " : "remove") \(d.id.prefix(12))  \(d.kind.padding(toLength: 11, withPad: " ", startingAt: 0)) \(Format.time(d.started))  \(d.reasons.joined(separator: "; "))")
            }
            let removed = s.logs.filter { !$0.keep }
            if let first = removed.first, let last = removed.last {
                lines.append("  logs \(verb): \(first.log ?? "?") … \(last.log ?? "?") (\(removed.count)): \(first.reasons[0])")
            }
            for note in s.logNotes { lines.append("  \(note)") }
        }
        if let g = r.gc {
            lines.append("garbage: \(g.liveBlobs) live blobs, \(g.garbageBlobs) garbage (\(Format.bytes(g.garbageBytes))) in \(g.packsBefore) packs, \(g.indexFilesBefore) index files")
            lines.append("  repacked \(g.packsRepacked) pack(s) into \(g.packsWritten) (\(Format.bytes(g.bytesCopied)) copied); \(g.packsUnindexed) unindexed; \(g.indexFilesWritten) index file(s) written")
            lines.append("  \(r.dryRun ? "would plan" : "planned") \(g.packsPlanned) pack(s) for deletion; \(r.dryRun ? "would delete" : "deleted") \(g.packsDeleted) (\(Format.bytes(g.bytesDeleted)))")
            for p in g.pending { lines.append("  pending plan \(p.plan.prefix(12)) (\(p.packs) packs): waits for \(p.waitingFor)") }
            if g.blobsReindexed > 0 { lines.append("  \(g.blobsReindexed) blob(s) a concurrent backup reused were indexed again") }
            for w in g.warnings { lines.append("WARNING: \(w)") }
        }
        for w in r.warnings { lines.append("WARNING: \(w)") }
        return lines.joined(separator: "\n")
    }
}
