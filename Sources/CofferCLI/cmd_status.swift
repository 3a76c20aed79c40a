import ArgumentParser
import Foundation

/// Runs `coffer-agent status` in this process's place (see cmd_agent.swift).
struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Show the agent's jobs: last success, result, next run, bytes, alerts.",
        discussion: """
        Reads the state file `coffer agent` keeps in its state directory ([agent] state_dir), \
        so it works whether or not the agent runs (and says which). The same JSON as the \
        agent's GET /status. See docs/agent.md.
        """
    )

    @Option(name: .long, help: ArgumentHelp("Config file (or COFFER_CONFIG).", valueName: "file"))
    var config: String?

    @Flag(help: "Print the status as JSON.")
    var json = false

    func run() throws {
        try DaemonExecutable.exec(["status"] + (config.map { ["--config", $0] } ?? []) + (json ? ["--json"] : []))
    }
}
