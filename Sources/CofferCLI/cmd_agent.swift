import ArgumentParser
import Foundation

/// `coffer agent` (and `coffer status`, cmd_status.swift) run `coffer-agent` (next to
/// `coffer`) in this process's place: the daemon's dependencies stay out of the `coffer`
/// executable, which archive and restore commands start for every WAL segment.
struct AgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        abstract: "Run the daemon: scheduled backups, verification, pruning, log capture, alerts, metrics.",
        discussion: """
        Reads [agent] and each source's [source.NAME.schedule] from the config file and runs \
        every job as a `coffer` child process (backup, verify, prune, capture) on its cron \
        schedule. One agent per state directory (a lock). SIGTERM or SIGINT stops it: no new \
        jobs, SIGTERM to running ones, SIGKILL after agent.shutdown_grace seconds. Serves \
        /status and /metrics on agent.listen. See docs/agent.md. (Runs coffer-agent, found \
        next to coffer.)
        """
    )

    @Option(name: .long, help: ArgumentHelp("Config file (or COFFER_CONFIG).", valueName: "file"))
    var config: String?

    func run() throws {
        try DaemonExecutable.exec(["agent", "--coffer", DaemonExecutable.selfPath] + (config.map { ["--config", $0] } ?? []))
    }
}

enum DaemonExecutable {
    static var selfPath: String {
        (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0]
    }

    /// Replaces this process with coffer-agent (same pid, so signals and the agent's lock
    /// behave as if it were this command).
    static func exec(_ arguments: [String]) throws -> Never {
        let path = (selfPath as NSString).deletingLastPathComponent + "/coffer-agent"
        let argv = [path] + arguments
        var cArgs = argv.map { strdup($0) } + [nil]
        execv(path, &cArgs)
        Terminal.error("cannot run \(path): \(String(cString: strerror(errno))) (it is installed next to coffer)")
        throw ExitCode(ExitCodes.pluginFailed)
    }
}
