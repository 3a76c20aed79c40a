import ArgumentParser
import CofferAgent
import CofferDaemon
import CofferVault
import Foundation

struct Status: ParsableCommand {
    static let configuration = CommandConfiguration(
        // Users meet this command as `coffer status`, whose help says what it does.
        abstract: "What `coffer status` prints (see its --help)."
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
