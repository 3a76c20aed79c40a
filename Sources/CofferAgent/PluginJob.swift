import CofferVault

/// One job a plugin does for a source: a backup (PluginBackup.swift) or a restore
/// (PluginRestore.swift), with the vault on the agent's side.
public struct PluginJob {
    public let vault: Vault
    public let plugin: PluginProcess
    public let engine: String

    public init(vault: Vault, plugin: PluginProcess, engine: String) {
        self.vault = vault
        self.plugin = plugin
        self.engine = engine
    }
}
