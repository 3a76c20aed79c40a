import ArgumentParser
import CofferAgent
import CofferPluginProtocol
import CofferVault
import Foundation

struct WalPush: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "wal-push",
        abstract: "PostgreSQL archive_command: store one WAL file in the vault.",
        discussion: """
        Use as archive_command = 'coffer wal-push --config /etc/coffer/coffer.toml %p'. \
        The file (a segment, a .history, .partial or .backup file) is checked by the \
        postgres plugin (page headers and record checksums of a segment) and stored; the \
        command exits 0 only once it is durable in the vault. Pushing a file that is \
        already there with the same content succeeds (PostgreSQL retries after a crash); \
        with different content it fails with exit code 21 and changes nothing.

        The vault is opened on every call: a key file (key_file in the config) opens it \
        in microseconds, a passphrase costs one scrypt derivation.
        """
    )

    @OptionGroup var options: VaultOptions

    @Option(help: "The source's name in the config file (default: its only postgres source).")
    var source: String?

    @Argument(help: "The file to archive (%p): a path, relative to the current directory.")
    var path: String

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        try reportingErrors {
            let absolute = path.hasPrefix("/") ? path : FileManager.default.currentDirectoryPath + "/" + path
            guard FileManager.default.fileExists(atPath: absolute) else {
                throw VaultError.invalidArgument("\(path): no such file")
            }
            let started = Date()
            // As SourceJob, except that the vault is opened while the plugin starts and checks
            // the file (PluginJob.backup(_:plugin:engine:software:openingVault:)): with a
            // passphrase that is one scrypt derivation, the longest step of a push. What needs
            // no key is checked first (a prompt must not race the plugin's log lines); the
            // vault's own errors (a newer format, a wrong secret) win over the plugin's.
            let config = try options.requireConfig()
            let chosen = try SourceJob.source(in: config, named: source, engine: "postgres")
            let backend = try options.backend()
            // Only whether it is a vault: Vault.open reads and checks the config anyway, and
            // the first date it decodes (ICU's start, ~4 ms) is better spent off this path.
            guard try backend.exists(.config, "config") else { throw VaultError.notAVault(path: backend.location) }
            let secret = try options.secret()
            var pluginOptions = chosen.options
            pluginOptions["wal_path"] = absolute
            let plugin = try PluginProcess(path: try PluginLocator.find(engine: chosen.engine), timeout: chosen.pluginTimeout) {
                Terminal.note("\(chosen.engine): \($0)")
            }
            let id = try PluginJob.backup(BackupRequest(source: chosen.name, kind: "log", options: pluginOptions),
                                          plugin: plugin, engine: chosen.engine,
                                          software: "coffer \(Coffer.configuration.version)") {
                try Vault.open(backend: backend, secret: secret)
            }
            if json {
                struct Out: Encodable { let id: String; let log: String; let seconds: Double }
                try Terminal.printJSON(Out(id: id, log: (absolute as NSString).lastPathComponent,
                                           seconds: Date().timeIntervalSince(started)))
            }
        }
    }
}
