import CofferAgent
import CofferVault
import Foundation

/// A config-file source and the vault, ready to start its engine plugin: what every
/// engine-driven command (backup, restore, verify, wal-push, wal-fetch) begins with.
struct SourceJob {
    let config: CofferConfig
    let source: CofferConfig.Source
    let vault: Vault
    /// Plugins started while the vault was opened, for the first `job()` calls.
    private let started: StartedPlugins

    /// `name` picks the source; without it the config file's only source of `engine` does
    /// (so archive_command needs no --source on a one-cluster host). `plugins` engine
    /// plugins are started before the vault's key is derived, so that their start-up (a
    /// process and its libraries, ~50 ms from a cold cache) overlaps it: as many as the
    /// command will use jobs (a restore: one to plan, one to restore).
    init(options: VaultOptions, name: String?, engine: String? = nil, plugins: Int = 0) throws {
        let config = try options.requireConfig()
        let source = try SourceJob.source(in: config, named: name, engine: engine)
        self.config = config
        self.source = source
        (vault, started) = try options.open(startingFirst: {
            StartedPlugins(try (0 ..< plugins).map { _ in try SourceJob.startPlugin(source) })
        })
    }

    /// The source named (which must be of `engine` when one is given), or the config file's
    /// only source of `engine`.
    static func source(in config: CofferConfig, named name: String?, engine: String?) throws -> CofferConfig.Source {
        if let name {
            let source = try config.source(name)
            if let engine, source.engine != engine {
                throw VaultError.invalidArgument("source \(name) is a \(source.engine) source, not \(engine)")
            }
            return source
        }
        let candidates = config.sources.values.filter { engine == nil || $0.engine == engine }
        guard candidates.count == 1, let only = candidates.first else {
            throw VaultError.invalidArgument(candidates.isEmpty
                ? "the config file has no \(engine ?? "") source" : "the config file has several sources: name one with --source")
        }
        return only
    }

    /// A job on a plugin of its own (one started with the vault's opening, else a new one);
    /// its stderr lines go to ours.
    func job() throws -> PluginJob {
        PluginJob(vault: vault, plugin: try started.take() ?? SourceJob.startPlugin(source), engine: source.engine)
    }

    private static func startPlugin(_ source: CofferConfig.Source) throws -> PluginProcess {
        let name = source.engine
        return try PluginProcess(path: try PluginLocator.find(engine: name), timeout: source.pluginTimeout) {
            Terminal.note("\(name): \($0)")
        }
    }

    var software: String { "coffer \(Coffer.configuration.version)" }
}

/// Plugins started ahead, each handed to one job; any left over are killed with this (a
/// plugin that never got a request has done nothing).
private final class StartedPlugins: @unchecked Sendable {   // used by the command's one thread
    private var plugins: [PluginProcess]

    init(_ plugins: [PluginProcess]) { self.plugins = plugins }

    func take() -> PluginProcess? { plugins.isEmpty ? nil : plugins.removeFirst() }
}
