import ArgumentParser
import CofferAgent
import CofferPluginProtocol
import CofferVault
import Foundation

struct Backup: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Back up a source from the config file through its engine plugin.",
        discussion: """
        Starts coffer-<engine> (from COFFER_PLUGIN_PATH or next to coffer), streams what it \
        sends into the vault, and records the backup only once the plugin says it is complete. \
        A plugin that crashes, stays silent past the source's plugin_timeout, or breaks the \
        protocol fails the backup with exit code 20, and nothing is recorded.
        """
    )

    @OptionGroup var options: VaultOptions

    @Option(help: "The source's name in the config file.")
    var source: String

    @Option(name: .customLong("type"), help: "full, incremental or log.")
    var kind: String = "full"

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        try reportingErrors {
            guard ["full", "incremental", "log"].contains(kind) else {
                throw VaultError.invalidArgument("--type must be full, incremental or log")
            }
            let config = try options.requireConfig()
            let source = try config.source(source)
            let path = try PluginLocator.find(engine: source.engine)
            // The plugin starts up while the vault's key is derived.
            let (vault, plugin) = try options.open(startingFirst: {
                try PluginProcess(path: path, timeout: source.pluginTimeout) { Terminal.note("\(source.engine): \($0)") }
            })
            let software = "coffer \(Coffer.configuration.version)"
            if kind == "log" {
                // Engines that pull their log store everything the server has now, as many
                // logs as that is (closed binlogs, the oplog up to now).
                try plugin.handshake(engine: source.engine, software: software)
                if plugin.hello?.capabilities?.contains("capture") == true {
                    return try captureLogs(PluginJob(vault: vault, plugin: plugin, engine: source.engine), source: source)
                }
            }
            let progress = ProgressLine("backed up")
            let request = BackupRequest(source: source.name, kind: kind, options: source.options)
            let (id, stats) = try PluginJob(vault: vault, plugin: plugin, engine: source.engine)
                .backupWithStatistics(request, software: software) { progress.update(bytes: $0) }
            progress.finish()
            let manifest = try vault.readManifest(id: id)
            if json {
                struct Out: Encodable {
                    let id: String, source: String, engine: String, kind: String, size: Int64
                    let artifacts: Int, positions: [String: String]
                    let newBlobs: Int, reusedBlobs: Int, addedBytes: Int64
                }
                try Terminal.printJSON(Out(id: id, source: source.name, engine: source.engine, kind: kind,
                                           size: manifest.logicalSize, artifacts: manifest.artifacts.count,
                                           positions: manifest.positions, newBlobs: stats.newBlobs,
                                           reusedBlobs: stats.reusedBlobs, addedBytes: stats.newStored))
            } else {
                print(id)
                if Terminal.stderrIsTTY {
                    Terminal.note("backed up \(Format.bytes(manifest.logicalSize)): \(stats.newBlobs) new blobs (\(Format.bytes(stats.newStored)) added), \(stats.reusedBlobs) reused")
                }
            }
        }
    }

    private func captureLogs(_ job: PluginJob, source: CofferConfig.Source) throws {
        var logs: [CapturedLogLine] = []
        try CaptureRun(job: job, source: source).run(follow: false) { log in
            logs.append(CapturedLogLine(log))
            if !json { print(CapturedLogLine(log).text) }
        }
        if json {
            struct Out: Encodable { let source: String, engine: String, kind: String, logs: [CapturedLogLine] }
            try Terminal.printJSON(Out(source: source.name, engine: source.engine, kind: "log", logs: logs))
        } else {
            Terminal.note("stored \(logs.count) log\(logs.count == 1 ? "" : "s")")
        }
    }
}
