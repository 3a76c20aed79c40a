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
            let setup = try SourceJob(options: options, name: source, engine: "postgres")
            var pluginOptions = setup.source.options
            pluginOptions["wal_path"] = absolute
            let started = Date()
            let id = try setup.job().backup(BackupRequest(source: setup.source.name, kind: "log", options: pluginOptions),
                                            software: setup.software)
            if json {
                struct Out: Encodable { let id: String; let log: String; let seconds: Double }
                try Terminal.printJSON(Out(id: id, log: (absolute as NSString).lastPathComponent,
                                           seconds: Date().timeIntervalSince(started)))
            }
        }
    }
}
