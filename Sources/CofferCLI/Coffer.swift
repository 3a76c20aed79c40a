import ArgumentParser

public struct Coffer: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "coffer",
        abstract: "Database-aware backups into one deduplicated, encrypted vault.",
        discussion: """
        The vault comes from --vault, COFFER_VAULT, or the config file (--config, COFFER_CONFIG). \
        Its passphrase comes from a key file (--key-file, COFFER_KEY_FILE), --passphrase-file \
        (COFFER_PASSPHRASE_FILE), COFFER_PASSPHRASE, the config file, or a prompt on the terminal.

        Exit codes: 0 ok, 1 other failure, 2 bad usage, 10 wrong passphrase, 11 not a vault, \
        12 vault of a newer format, 13 disk full, 14 corrupt object, 15 missing object, \
        16 no such backup, 17 refused: last key slot, 18 another prune is running, 20 the engine plugin failed, \
        21 a log pushed again with different content, 22 restore target outside the \
        restorable windows, 23 verify found a gap, duplicate or corrupt log.
        """,
        version: "0.1.0",
        subcommands: [VaultCommand.self, Backup.self, Restore.self, Verify.self, WalPush.self, WalFetch.self, Capture.self, Put.self, Get.self, Backups.self,
                      Prune.self, AgentCommand.self, Status.self]
    )

    public init() {}
}
