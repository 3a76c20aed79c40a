import ArgumentParser
import CofferVault
import Foundation

struct VaultInit: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "init",
        abstract: "Create a new vault in an empty or missing directory.",
        discussion: """
        The first key slot takes the passphrase (COFFER_PASSPHRASE, --passphrase-file, or a prompt \
        asked twice), or the key file given with --key-file, which is created with 32 random bytes \
        when it does not exist.
        """
    )

    @OptionGroup var options: VaultOptions

    @Option(help: ArgumentHelp("Average content-defined chunk size; min is half, max four times it.", valueName: "size"))
    var chunkSize: String = "1M"

    @Option(help: ArgumentHelp("Pack files are closed at this size.", valueName: "size"))
    var packSize: String = "16M"

    @Option(help: "Default zstd level for new data (0 stores uncompressed).")
    var compression: Int = 3

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        try reportingErrors {
            guard let avg = ByteSize.parse(chunkSize), let pack = ByteSize.parse(packSize) else {
                throw VaultError.invalidArgument("sizes are numbers with an optional K, M or G")
            }
            try CompressionLevel.validate(compression)
            let config = VaultConfig(chunker: ChunkerParameters(average: avg), packSize: pack,
                                     compressionLevel: compression)
            let secret: KeySecret
            if let keyFile = options.keyFile ?? options.environment["COFFER_KEY_FILE"],
               !FileManager.default.fileExists(atPath: keyFile) {
                secret = .keyFile(try KeyFiles.create(at: keyFile))
            } else {
                secret = try options.secret(confirm: true)
            }
            let vault = try Vault.create(backend: options.backend(), secret: secret, config: config)
            if json {
                struct Out: Encodable { let vault: String; let id: String; let keySlot: String }
                try Terminal.printJSON(Out(vault: try options.vaultPath(), id: vault.config.id, keySlot: vault.slotName))
            } else {
                print("created vault \(vault.config.id) at \(try options.vaultPath()) (key slot \(vault.slotName))")
            }
        }
    }
}

enum KeyFiles {
    /// Writes a new key file (32 random bytes, base64) readable by its owner only.
    static func create(at path: String) throws -> [UInt8] {
        var random = [UInt8](repeating: 0, count: 32)
        var rng = SystemRandomNumberGenerator()
        for i in random.indices { random[i] = rng.next() }
        let bytes = Array((Data(random).base64EncodedString() + "\n").utf8)
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes), attributes: [.posixPermissions: 0o600])
        else { throw VaultError.invalidArgument("cannot create key file \(path)") }
        return bytes
    }
}
