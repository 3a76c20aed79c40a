import ArgumentParser
import CofferAgent
import CofferPluginProtocol
import CofferVault
import Foundation

struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore a source to a point in time through its engine plugin.",
        discussion: """
        Without a target the source is restored to the latest point its log reaches. \
        With --to-time, --to-lsn, --to-xid or --to-name, Coffer picks the newest base backup \
        from which the target can be reached (on --timeline, default the latest), refuses a \
        target outside the restorable windows (and names them; exit code 22), writes the \
        data directory, and configures recovery: restore_command through coffer wal-fetch, \
        the target, promotion once reached. With --start it starts the server, waits until \
        recovery is over and reports where it stopped.

        The target directory must be empty or missing, unless --force (its contents are \
        replaced) or --delta (files that match are kept, the rest rewritten) is given.

        MongoDB: the restore writes into a running server (--target-uri), loads the newest \
        dump before the target and replays the captured oplog to --to-timestamp T:I, \
        --to-time or the latest captured entry; --set database.OLD=NEW renames a database, \
        --force drops collections of the same names first (docs/engines/mongodb.md).

        restore_command reopens the vault from the same config, vault and key or \
        passphrase files as this command; a passphrase given only in COFFER_PASSPHRASE \
        does not reach it.
        """
    )

    @OptionGroup var options: VaultOptions

    @Option(help: "The source's name in the config file.")
    var source: String

    @Option(help: "Restore this backup (id or unique prefix) instead of the one Coffer picks.")
    var backup: String?

    @Option(help: "Where the plugin writes what it restores (file-based engines: postgres).")
    var targetDir: String?

    @Option(help: ArgumentHelp("The server a MongoDB restore writes into (mongodb://HOST:PORT/?directConnection=true).", valueName: "uri"))
    var targetUri: String?

    @Option(help: ArgumentHelp("Recover to this time (2026-11-26 19:40:01.123456+00; no zone means UTC).", valueName: "time"))
    var toTime: String?

    @Option(help: ArgumentHelp("Recover to this PostgreSQL LSN (0/3000060).", valueName: "lsn"))
    var toLsn: String?

    @Option(help: ArgumentHelp("Recover to the commit of this transaction id.", valueName: "xid"))
    var toXid: String?

    @Option(help: ArgumentHelp("Recover to this MongoDB oplog Timestamp (seconds:increment, 1795730121:3).", valueName: "t:i"))
    var toTimestamp: String?

    @Option(help: ArgumentHelp("Recover to this named restore point (pg_create_restore_point).", valueName: "name"))
    var toName: String?

    @Option(help: ArgumentHelp("MySQL: replay the binlog up to this position, FILE:POS (mariadb-bin.000004:1234); events from it on are not applied.", valueName: "file:pos"))
    var toPosition: String?

    @Option(help: ArgumentHelp("MySQL: replay the binlog through the transactions of this GTID set (0-1-57[,1-2-9]).", valueName: "gtid"))
    var toGtid: String?

    @Option(help: ArgumentHelp("The timeline to recover along: a number, or latest.", valueName: "timeline"))
    var timeline: String?

    @Flag(help: "Start the server, wait for recovery to end, and report the point reached.")
    var start = false

    @Flag(help: "Update a non-empty target in place: keep matching files, rewrite the rest, remove extras.")
    var delta = false

    @Flag(help: "Replace the contents of a non-empty target.")
    var force = false

    @Option(name: .customLong("set"), help: ArgumentHelp(
        "A plugin option for this restore, KEY=VALUE; repeatable. postgres: pg.SETTING=VALUE goes to postgresql.auto.conf (pg.port=5433), os_user=USER runs the server.",
        valueName: "key=value"))
    var settings: [String] = []

    @Flag(help: "Print the result as JSON.")
    var json = false

    func validate() throws {
        guard [toTime, toLsn, toXid, toName, toTimestamp, toPosition, toGtid].compactMap({ $0 }).count <= 1 else {
            throw ValidationError("give at most one of --to-time, --to-lsn, --to-xid, --to-name, --to-timestamp, --to-position, --to-gtid")
        }
        guard targetDir != nil || targetUri != nil else {
            throw ValidationError("give --target-dir (a directory to restore into) or --target-uri (a server to restore into)")
        }
        guard !(delta && force) else { throw ValidationError("--delta and --force exclude each other") }
        for s in settings where !s.contains("=") { throw ValidationError("--set takes KEY=VALUE, not '\(s)'") }
    }

    func run() throws {
        try reportingErrors {
            let setup = try SourceJob(options: options, name: source, plugins: 2)   // one plans, one restores
            var target: [String: String] = [:]
            target["time"] = toTime
            target["lsn"] = toLsn
            target["xid"] = toXid
            target["name"] = toName
            target["timestamp"] = toTimestamp
            target["timeline"] = timeline
            target["position"] = toPosition
            target["gtid"] = toGtid

            let (ids, resolved) = try plan(setup, target: target)
            var pluginOptions = setup.source.options
            for s in settings {
                let kv = s.split(separator: "=", maxSplits: 1)
                pluginOptions[String(kv[0])] = String(kv[1])
            }
            if let targetDir {
                pluginOptions["target_dir"] = targetDir.hasPrefix("/") ? targetDir : FileManager.default.currentDirectoryPath + "/" + targetDir
            }
            if let targetUri { pluginOptions["target_uri"] = targetUri }
            let into = targetDir ?? targetUri ?? ""
            if delta { pluginOptions["existing"] = "delta" }
            if force { pluginOptions["existing"] = "force" }
            if start { pluginOptions["start"] = "1" }
            for (key, value) in resolved { pluginOptions["target_" + key] = value }
            pluginOptions["restore_command"] = restoreCommand(source: setup.source.name)
            if !secretReachesRecovery { Terminal.note("coffer: warning: the vault passphrase comes from COFFER_PASSPHRASE or a prompt; restore_command will not be able to open the vault (use a passphrase or key file)") }

            let done = try setup.job().restore(source: setup.source.name, backups: ids, options: pluginOptions,
                                               software: setup.software)
            if json {
                struct Out: Encodable {
                    let backup: String, targetDir: String, target: [String: String], positions: [String: String]
                }
                try Terminal.printJSON(Out(backup: ids[0], targetDir: into, target: resolved, positions: done.positions))
            } else {
                let what = resolved.filter { $0.key != "timeline" }.map { "\($0.key) \($0.value)" }.first ?? "the latest point"
                print("restored base backup \(ids[0].prefix(12)) of \(setup.source.name) into \(into), recovering to \(what)"
                      + (resolved["timeline"].map { " on timeline \($0)" } ?? ""))
                for (k, v) in done.positions.sorted(by: { $0.key < $1.key }) { print("  \(k): \(v)") }
                if !start && setup.source.engine == "postgres" {
                    print("start the server on it (pg_ctl -D \(into) start): it replays the archived WAL to the target and promotes")
                }
            }
        }
    }

    /// The backups to restore (base first) and the target as the plugin resolved it. Engines
    /// that keep no log chain restore the newest full backup (or --backup) as it is.
    private func plan(_ setup: SourceJob, target: [String: String]) throws -> ([String], [String: String]) {
        let planner = try setup.job()
        try planner.plugin.handshake(engine: setup.source.engine, software: setup.software)
        guard planner.plugin.hello?.capabilities?.contains("chain") == true else {
            planner.plugin.waitForExit()
            guard target.isEmpty else {
                throw VaultError.invalidArgument("the \(setup.source.engine) plugin has no point-in-time restore")
            }
            if let backup { return ([try setup.vault.resolveBackup(backup)], [:]) }
            guard let newest = try setup.vault.backups(source: setup.source.name).last(where: { $0.manifest.kind == "full" }) else {
                throw VaultError.backupNotFound("a full backup of source \(setup.source.name)")
            }
            return ([newest.id], [:])
        }
        let records = try SourceRecords(vault: setup.vault, source: setup.source.name, checkBlobs: false)
        var candidates = records.records
        if let backup {
            // An explicit base: the plugin still checks the target is reachable from it.
            let id = try setup.vault.resolveBackup(backup)
            candidates = candidates.filter { $0.manifest.kind == "log" || $0.id == id }
        }
        let report = try planner.chain(source: setup.source.name, records: candidates, action: "plan", target: target,
                                       options: setup.source.options, software: setup.software)
        if let refusal = report.refusal { throw AgentError.targetUnreachable(refusal) }
        guard let ids = report.plan, !ids.isEmpty else { throw AgentError.targetUnreachable("the plugin found nothing to restore") }
        return (ids, report.target ?? target)
    }

    /// `coffer wal-fetch` with this command's vault options, for recovery's restore_command.
    private func restoreCommand(source: String) -> String {
        let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? "coffer"
        func quoted(_ s: String) -> String { "'" + s.replacingOccurrences(of: "'", with: "'\\''") + "'" }
        return ([exe, "wal-fetch"] + options.arguments + ["--source", source]).map(quoted).joined(separator: " ") + " %f %p"
    }

    private var secretReachesRecovery: Bool {
        let env = options.environment
        if options.keyFile != nil || options.passphraseFile != nil || env["COFFER_KEY_FILE"] != nil
            || env["COFFER_PASSPHRASE_FILE"] != nil { return true }
        if let settings = try? options.configFile()?.vault, settings.keyFile != nil || settings.passphraseFile != nil { return true }
        return false
    }
}
