import ArgumentParser
import CofferAgent
import CofferDaemon
import CofferVault
import Foundation

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
        do {
            guard let path = config ?? ProcessInfo.processInfo.environment["COFFER_CONFIG"], !path.isEmpty else {
                throw ValidationError("no config file: use --config FILE or set COFFER_CONFIG")
            }
            do {
                let status = try StatusReport.load(config: try CofferConfig.load(path: path))
                print(json ? try StatusReport.json(status) : StatusReport.table(status))
            } catch let error as DaemonError {
                FileHandle.standardError.write(Data("coffer: error: \(error.description)\n".utf8))
                throw ExitCode.failure
            }
        } catch let error as VaultError {
            FileHandle.standardError.write(Data("coffer: error: \(error.description)\n".utf8))
            throw ExitCode(error.exitCode)
        }
    }
}
