import ArgumentParser
import CofferDaemon
import Foundation

struct AgentCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "agent",
        // Users meet this command as `coffer agent`, whose help says what it does.
        abstract: "The daemon behind `coffer agent` (see its --help)."
    )

    @Option(name: .long, help: ArgumentHelp("Config file (or COFFER_CONFIG).", valueName: "file"))
    var config: String?

    @Option(name: .long, help: ArgumentHelp("The coffer executable jobs run as (default: next to this one).", valueName: "path"))
    var coffer: String?

    func run() throws {
        guard let path = config ?? ProcessInfo.processInfo.environment["COFFER_CONFIG"], !path.isEmpty else {
            throw ValidationError("no config file: use --config FILE or set COFFER_CONFIG")
        }
        let coffer = self.coffer ?? Executables.sibling("coffer")
        let failure = runBlocking { try await AgentMain.run(configPath: path, coffer: coffer) }
        if let failure {
            FileHandle.standardError.write(Data("coffer: error: \(failure)\n".utf8))
            throw ExitCode.failure
        }
    }
}

/// Runs async work from a synchronous command and returns its error, if any.
func runBlocking(_ body: @escaping @Sendable () async throws -> Void) -> (any Error)? {
    final class Box: @unchecked Sendable { var error: (any Error)? }
    let box = Box()
    let done = DispatchSemaphore(value: 0)
    Task {
        do { try await body() } catch { box.error = error }
        done.signal()
    }
    done.wait()
    return box.error
}
