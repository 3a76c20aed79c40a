/// Failures of the agent's own rules (as opposed to the vault's or a plugin's).
public enum AgentError: Error, CustomStringConvertible {
    /// A log pushed again with other content than the copy in the vault.
    case logConflict(source: String, log: String, existing: String)
    /// A restore target the recorded chain cannot reach; the plugin's reason states the windows.
    case targetUnreachable(String)
    /// Verification found missing, duplicate or corrupt logs.
    case chainBroken(problems: Int)

    public var description: String {
        switch self {
        case .logConflict(let source, let log, let existing):
            return "log \(log) of source \(source) is already in the vault (backup \(existing.prefix(12))) with different content; refusing to replace it. One of the two copies is wrong: compare them before doing anything else"
        case .targetUnreachable(let reason):
            return reason
        case .chainBroken(let problems):
            return "the chain has \(problems) problem\(problems == 1 ? "" : "s")"
        }
    }

    /// The process exit code the CLI uses for it.
    public var exitCode: Int32 {
        switch self {
        case .logConflict: return 21
        case .targetUnreachable: return 22
        case .chainBroken: return 23
        }
    }
}
