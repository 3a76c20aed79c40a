import CofferAgent
import CofferVault
import Foundation

/// A config-file source and the vault, ready to start its engine plugin: what every
/// engine-driven command (backup, restore, verify, wal-push, wal-fetch) begins with.
struct SourceJob {
    let config: CofferConfig
    let source: CofferConfig.Source
    let vault: Vault

    /// `name` picks the source; without it the config file's only source of `engine` does
    /// (so archive_command needs no --source on a one-cluster host).
    init(options: VaultOptions, name: String?, engine: String? = nil) throws {
        config = try options.requireConfig()
        source = try SourceJob.source(in: config, named: name, engine: engine)
        vault = try options.open()
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

    /// A job on a freshly started plugin; its stderr lines go to ours.
    func job() throws -> PluginJob {
        let name = source.engine
        let plugin = try PluginProcess(path: try PluginLocator.find(engine: name), timeout: source.pluginTimeout) {
            Terminal.note("\(name): \($0)")
        }
        return PluginJob(vault: vault, plugin: plugin, engine: name)
    }

    var software: String { "coffer \(Coffer.configuration.version)" }
}
