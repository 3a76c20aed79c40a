import ArgumentParser
import CofferAgent
import CofferVault
import Foundation

/// Where the vault is and how to open it; shared by every command that touches a vault.
/// Command-line options win over environment variables, which win over the config file.
struct VaultOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Config file (or COFFER_CONFIG).", valueName: "file"))
    var config: String?

    @Option(name: .long, help: ArgumentHelp("Vault directory (or COFFER_VAULT).", valueName: "path"))
    var vault: String?

    @Option(name: .long, help: ArgumentHelp("File holding the passphrase (or COFFER_PASSPHRASE_FILE).", valueName: "file"))
    var passphraseFile: String?

    @Option(name: .long, help: ArgumentHelp("Key file to open the vault with (or COFFER_KEY_FILE).", valueName: "file"))
    var keyFile: String?

    /// These options as command-line arguments, for a coffer command started on our behalf
    /// (restore_command, the WAL prefetcher). Paths are made absolute: it may run elsewhere.
    var arguments: [String] {
        func absolute(_ p: String) -> String { p.hasPrefix("/") ? p : FileManager.default.currentDirectoryPath + "/" + p }
        var out: [String] = []
        if let config = config ?? environment["COFFER_CONFIG"] { out += ["--config", absolute(config)] }
        if let vault = vault ?? environment["COFFER_VAULT"] { out += ["--vault", absolute(vault)] }
        if let file = passphraseFile ?? environment["COFFER_PASSPHRASE_FILE"] { out += ["--passphrase-file", absolute(file)] }
        if let file = keyFile ?? environment["COFFER_KEY_FILE"] { out += ["--key-file", absolute(file)] }
        return out
    }

    /// The environment, where an empty variable counts as unset.
    var environment: [String: String] { ProcessInfo.processInfo.environment.filter { !$0.value.isEmpty } }

    /// The config file, when one is named; nil otherwise.
    func configFile() throws -> CofferConfig? {
        guard let path = config ?? environment["COFFER_CONFIG"] else { return nil }
        return try CofferConfig.load(path: path)
    }

    /// The config file, which the command cannot do without.
    func requireConfig() throws -> CofferConfig {
        guard let config = try configFile() else {
            throw VaultError.invalidArgument("no config file: use --config FILE or set COFFER_CONFIG")
        }
        return config
    }

    func vaultPath() throws -> String {
        // The config file is read only when nothing else names the vault.
        var path = vault ?? environment["COFFER_VAULT"]
        if path == nil { path = try configFile()?.vault.path }
        guard let path, !path.isEmpty else {
            throw VaultError.invalidArgument("no vault given: use --vault PATH, set COFFER_VAULT, or name it in the config file")
        }
        return path
    }

    func backend() throws -> LocalBackend { LocalBackend(path: try vaultPath()) }

    /// The secret: options first (key file, passphrase file), then the environment
    /// (COFFER_KEY_FILE, COFFER_PASSPHRASE_FILE, COFFER_PASSPHRASE), then the config file,
    /// then a prompt.
    func secret(confirm: Bool = false) throws -> KeySecret {
        if let keyFile { return .keyFile(try readSecretFile(keyFile)) }
        if let passphraseFile { return .passphrase(Passphrase.trimmed(try readSecretFile(passphraseFile))) }
        if let keyFile = environment["COFFER_KEY_FILE"] {
            return .keyFile(try readSecretFile(keyFile))
        }
        if let file = environment["COFFER_PASSPHRASE_FILE"] {
            return .passphrase(Passphrase.trimmed(try readSecretFile(file)))
        }
        if let pass = environment["COFFER_PASSPHRASE"] {
            return .passphrase(Array(pass.utf8))
        }
        if let settings = try configFile()?.vault {
            if let keyFile = settings.keyFile { return .keyFile(try readSecretFile(keyFile)) }
            if let file = settings.passphraseFile { return .passphrase(Passphrase.trimmed(try readSecretFile(file))) }
        }
        return .passphrase(try Passphrase.prompt("Vault passphrase: ", confirm: confirm))
    }

    func open() throws -> Vault {
        try open(startingFirst: {}).vault
    }

    /// The vault, with what `start` returned. `start` runs once everything that needs no key
    /// is checked and the secret is read (a prompt must not race plugin log lines), before
    /// the key is derived: plugins it starts get through their own start-up meanwhile
    /// instead of after the derivation (with a passphrase, scrypt: ~0.1 s).
    func open<T>(startingFirst start: () throws -> T) throws -> (vault: Vault, started: T) {
        let backend = try backend()
        // Config first: "not a vault" and "newer format" are clearer than a passphrase prompt.
        _ = try Vault.readConfig(backend: backend)
        let secret = try secret()
        let started = try start()
        return (try Vault.open(backend: backend, secret: secret), started)
    }
}

func readSecretFile(_ path: String) throws -> [UInt8] {
    guard let data = FileManager.default.contents(atPath: path) else {
        throw VaultError.invalidArgument("cannot read \(path)")
    }
    return Array(data)
}

enum Passphrase {
    static func trimmed(_ bytes: [UInt8]) -> [UInt8] {
        var b = bytes
        while let last = b.last, last == 10 || last == 13 { b.removeLast() }
        return b
    }

    /// Prompts on the controlling terminal (stdin may be the data being backed up).
    static func prompt(_ text: String, confirm: Bool) throws -> [UInt8] {
        guard isatty(STDERR_FILENO) == 1, let tty = fopen("/dev/tty", "r+") else {
            throw VaultError.invalidArgument(
                "no passphrase: set COFFER_PASSPHRASE, COFFER_PASSPHRASE_FILE, --passphrase-file or --key-file")
        }
        defer { fclose(tty) }
        func ask(_ prompt: String) -> [UInt8] {
            fputs(prompt, tty)
            fflush(tty)
            var attrs = termios()
            tcgetattr(fileno(tty), &attrs)
            let saved = attrs
            attrs.c_lflag &= ~tcflag_t(ECHO)
            tcsetattr(fileno(tty), TCSAFLUSH, &attrs)
            defer {
                var restore = saved
                tcsetattr(fileno(tty), TCSAFLUSH, &restore)
                fputs("\n", tty)
            }
            var line: UnsafeMutablePointer<CChar>? = nil
            var cap = 0
            let n = getline(&line, &cap, tty)
            defer { free(line) }
            guard n > 0, let line else { return [] }
            return trimmed(Array(UnsafeRawBufferPointer(start: line, count: n)))
        }
        let first = ask(text)
        if confirm {
            guard ask("Repeat passphrase: ") == first else {
                throw VaultError.invalidArgument("the passphrases do not match")
            }
        }
        return first
    }
}
