import ArgumentParser

struct VaultCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "vault",
        abstract: "Create, inspect and check a vault, and manage its key slots.",
        subcommands: [VaultInit.self, VaultInfo.self, VaultCheck.self, VaultKey.self]
    )
}
