import ArgumentParser
import CofferVault
import Foundation

struct VaultKey: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "key",
        abstract: "Manage key slots: each wraps the same master key, so adding or removing one re-encrypts nothing.",
        subcommands: [Add.self, List.self, Remove.self]
    )

    struct Add: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Add a key slot.",
            discussion: """
            The new slot takes a passphrase from --new-passphrase-file, COFFER_NEW_PASSPHRASE or a prompt, \
            or a key file from --new-key-file (created with 32 random bytes when it does not exist).
            """
        )

        @OptionGroup var options: VaultOptions

        @Option(help: ArgumentHelp("File holding the new passphrase.", valueName: "file"))
        var newPassphraseFile: String?

        @Option(help: ArgumentHelp("Key file for the new slot.", valueName: "file"))
        var newKeyFile: String?

        @Option(help: "A label to tell slots apart.")
        var label: String = ""

        @Flag(help: "Print the result as JSON.")
        var json = false

        func run() throws {
            try reportingErrors {
                let vault = try options.open()
                let secret: KeySecret
                if let file = newKeyFile {
                    secret = .keyFile(FileManager.default.fileExists(atPath: file) ? try readSecretFile(file) : try KeyFiles.create(at: file))
                } else if let file = newPassphraseFile {
                    secret = .passphrase(Passphrase.trimmed(try readSecretFile(file)))
                } else if let pass = options.environment["COFFER_NEW_PASSPHRASE"] {
                    secret = .passphrase(Array(pass.utf8))
                } else {
                    secret = .passphrase(try Passphrase.prompt("New passphrase: ", confirm: true))
                }
                let name = try vault.addKeySlot(secret: secret, label: label)
                if json {
                    try Terminal.printJSON(["keySlot": name])
                } else {
                    print("added key slot \(name)")
                }
            }
        }
    }

    struct List: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "List key slots.")

        @OptionGroup var options: VaultOptions

        @Flag(help: "Print the result as JSON.")
        var json = false

        func run() throws {
            try reportingErrors {
                let vault = try options.open()
                let slots = try Vault.keySlots(backend: vault.backend)
                if json {
                    struct Out: Encodable { let id: String, kind: String, label: String, host: String, created: Date, current: Bool }
                    try Terminal.printJSON(slots.map {
                        Out(id: $0.name, kind: $0.slot.kind.rawValue, label: $0.slot.label, host: $0.slot.host,
                            created: $0.slot.created, current: $0.name == vault.slotName)
                    })
                    return
                }
                print(Format.table(["", "ID", "KIND", "CREATED", "HOST", "LABEL"], slots.map {
                    [$0.name == vault.slotName ? "*" : "", $0.name, $0.slot.kind.rawValue, Format.time($0.slot.created),
                     $0.slot.host, $0.slot.label]
                }))
            }
        }
    }

    struct Remove: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Remove a key slot (never the last one, nor the one used to open the vault now)."
        )

        @OptionGroup var options: VaultOptions

        @Argument(help: "The slot's id, or a unique prefix of it.")
        var id: String

        func run() throws {
            try reportingErrors {
                let vault = try options.open()
                let removed = try vault.removeKeySlot(prefix: id)
                print("removed key slot \(removed)")
            }
        }
    }
}
