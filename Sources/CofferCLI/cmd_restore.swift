import ArgumentParser
import CofferAgent
import CofferVault
import Foundation

struct Restore: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Restore a config-file source's backup through its engine plugin.",
        discussion: """
        Without --backup, the newest full backup of the source is restored. The plugin is \
        given the source's options and the target directory; what it writes there is \
        engine-specific (a PostgreSQL data directory, ...). Point-in-time targets come with \
        the engines' log support.
        """
    )

    @OptionGroup var options: VaultOptions

    @Option(help: "The source's name in the config file.")
    var source: String

    @Option(help: "The backup id (or a unique prefix); the newest full backup when left out.")
    var backup: String?

    @Option(help: "Where the plugin writes what it restores (must be empty or missing).")
    var targetDir: String

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        try reportingErrors {
            let config = try options.requireConfig()
            let source = try config.source(source)
            let vault = try options.open()
            let id: String
            if let backup {
                id = try vault.resolveBackup(backup)
            } else {
                guard let newest = try vault.backups(source: source.name).last(where: { $0.manifest.kind == "full" }) else {
                    throw VaultError.backupNotFound("a full backup of source \(source.name)")
                }
                id = newest.id
            }
            let plugin = try PluginProcess(path: try PluginLocator.find(engine: source.engine), timeout: source.pluginTimeout) {
                Terminal.note("\(source.engine): \($0)")
            }
            var pluginOptions = source.options
            pluginOptions["target_dir"] = targetDir
            let done = try PluginJob(vault: vault, plugin: plugin, engine: source.engine)
                .restore(source: source.name, backups: [id], options: pluginOptions, software: "coffer \(Coffer.configuration.version)")
            if json {
                struct Out: Encodable { let backup: String; let targetDir: String; let positions: [String: String] }
                try Terminal.printJSON(Out(backup: id, targetDir: targetDir, positions: done.positions))
            } else {
                print("restored backup \(id.prefix(12)) of \(source.name) into \(targetDir)")
                for (k, v) in done.positions.sorted(by: { $0.key < $1.key }) { print("  \(k): \(v)") }
            }
        }
    }
}
